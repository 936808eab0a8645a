"""`dosing serve`, the CDS Hooks 2.0 service, as a real process on 127.0.0.1, over HTTP:
discovery, cards from a full prefetch and from a stand-in FHIR server, refusals (401, 400,
412, 413), feedback kept in the patient store and shown by `dosing history`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fhir.resources.R4B.medicationrequest import MedicationRequest

from dosing.fhir.codes import UCUM
from tests.cds_harness import (
    FHIR_TOKEN,
    IMATINIB_START,
    ISSUER,
    Served,
    Signer,
    StandInFhir,
    hook_request,
    imatinib_prefetch,
    lab,
    person,
    searchset,
    write_trust,
)
from tests.conftest import ROOT

TODAY = dt.date.today().isoformat()
SERVICE = "/cds-services/imatinib-hes"


class Service:
    """The running service, a trusted client's key, and the stand-in FHIR server."""

    def __init__(self, served: Served, signer: Signer, fhir: StandInFhir) -> None:
        self.served, self.signer, self.fhir = served, signer, fhir

    def url(self, path: str) -> str:
        return f"{self.served.base}{path}"

    def auth(self, path: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.signer.token(self.url(path), **claims)}"}

    def post(self, path: str, body: Any, audience: str | None = None) -> httpx.Response:
        return httpx.post(
            self.url(path), json=body, headers=self.auth(audience or path), timeout=30
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("serve")
    signer = Signer()
    served = Served(folder, write_trust(folder, signer), "--max-body", "200000")
    fhir = StandInFhir()
    try:
        yield Service(served, signer, fhir)
    finally:
        served.stop()
        fhir.close()


def new_patient() -> str:
    return f"P-{uuid.uuid4().hex[:8]}"


def test_discovery_lists_a_service_per_protocol_and_the_worklist(service: Service) -> None:
    """Issue 13: GET /cds-services lists one order-select service per shipped protocol and the
    patient-view worklist, each with prefetch templates by LOINC code."""
    answer = httpx.get(service.url("/cds-services"), headers=service.auth("/cds-services"))
    assert answer.status_code == 200
    offered = {s["id"]: s for s in answer.json()["services"]}
    assert offered["imatinib-hes"]["hook"] == "order-select"
    assert offered["dosing-worklist"]["hook"] == "patient-view"
    assert len(offered) == 7
    prefetch = offered["imatinib-hes"]["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    assert prefetch["anc"] == (
        "Observation?patient={{context.patientId}}&code=http://loinc.org|751-8&_sort=-date&_count=1"
    )
    assert "code=http://loinc.org|29463-7&" in offered["ruxolitinib-hlh"]["prefetch"]["weight"]


def test_a_full_prefetch_gives_a_card_with_the_dose(service: Service) -> None:
    """Issue 13: ANC 1200/uL at an adult's first visit: a card 'Start: imatinib 300 mg qd', info,
    the reasons with their margins, the protocol and its citation, and a suggestion to create
    the MedicationRequest (300 mg, UCUM, QD)."""
    patient_id = new_patient()
    answer = service.post(SERVICE, hook_request(patient_id, imatinib_prefetch(patient_id, TODAY)))
    assert answer.status_code == 200, answer.text
    [card] = answer.json()["cards"]
    assert card["summary"].startswith("Start: imatinib 300 mg qd; next check ")
    assert len(card["summary"]) < 140
    assert card["indicator"] == "info"
    assert "ANC 1200 /uL (= 1.2 x10^9/L) \\< 1.5 x10^9/L (margin 0.3 x10^9/L)" in card["detail"]
    assert card["source"]["label"].startswith(
        "dosing imatinib-hes 2026.11.2 · ClinicalTrials.gov NCT00044304"
    )
    uuid.UUID(card["uuid"])
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    request = action["resource"]
    MedicationRequest.model_validate(request)
    assert request["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] == {
        "value": 300, "unit": "mg", "system": UCUM, "code": "mg"
    }  # fmt: skip
    assert request["dosageInstruction"][0]["timing"]["code"]["text"] == "QD"
    assert card["selectionBehavior"] == "at-most-one"


def test_an_empty_prefetch_is_fetched_from_the_fhir_server(service: Service) -> None:
    """Issue 13: with no prefetch, the labs are fetched from the fhirServer with the access
    token the request carries; the card is the same as with the prefetch."""
    patient_id = new_patient()
    service.fhir.patients[patient_id] = person(patient_id)
    service.fhir.observations += [
        lab(patient_id, name, value, ucum, TODAY) for name, value, ucum in IMATINIB_START
    ]
    older = (dt.date.today() - dt.timedelta(days=3)).isoformat()
    service.fhir.observations.append(lab(patient_id, "anc", "400", "/uL", older))
    body = hook_request(
        patient_id,
        None,
        fhirServer=service.fhir.url,
        fhirAuthorization={
            "access_token": FHIR_TOKEN, "token_type": "Bearer", "expires_in": 300,
            "scope": "patient/Observation.read patient/Patient.read", "subject": "dosing",
        },
    )  # fmt: skip
    answer = service.post(SERVICE, body)
    assert answer.status_code == 200, answer.text
    [card] = answer.json()["cards"]
    assert card["summary"].startswith("Start: imatinib 300 mg qd")
    asked = [path for path, _ in service.fhir.requests if patient_id in path]
    assert f"/fhir/Patient/{patient_id}" in asked
    assert any("code=http://loinc.org|751-8" in path for path in asked)
    assert all(token == f"Bearer {FHIR_TOKEN}" for _, token in service.fhir.requests)


def test_missing_keys_without_a_fhir_server_are_412(service: Service) -> None:
    patient_id = new_patient()
    prefetch = imatinib_prefetch(patient_id, TODAY)
    del prefetch["anc"]
    answer = service.post(SERVICE, hook_request(patient_id, prefetch))
    assert answer.status_code == 412
    assert answer.json() == {"error": "not prefetched and no fhirServer to fetch them from: anc"}


@pytest.mark.parametrize("anc", ["stale", "null", "preliminary"])
def test_a_missing_or_stale_lab_gives_a_refer_card_never_a_dose(service: Service, anc: str) -> None:
    """Issue 13: an ANC the client has not got, one too old, or one not final gives a refer
    card that says what to measure, and no suggestion."""
    patient_id = new_patient()
    prefetch = imatinib_prefetch(patient_id, TODAY)
    if anc == "stale":
        old = (dt.date.today() - dt.timedelta(days=60)).isoformat()
        prefetch["anc"] = searchset(lab(patient_id, "anc", "1200", "/uL", old))
    elif anc == "null":
        prefetch["anc"] = None
    else:
        prefetch["anc"] = searchset(lab(patient_id, "anc", "1200", "/uL", TODAY, "preliminary"))
    [card] = service.post(SERVICE, hook_request(patient_id, prefetch)).json()["cards"]
    assert card["summary"].startswith("Refer, no dose: ")
    assert card["indicator"] == "warning"
    assert "suggestions" not in card
    assert "measure ANC" in card["detail"]


def test_no_dose_is_critical(service: Service) -> None:
    """Platelets 8 x10^9/L at screening: ineligible, a critical card with no suggestion."""
    patient_id = new_patient()
    prefetch = imatinib_prefetch(patient_id, TODAY)
    prefetch["platelets"] = searchset(lab(patient_id, "platelets", "8", "10*9/L", TODAY))
    [card] = service.post(SERVICE, hook_request(patient_id, prefetch)).json()["cards"]
    assert (card["summary"], card["indicator"]) == ("Ineligible: no dose", "critical")
    assert "suggestions" not in card


# ---------------------------------------------------------------- refusals


def other_signer_token(service: Service) -> str:
    return Signer().token(service.url(SERVICE))


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        (lambda s: {}, "no Authorization header"),
        (lambda s: {"Authorization": "Basic dXNlcjpwdw=="}, "is not 'Bearer <JWT>'"),
        (lambda s: {"Authorization": "Bearer not.a.jwt"}, "not a JWT"),
        (lambda s: {"Authorization": f"Bearer {other_signer_token(s)}"}, "does not verify"),
        (lambda s: s.auth("/cds-services"), "aud is not this endpoint"),
        (lambda s: s.auth(SERVICE, lifetime=-120), "has expired"),
        (lambda s: s.auth(SERVICE, jti=None), "lacks the jti claim"),
        (
            lambda s: {
                "Authorization": "Bearer "
                + jwt.encode(
                    {"iss": ISSUER, "aud": s.url(SERVICE), "exp": 2**40, "iat": 0, "jti": "x"},
                    "shared-secret-of-at-least-32-bytes!!",
                    algorithm="HS256",
                    headers={"kid": s.signer.kid, "typ": "JWT"},
                )
            },
            "algorithm is not accepted",
        ),
        (
            lambda s: {
                "Authorization": "Bearer "
                + jwt.encode(
                    {"iss": ISSUER, "aud": s.url(SERVICE), "exp": 2**40, "iat": 0, "jti": "y"},
                    "",
                    algorithm="none",
                    headers={"kid": s.signer.kid, "typ": "JWT"},
                )
            },
            "algorithm is not accepted",
        ),
    ],
)
def test_an_unauthenticated_call_is_401(service: Service, headers: Any, says: str) -> None:
    """Issue 13: no token, another scheme, not a JWT, a key not trusted, the wrong audience,
    expired, without jti, an HMAC or an unsigned token: 401, and no advice."""
    patient_id = new_patient()
    answer = httpx.post(
        service.url(SERVICE),
        json=hook_request(patient_id, imatinib_prefetch(patient_id, TODAY)),
        headers=headers(service),
    )
    assert answer.status_code == 401
    assert says in answer.json()["error"]
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_is_accepted_once(service: Service) -> None:
    """A replayed token (its jti seen before) is refused."""
    patient_id = new_patient()
    body = hook_request(patient_id, imatinib_prefetch(patient_id, TODAY))
    headers = service.auth(SERVICE)
    assert httpx.post(service.url(SERVICE), json=body, headers=headers).status_code == 200
    again = httpx.post(service.url(SERVICE), json=body, headers=headers)
    assert (again.status_code, again.json()["error"]) == (
        401, "the token was used before (its jti is spent)"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"hook": "order-select", "context": ', "the request body is not JSON: Expecting value"),
        (b"[1, 2, 3]", "the request body: expected a JSON object"),
        (b'{"hook": "order-select", "hookInstance": "x"}', "context: expected an object"),
        (b'{"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p"}}',
         "hook: imatinib-hes answers order-select, not patient-view"),
        (b'{"a": 1, "a": 2}', "the key 'a' is given twice"),
        (b"\xff\xfe", "the request body is not UTF-8 text"),
        (b'{"hook": "order-select", "hookInstance": "x", "context": {"patientId": "p"}, '
         b'"prefetch": {"anc": {"resourceType": "Bundle", "entry": 5}}}',
         "prefetch.anc.entry: expected a list; found the number 5"),
    ],
)  # fmt: skip
def test_a_malformed_body_is_400_with_a_message(
    service: Service, content: bytes, says: str
) -> None:
    """Issue 13: a body that is not JSON, or not a CDS Hooks request, is a 400 that says what
    is wrong, never a 500."""
    headers = {**service.auth(SERVICE), "Content-Type": "application/json"}
    answer = httpx.post(service.url(SERVICE), content=content, headers=headers)
    assert answer.status_code == 400
    assert says in answer.json()["error"]


