"""`dosing visit`: one patient's visit at the prompt, kept in the patient store.

The conversation asks only for what the protocol reads in the patient's current state, each
with its unit shown; a typo is explained and asked again, keeping everything typed so far.
The store is checked writable before anything is asked. Nothing is written until the
clinician has answered the decision; then the whole visit is written in one transaction,
unless the course changed in the store meanwhile (another process saved a visit): then it is
refused rather than written over (`visit_save`). A visit the store refuses is kept, and the
next `dosing visit` of that patient offers to load it. Ctrl-C or the end of input before the
answer leaves the store as it was.
Prompts read from a terminal or from piped stdin alike (rich prompts use input()).

This module leads the conversation; its parts: what is asked (`visit_questions`), the decision
and the clinician's answer (`visit_answer`), amending a visit (`visit_amend`), writing it
(`visit_save`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import attrs
from rich.console import Console
from rich.prompt import Prompt
from rich.table import Table
from rich.text import Text

from dosing.clinic import unsaved as unsaved_visits
from dosing.clinic.correcting import pick_visit, stored_course, visit_summary
from dosing.clinic.corrections import stored_note
from dosing.clinic.due import REFER_DUE_DAYS, next_due
from dosing.clinic.store import Store
from dosing.clinic.store_connection import StoreWriteError
from dosing.clinic.store_records import Patient, StoredVisit, dose_in_force
from dosing.clinic.visit_amend import Amendment
from dosing.clinic.visit_answer import ClinicianAnswer
from dosing.clinic.visit_questions import Ask, FactQuestions, LabQuestions, VisitPrompt
from dosing.clinic.visit_save import (
    Attempt,
    VisitResult,
    mention_unsaved,
    offer_unsaved,
    save_or_keep,
)
from dosing.core.errors import Cancelled, DosingError, ProtocolError
from dosing.engine.patient import PatientRecord
from dosing.protocol.model import Protocol


def rich_ask(console: Console) -> Ask:
    """Questions asked with rich's prompt, on a terminal or piped stdin alike."""

    def ask(question: str, default: str | None) -> str:
        if default is None:
            return Prompt.ask(question, console=console)
        return Prompt.ask(question, console=console, default=default, show_default=True)

    return ask


class VisitCancelled(Cancelled):
    """The visit was not completed (Ctrl-C or end of input); nothing was stored."""


def run_visit(
    store: Store,
    protocol_for: Callable[[str], Protocol],
    patient_id: str | None,
    protocol_id: str | None,
    date: dt.date,
    console: Console,
    ask: Ask,
    *,
    clinician: str,
    accept_implausible: bool = False,
    refer_due_days: int = REFER_DUE_DAYS,
) -> VisitResult:
    """The whole conversation for one visit. Raises VisitCancelled if it is not completed.

    `clinician`: who answers, recorded with the answer.
    `accept_implausible`: values outside their plausible range are used knowingly.
    `refer_due_days`: after a referral, the patient is due again this many days later."""
    prompt = VisitPrompt(console, ask, date, accept_implausible)
    conversation = _Conversation(store, protocol_for, prompt, clinician, refer_due_days)
    try:
        return conversation.run(patient_id, protocol_id)
    except (KeyboardInterrupt, EOFError):
        raise VisitCancelled("the visit was not completed; nothing was stored") from None


def run_amend(
    store: Store,
    protocol_for: Callable[[str], Protocol],
    patient_id: str,
    visit_row: int | None,
    console: Console,
    ask: Ask,
    clinician: str,
    reason: str | None,
    accept_implausible: bool = False,
) -> VisitResult:
    """Re-enter a stored visit's labs (the last one when `visit_row` is None), decide it again
    and the visits after it, and store the correction. Raises VisitCancelled if it is not
    completed."""
    try:
        _check_writable(store, "no amendment was started")
        decided_from = store.course_version(patient_id)  # before the course is read
        patient, history = stored_course(store, patient_id)
        index = pick_visit(history, visit_row, store, patient_id)
        prompt = VisitPrompt(console, ask, history[index].date, accept_implausible)
        protocol = protocol_for(patient.protocol)
        answering = ClinicianAnswer(prompt, clinician)
        amendment = Amendment(store, FactQuestions(prompt), LabQuestions(prompt), answering, reason)
        return amendment.amend(protocol, patient, decided_from, history, index, {})
    except (KeyboardInterrupt, EOFError):
        raise VisitCancelled("the amendment was not completed; nothing was stored") from None


