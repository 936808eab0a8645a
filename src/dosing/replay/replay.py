"""Replaying timelines: each patient, visit by visit, through the engine; every row accounted for.

Pure: takes a `Timeline`, yields each patient's decisions with the fate of every row. A visit
is a distinct date with observations; the engine decides once per visit and carries labs
forward within their maximum age. A row that cannot be read stops that patient's replay at
that row: the decisions before it stand, nothing after it is decided.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Mapping
from fractions import Fraction

import attrs

from dosing.core.errors import DosingError
from dosing.engine.choice import apply_choice, matches, override_note
from dosing.engine.compiled import CachedReader, compiled
from dosing.engine.decision import Decision
from dosing.engine.gathering import refer_conflicting, visit_values
from dosing.engine.observations import Observation, ObservationReader, age_observation, age_since
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Protocol
from dosing.replay.timeline import Rejected, Row, Timeline, parse_day


@attrs.frozen
class StartPoint:
    """Where patients start when the timeline begins mid-treatment."""

    state: str | None = None
    therapy_start: dt.date | None = None
    memory: Mapping[str, Fraction | str] = attrs.Factory(dict)


@attrs.frozen
class LabPoint:
    """A lab value at the date it was drawn, for plots."""

    drawn_on: dt.date
    name: str
    value: Fraction
    used_on: dt.date | None = None
    """The later visit that used this value again (re-entered or carried forward); None for
    a value measured for the visit it was used at."""

    @property
    def reused(self) -> bool:
        return self.used_on is not None


DERIVED_PLOTTED = ("crcl",)
"""Values the engine derives that a plot shows when the rules read them (CrCl)."""


@attrs.define
class PatientReplay:
    """One patient's decisions and what became of each of their rows."""

    patient_id: str
    decisions: list[Decision] = attrs.Factory(list)
    used: int = 0
    duplicates: int = 0
    """Rows that repeat a value already given for the same draw (the same value twice)."""
    superseded: int = 0
    carried_forward: int = 0
    """Lab values used at a later visit than the one they were measured at."""
    rejected: list[Rejected] = attrs.Factory(list)
    stopped_at: int | None = None
    """The line of the row that stopped this patient's replay, if one did."""
    values: list[LabPoint] = attrs.Factory(list)
    """Lab values at their draw dates, and derived values the rules read (CrCl) at their
    visit (kept only when asked for, for plots)."""
    visits: list[tuple[list[Observation], PatientRecord]] = attrs.Factory(list)
    """Per decision, the visit's observations and the record after it (kept when asked for)."""
    start: PatientRecord | None = None
    """Where the patient stood before the first visit (start_state, therapy_start)."""
    override_reasons: list[str | None] = attrs.Factory(list)
    """Per decision, why the dose given was not the advice, when an override_reason row says."""


def replay(
    protocol: Protocol,
    timeline: Timeline,
    start: StartPoint | None = None,
    accept_implausible: bool = False,
    keep_values: bool = False,
    keep_visits: bool = False,
) -> Iterator[PatientReplay]:
    """Replay every patient of a timeline, in the order they first appear. A row the timeline
    refused (a bad date, a ragged row) stops its patient's replay where it stood in the file."""
    first_bad = first_bad_lines(timeline)
    for patient_id, rows in timeline.patients.items():
        yield replay_patient(
            protocol,
            patient_id,
            rows,
            start or StartPoint(),
            accept_implausible,
            first_bad.get(patient_id),
            keep_values,
            keep_visits,
        )


def first_bad_lines(timeline: Timeline) -> dict[str, int]:
    """Per patient, the file line of the first row the timeline refused: the patient's replay
    stops there."""
    first_bad: dict[str, int] = {}
    for rejected in timeline.rejected:
        if rejected.patient_id and rejected.line < first_bad.get(rejected.patient_id, 1 << 62):
            first_bad[rejected.patient_id] = rejected.line
    return first_bad


