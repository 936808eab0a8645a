"""A stored course: shown as a table, exported for replay and audit, plotted; and timelines
imported into the store."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import attrs

from dosing.decision import Decision, decision_from_json
from dosing.errors import Cancelled, DosingError
from dosing.model import Protocol
from dosing.output import console
from dosing.patient import PatientRecord
from dosing.replay import PatientReplay, lab_points, replay
from dosing.replay_output import CSV_FIELDS, csv_row, jsonl_line
from dosing.replay_run import load_timeline
from dosing.store import (
    ImportedVisit,
    Patient,
    Response,
    Store,
    StoredVisit,
    StoreWriteError,
    dose_in_force,
)
from dosing.tables import CourseTable, Row, for_terminal, plain, rule_cell
from dosing.timeline import LONG_COLUMNS
from dosing.units import split_text

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
    """The stored decision, with the dose actually given (the chosen one if overridden)."""
    decision = decision_from_json(visit.decision)
    answer = visit.response
    if answer is None or answer.kind == "unknown":
        return decision
    if answer.kind == "overridden":
        matches = None if decision.action == "refer" else False
        return _given(decision, answer.dose or "none", matches)
    advised = " + ".join(dose.short() for dose in decision.doses) or "none"
    return _given(decision, advised, True)


def _given(decision: Decision, dose: str, matches: bool | None) -> Decision:
    import attrs

    return attrs.evolve(decision, dose_given=dose, matches_given=matches)


def show_history(
    store: Store,
    protocol_for: Callable[[str], Protocol],
    patient_id: str,
    output_format: Literal["table", "jsonl", "csv", "timeline"],
    plot: Path | None,
) -> None:
    """Print the course in the asked format; write the plot if asked."""
    patient, visits = _course(store, patient_id)
    decisions = [_decision(visit) for visit in visits]
    if output_format == "jsonl":
        sys.stdout.writelines(jsonl_line(decision) for decision in decisions)
    elif output_format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(CSV_FIELDS)
        writer.writerows(csv_row(decision) for decision in decisions)
    elif output_format == "timeline":
        _write_timeline(patient, visits, decisions)
    elif console.is_terminal:
        console.print(for_terminal(_table(patient, visits), console.width))
    else:
        sys.stdout.write(plain(_table(patient, visits)))
    if plot is not None:
        _plot(protocol_for(patient.protocol), patient, visits, decisions, plot)


def _plot(
    protocol: Protocol,
    patient: Patient,
    visits: list[StoredVisit],
    decisions: list[Decision],
    path: Path,
) -> None:
    """The course drawn into `path` (.png, .svg, or .pdf: the plot with the table under it),
    each lab at the date it was drawn: one entered again at a later visit is drawn hollow."""
    from dosing.plots import Format, plot_course

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
        if answer is None:
            told = "-"
        elif answer.kind == "overridden":
            told = "overridden"
            details.append(("override", (f"{answer.dose} ({answer.reason})",)))
        else:
            told = answer.kind
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
        detail_headers=("labs", "override"),
    )


def _write_timeline(patient: Patient, visits: list[StoredVisit], decisions: list[Decision]) -> None:
    """The course as a long-format timeline: `dosing replay` reads it back."""
    writer = csv.writer(sys.stdout)
    writer.writerow(LONG_COLUMNS)
    for visit, decision in zip(visits, decisions, strict=True):
        date = visit.date.isoformat()
        for observation in visit.observations:
            if isinstance(observation.value, str):
                value, unit = observation.entered, ""
            elif observation.name == "age":
                value, unit = observation.entered.split(" ", 1)[0], "years"
            else:
                value, unit = split_text(observation.entered)
            writer.writerow((patient.patient_id, date, observation.name, value, unit))
        if decision.dose_given is not None:
            writer.writerow((patient.patient_id, date, "dose_given", decision.dose_given, ""))


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
                ImportedVisit(decision.date, observations, decision, _response(decision, path),
                              record)
                for decision, (observations, record) in zip(
                    result.decisions, result.visits, strict=True
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
    facts: dict[str, str] = {}
    for observations, _ in result.visits:
        for observation in observations:
            if observation.name == "age" and "age" not in facts:
                facts["age"] = observation.entered
                facts["age_on"] = observation.drawn_on.isoformat()
            elif observation.name in ("sex", "weight", "height"):
                facts[observation.name] = observation.entered
    return facts


def _response(decision: Decision, path: Path) -> Response:
    if decision.dose_given is None:
        return Response(
            "unknown", None, f"imported from {path.name}: the dose given was not recorded"
        )
    if decision.matches_given:
        return Response("accepted")
    return Response("overridden", decision.dose_given, f"imported from {path.name}: the dose given")
