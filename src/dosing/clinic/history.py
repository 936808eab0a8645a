"""A stored course: shown as a table, exported for replay and audit, plotted; and timelines
imported into the store."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs
from rich.table import Table
from rich.text import Text

from dosing.clinic.store import Store
from dosing.clinic.store_connection import StoreWriteError
from dosing.clinic.store_records import (
    CorrectionRow,
    ImportedVisit,
    Patient,
    Response,
    StoredVisit,
    Superseded,
    dose_in_force,
)
from dosing.core.errors import Cancelled, DosingError
from dosing.core.units import split_text
from dosing.engine.choice import advised, matches
from dosing.engine.decision import Decision, decision_from_json
from dosing.engine.observations import Observation, age_since, read_observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.model import Protocol
from dosing.render.output import console
from dosing.render.tables import CourseTable, Row, for_terminal, plain, rule_cell
from dosing.replay.diff import decision_summary
from dosing.replay.replay import PatientReplay, lab_points, replay
from dosing.replay.run import load_timeline
from dosing.replay.timeline import DRAWN_ON, LONG_COLUMNS
from dosing.replay.writers import CSV_FIELDS, csv_row

_FACTS = frozenset({"age", "sex", "weight", "height"})


def _course(store: Store, patient_id: str) -> tuple[Patient, list[StoredVisit]]:
    patient = store.patient(patient_id)
    if patient is None:
        raise DosingError(unknown_patient(store, patient_id))
    return patient, store.visits(patient_id)


def unknown_patient(store: Store, patient_id: str) -> str:
    """Says the id is not in the store, with at most three close ids: never the whole list."""
    import difflib

    known = store.patient_ids()
    message = f"no patient '{patient_id}' in {store.path} ({_count(len(known), 'patient')})"
    close = difflib.get_close_matches(patient_id, known, n=3, cutoff=0.6)
    return message + (f"; did you mean {', '.join(close)}?" if close else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _decision(visit: StoredVisit) -> Decision:
    """The stored decision, with the dose actually given: the advice if accepted, the dose
    chosen if overridden, the dose recorded for an imported visit."""
    decision = decision_from_json(visit.decision)
    given = dose_given(decision, visit.response)
    if given is None:
        return decision
    return attrs.evolve(decision, dose_given=given, matches_given=matches(given, decision))


def dose_given(decision: Decision, answer: Response | None) -> str | None:
    """The dose given after a decision, as a timeline's dose_given row writes it."""
    if answer is None:
        return None
    if answer.kind == "accepted":
        return advised(decision)
    return answer.dose