def replay_patient(
    protocol: Protocol,
    patient_id: str,
    rows: list[Row],
    start: StartPoint,
    accept_implausible: bool = False,
    stop_line: int | None = None,
    keep_values: bool = False,
    keep_visits: bool = False,
) -> PatientReplay:
    """One patient's rows (sorted by day) through the engine; with `stop_line`, no visit that
    holds a row from after that line of the file is decided."""
    result = PatientReplay(patient_id, stopped_at=stop_line)
    reader = _reader(protocol, accept_implausible)
    record = PatientRecord(
        state=start.state,
        state_since=start.therapy_start,
        therapy_started_on=start.therapy_start,
        dose_since=start.therapy_start,
        memory=dict(start.memory),
    )
    first = True
    birth: dt.date | None = None
    note: str | None = None  # for the next decision, after an override the course follows
    index = 0
    while index < len(rows):
        day = rows[index].day
        end = index
        while end < len(rows) and rows[end].day == day:
            end += 1
        visit_rows = rows[index:end]
        date = dt.date.fromordinal(day)
        if stop_line is not None and any(row.line > stop_line for row in visit_rows):
            _not_replayed(result, rows[index:], stop_line, skip=None)
            break
        try:
            visit = _read_visit(
                protocol, reader, patient_id, visit_rows, date, record, first, birth
            )
            birth = visit.birth
            if first:
                result.start = visit.record
            notes = _fhir_notes(visit_rows)
            before = visit.record
            decision, record = _decide(protocol, visit, date, patient_id, visit_rows)
        except _BadRow as bad:
            result.rejected.append(bad.rejected)
            result.stopped_at = bad.rejected.line
            _not_replayed(result, rows[index:], bad.rejected.line, skip=bad.row)
            break
        result.duplicates += visit.duplicates
        result.superseded += visit.superseded
        result.used += len(visit_rows) - visit.duplicates - visit.superseded
        fresh = {observation.name for observation in visit.observations}
        result.carried_forward += _carried(protocol, record, fresh, date)
        if keep_values:
            result.values.extend(lab_points(protocol, before, date, list(visit.observations)))
        if note is not None:
            decision = attrs.evolve(decision, warnings=(*decision.warnings, note))
            note = None
        given = visit.given
        if given is not None:
            matched = matches(given, decision)
            decision = attrs.evolve(decision, dose_given=given, matches_given=matched)
            if matched is not True and visit.reason is not None:
                # An override the clinician recorded (with its reason): the course follows the
                # dose chosen, as at the prompt. A dose given without one is only compared.
                record, _ = apply_choice(protocol, record, given, date)
                note = override_note(date, decision.doses, given, visit.reason, record)
        if notes:
            decision = attrs.evolve(decision, warnings=(*decision.warnings, *notes))
        result.decisions.append(decision)
        result.override_reasons.append(visit.reason)
        if keep_visits:
            result.visits.append((visit.observations, record))
        first = False
        index = end
    return result


def lab_points(
    protocol: Protocol, before: PatientRecord, date: dt.date, observations: list[Observation]
) -> list[LabPoint]:
    """A visit's lab values at their draw dates (one drawn before the visit is reused), and
    the derived values its rules read, as the engine computed them."""
    points = [
        LabPoint(o.drawn_on, o.name, o.value, date if o.drawn_on != date else None)
        for o in observations
        if (o.name in protocol.labs or o.name.removesuffix("_uln") in protocol.labs)
        and isinstance(o.value, Fraction)
    ]
    derived = [name for name in DERIVED_PLOTTED if name in protocol.scope]
    if derived:
        known = visit_values(protocol, before, date, observations)
        for name in derived:
            value = known.get(name)
            if isinstance(value, Fraction):
                points.append(LabPoint(date, name, value))
    return points


def _decide(
    protocol: Protocol, visit: _Visit, date: dt.date, patient_id: str, visit_rows: list[Row]
) -> tuple[Decision, PatientRecord]:
    """The engine's decision (`refer` when two rows give one draw different values); a visit
    it cannot decide stops the patient at the visit's first row, like a bad row, instead of
    ending the whole replay."""
    try:
        if visit.conflicts:
            return refer_conflicting(
                protocol, visit.record, date, visit.observations, patient_id, visit.conflicts
            )
        return step(
            protocol, visit.record, date, visit.observations, patient_id,
            evaluator=compiled(protocol),
        )  # fmt: skip
    except DosingError as error:
        first = visit_rows[0]
        bad = Rejected(
            first.line, patient_id, "date", date.isoformat(), str(error), date.isoformat()
        )
        raise _BadRow(bad, first) from None


