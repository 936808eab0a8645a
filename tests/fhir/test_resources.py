"""FHIR R4 output: `dosing step --format fhir` and `dosing history --format fhir`, checked
against the FHIR models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest

from dosing.fhir.codes import DECISION_EXTENSION, GTS_ABBREVIATION, RESPONSE_EXTENSION, UCUM
from tests.conftest import ROOT
from tests.fhir.test_bundle import invoke

ADULT = ["--date", "2026-01-05", "--patient", "age=45", "--patient", "sex=F"]
NORMAL = ["--lab", "platelets=180x10^9/L", "--lab", "alt=30U/L", "--lab", "ast=28U/L"]
NORMAL += ["--lab", "bilirubin=0.7mg/dL", "--lab", "bleeding=no"]
NORMAL += ["--lab", "eligibility_confirmed=yes", "--patient-id", "P01"]


def step_fhir(*labs: str, protocol: str = "imatinib-hes") -> dict[str, Any]:
    result = invoke("step", protocol, *ADULT, *NORMAL, *labs, "--format", "fhir")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_a_dose_is_a_medication_request_proposal_with_the_record() -> None:
    """Issue 13: the recommendation is a MedicationRequest, intent proposal, the dose in UCUM
    with the timing code QD, and the decision record whole in an extension."""
    request = step_fhir("--lab", "anc=1200/mm3")
    MedicationRequest.model_validate(request)
    assert (request["status"], request["intent"]) == ("draft", "proposal")
    assert request["subject"] == {"reference": "Patient/P01"}
    [dosage] = request["dosageInstruction"]
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 300, "unit": "mg", "system": UCUM, "code": "mg"
    }  # fmt: skip
    assert dosage["timing"]["code"]["coding"] == [{"system": GTS_ABBREVIATION, "code": "QD"}]
    record = json.loads(request["extension"][0]["valueString"])
    assert request["extension"][0]["url"] == DECISION_EXTENSION
    assert (record["action"], record["doses"][0]["amount"]) == ("start", 300)
    assert "dosing recommends; a person decides." in request["note"][0]["text"]


def test_a_hold_is_a_proposal_not_to_give_the_drug(tmp_path: Path) -> None:
    """A hold proposes not to perform the drug: doNotPerform, no dosage."""
    result = invoke(
        "step", "imatinib-hes", *ADULT, *NORMAL, "--lab", "anc=0.8x10^9/L",
        "--state", "dose_400", "--format", "fhir",
    )  # fmt: skip
    request = json.loads(result.stdout)
    MedicationRequest.model_validate(request)
    assert request["doNotPerform"] is True
    assert "dosageInstruction" not in request
    assert json.loads(request["extension"][0]["valueString"])["action"] == "hold"


@pytest.mark.parametrize(
    ("frequency", "code", "repeat"),
    [
        ("qd", "QD", {"frequency": 1, "period": 1, "periodUnit": "d"}),
        ("bid", "BID", {"frequency": 2, "period": 1, "periodUnit": "d"}),
        ("qod", "Q48H", {"frequency": 1, "period": 2, "periodUnit": "d"}),
        ("weekly", "WK", {"frequency": 1, "period": 1, "periodUnit": "wk"}),
    ],
)
def test_each_frequency_has_its_timing_code_and_repeat(
    frequency: str, code: str, repeat: dict[str, Any]
) -> None:
    """QD, BID, Q48H (every other day, never the error-prone QOD) and WK, with the repeat."""
    from fractions import Fraction

    from dosing.engine.decision import DoseLine
    from dosing.fhir.resources import dosage

    written = dosage(DoseLine("imatinib", Fraction(100), "mg", frequency))
    assert written["timing"]["code"]["text"] == code
    assert written["timing"]["repeat"] == repeat
    assert ("coding" in written["timing"]["code"]) == (code != "Q48H")


def test_history_is_a_bundle_of_the_course(tmp_path: Path) -> None:
    """Issue 13: `dosing history --format fhir` prints the course as a Bundle: the Patient,
    each visit's Observations and its proposal with the record and the clinician's answer."""
    db = tmp_path / "p.sqlite"
    timeline = ROOT / "examples" / "imatinib-hes-timeline.csv"
    assert invoke("import-timeline", "imatinib-hes", str(timeline), "--db", str(db)).exit_code == 0
    result = invoke("history", "P01", "--format", "fhir", "--db", str(db))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    Bundle.model_validate(document)
    kinds = [entry["resource"]["resourceType"] for entry in document["entry"]]
    assert kinds[0] == "Patient"
    requests = [e["resource"] for e in document["entry"] if e["resource"]["resourceType"]
                == "MedicationRequest"]  # fmt: skip
    assert len(requests) == 8  # P01's eight visits
    answers = [json.loads(r["extension"][1]["valueString"])["kind"] for r in requests]
    assert requests[0]["extension"][1]["url"] == RESPONSE_EXTENSION
    assert set(answers) <= {"accepted", "overridden", "unknown"}
    anc = next(
        e["resource"] for e in document["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][0]["code"] == "751-8"
    )  # fmt: skip
    assert anc["valueQuantity"] == {"value": 3500, "unit": "/mm3", "system": UCUM, "code": "/mm3"}


def test_a_history_bundle_reads_back_as_fhir_input(tmp_path: Path) -> None:
    """The course written as FHIR replays to the same decisions (dosing reads what it writes)."""
    db = tmp_path / "p.sqlite"
    timeline = ROOT / "examples" / "imatinib-hes-timeline.csv"
    invoke("import-timeline", "imatinib-hes", str(timeline), "--db", str(db))
    written = tmp_path / "P02.json"
    written.write_text(invoke("history", "P02", "--format", "fhir", "--db", str(db)).stdout)
    replayed = invoke("replay", "imatinib-hes", str(written), "--format", "jsonl")
    stored = invoke("history", "P02", "--format", "jsonl", "--db", str(db))
    actions = [json.loads(line)["action"] for line in replayed.stdout.splitlines()]
    assert actions == [json.loads(line)["action"] for line in stored.stdout.splitlines()]
