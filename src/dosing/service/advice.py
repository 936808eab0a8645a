"""One CDS Hooks call decided: the request read, the labs gathered (prefetch first, then the
FHIR server), the patient's course from the store, the engine's decision, the card to keep.

No HTTP here: `cds_service` passes the request's JSON in and sends back what comes out, or
the status and message of a `Refusal`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from dosing.clinic.store import Store
from dosing.clinic.store_records import Patient
from dosing.core.errors import DosingError
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.fhir.bundle import FhirError, FhirLabs, read_document
from dosing.protocol.model import Protocol
from dosing.replay.fhir_input import visit_input
from dosing.service.cards import PATIENT_KEY, Service, card, fill, inputs, note_card
from dosing.service.feedback import PendingVisit


class Refusal(Exception):
    """A request answered with an HTTP error: the status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.frozen
class HookCall:
    """What a CDS client sent, checked."""

    hook: str
    hook_instance: str
    patient_id: str
    prefetch: dict[str, Any]
    fhir_server: str | None
    fhir_token: str | None
    draft_orders: Any
    user_id: str | None = None
    """The user the card is for (context.userId: 'Practitioner/123')."""


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Refusal(400, f"{where}: expected a non-empty string")
    return value


def read_call(document: Any, service: Service) -> HookCall:
    """The call's fields, or Refusal(400) naming the field and what is expected."""
    if not isinstance(document, dict):
        raise Refusal(400, "the request body: expected a JSON object (a CDS Hooks request)")
    hook = _text(document.get("hook"), "hook")
    if hook != service.hook:
        raise Refusal(400, f"hook: {service.id} answers {service.hook}, not {hook}")
    instance = _text(document.get("hookInstance"), "hookInstance")
    context = document.get("context")
    if not isinstance(context, dict):
        raise Refusal(400, "context: expected an object with patientId")
    patient_id = _text(context.get("patientId"), "context.patientId")
    prefetch = document.get("prefetch", {})
    if not isinstance(prefetch, dict):
        raise Refusal(400, "prefetch: expected an object of prefetch keys")
    server = document.get("fhirServer")
    if server is not None:
        server = _text(server, "fhirServer")
        if not server.startswith(("http://", "https://")):
            raise Refusal(400, "fhirServer: expected an http or https URL")
    token = None
    authorization = document.get("fhirAuthorization")
    if authorization is not None:
        if not isinstance(authorization, dict):
            raise Refusal(400, "fhirAuthorization: expected an object with access_token")
        if server is None:
            raise Refusal(400, "fhirServer: required with fhirAuthorization")
        token = _text(authorization.get("access_token"), "fhirAuthorization.access_token")
        if authorization.get("token_type") != "Bearer":
            raise Refusal(400, "fhirAuthorization.token_type: expected Bearer")
    user = context.get("userId")
    return HookCall(
        hook, instance, patient_id, prefetch, server, token, context.get("draftOrders"),
        user if isinstance(user, str) and user.strip() else None,
    )  # fmt: skip


def orders_other_drugs(draft_orders: Any, drug: str) -> bool:
    """Whether the draft orders are medication orders none of which names `drug` (then this
    protocol has nothing to say about them)."""
    if not isinstance(draft_orders, dict) or not isinstance(draft_orders.get("entry"), list):
        return False
    names = []
    for entry in draft_orders["entry"]:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "MedicationRequest":
            concept = resource.get("medicationCodeableConcept") or {}
            texts = [concept.get("text")] + [
                coding.get("display")
                for coding in concept.get("coding", [])
                if isinstance(coding, dict)
            ]
            names.append(" ".join(str(text) for text in texts if text).lower())
    return bool(names) and not any(drug.lower() in name for name in names)


@attrs.frozen
class Gathered:
    """The prefetched labs, and the queries for the keys the client did not prefetch."""

    labs: FhirLabs
    missing: dict[str, str]


def gather(call: HookCall, service: Service, protocol: Protocol) -> Gathered:
    """Read the prefetch: each key the protocol needs, a FHIR resource or Bundle (None: the
    client has no data). Keys the client left out are to be fetched."""
    labs = FhirLabs()
    missing = {}
    for key in (PATIENT_KEY, *inputs(protocol)):
        if key not in call.prefetch:
            missing[key] = fill(service.prefetch[key], call.patient_id)
            continue
        value = call.prefetch[key]
        if value is None:
            continue
        try:
            labs.extend(read_document(value, f"prefetch.{key}", validate=False))
        except FhirError as error:
            raise Refusal(400, str(error)) from None
    return Gathered(labs, missing)