def test_an_oversized_body_is_413(service: Service) -> None:
    """Issue 13: a body over --max-body (here 200,000 bytes) is refused with 413, whether its
    length is declared or it is streamed."""
    padding = {"padding": "x" * 250_000}
    answer = service.post(SERVICE, hook_request(new_patient(), None, extension=padding))
    assert answer.status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"hook": "order-select", "x": "'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'"}'

    streamed = httpx.post(service.url(SERVICE), content=chunks(), headers=service.auth(SERVICE))
    assert streamed.status_code == 413
    assert streamed.json() == {"error": "the request body is over 200000 bytes"}


def test_an_unknown_service_is_404(service: Service) -> None:
    answer = service.post("/cds-services/warfarin", hook_request("p", {}))
    assert answer.status_code == 404


# ---------------------------------------------------------------- feedback


def dosing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dosing", *args], capture_output=True, text=True, cwd=ROOT,
        env={"NO_COLOR": "1", "COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_an_override_with_its_reason_is_kept_and_shown_by_history(service: Service) -> None:
    """Issue 13: feedback overriding a card, with a coded reason and a comment, stores the
    visit with the answer and the time in the patient store; `dosing history` shows it; the
    patient is then on the worklist."""
    patient_id = new_patient()
    answer = service.post(SERVICE, hook_request(patient_id, imatinib_prefetch(patient_id, TODAY)))
    [card] = answer.json()["cards"]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "https://ehr.example.org/override-reasons",
                        "code": "pt-pref",
                        "display": "Patient preference",
                    },
                    "userComment": "starts at 400 mg after the haematologist's review",
                },
                "outcomeTimestamp": "2026-11-22T10:15:00Z",
            }
        ]
    }
    recorded = service.post(f"{SERVICE}/feedback", feedback, audience=SERVICE)
    assert recorded.status_code == 200, recorded.text
    shown = dosing("history", patient_id, "--db", str(service.served.db))
    assert shown.returncode == 0, shown.stderr
    assert " overridden " in " ".join(shown.stdout.split())
    assert (
        "not reported by the EHR (Patient preference "
        "(https://ehr.example.org/override-reasons#pt-pref); comment: starts at 400 mg after "
        "the haematologist's review; CDS Hooks feedback, 2026-11-22T10:15:00Z)"
    ) in " ".join(shown.stdout.split())
    assert "Practitioner/dr-1" in shown.stdout  # who answered, from the hook's userId
    assert "start-reduced" in shown.stdout
    exported = dosing("history", patient_id, "--format", "csv", "--db", str(service.served.db))
    [row] = csv.DictReader(io.StringIO(exported.stdout))
    assert (row["answer"], row["clinician"], row["dose_given"]) == (
        "overridden", "Practitioner/dr-1", "not reported by the EHR"
    )  # fmt: skip
    assert row["answer_reason"] == (
        "Patient preference (https://ehr.example.org/override-reasons#pt-pref); comment: "
        "starts at 400 mg after the haematologist's review; CDS Hooks feedback, "
        "2026-11-22T10:15:00Z"
    )
    worklist = service.post(
        "/cds-services/dosing-worklist",
        hook_request(patient_id, imatinib_prefetch(patient_id, TODAY), hook="patient-view"),
    )
    [next_card] = worklist.json()["cards"]
    assert next_card["source"]["label"].startswith("dosing imatinib-hes")


