"""What the patient store keeps, as records: a patient, a stored visit with its decision and
the clinician's answer, corrections and what they supersede, a course's version, and the
patient record as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
from fractions import Fraction
from typing import Any, Literal

import attrs

from dosing.clinic.store_file import StoreError as StoreError
from dosing.engine.decision import Decision
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord


@attrs.frozen
class Patient:
    """A patient as stored: id, protocol and facts as entered."""

    patient_id: str
    protocol: str
    facts: dict[str, str]


@attrs.frozen
class Response:
    """The clinician's answer to a decision."""

    kind: Literal["accepted", "overridden", "unknown"]
    """'unknown' for an imported decision: no answer was recorded, only (maybe) the dose
    given."""
    dose: str | None = None
    """The dose chosen when overridden; for 'unknown', the dose given if recorded."""
    reason: str | None = None
    clinician: str | None = None
    """Who answered (None for imported decisions, and answers stored before it was kept)."""
    confirmed: str | None = None
    """What the clinician confirmed about the dose chosen: why it needed confirming."""


Correction = Literal["amended", "voided", "re-decided"]


@attrs.frozen
class Superseded:
    """How a visit row replaced an earlier one: by whom, when and why."""

    row: int
    """The visit row replaced."""
    kind: Correction
    clinician: str | None
    reason: str | None
    recorded_at: str


@attrs.frozen
class StoredVisit:
    """One visit as stored, for history and the next visit."""

    row: int
    date: dt.date
    observations: tuple[Observation, ...]
    decision: dict[str, Any]
    response: Response | None
    record: PatientRecord
    supersedes: Superseded | None = None
    """Set when this visit replaced an earlier one (an amendment or a re-decision)."""


@attrs.frozen
class CorrectionRow:
    """A row of a patient's chain of corrections: the new row, and the one it replaced."""

    row: int
    date: dt.date
    superseded: Superseded


@attrs.frozen
class Replacement:
    """A correction to store: the visit row replaced, and its new content (None: voided)."""

    supersedes: int
    kind: Correction
    clinician: str
    reason: str
    visit: ImportedVisit | None


def dose_in_force(doses: list[dict[str, Any]], response: Response | None) -> str:
    """The dose after a visit: the one chosen if the advice was overridden (or the one given,
    recorded without an answer), else the advised doses (`doses` as in the decision record)."""
    if response is not None and response.kind == "overridden":
        return f"{response.dose} (overridden)"
    if response is not None and response.kind == "unknown" and response.dose is not None:
        return f"{response.dose} (given)"
    return (
        ", ".join(f"{d['drug']} {d['amount']} {d['unit']} {d['frequency']}" for d in doses)
        or "none"
    )


@attrs.frozen
class CourseVersion:
    """Where a patient's course stood when it was read: the newest registration row and the
    newest visit row (None: none yet). Any new row for the patient changes it."""

    patient_row: int | None
    visit_row: int | None


@attrs.frozen
class CurrentCourse:
    """A patient as `dosing patients` lists them: where the course stands after the last
    visit (None fields: no visit yet)."""

    patient_id: str
    protocol: str
    state: str | None
    doses: list[dict[str, Any]]
    response: Response | None
    last_visit: dt.date | None
    next_check: str | None
    action: str | None = None
    """The last decision's action ('refer': due again after the site's referral interval)."""


@attrs.frozen
class ImportedVisit:
    """One replayed visit, ready to be stored."""

    date: dt.date
    observations: list[Observation]
    decision: Decision
    response: Response
    record: PatientRecord


def stored_text(value: Fraction | str) -> str:
    return value if isinstance(value, str) else f"{value.numerator}/{value.denominator}"


def stored_value(text: str) -> Fraction | str:
    numerator, slash, denominator = text.partition("/")
    if slash and numerator.lstrip("-").isdigit() and denominator.isdigit():
        return Fraction(int(numerator), int(denominator))
    return text


def record_to_json(record: PatientRecord) -> str:
    """A patient record as JSON: dates ISO, numbers exact ('n/d')."""
    return json.dumps(
        {
            "state": record.state,
            "state_since": _iso(record.state_since),
            "therapy_started_on": _iso(record.therapy_started_on),
            "dose_since": _iso(record.dose_since),
            "memory": {name: stored_text(value) for name, value in record.memory.items()},
            "observations": {
                name: [o.entered, stored_text(o.value), o.drawn_on.isoformat()]
                for name, o in record.observations.items()
            },
        }
    )


def record_from_json(text: str) -> PatientRecord:
    data = json.loads(text)
    return PatientRecord(
        state=data["state"],
        state_since=_date(data["state_since"]),
        therapy_started_on=_date(data["therapy_started_on"]),
        dose_since=_date(data["dose_since"]),
        memory={name: stored_value(value) for name, value in data["memory"].items()},
        observations={
            name: Observation(name, stored_value(value), entered, dt.date.fromisoformat(drawn))
            for name, (entered, value, drawn) in data["observations"].items()
        },
    )


def _iso(date: dt.date | None) -> str | None:
    return None if date is None else date.isoformat()


def _date(text: str | None) -> dt.date | None:
    return None if text is None else dt.date.fromisoformat(text)
