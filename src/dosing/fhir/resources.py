"""FHIR R4 output: a decision as MedicationRequest proposals, a stored course as a Bundle.

Pure, and plain JSON (no FHIR library): `dosing step --format fhir` needs no extra. The
decision record travels whole in an extension (`fhir_codes.DECISION_EXTENSION`), and in words
in a note; the tests check the output against the FHIR models.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from typing import Any

from dosing.core.errors import DosingError
from dosing.core.units import split_text, unit_spelling
from dosing.core.vocabulary import VOCABULARY, Categorical
from dosing.engine.decision import Decision, DoseLine
from dosing.engine.observations import Observation
from dosing.fhir.codes import (
    DECISION_EXTENSION,
    GTS_ABBREVIATION,
    LOINC,
    RESPONSE_EXTENSION,
    SPELLING_UCUM,
    TIMINGS,
    UCUM,
    VOCABULARY_SYSTEM,
)

NO_DOSE = frozenset({"hold", "discontinue", "ineligible"})
"""Actions proposed as 'do not perform' the drug."""
_NAMESPACE = uuid.UUID("5d1c4b57-8f39-4d0e-9a57-4f0bd6a5e2c1")
"""For ids derived from content: the same decision gives the same ids on every run."""


def fhir_number(value: Fraction) -> int | float:
    """An exact amount as a JSON number: an integer, or a decimal whose shortest float text is
    exactly it. Anything else is refused rather than rounded."""
    if value.denominator == 1:
        return value.numerator
    number = float(value)
    if Fraction(Decimal(repr(number))) != value:
        raise DosingError(f"{value} has no exact decimal form for FHIR")
    return number


def _uuid(*parts: object) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(str(part) for part in parts)))


def dosage(dose: DoseLine) -> dict[str, Any]:
    """A dose line as a FHIR Dosage: the dose in UCUM, the timing's code and its repeat."""
    code, defined, repeat = TIMINGS[dose.frequency]
    timing_code: dict[str, Any] = {"text": code}
    if defined:
        timing_code["coding"] = [{"system": GTS_ABBREVIATION, "code": code}]
    return {
        "text": dose.short(),
        "timing": {"repeat": dict(repeat), "code": timing_code},
        "doseAndRate": [
            {
                "doseQuantity": {
                    "value": fhir_number(dose.amount),
                    "unit": dose.unit,
                    "system": UCUM,
                    "code": SPELLING_UCUM[dose.unit],
                }
            }
        ],
    }


def _note(decision: Decision) -> str:
    doses = ", ".join(str(dose) for dose in decision.doses) or "no dose"
    lines = [f"{decision.action}: {doses} (state {decision.state})"]
    lines += [f"- {reason}" for reason in decision.reasons]
    lines += [f"- warning: {warning}" for warning in decision.warnings]
    if decision.next_check:
        lines.append(f"next check {decision.next_check}")
    lines.append("dosing recommends; a person decides.")
    return "\n".join(lines)


def medication_requests(
    decision: Decision, drug: str, status: str = "draft", response: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The recommendation as MedicationRequests, intent proposal: one per drug dosed, or one
    for the protocol's drug when no dose is given (not to be given, for a hold or a stop)."""
    subject = (
        {"reference": f"Patient/{decision.patient_id}"}
        if decision.patient_id
        else {"display": "the patient of this decision (no patient id was given)"}
    )
    extensions = [{"url": DECISION_EXTENSION, "valueString": json.dumps(decision.to_json())}]
    if response is not None:
        extensions.append({"url": RESPONSE_EXTENSION, "valueString": json.dumps(response)})
    by_drug: dict[str, list[DoseLine]] = {}
    for dose in decision.doses:
        by_drug.setdefault(dose.drug, []).append(dose)
    requests = []
    for name, doses in (by_drug or {drug: []}).items():
        request: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": _uuid(decision.patient_id, decision.date, decision.protocol_sha256, name),
            "extension": extensions,
            "status": status,
            "intent": "proposal",
            "medicationCodeableConcept": {"text": name},
            "subject": subject,
            "authoredOn": decision.date.isoformat(),
            "note": [{"text": _note(decision)}],
        }
        if decision.action in NO_DOSE:
            request["doNotPerform"] = True
        if doses:
            request["dosageInstruction"] = [dosage(dose) for dose in doses]
        requests.append(request)
    return requests


def collection(resources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A Bundle of type collection holding the resources, each under a urn:uuid."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
            for resource in resources
        ],
    }


def recommendation(decision: Decision, drug: str) -> dict[str, Any]:
    """`dosing step --format fhir`: the MedicationRequest, or a collection when there are
    several (one per drug of a combination)."""
    requests = medication_requests(decision, drug)
    return requests[0] if len(requests) == 1 else collection(requests)


def patient_resource(patient_id: str, facts: dict[str, str]) -> dict[str, Any]:
    """A Patient with what the store keeps: the birth date and the sex."""
    resource: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if facts.get("birth_date"):
        resource["birthDate"] = facts["birth_date"]
    sex = {"F": "female", "M": "male"}.get(facts.get("sex", ""))
    if sex:
        resource["gender"] = sex
    return resource


def observation_resource(
    patient_id: str, observation: Observation, status: str = "final"
) -> dict[str, Any] | None:
    """A stored observation as a FHIR Observation (None for an age computed from the birth
    date, which the Patient carries): LOINC and dosing codes, the value as it was entered."""
    if observation.name == "age" and ", born " in observation.entered:
        return None
    entry = VOCABULARY[observation.name]
    codings = [{"system": LOINC, "code": code} for code in entry.loinc[:1]]
    codings.append({"system": VOCABULARY_SYSTEM, "code": entry.name, "display": entry.label})
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _uuid(patient_id, observation.name, observation.drawn_on, observation.entered),
        "status": status,
        "code": {"coding": codings, "text": entry.label},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": observation.drawn_on.isoformat(),
    }
    if isinstance(entry.measure, Categorical):
        answer = str(observation.value)
        resource["valueCodeableConcept"] = {
            "coding": [{"system": VOCABULARY_SYSTEM, "code": answer}],
            "text": answer,
        }
    else:
        resource["valueQuantity"] = _quantity(observation, entry.measure.canonical)
    return resource


def _quantity(observation: Observation, canonical: str) -> dict[str, Any]:
    """The value as entered (its number and UCUM unit), else the canonical value."""
    try:
        number, unit = split_text(observation.entered)
        spelling = unit_spelling(unit) if unit else canonical
        code = SPELLING_UCUM[spelling]
        value = fhir_number(Fraction(Decimal(number)))
    except (DosingError, KeyError, ArithmeticError, ValueError):
        assert isinstance(observation.value, Fraction)
        spelling, code = canonical, SPELLING_UCUM[canonical]
        value = fhir_number(observation.value)
    return {"value": value, "unit": spelling, "system": UCUM, "code": code}