def test_accepted_feedback_and_feedback_on_an_unknown_card(service: Service) -> None:
    patient_id = new_patient()
    answer = service.post(SERVICE, hook_request(patient_id, imatinib_prefetch(patient_id, TODAY)))
    [card] = answer.json()["cards"]
    accepted = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": "2026-11-22T10:16:00Z",
            }
        ]
    }
    assert service.post(f"{SERVICE}/feedback", accepted, audience=SERVICE).status_code == 200
    patients = dosing("patients", "--db", str(service.served.db))
    line = next(line for line in patients.stdout.splitlines() if patient_id in line)
    assert "imatinib 300 mg qd" in line
    unknown = {"feedback": [{**accepted["feedback"][0], "card": str(uuid.uuid4())}]}
    refused = service.post(f"{SERVICE}/feedback", unknown, audience=SERVICE)
    assert refused.status_code == 404
    bad = service.post(f"{SERVICE}/feedback", {"feedback": [{"card": "x"}]}, audience=SERVICE)
    assert (bad.status_code, bad.json()["error"]) == (
        400, "feedback[0].outcome: expected accepted or overridden"
    )  # fmt: skip


def test_the_worklist_has_nothing_for_a_patient_not_in_the_store(service: Service) -> None:
    patient_id = new_patient()
    answer = service.post(
        "/cds-services/dosing-worklist",
        hook_request(patient_id, imatinib_prefetch(patient_id, TODAY), hook="patient-view"),
    )
    assert answer.json() == {"cards": []}


