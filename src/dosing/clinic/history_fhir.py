"""A stored course as FHIR: `dosing history --format fhir`, a Bundle of the Patient, each
visit's observations, and each proposal with the clinician's answer as its status."""

from __future__ import annotations

from typing import Any

from dosing.clinic.store_records import Patient, StoredVisit
from dosing.engine.decision import Decision
from dosing.fhir.resources import (
    collection,
    medication_requests,
    observation_resource,
    patient_resource,
)

_STATUS_AFTER = {"accepted": "completed", "overridden": "cancelled", "unknown": "unknown"}
"""A stored proposal's status by the clinician's answer: acted on, withdrawn for another
dose, or not known (an import whose dose given was not recorded)."""


def course_bundle(
    patient: Patient, visits: list[StoredVisit], decisions: list[Decision], drug: str
) -> dict[str, Any]:
    """`dosing history --format fhir`: the Patient, and per visit its observations and the
    proposals with the decision record and the clinician's answer."""
    resources = [patient_resource(patient.patient_id, patient.facts)]
    for visit, decision in zip(visits, decisions, strict=True):
        for observation in visit.observations:
            resource = observation_resource(patient.patient_id, observation)
            if resource is not None:
                resources.append(resource)
        answer = visit.response
        response = None if answer is None else {
            "kind": answer.kind, "dose": answer.dose, "reason": answer.reason
        }  # fmt: skip
        status = "unknown" if answer is None else _STATUS_AFTER[answer.kind]
        resources.extend(medication_requests(decision, drug, status, response))
    bundle = collection(resources)
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["fullUrl"] = f"Patient/{patient.patient_id}"
    return bundle
