"""A stored course: shown as a table, exported for replay and audit, plotted; and timelines
imported into the store."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from rich.table import Table

from dosing.decision import Decision, decision_from_json
from dosing.errors import DosingError
from dosing.model import Protocol
from dosing.output import console
from dosing.replay import PatientReplay, replay
from dosing.replay_output import CSV_FIELDS, csv_row, jsonl_line
from dosing.replay_run import load_timeline
from dosing.store import Patient, Response, Store, StoredVisit
from dosing.timeline import LONG_COLUMNS
from dosing.units import split_text
from dosing.visit import current_dose

_FACTS = frozenset({"age", "sex", "weight", "height"})


def _course(store: Store, patient_id: str) -> tuple[Patient, list[StoredVisit]]:
    patient = store.patient(patient_id)
    if patient is None:
        known = ", ".join(p.patient_id for p in store.patients()) or "none yet"
        raise DosingError(f"no patient '{patient_id}' in {store.path}; patients: {known}")
    return patient, store.visits(patient_id)


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
    else:
        console.print(_table(patient, visits))
    if plot is not None:
        from dosing.plots import plot_patient

        replayed = PatientReplay(patient_id, decisions=decisions)
        for visit in visits:
            replayed.values.extend(
                (visit.date, o.name, o.value)
                for o in visit.observations
                if not isinstance(o.value, str)
            )
        written = plot_patient(protocol_for(patient.protocol), replayed, plot.parent)
        written.replace(plot)
        console.print(f"Wrote {plot}")


def _table(patient: Patient, visits: list[StoredVisit]) -> Table:
    table = Table(title=f"{patient.patient_id} on {patient.protocol}", title_justify="left")
    for column in ("date", "labs", "state", "action", "dose advised", "rule", "answer"):
        table.add_column(column, overflow="fold")
    for visit in visits:
        labs = ", ".join(
            f"{o.name} {o.entered}" for o in visit.observations if o.name not in _FACTS
        )
        decision = visit.decision
        advised = ", ".join(
            f"{d['amount']} {d['unit']} {d['frequency']}" for d in decision["doses"]
        )
        answer = visit.response
        if answer is None:
            told = "-"
        elif answer.kind == "overridden":
            told = f"overridden: {answer.dose} ({answer.reason})"
        else:
            told = answer.kind
        table.add_row(
            str(visit.date),
            labs,
            decision["state"],
            decision["action"],
            advised or "-",
            ", ".join(rule["id"] for rule in decision["rules"]),
            told,
        )
    return table


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


def import_into_store(store: Store, protocol: Protocol, path: Path) -> None:
    """Replay a timeline and store every visit; print each patient's current state."""
    timeline = load_timeline(path, None)
    table = Table("patient", "state", "dose", "last visit", "next due", "visits stored")
    for result in replay(protocol, timeline, keep_visits=True):
        if store.patient(result.patient_id) is not None:
            console.print(f"{result.patient_id} is already in the store: not imported.")
            continue
        if result.stopped_at is not None:
            console.print(
                f"{result.patient_id}: the replay stopped at line {result.stopped_at}; "
                "the visits before it are stored."
            )
        if not result.decisions:
            continue
        facts = _facts(result)
        patient = Patient(result.patient_id, protocol.id, facts)
        for index, (decision, (observations, record)) in enumerate(
            zip(result.decisions, result.visits, strict=True)
        ):
            store.save_visit(
                patient,
                index == 0,
                decision.date,
                observations,
                decision,
                _response(decision, path),
                record,
            )
        last = store.visits(result.patient_id)[-1]
        table.add_row(
            result.patient_id,
            last.record.state or "-",
            current_dose(last),
            str(last.date),
            last.decision.get("next_check") or "-",
            str(len(result.decisions)),
        )
    console.print(table)


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