def test_serve_refuses_a_trust_file_with_a_private_key(tmp_path: Path) -> None:
    key = Signer().key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    path = tmp_path / "trust.json"
    path.write_text(json.dumps({ISSUER: {"keys": [{**private, "kid": "k"}]}}))
    result = dosing("serve", "--trust", str(path), "--db", str(tmp_path / "s.sqlite"))
    assert result.returncode == 2
    assert "a private key; give the public key only" in result.stderr


def test_feedback_on_a_card_from_a_course_since_changed_is_kept_but_not_a_visit(
    service: Service,
) -> None:
    """Two cards decided from the same course: the first answered becomes the visit; feedback
    on the second is 409, its feedback kept, no visit written over the first."""
    patient_id = new_patient()
    cards = [
        service.post(
            SERVICE, hook_request(patient_id, imatinib_prefetch(patient_id, TODAY))
        ).json()["cards"][0]
        for _ in range(2)
    ]
    answers = [
        service.post(
            f"{SERVICE}/feedback",
            {"feedback": [{"card": c["uuid"], "outcome": "overridden",
                           "outcomeTimestamp": "2026-11-22T11:00:00Z"}]},
            audience=SERVICE,
        )
        for c in cards
    ]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 409]
    assert "the patient's course changed after the card was given" in answers[1].json()["error"]
    history = dosing("history", patient_id, "--format", "jsonl", "--db", str(service.served.db))
    assert len(history.stdout.splitlines()) == 1


