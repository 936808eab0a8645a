"""FHIR results put to use: one visit's observations (`dosing step`, the CDS Hooks service),
or a timeline of every patient's visits (`dosing replay`, `import-timeline`).

Pure: takes what `fhir_in` read. A result whose status is not final, amended or corrected is
not dosed on; the decision says so. A value the observation reader refuses (a count in mg/dL,
an implausible value) is refused as typed input is, named by its JSON path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import attrs

from dosing.core.errors import ObservationError, TimelineError
from dosing.core.vocabulary import VOCABULARY, Quantitative
from dosing.engine.observations import Observation, ObservationReader, age_observation
from dosing.fhir.bundle import FhirLabs, PatientFacts, Problem, Result, results_in_order
from dosing.protocol.model import Protocol
from dosing.replay.timeline import Rejected, Row, Timeline

BIRTH_DATE = "birth_date"
"""A timeline row that gives a patient's birth date: the age is computed at every visit."""
NOT_DOSED_ON = "not_dosed_on"
"""A timeline row that is a note for the decision of its date: a result not dosed on."""
_NOBODY = "(no patient)"
"""The patient id of results that name no patient, in a document with no single Patient."""
MAX_FHIR_BYTES = 100_000_000
"""The largest FHIR file read (a year of a large clinic's results is far less)."""


@attrs.frozen
class VisitInput:
    """What a FHIR document gives one visit."""

    observations: list[Observation]
    notes: list[str]
    """Said in the decision: results not dosed on, and why."""
    problems: list[Problem]
    """Entries that could not be read; a caller that doses refuses or reports them."""


def not_dosed_on(result: Result) -> str:
    """The note for a result that is not final."""
    label = VOCABULARY[result.name].label
    value = f" {result.text}" if result.text else ""
    return (
        f"{label}{value} drawn {result.drawn_on} is {result.status}, not final: not dosed on "
        f"({result.path})"
    )


def _in_scope(protocol: Protocol, name: str) -> bool:
    measure = VOCABULARY[name].measure
    twin = measure.twin if isinstance(measure, Quantitative) else None
    return name in protocol.scope or (twin is not None and twin in protocol.scope)


def visit_input(
    labs: FhirLabs,
    protocol: Protocol,
    visit: dt.date,
    patient_id: str | None = None,
    accept_implausible: bool = False,
) -> VisitInput:
    """One patient's observations for a visit on `visit`: the Patient's facts (age from the
    birth date, sex) and the results the protocol reads, latest last. With `patient_id`, a
    result about another patient is a problem."""
    reader = ObservationReader(protocol, accept_implausible)
    observations: list[Observation] = []
    notes: list[str] = []
    problems = list(labs.problems)
    named = {result.patient for result in labs.results if result.patient} | set(labs.patients)
    if patient_id is None and len(named) > 1:
        problems.append(
            Problem(
                "entry",
                f"results for {len(named)} patients ({', '.join(sorted(named)[:5])}); a visit "
                "is one patient's",
            )
        )
    for facts in labs.patients.values():
        if patient_id is not None and facts.key != patient_id:
            problems.append(
                Problem(facts.path, f"Patient {facts.key} is not the patient {patient_id}")
            )
            continue
        observations.extend(_facts(protocol, facts, visit))
    for result in results_in_order(labs):
        if not _in_scope(protocol, result.name):
            continue
        if patient_id is not None and result.patient not in ("", patient_id):
            problems.append(
                Problem(result.path, f"about patient {result.patient}, not {patient_id}")
            )
            continue
        if result.drawn_on > visit:
            problems.append(
                Problem(result.path, f"drawn {result.drawn_on}, after the visit date {visit}")
            )
            continue
        if not result.dosed_on:
            notes.append(not_dosed_on(result))
            continue
        try:
            observations.append(reader.read(result.name, result.text, result.drawn_on))
        except ObservationError as error:
            problems.append(Problem(result.value_path, str(error)))
    return VisitInput(observations, notes, problems)


def _facts(protocol: Protocol, facts: PatientFacts, visit: dt.date) -> list[Observation]:
    found = []
    if facts.birth_date is not None and "age" in protocol.scope:
        if facts.birth_date > visit:
            raise ObservationError(
                f"{facts.path}.birthDate: {facts.birth_date} is after the visit date {visit}"
            )
        found.append(age_observation(facts.birth_date, visit))
    if facts.sex is not None and "sex" in protocol.scope:
        found.append(Observation("sex", facts.sex, facts.sex, visit))
    return found


