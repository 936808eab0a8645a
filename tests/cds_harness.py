"""What the CDS Hooks tests and the load benchmark share: a CDS client's signing key and tokens,
a stand-in FHIR server on 127.0.0.1, `dosing serve` as a real process, and request bodies."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dosing.core.vocabulary import VOCABULARY
from dosing.fhir.codes import LOINC, UCUM, VOCABULARY_SYSTEM

ISSUER = "https://ehr.example.org"
KID = "ehr-key-1"
FHIR_TOKEN = "opaque-fhir-access-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class Signer:
    """A CDS client's key pair and its tokens: EC P-384 (ES384) or RSA 2048 (RS384), the two
    algorithms CDS Hooks recommends."""

    def __init__(self, kid: str = KID, issuer: str = ISSUER, algorithm: str = "ES384") -> None:
        self.key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
            ec.generate_private_key(ec.SECP384R1())
            if algorithm == "ES384"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        self.algorithm = algorithm
        self.kid = kid
        self.issuer = issuer

    def jwk_set(self) -> dict[str, Any]:
        public_key = self.key.public_key()
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
        else:
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": self.algorithm}]}

    def token(self, audience: str, lifetime: int = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "exp": now + lifetime,
            "iat": now,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        payload = {key: value for key, value in payload.items() if value is not None}
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(payload, self.key, algorithm=self.algorithm, headers=headers)


def write_trust(folder: Path, *signers: Signer) -> Path:
    path = folder / "trust.json"
    path.write_text(json.dumps({s.issuer: s.jwk_set() for s in signers}))
    return path


# ---------------------------------------------------------------- FHIR resources


def lab(
    patient_id: str, name: str, value: str, ucum: str, drawn: str, status: str = "final"
) -> dict[str, Any]:
    entry = VOCABULARY[name]
    coding = (
        {"system": LOINC, "code": entry.loinc[0]}
        if entry.loinc
        else {"system": VOCABULARY_SYSTEM, "code": name}
    )
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{patient_id}-{name}-{drawn}".replace("_", "-"),
        "status": status,
        "code": {"coding": [coding], "text": entry.label},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"{drawn}T08:00:00+01:00",
    }
    if ucum:
        resource["valueQuantity"] = {"value": json.loads(value), "system": UCUM, "code": ucum}
    elif value in ("yes", "no"):
        resource["valueBoolean"] = value == "yes"
    else:
        resource["valueCodeableConcept"] = {
            "coding": [{"system": VOCABULARY_SYSTEM, "code": value}]
        }
    return resource


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"http://fhir.example/Observation/{r['id']}", "resource": r}
            for r in resources
        ],
    }


def person(patient_id: str, birth: str = "1970-03-01", gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": patient_id, "birthDate": birth, "gender": gender}


IMATINIB_START = [
    ("anc", "1200", "/uL"), ("platelets", "180", "10*9/L"), ("alt", "30", "U/L"),
    ("ast", "28", "U/L"), ("bilirubin", "0.7", "mg/dL"), ("bleeding", "no", ""),
    ("eligibility_confirmed", "yes", ""),
]  # fmt: skip
"""An adult's first imatinib-hes visit with ANC 1.2 x10^9/L: start at 300 mg qd."""


def imatinib_prefetch(patient_id: str, drawn: str) -> dict[str, Any]:
    """A full prefetch for imatinib-hes: every key, data or null."""
    prefetch: dict[str, Any] = {"patient": person(patient_id)}
    for name, value, ucum in IMATINIB_START:
        prefetch[name] = searchset(lab(patient_id, name, value, ucum, drawn))
    for name in ("weight", "height", "response", "relapse", "life_threatening"):
        prefetch[name] = None
    return prefetch


def hook_request(
    patient_id: str, prefetch: dict[str, Any] | None, hook: str = "order-select", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id},
        **extra,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


# ---------------------------------------------------------------- the stand-in FHIR server


class StandInFhir:
    """A FHIR server on 127.0.0.1 that answers reads of Patients and searches of Observations
    by patient and code (latest first), and wants the bearer token the CDS client issued."""

    def __init__(self) -> None:
        self.patients: dict[str, dict[str, Any]] = {}
        self.observations: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str | None]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                stand_in.requests.append((self.path, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != f"Bearer {FHIR_TOKEN}":
                    self._send(401, {"resourceType": "OperationOutcome"})
                    return
                status, body = stand_in.answer(self.path)
                self._send(status, body)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(path)
        route = parts.path.removeprefix("/fhir/")
        if route.startswith("Patient/"):
            found = self.patients.get(route.removeprefix("Patient/"))
            return (200, found) if found else (404, {"resourceType": "OperationOutcome"})
        if route != "Observation":
            return 400, {"resourceType": "OperationOutcome"}
        query = parse_qs(parts.query)
        patient = query["patient"][0]
        wanted = {tuple(code.split("|", 1)) for code in query["code"][0].split(",")}
        matches = [
            o for o in self.observations
            if o["subject"]["reference"] == f"Patient/{patient}"
            and any((c["system"], c["code"]) in wanted for c in o["code"]["coding"])
        ]  # fmt: skip
        matches.sort(key=lambda o: o["effectiveDateTime"], reverse=True)
        return 200, searchset(*matches[: int(query.get("_count", ["100"])[0])])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- dosing serve


class Served:
    """`dosing serve` running as a real process, its output in a log file."""

    def __init__(self, folder: Path, trust: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = folder / "service.sqlite"
        self.log = folder / "serve.log"
        command = [
            sys.executable, "-m", "dosing", "serve", "--trust", str(trust), "--port",
            str(self.port), "--db", str(self.db), *extra,
        ]  # fmt: skip
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
            )  # fmt: skip
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dosing serve exited: {self.log.read_text()}")
            try:
                httpx.get(f"{self.base}/cds-services", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("dosing serve did not start within 60 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
