"""Correcting a stored course at the command line: which visit, what changes, and voiding.

Nothing is updated in place: an amended or voided visit is superseded by a new row that says
who did it and why, and each later visit whose decision (or course) changes is superseded by
its re-decided row (`corrections.redecide`). Before anything is stored, the later decisions
that change are shown as `dosing diff --timeline` shows them.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dosing.clinic.corrections import Redecided, course_start, redecide, stored_note
from dosing.clinic.history import unknown_patient
from dosing.clinic.store import Store
from dosing.clinic.store_connection import StoreWriteError
from dosing.clinic.store_records import ImportedVisit, Patient, Replacement, StoredVisit
from dosing.core.errors import DosingError
from dosing.engine.decision import decision_from_json
from dosing.protocol.model import Protocol
from dosing.replay.diff import decision_summary


def stored_course(store: Store, patient_id: str) -> tuple[Patient, list[StoredVisit]]:
    """The patient and their visits, or an error naming close ids."""
    patient = store.patient(patient_id)
    if patient is None:
        raise DosingError(unknown_patient(store, patient_id))
    return patient, store.visits(patient_id)


def pick_visit(history: list[StoredVisit], row: int | None, store: Store, patient_id: str) -> int:
    """The index in `history` of visit `row` (None: the last visit), or an error that says
    what became of it."""
    if row is None:
        if not history:
            raise DosingError(f"{patient_id} has no visits to correct")
        return len(history) - 1
    for index, visit in enumerate(history):
        if visit.row == row:
            return index
    listed = ", ".join(f"{visit.row} ({visit.date})" for visit in history) or "none"
    for correction in store.corrections(patient_id):
        if correction.superseded.row == row:
            done = correction.superseded.kind
            if done == "voided":
                raise DosingError(f"visit {row} of {patient_id} was voided; its visits: {listed}")
            raise DosingError(
                f"visit {row} of {patient_id} was {done}: it is now visit {correction.row}; its "
                f"visits: {listed}"
            )
    raise DosingError(f"{patient_id} has no visit {row}; its visits: {listed}")


def visit_summary(visit: StoredVisit) -> str:
    """What a stored visit decided, in one line."""
    return decision_summary(decision_from_json(visit.decision))


def show_changes(console: Console, patient_id: str, redecided: list[Redecided]) -> None:
    """The later decisions that change, as `dosing diff --timeline` lists them."""
    if not redecided:
        return
    table = Table(
        "patient",
        "date",
        "old decision",
        "new decision",
        title="Later decisions that change",
        title_justify="left",
    )
    for visit in redecided:
        old, new = visit_summary(visit.old), decision_summary(visit.decision)
        if old != new:
            table.add_row(*(Text(cell) for cell in (patient_id, str(visit.old.date), old, new)))
    if table.row_count:
        console.print(table)
    else:
        console.print(f"No later decision changes ({len(redecided)} later visits decided again).")


def redecided_replacements(
    redecided: list[Redecided], clinician: str, row: int, done: str, reason: str
) -> list[Replacement]:
    """A superseding row for each later visit whose decision, answer or course changes."""
    return [
        Replacement(
            visit.old.row,
            "re-decided",
            clinician,
            f"visit {row} was {done}: {reason}",
            ImportedVisit(
                visit.old.date,
                list(visit.old.observations),
                visit.decision,
                visit.response,
                visit.record,
            ),
        )
        for visit in redecided
        if visit.changed
    ]


def run_void(
    store: Store,
    protocol_for: Callable[[str], Protocol],
    patient_id: str,
    row: int,
    clinician: str,
    reason: str,
    console: Console,
) -> list[int]:
    """Void visit `row`: the visits after it are decided again without it; the changes are
    shown and everything is stored in one transaction. Returns the new rows."""
    if not reason.strip():
        raise DosingError("--reason is required: say why the visit is voided")
    try:
        store.check_writable()
    except StoreWriteError as error:
        raise DosingError(
            f"the patient store cannot be written, so nothing was voided: {error}"
        ) from None
    decided_from = store.course_version(patient_id)
    patient, history = stored_course(store, patient_id)
    index = pick_visit(history, row, store, patient_id)
    old = history[index]
    before = history[index - 1] if index else None
    redecided = redecide(
        protocol_for(patient.protocol),
        before.record if before else course_start(patient),
        stored_note(before) if before else None,
        history[index + 1 :],
        patient_id,
        f"after visit {row} was voided",
    )
    show_changes(console, patient_id, redecided)
    replacements = [
        Replacement(row, "voided", clinician, reason.strip(), None),
        *redecided_replacements(redecided, clinician, row, "voided", reason.strip()),
    ]
    rows = store.save_corrections(patient, decided_from, replacements)
    again = f"; {len(rows) - 1} later visits re-decided" if rows[1:] else ""
    console.print(
        f"Voided visit {row} of {patient_id} ({old.date}: {visit_summary(old)}), by {clinician}: "
        f"{reason.strip()}{again}.",
        markup=False,
        highlight=False,
    )
    return rows