def refuse_problems(problems: Iterable[Problem], source: str) -> None:
    """Raise ObservationError listing every problem (a visit is not decided around them)."""
    problems = list(problems)
    if not problems:
        return
    listed = "; ".join(str(problem) for problem in problems[:10])
    more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
    noun = "entry" if len(problems) == 1 else "entries"
    raise ObservationError(
        f"{source}: {len(problems)} FHIR {noun} cannot be read, so no dose is given: {listed}{more}"
    )


def read_fhir_file(path: Path | None, source: str) -> FhirLabs:
    """A FHIR JSON file (None: standard input), read whole."""
    import sys

    from dosing.core.files import NotAFile, open_regular
    from dosing.core.strict_json import read_json
    from dosing.fhir.bundle import read_document

    try:
        if path is None:
            data = sys.stdin.buffer.read(MAX_FHIR_BYTES + 1)
        else:
            with open(open_regular(path), "rb") as stream:
                data = stream.read(MAX_FHIR_BYTES + 1)
    except FileNotFoundError:
        raise TimelineError(f"no FHIR file {source}") from None
    except NotAFile as error:
        raise TimelineError(f"{source}: {error}; FHIR is read from a JSON file") from None
    except OSError as error:
        raise TimelineError(f"cannot read {source}: {error.strerror}") from None
    if len(data) > MAX_FHIR_BYTES:
        raise TimelineError(f"{source} is larger than {MAX_FHIR_BYTES} bytes")
    return read_document(read_json(data, source))


def fhir_timeline(labs: FhirLabs) -> Timeline:
    """Every patient's results as timeline rows, by draw date, for `replay`.

    A row's line is its place in that order (the column names the JSON path), so an entry
    that cannot be read stops its patient's replay where it falls in time; one with no date
    stops it at the start. Facts from the Patient come first: the birth date (the age is
    computed at each visit) and the sex."""
    timeline = Timeline("long", ",")
    ranks: dict[str, int] = {key: rank for rank, key in enumerate(labs.patients)}
    for result in labs.results:
        ranks.setdefault(result.patient, len(ranks))
    first_day: dict[str, int] = {}
    for result in labs.results:
        day = result.drawn_on.toordinal()
        first_day[result.patient] = min(day, first_day.get(result.patient, day))
    items: list[tuple[tuple[int, int, int, float, int], Row | Rejected, str]] = []
    for facts in labs.patients.values():
        if facts.key not in first_day:
            continue  # a Patient with no results: nothing to replay
        day = first_day[facts.key]
        rank = ranks[facts.key]
        if facts.birth_date is not None:
            text = facts.birth_date.isoformat()
            row = Row(0, day, BIRTH_DATE, text, f"{facts.path}.birthDate")
            items.append(((rank, day, 1, 0.0, 0), row, facts.key))
        if facts.sex is not None:
            row = Row(0, day, "sex", facts.sex, f"{facts.path}.gender")
            items.append(((rank, day, 1, 0.0, 1), row, facts.key))
    for result in labs.results:
        day = result.drawn_on.toordinal()
        key = (ranks[result.patient], day, 2, *result.order)
        if result.dosed_on:
            row = Row(0, day, result.name, result.text, result.value_path)
        else:
            row = Row(0, day, NOT_DOSED_ON, not_dosed_on(result), result.path)
        items.append((key, row, result.patient))
    for problem in labs.problems:
        rank = ranks.setdefault(problem.patient, len(ranks))
        day = problem.drawn_on.toordinal() if problem.drawn_on else 0
        # Before the results of its day: the visit it belongs to is not decided without it.
        rejected = Rejected(0, problem.patient or _NOBODY, problem.path, "", problem.message)
        items.append(((rank, day, 0, 0.0, problem.order), rejected, problem.patient))
    items.sort(key=lambda item: item[0])
    for line, (_, item, patient) in enumerate(items, start=1):
        if isinstance(item, Rejected):
            timeline.rejected.append(item._replace(line=line))
            timeline.rows += 1
            continue
        timeline.patients.setdefault(patient or _NOBODY, []).append(item._replace(line=line))
        timeline.rows += 1
        timeline.observations += 1
    return timeline