def test_orders_for_another_drug_or_a_patient_on_another_protocol_get_no_dose(
    service: Service,
) -> None:
    """A draft order for another drug gets no card from imatinib-hes; a patient whose course
    in the store is on another protocol gets a note, never a dose."""
    patient_id = new_patient()
    orders: dict[str, Any] = {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"resource": {
            "resourceType": "MedicationRequest", "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"text": "paracetamol 500 mg tablet"},
            "subject": {"reference": f"Patient/{patient_id}"},
        }}],
    }  # fmt: skip
    body = hook_request(patient_id, imatinib_prefetch(patient_id, TODAY))
    body["context"]["draftOrders"] = orders
    assert service.post(SERVICE, body).json() == {"cards": []}
    orders["entry"][0]["resource"]["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "284402",
                    "display": "imatinib 100 MG Oral Tablet"}]
    }  # fmt: skip
    assert len(service.post(SERVICE, body).json()["cards"]) == 1
    answer = service.post(SERVICE, hook_request(patient_id, imatinib_prefetch(patient_id, TODAY)))
    card = answer.json()["cards"][0]
    accepted = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": TODAY}
    service.post(f"{SERVICE}/feedback", {"feedback": [accepted]}, audience=SERVICE)
    rux = "/cds-services/ruxolitinib-hes"
    [note] = service.post(rux, hook_request(patient_id, {})).json()["cards"]
    assert note["summary"] == (
        f"{patient_id} is on imatinib-hes in the dosing store, not ruxolitinib-hes: no advice "
        "from ruxolitinib-hes"
    )
    assert "suggestions" not in note


def test_a_malformed_lab_in_the_prefetch_is_named_on_the_card_and_not_used(
    service: Service,
) -> None:
    """An ANC written as text is not used: the card refers, and names the JSON path."""
    patient_id = new_patient()
    prefetch = imatinib_prefetch(patient_id, TODAY)
    prefetch["anc"]["entry"][0]["resource"]["valueQuantity"]["value"] = "1200"
    [card] = service.post(SERVICE, hook_request(patient_id, prefetch)).json()["cards"]
    assert card["summary"].startswith("Refer, no dose: ")
    assert (
        "prefetch.anc.entry\\[0\\].resource.valueQuantity.value: '1200' is not a JSON number: "
        "not used"
    ) in card["detail"]


def test_the_readme_request_gives_the_readme_card(service: Service) -> None:
    """The README's request (examples/cds-request.json, its labs re-dated to today) gives the
    card the README shows: summary, indicator, source, the suggested dose and the detail's
    lines (the README abridges with '...')."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- cds-response -->\n```json\n(.+?)\n```", readme, re.DOTALL)
    assert block is not None
    [shown] = json.loads(block.group(1))["cards"]
    text = (ROOT / "examples" / "cds-request.json").read_text().replace("2026-11-22", TODAY)
    patient_id = new_patient()
    text = text.replace('"P01"', f'"{patient_id}"').replace("Patient/P01", f"Patient/{patient_id}")
    request = json.loads(text)
    [card] = service.post(SERVICE, request).json()["cards"]
    next_check = (dt.date.today() + dt.timedelta(days=7)).isoformat()

    def dated(value: str) -> str:
        return value.replace("2026-11-29", next_check)

    assert (card["summary"], card["indicator"]) == (dated(shown["summary"]), shown["indicator"])
    assert card["source"] == shown["source"]
    for line in dated(shown["detail"]).split("\n"):
        assert line.removesuffix("...") in card["detail"], line
    [suggestion] = card["suggestions"]
    assert suggestion["label"] == shown["suggestions"][0]["label"]
    dose = suggestion["actions"][0]["resource"]["dosageInstruction"][0]["doseAndRate"][0]
    assert dose["doseQuantity"]["value"] == 300
    assert card["selectionBehavior"] == shown["selectionBehavior"]


def test_the_log_holds_no_patient_values(service: Service) -> None:
    """Issue 13: after all the calls above (this test runs last), the log has methods, paths
    and statuses only: no patient id, no lab value, no traceback."""
    log = service.served.log.read_text()
    assert "POST /cds-services/imatinib-hes HTTP/1.1" in log
    for leak in ("P-", "1200", "Patient preference", "Traceback", FHIR_TOKEN):
        assert leak not in log, leak
