"""Corrections to a stored course: the visits after an amended or voided one, decided again.

A correction never changes what was done: each later visit keeps its observations and the dose
that was actually given. Only the advice is decided again, from the corrected course; where
the dose given is no longer the advice, the answer is kept as an override of the new advice,
saying so, and the course follows the dose given (as after any override).
"""

from __future__ import annotations

import datetime as dt

import attrs

from dosing.clinic.store_records import Patient, Response, StoredVisit, record_to_json
from dosing.engine.choice import advised, apply_choice, matches, override_note
from dosing.engine.decision import Decision, decision_from_json
from dosing.engine.gathering import conflict_message, conflicts, refer_conflicting
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Protocol


@attrs.frozen
class Redecided:
    """A later visit decided again: its new decision, the answer kept, the record after."""

    old: StoredVisit
    decision: Decision
    response: Response
    record: PatientRecord

    @property
    def changed(self) -> bool:
        """Whether anything stored for the visit would differ."""
        return (
            self.decision.to_json() != self.old.decision
            or record_to_json(self.record) != record_to_json(self.old.record)
            or self.response != self.old.response
        )


def course_start(patient: Patient) -> PatientRecord:
    """Where the patient stood before their first visit: the protocol's start, or where an
    imported timeline placed them (start_state, therapy_start), as replay places them."""
    started = patient.facts.get("therapy_start")
    day = dt.date.fromisoformat(started) if started else None
    return PatientRecord(
        state=patient.facts.get("start_state"),
        state_since=day,
        therapy_started_on=day,
        dose_since=day,
    )


def followed(decision: Decision, response: Response | None) -> bool:
    """Whether the course moved to the dose the clinician chose instead of the advice."""
    return (
        response is not None
        and response.kind == "overridden"
        and response.dose is not None
        and matches(response.dose, decision) is not True
    )


def note_after(
    date: dt.date, decision: Decision, response: Response | None, record: PatientRecord
) -> str | None:
    """The warning for the decision after a visit whose advice was overridden."""
    if not followed(decision, response):
        return None
    assert response is not None
    assert response.dose is not None
    return override_note(date, decision.doses, response.dose, response.reason, record)


def stored_note(visit: StoredVisit) -> str | None:
    """`note_after` a stored visit."""
    return note_after(visit.date, decision_from_json(visit.decision), visit.response, visit.record)


def redecide(
    protocol: Protocol,
    record: PatientRecord,
    note: str | None,
    later: list[StoredVisit],
    patient_id: str,
    because: str,
) -> list[Redecided]:
    """Decide `later` again in order, from `record` (the course before the first of them;
    `note`, the warning after an override just before). `because` ends the reason kept on an
    answer that no longer matches the advice ('after visit 3 was amended')."""
    decided = []
    for old in later:
        observations = list(old.observations)
        clash = conflicts(observations)
        if clash:
            decision, after = refer_conflicting(
                protocol, record, old.date, observations, patient_id, [conflict_message(clash)]
            )
        else:
            decision, after = step(protocol, record, old.date, observations, patient_id)
        if note is not None:
            decision = attrs.evolve(decision, warnings=(*decision.warnings, note))
        response = _answer_kept(old, decision, because)
        if followed(decision, response):
            assert response.dose is not None
            after, _ = apply_choice(protocol, after, response.dose, old.date)
        decided.append(Redecided(old, decision, response, after))
        note = note_after(old.date, decision, response, after)
        record = after
    return decided


def _answer_kept(old: StoredVisit, decision: Decision, because: str) -> Response:
    """The answer given at the time, to the decision made again: an acceptance of advice that
    has changed becomes an override of the new advice with the dose that was given."""
    answer = old.response
    if answer is None or answer.kind != "accepted":
        return answer or Response("unknown")
    given = advised(decision_from_json(old.decision))
    if matches(given, decision) is True:
        return answer
    return Response(
        "overridden",
        given,
        f"{given} was given, as advised before the advice was decided again {because}",
        answer.clinician,
    )