def _check_writable(store: Store, consequence: str) -> None:
    """Refuse to begin, saying `consequence`, when the store cannot be written."""
    try:
        store.check_writable()  # before anything is typed, not after
    except StoreWriteError as error:
        raise DosingError(
            f"the patient store cannot be written, so {consequence}: {error}"
        ) from None


@attrs.define
class _Conversation:
    """The conversation of a new visit, from the patient's id to the visit saved."""

    store: Store
    protocol_for: Callable[[str], Protocol]
    prompt: VisitPrompt
    clinician: str
    refer_due_days: int = REFER_DUE_DAYS
    facts: FactQuestions = attrs.field(
        init=False, default=attrs.Factory(lambda self: FactQuestions(self.prompt), takes_self=True)
    )
    labs: LabQuestions = attrs.field(
        init=False, default=attrs.Factory(lambda self: LabQuestions(self.prompt), takes_self=True)
    )
    answering: ClinicianAnswer = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda self: ClinicianAnswer(self.prompt, self.clinician), takes_self=True
        ),
    )

    def run(self, patient_id: str | None, protocol_id: str | None) -> VisitResult:
        """The patient (asked if not given, loaded or new), the labs asked, the decision shown
        and answered, the visit saved; a visit on the date of the last one amends it."""
        _check_writable(self.store, "no visit was started")
        if patient_id is None:
            mention_unsaved(self.store, self.prompt.console)
        patient_id = patient_id or self.prompt.required("Patient id")
        decided_from = self.store.course_version(patient_id)  # before the course is read
        known = self.store.patient(patient_id)
        history = self.store.visits(patient_id) if known else []
        loaded = offer_unsaved(self.store, self.prompt.console, self.prompt.ask, patient_id, known)
        unsaved = loaded[1] if loaded else None
        if unsaved is not None:
            self.prompt.date = dt.date.fromisoformat(unsaved.date)
        if known is None:
            chosen = unsaved.protocol if unsaved else protocol_id
            protocol = self.protocol_for(chosen) if chosen else self.ask_protocol()
            facts = dict(unsaved.facts) if unsaved and unsaved.facts else None
            patient = Patient(patient_id, protocol.id, facts or self.facts.new_facts(protocol))
            record = PatientRecord()
            self.prompt.console.print(f"New patient {patient_id} on {protocol.id}.")
        else:
            if protocol_id and protocol_id != known.protocol:
                raise DosingError(
                    f"{patient_id} is on {known.protocol}, not {protocol_id}; a change of "
                    "protocol is not supported here"
                )
            protocol = self.protocol_for(known.protocol)
            patient = known
            record = history[-1].record if history else PatientRecord()
            self.show_course(protocol, patient, history)
        if history and self.prompt.date < history[-1].date:
            raise DosingError(
                f"the visit date {self.prompt.date} is before {patient_id}'s last visit "
                f"({history[-1].date}); nothing was stored. A visit is entered on or after the "
                f"last one; to correct an earlier visit: dosing amend {patient_id} --visit N"
            )
        given = self.labs.typed_before(protocol, unsaved)
        if history and self.prompt.date == history[-1].date:
            self.confirm_amend(patient_id, history[-1])
            amendment = Amendment(self.store, self.facts, self.labs, self.answering)
            result = amendment.amend(
                protocol, patient, decided_from, history, len(history) - 1, given
            )
            if loaded is not None:
                unsaved_visits.discard(loaded[0])
            return result
        observations = self.facts.as_observations(protocol, patient)
        typed = self.labs.ask_labs(protocol, record, given)
        typed += self.labs.ask_assessments(protocol, record, [*observations, *typed], given)
        observations += typed
        note = stored_note(history[-1]) if history else None
        decision, after = self.answering.decide(protocol, record, observations, patient_id, note)
        response = self.answering.answer(protocol, decision, unsaved.answer if unsaved else None)
        after = self.answering.follow(protocol, decision, after, response)
        attempt = Attempt(patient, decided_from, self.prompt.date, observations, typed, decision,
                          response, after)  # fmt: skip
        row = save_or_keep(self.store, self.prompt.console, self.prompt.ask, attempt)
        if loaded is not None:
            unsaved_visits.discard(loaded[0])
        said = f"Saved visit {row} for {patient_id}. Next check: {decision.next_check or '-'}"
        due = next_due(decision.next_check, decision.action, self.prompt.date, self.refer_due_days)
        if decision.next_check is None and due is not None:
            said += (
                f"; due again {due}, {self.refer_due_days} "
                f"{'day' if self.refer_due_days == 1 else 'days'} after the referral "
                "(site parameter: --refer-due)"
            )
        self.prompt.console.print(f"{said}. Answered by {self.clinician}.", markup=False)
        return VisitResult(decision, response, after, row)

    def ask_protocol(self) -> Protocol:
        """Ask for the protocol of a new patient until it names one (a typo is asked again,
        with the closest shipped protocol as a did-you-mean)."""
        while True:
            answer = self.prompt.required("Protocol")
            try:
                return self.protocol_for(answer)
            except ProtocolError as error:
                # Text, not markup: what was typed is shown as typed, brackets and all.
                self.prompt.console.print(Text(f"  {error}", style="red"), soft_wrap=True)

    def confirm_amend(self, patient_id: str, last: StoredVisit) -> None:
        """A visit on the date of the last one amends it, or nothing is stored."""
        self.prompt.console.print(
            f"{patient_id} already has a visit on {self.prompt.date} (visit {last.row}: "
            f"{visit_summary(last)}; dose {current_dose(last)}). A patient has one visit a day: "
            "this one would amend it, "
            "replacing its labs and decision (the visit stays in the history as amended).",
            markup=False,
            highlight=False,
        )
        question = "Amend that visit? (yes/no)"
        while (choice := self.prompt.ask(question, None).strip().lower()) not in (
            "yes", "y", "no", "n",
        ):  # fmt: skip
            self.prompt.console.print("  Answer yes or no.")
        if choice in ("no", "n"):
            raise VisitCancelled(
                f"nothing was stored: {patient_id} has a visit on {self.prompt.date} already. Give "
                "another --date, or amend it"
            )

    def show_course(self, protocol: Protocol, patient: Patient, history: list[StoredVisit]) -> None:
        """A known patient's course before the visit: state, dose, due date, last labs."""
        if not history:
            self.prompt.console.print(f"{patient.patient_id} on {protocol.id}: no visits yet.")
            return
        last = history[-1]
        table = Table(title=f"{patient.patient_id} on {protocol.id}", title_justify="left")
        for column in ("state", "dose", "last visit", "next due"):
            table.add_column(column)
        checked = last.decision.get("next_check")
        due = next_due(
            dt.date.fromisoformat(checked) if checked else None,
            last.decision.get("action"),
            last.date,
            self.refer_due_days,
        )
        table.add_row(
            last.record.state or protocol.initial,
            current_dose(last),
            str(last.date),
            str(due or "-"),
        )
        self.prompt.console.print(table)
        labs = Table("last labs", "value", "drawn", title_justify="left")
        for name, observation in last.record.observations.items():
            if name in protocol.labs:
                labs.add_row(name, observation.entered, str(observation.drawn_on))
        self.prompt.console.print(labs)


def current_dose(visit: StoredVisit) -> str:
    """The dose in force after a visit: the one chosen if overridden, else the one advised."""
    return dose_in_force(visit.decision.get("doses", []), visit.response)