def _not_replayed(result: PatientReplay, rows: list[Row], line: int, skip: Row | None) -> None:
    reason = f"not replayed: {result.patient_id}'s replay stopped at line {line}"
    for row in rows:
        if row is not skip:
            day = _iso(row.day)
            result.rejected.append(
                Rejected(row.line, result.patient_id, row.column, row.text, reason, day, row.name)
            )


def _iso(day: int) -> str:
    return dt.date.fromordinal(day).isoformat()


class _BadRow(Exception):
    def __init__(self, rejected: Rejected, row: Row) -> None:
        super().__init__(rejected.reason)
        self.rejected = rejected
        self.row = row


_readers: dict[tuple[int, bool], tuple[Protocol, ObservationReader]] = {}


def _reader(protocol: Protocol, accept_implausible: bool) -> ObservationReader:
    """One reader per protocol for the whole replay, so each unit is resolved once and each
    distinct value text read once."""
    key = (id(protocol), accept_implausible)
    known = _readers.get(key)
    if known is None or known[0] is not protocol:
        _readers.clear()
        known = _readers[key] = (protocol, CachedReader(protocol, accept_implausible))
    return known[1]


@attrs.frozen
class _Visit:
    """One date's rows, read."""

    observations: list[Observation]
    """Each value once; for a name, only the latest draw (and both values of a conflict)."""
    given: str | None
    reason: str | None
    record: PatientRecord
    birth: dt.date | None
    duplicates: int
    superseded: int
    conflicts: list[str]
    """A warning per pair of rows that give one draw different values."""


def _read_visit(
    protocol: Protocol,
    reader: ObservationReader,
    patient_id: str,
    visit_rows: list[Row],
    date: dt.date,
    record: PatientRecord,
    first: bool,
    birth: dt.date | None,
) -> _Visit:
    read: dict[tuple[str, dt.date], tuple[Observation, Row]] = {}
    kept: list[Observation] = []
    conflicts: list[str] = []
    given: str | None = None
    reason: str | None = None
    duplicates = superseded = 0
    for row in visit_rows:
        if row.name in _FHIR_ONLY:
            continue  # a note for the decision (_fhir_notes)
        try:
            if row.name == "dose_given":
                superseded += given is not None
                given = row.text
            elif row.name == "override_reason":
                superseded += reason is not None
                reason = row.text
            elif row.name == "birth_date":
                birth = _birth(row, date, birth)
            elif row.name in ("start_state", "therapy_start"):
                record = _start(protocol, record, row, first)
            else:
                drawn = date if row.drawn is None else dt.date.fromordinal(row.drawn)
                observation = reader.read(row.name, row.text, drawn)
                if observation.name == "age" and drawn < date:  # an age then, counted on
                    drawn = date
                    observation = age_since(observation, date)
                known = read.setdefault((observation.name, drawn), (observation, row))
                if known[1] is row:
                    kept.append(observation)
                elif known[0].value == observation.value:
                    duplicates += 1
                else:
                    kept.append(observation)
                    conflicts.append(_conflict(known[0], known[1], observation, row))
        except DosingError as error:
            bad = Rejected(
                row.line, patient_id, row.column, row.text, str(error), _iso(row.day), row.name
            )
            raise _BadRow(bad, row) from None
    latest: dict[str, dt.date] = {}
    for observation in kept:
        latest[observation.name] = max(observation.drawn_on, latest.get(observation.name, date.min))
    observations = [o for o in kept if o.drawn_on == latest[o.name]]
    superseded += len(kept) - len(observations)
    if birth is not None and "age" in protocol.facts and "age" not in latest:
        observations.append(age_observation(birth, date))
    return _Visit(observations, given, reason, record, birth, duplicates, superseded, conflicts)