def show_history(
    store: Store,
    protocol_for: Callable[[str], Protocol],
    patient_id: str,
    output_format: Literal["table", "jsonl", "csv", "timeline", "fhir"],
    plot: Path | None,
) -> None:
    """Print the course in the asked format; write the plot if asked."""
    patient, visits = _course(store, patient_id)
    decisions = [_decision(visit) for visit in visits]
    if output_format == "jsonl":
        sys.stdout.writelines(
            json.dumps(_record(visit, decision), ensure_ascii=False) + "\n"
            for visit, decision in zip(visits, decisions, strict=True)
        )
    elif output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow((*CSV_FIELDS, *_CSV_MORE))
        writer.writerows(
            (*csv_row(decision), *_csv_more(visit))
            for visit, decision in zip(visits, decisions, strict=True)
        )
    elif output_format == "timeline":
        _write_timeline(patient, visits, decisions)
    elif output_format == "fhir":
        from dosing.clinic.history_fhir import course_bundle

        drug = protocol_for(patient.protocol).drug
        bundle = course_bundle(patient, visits, decisions, drug)
        sys.stdout.write(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
    elif console.is_terminal:
        console.print(for_terminal(_table(patient, visits), console.width))
        _print_chain(store, patient_id)
    else:
        sys.stdout.write(plain(_table(patient, visits)))
        _print_chain(store, patient_id)
    if plot is not None:
        _plot(protocol_for(patient.protocol), patient, visits, decisions, plot)


def _print_chain(store: Store, patient_id: str) -> None:
    chain = store.corrections(patient_id)
    if chain:
        console.print(_chain(store, chain))


_CSV_MORE = (
    "visit", "observations", "answer", "answer_reason", "clinician", "confirmed", "supersedes",
)  # fmt: skip
"""History's columns after a replay's: the stored visit, its values with the day each was
drawn, the clinician's answer, and the correction it made."""


def _observed(visit: StoredVisit) -> list[dict[str, str]]:
    return [
        {"name": o.name, "value": o.entered, "drawn_on": o.drawn_on.isoformat()}
        for o in visit.observations
    ]


def _record(visit: StoredVisit, decision: Decision) -> dict[str, Any]:
    """A history JSON line: the decision record, then the visit, its values, the answer."""
    answer = visit.response
    return {
        **decision.to_json(),
        "visit": visit.row,
        "observations": _observed(visit),
        "answer": None if answer is None else attrs.asdict(answer),
        "supersedes": None if visit.supersedes is None else attrs.asdict(visit.supersedes),
    }


def _csv_more(visit: StoredVisit) -> tuple[str, ...]:
    answer = visit.response or Response("unknown")
    return (
        str(visit.row),
        " | ".join(_shown(o, visit.date) for o in visit.observations),
        answer.kind,
        answer.reason or "",
        answer.clinician or "",
        answer.confirmed or "",
        _supersedes(visit.supersedes) if visit.supersedes else "",
    )


def _shown(observation: Observation, date: dt.date) -> str:
    """'anc 1.2 x10^9/L', with the day it was drawn when that was before the visit."""
    drawn = f" (drawn {observation.drawn_on})" if observation.drawn_on != date else ""
    return f"{observation.name} {observation.entered}{drawn}"


def _supersedes(superseded: Superseded) -> str:
    by = f" by {superseded.clinician}" if superseded.clinician else ""
    why = f": {superseded.reason}" if superseded.reason else ""
    return f"{superseded.kind} visit {superseded.row}{by} at {superseded.recorded_at}{why}"


def _answer(answer: Response | None) -> str:
    if answer is None:
        return "-"
    by = f" by {answer.clinician}" if answer.clinician else ""
    if answer.kind == "overridden":
        confirmed = f"; confirmed: {answer.confirmed}" if answer.confirmed else ""
        return f"overridden{by}: {answer.dose} ({answer.reason}){confirmed}"
    if answer.kind == "unknown":
        given = f"{answer.dose} given; " if answer.dose else ""
        return f"no answer recorded: {given}{answer.reason or ''}".rstrip("; ")
    return f"{answer.kind}{by}"


def _plot(
    protocol: Protocol,
    patient: Patient,
    visits: list[StoredVisit],
    decisions: list[Decision],
    path: Path,
) -> None:
    """The course drawn into `path` (.png, .svg, or .pdf: the plot with the table under it),
    each lab at the date it was drawn: one entered again at a later visit is drawn hollow."""
    from dosing.replay.plots import Format, plot_course

    points = []
    before = PatientRecord()
    for visit in visits:
        points += lab_points(protocol, before, visit.date, list(visit.observations))
        before = visit.record
    kinds: dict[str, Format] = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
    kind = kinds[path.suffix.lower()]  # the CLI checks it
    table = plain(_table(patient, visits)) if kind == "pdf" else None
    plot_course(protocol, patient.patient_id, decisions, points, path.parent, (kind,), table,
                stem=path.stem)  # fmt: skip
    console.print(f"Wrote {path}", markup=False)


def _table(patient: Patient, visits: list[StoredVisit]) -> CourseTable:
    rows = []
    for visit in visits:
        labs = tuple(
            f"{o.name} {o.entered}" + (f" (drawn {o.drawn_on})" if o.drawn_on != visit.date else "")
            for o in visit.observations
            if o.name not in _FACTS
        )
        decision = visit.decision
        advised = ", ".join(
            f"{d['amount']} {d['unit']} {d['frequency']}" for d in decision["doses"]
        )
        answer = visit.response
        details: list[tuple[str, tuple[str, ...]]] = [("labs", labs)] if labs else []
        if answer is not None and answer.clinician:
            details.append(("by", (answer.clinician,)))
        if answer is None:
            told = "-"
        elif answer.kind == "overridden":
            told = "overridden"
            details.append(("override", (f"{answer.dose} ({answer.reason})",)))
        else:
            told = answer.kind
            if answer.kind == "unknown" and answer.dose:  # imported: a dose given, no reason
                details.append(("given", (answer.dose,)))
        if answer is not None and answer.kind == "overridden" and answer.confirmed:
            details.append(("confirmed", (answer.confirmed,)))
        if visit.supersedes is not None:
            details.append(("correction", (_supersedes(visit.supersedes),)))
        state = decision["state"]
        cells = (
            str(visit.date),
            state,
            decision["action"],
            advised or "-",
            rule_cell([rule["id"] for rule in decision["rules"]], state, decision["action"]),
            told,
        )
        rows.append(Row(cells, tuple(details)))
    return CourseTable(
        f"{patient.patient_id} on {patient.protocol}",
        ("date", "state", "action", "dose advised", "rule", "answer"),
        tuple(rows),
        coded="rule",
        detail_headers=("by", "labs", "given", "override", "confirmed", "correction"),
    )


def _chain(store: Store, chain: list[CorrectionRow]) -> Table:
    """Every correction, oldest first: what each replaced, by whom, when and why."""
    table = Table(
        title="Corrections (nothing is updated in place: each row supersedes an earlier one)",
        title_justify="left",
    )
    for column in ("when", "visit", "date", "what", "was", "is", "by", "why"):
        table.add_column(column, overflow="fold")
    for correction in chain:
        old, new = store.visit(correction.superseded.row), store.visit(correction.row)
        done = correction.superseded
        cells = (
            done.recorded_at,
            f"{done.row} -> {correction.row}" if new else str(done.row),
            str(correction.date),
            done.kind,
            _summary(old),
            _summary(new) if new else "-",
            done.clinician or "-",
            done.reason or "-",
        )
        table.add_row(*map(Text, cells))
    return table


def _summary(visit: StoredVisit | None) -> str:
    if visit is None:
        return "-"
    return decision_summary(decision_from_json(visit.decision))


def _write_timeline(patient: Patient, visits: list[StoredVisit], decisions: list[Decision]) -> None:
    """The course as a long-format timeline that `dosing replay` reads back to the same
    decisions: each value with the day it was drawn, the birth date ages are counted from,
    the dose given and, for an override, its reason."""
    writer = csv.writer(sys.stdout)
    writer.writerow((*LONG_COLUMNS, DRAWN_ON))
    facts = patient.facts
    birth = facts.get("birth_date")
    for index, (visit, decision) in enumerate(zip(visits, decisions, strict=True)):
        date = visit.date.isoformat()
        if index == 0:
            for name in ("birth_date", "start_state", "therapy_start"):
                if name in facts:
                    writer.writerow((patient.patient_id, date, name, facts[name], "", ""))
        for observation in visit.observations:
            if birth is not None and observation.entered.endswith(f", born {birth}"):
                continue  # the age from the birth date, counted again on replay
            if _counted_on(observation, facts):  # an imported age, counted on at the prompt
                value, unit = split_text(facts["age"])
                writer.writerow((patient.patient_id, date, "age", value, unit, facts["age_on"]))
                continue
            if isinstance(observation.value, str):
                value, unit = observation.entered, ""
            elif observation.name == "age":
                value, unit = observation.entered.split(" ", 1)[0], "years"
            else:
                value, unit = split_text(observation.entered)
            drawn = observation.drawn_on.isoformat()
            writer.writerow((patient.patient_id, date, observation.name, value, unit,
                             "" if drawn == date else drawn))  # fmt: skip
        if decision.dose_given is not None:
            writer.writerow((patient.patient_id, date, "dose_given", decision.dose_given, "", ""))
        answer = visit.response
        if answer is not None and answer.kind == "overridden":
            writer.writerow(
                (patient.patient_id, date, "override_reason", answer.reason or "", "", "")
            )


def _counted_on(observation: Observation, facts: dict[str, str]) -> bool:
    """Whether the observation is an imported age counted on to a later visit (the export
    writes the age as recorded, with its day, and replay counts it on the same way)."""
    if observation.name != "age" or "age_on" not in facts:
        return False
    since = dt.date.fromisoformat(facts["age_on"])
    if observation.drawn_on <= since:
        return False
    then = read_observation(None, "age", facts["age"], since)
    return age_since(then, observation.drawn_on) == observation


class ImportCancelled(Cancelled):
    """Ctrl-C during an import: the patients imported so far are whole, the rest absent."""


def import_into_store(store: Store, protocol: Protocol, path: Path) -> None:
    """Replay a timeline and store each patient's course in one transaction, saying what was
    imported as it goes; then print each imported patient's current state.

    A patient already in the store is skipped (so running the same import again, or two at
    once, stores each patient once); an import stopped by Ctrl-C, a kill or a full disk leaves
    each patient whole or absent, and running it again completes it."""
    try:
        store.check_writable()
    except StoreWriteError as error:
        raise DosingError(
            f"the patient store cannot be written, so nothing was imported: {error}"
        ) from None
    rows: list[Row] = []
    done = _Tally()
    try:
        for result in replay(protocol, load_timeline(path, None), keep_visits=True):
            if not result.decisions:
                console.print(f"{result.patient_id}: no visit decided, nothing to store.")
                continue
            visits = [
                ImportedVisit(decision.date, observations, decision,
                              _response(decision, reason, path), record)
                for decision, (observations, record), reason in zip(
                    result.decisions, result.visits, result.override_reasons, strict=True
                )
            ]  # fmt: skip
            patient = Patient(result.patient_id, protocol.id, _facts(result))
            if not store.save_course(patient, visits):
                console.print(_already_stored(store, result, path))
                done.skipped += 1
                continue
            done.patients += 1
            done.visits += len(visits)
            stopped = (
                f" (the replay stopped at line {result.stopped_at}; the visits before it)"
                if result.stopped_at is not None
                else ""
            )
            console.print(f"Imported {result.patient_id}: {_count(len(visits), 'visit')}{stopped}.")
            last = visits[-1]
            rows.append(
                Row((
                    result.patient_id,
                    last.record.state or "-",
                    dose_in_force(last.decision.to_json()["doses"], last.response),
                    str(last.date),
                    str(last.decision.next_check or "-"),
                    str(len(visits)),
                ))
            )  # fmt: skip
    except KeyboardInterrupt:
        raise ImportCancelled(
            f"the import was interrupted. Imported before that: {done}; {_WHOLE}. Run the same "
            "command again to import the rest (patients already in the store are skipped)"
        ) from None
    except StoreWriteError as error:
        raise DosingError(
            f"the import stopped: {error}. Imported before that: {done}; {_WHOLE}. Fix that "
            "and run the same command again to import the rest"
        ) from None
    if done.patients:
        table = CourseTable(
            "Imported patients, as they stand now:",
            ("patient", "state", "dose", "last visit", "next due", "visits"),
            tuple(rows),
        )
        if console.is_terminal:
            console.print(for_terminal(table, console.width))
        else:
            sys.stdout.write(plain(table))
    console.print(f"Imported {done}.")


_WHOLE = "each patient is stored whole or not at all"


@attrs.define
class _Tally:
    patients: int = 0
    visits: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        imported = f"{_count(self.patients, 'patient')} ({_count(self.visits, 'visit')})"
        return imported + (f"; {self.skipped} already in the store" if self.skipped else "")


def _already_stored(store: Store, result: PatientReplay, path: Path) -> str:
    stored = [visit.date for visit in store.visits(result.patient_id)]
    replayed = [decision.date for decision in result.decisions]
    if stored == replayed:
        return f"{result.patient_id} is already in the store with these visits: skipped."
    return (
        f"{result.patient_id} is already in the store with a different course "
        f"({_count(len(stored), 'visit')} stored, {len(replayed)} in {path.name}): not imported."
    )


def _facts(result: PatientReplay) -> dict[str, str]:
    """The patient's facts as the prompt keeps them, and where the course started."""
    facts: dict[str, str] = {}
    for observations, _ in result.visits:
        for observation in observations:
            _, born, birth = observation.entered.rpartition(", born ")
            if observation.name == "age" and born and "birth_date" not in facts:
                facts["birth_date"] = birth
            elif observation.name == "age" and not born and "age" not in facts:
                facts["age"] = observation.entered
                facts["age_on"] = observation.drawn_on.isoformat()
            elif observation.name in ("sex", "weight", "height"):
                facts[observation.name] = observation.entered
    start = result.start
    if start is not None and start.state is not None:
        facts["start_state"] = start.state
    if start is not None and start.therapy_started_on is not None:
        facts["therapy_start"] = start.therapy_started_on.isoformat()
    return facts


def _response(decision: Decision, reason: str | None, path: Path) -> Response:
    """The answer an imported visit records: an override where the timeline records one
    (override_reason), else only the dose given."""
    if decision.dose_given is None:
        return Response(
            "unknown", None, f"imported from {path.name}: the dose given was not recorded"
        )
    if decision.matches_given:
        return Response("accepted")
    if reason is not None:
        return Response("overridden", decision.dose_given, reason)
    return Response(
        "unknown",
        decision.dose_given,
        f"imported from {path.name}: the dose given, not the advice; no override was recorded",
    )
