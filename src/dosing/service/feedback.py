"""The CDS Hooks service's records in the patient store: the cards it returned, and the
clinician's feedback on them.

A card is advice, not yet a visit: an EHR calls order-select again each time the order
changes, and patient-view each time the chart opens. So each card is kept with the visit as
decided (observations, decision, record after, the course it was decided from); the visit is
written to the patient's course, with the clinician's answer in `responses` as `dosing visit`
writes it, when feedback on the card arrives. Feedback on a card whose visit is already
stored adds an answer to it. A card decided from a course that has changed since is not
stored as a visit (StaleCourse); its feedback is still kept.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

import attrs

from dosing.clinic.store import Store
from dosing.clinic.store_records import (
    CourseVersion,
    Patient,
    Response,
    record_from_json,
    record_to_json,
)
from dosing.engine.decision import Decision, decision_from_json
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord

DOSE_NOT_REPORTED = "not reported by the EHR"
"""The dose chosen when a card is overridden: CDS Hooks feedback does not carry it."""


@attrs.frozen
class PendingVisit:
    """A decided visit waiting for the clinician's answer."""

    patient: Patient
    decided_from: CourseVersion
    date: dt.date
    observations: list[Observation]
    decision: Decision
    record: PatientRecord
    clinician: str | None = None
    """Who the card was shown to (the hook's context.userId), recorded with the answer."""


def _to_json(pending: PendingVisit) -> str:
    return json.dumps(
        {
            "protocol": pending.patient.protocol,
            "facts": pending.patient.facts,
            "decided_from": [pending.decided_from.patient_row, pending.decided_from.visit_row],
            "observations": [
                [o.name, o.entered, _exact(o.value), o.drawn_on.isoformat()]
                for o in pending.observations
            ],
            "decision": pending.decision.to_json(),
            "record": record_to_json(pending.record),
            "clinician": pending.clinician,
        }
    )


def _exact(value: Any) -> str:
    return value if isinstance(value, str) else f"{value.numerator}/{value.denominator}"


def _from_json(patient_id: str, date: str, text: str) -> PendingVisit:
    from fractions import Fraction

    data = json.loads(text)

    def value(exact: str) -> Fraction | str:
        numerator, slash, denominator = exact.partition("/")
        if slash and numerator.lstrip("-").isdigit() and denominator.isdigit():
            return Fraction(int(numerator), int(denominator))
        return exact

    return PendingVisit(
        patient=Patient(patient_id, data["protocol"], data["facts"]),
        decided_from=CourseVersion(*data["decided_from"]),
        date=dt.date.fromisoformat(date),
        observations=[
            Observation(name, value(exact), entered, dt.date.fromisoformat(drawn))
            for name, entered, exact, drawn in data["observations"]
        ],
        decision=decision_from_json(data["decision"]),
        record=record_from_json(data["record"]),
        clinician=data.get("clinician"),
    )


def save_cards(store: Store, cards: list[tuple[str, str, str, PendingVisit]]) -> None:
    """Keep cards returned to the EHR (uuid, service, hookInstance, the visit as decided), all
    in one transaction."""
    now = _now()
    with store.transaction():
        store.connection.executemany(
            "INSERT INTO cds_cards (uuid, service, hook_instance, patient_id, date, pending, "
            "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (card_uuid, service, hook_instance, pending.patient.patient_id,
                 pending.date.isoformat(), _to_json(pending), now)
                for card_uuid, service, hook_instance, pending in cards
            ],
        )  # fmt: skip


@attrs.frozen
class StoredCard:
    row: int
    service: str
    pending: PendingVisit
    visit_row: int | None
    """The visit stored from it by earlier feedback, if any."""


def card(store: Store, card_uuid: str) -> StoredCard | None:
    """A card this service returned, by its uuid (None if unknown)."""
    found = store.connection.execute(
        "SELECT row, service, patient_id, date, pending FROM cds_cards WHERE uuid = ?",
        (card_uuid,),
    ).fetchone()
    if found is None:
        return None
    row, service, patient_id, date, pending = found
    (visit_row,) = store.connection.execute(
        "SELECT max(visit) FROM cds_feedback WHERE card = ?", (row,)
    ).fetchone()
    return StoredCard(row, service, _from_json(patient_id, date, pending), visit_row)


@attrs.frozen
class Feedback:
    """One CDS Hooks feedback entry, as received."""

    card: str
    outcome: Literal["accepted", "overridden"]
    outcome_at: str
    reason: str | None = None
    """The override reason (coding and comment), in words."""


def response_for(feedback: Feedback, clinician: str | None = None) -> Response:
    """The clinician's answer as `dosing visit` records it."""
    when = f"CDS Hooks feedback, {feedback.outcome_at}"
    if feedback.outcome == "accepted":
        return Response("accepted", None, when, clinician=clinician)
    reason = f"{feedback.reason}; {when}" if feedback.reason else f"no reason given; {when}"
    return Response("overridden", DOSE_NOT_REPORTED, reason, clinician=clinician)


def record_feedback(store: Store, stored: StoredCard, feedback: Feedback) -> int:
    """Store the card's visit with the clinician's answer (or add the answer to the visit an
    earlier feedback stored), then the feedback; returns the visit's row. Raises StaleCourse
    (the feedback kept, no visit written) when the course changed since the card."""
    from dosing.clinic.store_writes import StaleCourse

    response = response_for(feedback, stored.pending.clinician)

    def link(visit_row: int | None) -> None:
        store.connection.execute(
            "INSERT INTO cds_feedback (card, outcome, reason, outcome_at, visit, recorded_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (stored.row, feedback.outcome, feedback.reason, feedback.outcome_at, visit_row, _now()),
        )

    if stored.visit_row is not None:
        store.add_response(stored.visit_row, response, also=link)
        return stored.visit_row
    pending = stored.pending
    try:
        return store.save_visit(
            pending.patient, pending.decided_from, pending.date, pending.observations,
            pending.decision, response, pending.record, also=link,
        )  # fmt: skip
    except StaleCourse:
        with store.transaction():
            link(None)
        raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
