"""Writing a decided visit: when the store refuses it, nothing typed is lost, and the next
`dosing visit` of that patient offers to pick it up.

- The course changed meanwhile (another visit saved, the patient registered by another
  process): the decision was made from an out-of-date course, so it is not retried; what was
  typed is kept for the next `dosing visit`, which decides again from the course as it stands.
- The store cannot be written (read-only, full disk, locked): the cause is named and the
  clinician may fix it and retry, or keep the visit for later.
- If even keeping it fails, what was typed is shown, so that it can be entered again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from rich.console import Console

from dosing.clinic import unsaved
from dosing.clinic.store import Store
from dosing.clinic.store_connection import StoreWriteError
from dosing.clinic.store_records import CourseVersion, Patient, Response
from dosing.clinic.store_writes import StaleCourse
from dosing.core.errors import DosingError
from dosing.engine.decision import Decision
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord

if TYPE_CHECKING:
    from dosing.clinic.visit_questions import Ask

RETRY = "Fix that, then press Enter to try again (or type keep to keep the visit for later)"


class VisitNotSaved(DosingError):
    """The visit was decided but the store refused it; what was typed is kept."""


@attrs.frozen
class Attempt:
    """A decided visit, answered, to be written."""

    patient: Patient
    decided_from: CourseVersion
    date: dt.date
    observations: list[Observation]
    """Everything the decision used: facts and what was typed."""
    typed: list[Observation]
    """The labs and assessments typed (or carried forward) at this visit."""
    decision: Decision
    response: Response
    record: PatientRecord


@attrs.frozen
class VisitResult:
    """What a visit decided and stored."""

    decision: Decision
    response: Response
    record: PatientRecord
    visit_row: int


def save_or_keep(
    store: Store,
    console: Console,
    ask: Ask,
    attempt: Attempt,
    save: Callable[[], int] | None = None,
) -> int:
    """Write the visit (its row), or keep what was typed and raise VisitNotSaved. `save`
    writes it another way (an amendment of the last visit), returning its row."""
    patient_id = attempt.patient.patient_id
    while True:
        try:
            if save is not None:
                return save()
            return store.save_visit(
                attempt.patient, attempt.decided_from, attempt.date, attempt.observations,
                attempt.decision, attempt.response, attempt.record,
            )  # fmt: skip
        except StaleCourse as error:
            kept = _keep(store, console, attempt, str(error))
            raise VisitNotSaved(
                f"{error}. {kept}. Run dosing visit {patient_id} again: it offers to load what "
                "was typed and decides from the course as it now stands"
            ) from None
        except StoreWriteError as error:
            console.print(f"[red]The visit was not saved: {error}[/]", soft_wrap=True)
            try:
                choice = ask(RETRY, None)
            except (EOFError, KeyboardInterrupt):
                choice = "keep"
            if choice.strip().lower() == "keep":
                kept = _keep(store, console, attempt, str(error))
                raise VisitNotSaved(
                    f"the visit was not saved: {error}. {kept}; dosing visit {patient_id} "
                    "offers to load it"
                ) from None


def mention_unsaved(store: Store, console: Console) -> None:
    """Before a patient id is asked: the unsaved visits kept for this store, if any."""
    waiting = unsaved.waiting(store.path)
    if waiting:
        listed = ", ".join(f"{visit.patient_id} ({visit.date})" for _, visit in waiting)
        console.print(f"Typed but not saved: {listed}. Give its id to load it.")


def offer_unsaved(
    store: Store, console: Console, ask: Ask, patient_id: str, known: Patient | None
) -> tuple[Path, unsaved.UnsavedVisit] | None:
    """Offer the patient's visits that the store refused: the one loaded (with its file, to
    discard once saved), if any. One typed for another protocol than the patient's is never
    loaded."""
    for path, visit in unsaved.waiting(store.path, patient_id):
        console.print(
            f"A visit of {patient_id} for {visit.date} was typed at {visit.typed_at} but not "
            f"saved ({visit.reason})."
        )
        if known is not None and known.protocol != visit.protocol:
            console.print(
                f"  It was typed for {visit.protocol}, and {patient_id} is on {known.protocol}: "
                f"it cannot be loaded. It stays in {path}."
            )
            continue
        question = "Load what was typed? (load/later/discard)"
        while (choice := ask(question, None).strip().lower()) not in ("load", "later", "discard"):
            console.print("  Answer load, later or discard.")
        if choice == "discard":
            unsaved.discard(path)
        elif choice == "load":
            return path, visit
    return None


def _keep(store: Store, console: Console, attempt: Attempt, reason: str) -> str:
    """Keep what was typed; the sentence that says where (or shows it, if it cannot be kept)."""
    new = attempt.decided_from.patient_row is None
    visit = unsaved.UnsavedVisit(
        store=str(store.path.resolve()),
        patient_id=attempt.patient.patient_id,
        protocol=attempt.patient.protocol,
        date=attempt.date.isoformat(),
        facts=dict(attempt.patient.facts) if new else {},
        observations=[(o.name, o.entered, o.drawn_on.isoformat()) for o in attempt.typed],
        answer=attempt.response,
        reason=reason,
        typed_at=dt.datetime.now().isoformat(timespec="minutes"),
    )
    try:
        path = unsaved.keep(visit)
    except OSError as error:
        console.print("What was typed, to enter again:")
        for name, value in visit.facts.items():
            console.print(f"  {name}: {value}")
        for name, text, drawn in visit.observations:
            console.print(f"  {name}: {text} (drawn {drawn})")
        answer = attempt.response
        console.print(f"  answer: {answer.kind} {answer.dose or ''} {answer.reason or ''}")
        return f"It could not be kept either ({error.strerror}); what was typed is shown above"
    return f"What was typed is kept in {path}"