def read_fetched(answers: dict[str, Any]) -> FhirLabs:
    """What the FHIR server answered, read as the prefetch is."""
    labs = FhirLabs()
    for key, document in answers.items():
        try:
            labs.extend(read_document(document, f"fetched.{key}", validate=False))
        except FhirError as error:
            raise Refusal(412, f"the FHIR server's answer: {error}") from None
    return labs


@attrs.define
class Adviser:
    """Decides calls for one store: the course from it, the card kept in it."""

    store: Store
    protocols: Mapping[str, Protocol]
    """The protocols served, loaded once, by id."""
    today: Callable[[], dt.date] = dt.date.today

    def protocol_of(self, call: HookCall, service: Service) -> Protocol | dict[str, Any]:
        """The protocol to decide by; or the response when there is nothing to decide."""
        patient = self.store.patient(call.patient_id)
        if service.protocol is None:
            if patient is None:
                return {"cards": []}  # the worklist is for patients whose course is stored
            if patient.protocol not in self.protocols:
                text = f"{call.patient_id} is on {patient.protocol}, which this service lacks"
                return {"cards": [note_card(text, "dosing", str(uuid.uuid4()))]}
            return self.protocols[patient.protocol]
        protocol = self.protocols[service.protocol]
        if patient is not None and patient.protocol != protocol.id:
            text = (
                f"{call.patient_id} is on {patient.protocol} in the dosing store, not "
                f"{protocol.id}: no advice from {protocol.id}"
            )
            return _note(text, protocol)
        if orders_other_drugs(call.draft_orders, protocol.drug):
            return {"cards": []}
        return protocol

    def decide(
        self, call: HookCall, service: Service, protocol: Protocol, labs: FhirLabs
    ) -> tuple[dict[str, Any], Kept | None]:
        """The response with the card for today's decision, and the card to keep with its
        visit for the feedback (None when the response holds no decision)."""
        store, patient_id = self.store, call.patient_id
        decided_from = store.course_version(patient_id)  # before the course is read
        registered = store.patient(patient_id)
        history = store.visits(patient_id) if registered else []
        record = history[-1].record if history else PatientRecord()
        today = self.today()
        if history and history[-1].date > today:
            text = f"the last visit in the dosing store ({history[-1].date}) is after today"
            return _note(text, protocol), None
        try:
            given = visit_input(labs, protocol, today, patient_id=patient_id)
        except DosingError as error:
            raise Refusal(400, str(error)) from None
        notes = [*given.notes, *(f"{problem}: not used" for problem in given.problems)]
        try:
            decision, after = step(protocol, record, today, given.observations, patient_id)
        except DosingError as error:  # the engine cannot decide: say so, never a dose
            return _note(f"{protocol.id} cannot decide: {error}", protocol), None
        if notes:
            decision = attrs.evolve(decision, warnings=(*decision.warnings, *notes))
        facts = registered.facts if registered else _facts(labs, patient_id)
        pending = PendingVisit(
            Patient(patient_id, protocol.id, facts), decided_from, today, given.observations,
            decision, after, call.user_id,
        )  # fmt: skip
        card_uuid, suggestion_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        kept = Kept(card_uuid, service.id, call.hook_instance, pending)
        return {"cards": [card(decision, protocol, card_uuid, suggestion_uuid)]}, kept


@attrs.frozen
class Kept:
    """A card to keep in the store before it is returned."""

    card_uuid: str
    service: str
    hook_instance: str
    pending: PendingVisit


def _note(text: str, protocol: Protocol) -> dict[str, Any]:
    return {"cards": [note_card(text, f"dosing {protocol.id}", str(uuid.uuid4()))]}


def _facts(labs: FhirLabs, patient_id: str) -> dict[str, str]:
    """A new patient's facts for the store, from their Patient resource."""
    facts: dict[str, str] = {}
    found = labs.patients.get(patient_id)
    if found is not None and found.birth_date is not None:
        facts["birth_date"] = found.birth_date.isoformat()
    if found is not None and found.sex is not None:
        facts["sex"] = found.sex
    return facts