def _conflict(first: Observation, first_row: Row, second: Observation, second_row: Row) -> str:
    return (
        f"{first.name} drawn {first.drawn_on} has two different values: '{first_row.text}' "
        f"(line {first_row.line}) and '{second_row.text}' (line {second_row.line}); no dose "
        "from either until the clinician says which is right"
    )


def _birth(row: Row, date: dt.date, known: dt.date | None) -> dt.date:
    day = parse_day(row.text)
    if day is None:
        raise DosingError(f"'{row.text}' is not a date (YYYY-MM-DD)")
    birth = dt.date.fromordinal(day)
    if birth > date:
        raise DosingError(f"the birth date {birth} is after the visit ({date})")
    if known is not None and birth != known:
        raise DosingError(f"the birth date was given as {known} before; a patient has one")
    return birth


def _fhir_notes(visit_rows: list[Row]) -> list[str]:
    """The notes a FHIR timeline adds to the decision of its date: a result not dosed on
    (not final). Its birth date rows are read like any birth date (`_read_visit`)."""
    return [row.text for row in visit_rows if row.name in _FHIR_ONLY]


_FHIR_ONLY = frozenset({"not_dosed_on"})


def _start(protocol: Protocol, record: PatientRecord, row: Row, first: bool) -> PatientRecord:
    if not first:
        raise DosingError(f"{row.name} is only read on a patient's first date")
    if row.name == "start_state":
        state = row.text.strip()
        if state not in protocol.states:
            raise DosingError(
                f"'{state}' is not a state of {protocol.id} ({', '.join(protocol.states)})"
            )
        return attrs.evolve(record, state=state)
    day = parse_day(row.text)
    if day is None:
        raise DosingError(f"'{row.text}' is not a date (YYYY-MM-DD)")
    started = dt.date.fromordinal(day)
    return attrs.evolve(record, therapy_started_on=started, state_since=started, dose_since=started)


def _carried(protocol: Protocol, record: PatientRecord, fresh: set[str], date: dt.date) -> int:
    carried = 0
    for name, lab in protocol.labs.items():
        kept = record.observations.get(name)
        if (
            kept is not None
            and name not in fresh
            and (date - kept.drawn_on).days <= lab.max_age_days
        ):
            carried += 1
    return carried


@attrs.define
class Summary:
    """Counts over a whole replay: actions, rules, rows, adherence, patients with warnings."""

    patients: int = 0
    decisions: int = 0
    actions: Counter[str] = attrs.Factory(Counter)
    rules: Counter[str] = attrs.Factory(Counter)
    used: int = 0
    duplicates: int = 0
    """Rows that repeat a value already given for the same draw (the same value twice)."""
    superseded: int = 0
    carried_forward: int = 0
    rejected: int = 0
    not_replayed: int = 0
    given: int = 0
    """Recorded doses compared with a recommendation (not after a refer)."""
    matched: int = 0
    not_compared: int = 0
    with_warnings: list[str] = attrs.Factory(list)
    stopped: list[str] = attrs.Factory(list)

    def add(self, patient: PatientReplay) -> None:
        self.patients += 1
        self.decisions += len(patient.decisions)
        self.used += patient.used
        self.duplicates += patient.duplicates
        self.superseded += patient.superseded
        self.carried_forward += patient.carried_forward
        for rejected in patient.rejected:
            if rejected.reason.startswith("not replayed:"):
                self.not_replayed += 1
            else:
                self.rejected += 1
        if patient.stopped_at is not None:
            self.stopped.append(patient.patient_id)
        warned = False
        for decision in patient.decisions:
            self.actions[decision.action] += 1
            for rule in decision.rules:
                self.rules[rule.id] += 1
            if decision.dose_given is not None and decision.matches_given is None:
                self.not_compared += 1
            elif decision.dose_given is not None:
                self.given += 1
                self.matched += bool(decision.matches_given)
            warned = warned or bool(decision.warnings)
        if warned:
            self.with_warnings.append(patient.patient_id)
