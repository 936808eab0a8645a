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
from dosing.clinic.correcting import (
    pick_visit,
    redecided_replacements,
    show_changes,
    stored_course,
    visit_summary,
)
from dosing.clinic.corrections import course_start, followed, note_after, redecide, stored_note
from dosing.clinic.due import REFER_DUE_DAYS, next_due
from dosing.clinic.store import (
    CourseVersion,
    ImportedVisit,
    Patient,
    Replacement,
    Response,
    Store,
    StoredVisit,
    StoreWriteError,
    dose_in_force,
)
from dosing.clinic.visit_save import Attempt, mention_unsaved, offer_unsaved, save_or_keep
from dosing.core.errors import Cancelled, DosingError, ObservationError, ProtocolError
from dosing.core.vocabulary import VOCABULARY, Categorical
from dosing.engine.choice import apply_choice, concerns, is_dose, matches
from dosing.engine.decision import Decision
from dosing.engine.gathering import missing_for_decision
from dosing.engine.observations import Observation, ObservationReader, age_observation, age_since
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Protocol
from dosing.render.output import decision_panel

Ask = Callable[[str, str | None], str]
"""(question, default shown or None) -> the answer typed; raises EOFError at end of input."""


OPTIONAL_FACTS = {"crcl_weight": "the actual weight"}
"""Facts a patient may go without, and what is used instead."""


def rich_ask(console: Console) -> Ask:
    def ask(question: str, default: str | None) -> str:
        if default is None:
            return Prompt.ask(question, console=console)
        return Prompt.ask(question, console=console, default=default, show_default=True)

    return ask


class VisitCancelled(Cancelled):
    """The visit was not completed (Ctrl-C or end of input); nothing was stored."""


@attrs.frozen
class VisitResult:
    """What a visit decided and stored."""

    decision: Decision
    response: Response
    record: PatientRecord
    visit_row: int


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
    conversation = _Conversation(
        store, protocol_for, console, ask, date, clinician, accept_implausible, refer_due_days
    )
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
    conversation = _Conversation(
        store, protocol_for, console, ask, dt.date.min, clinician, accept_implausible
    )
    conversation.reason = reason
    try:
        conversation.check_writable("no amendment was started")
        decided_from = store.course_version(patient_id)  # before the course is read
        patient, history = stored_course(store, patient_id)
        index = pick_visit(history, visit_row, store, patient_id)
        conversation.date = history[index].date
        protocol = protocol_for(patient.protocol)
        return conversation.amend(protocol, patient, decided_from, history, index, {})
    except (KeyboardInterrupt, EOFError):
        raise VisitCancelled("the amendment was not completed; nothing was stored") from None


@attrs.define
class _Conversation:
    store: Store
    protocol_for: Callable[[str], Protocol]
    console: Console
    ask: Ask
    date: dt.date
    clinician: str
    accept_implausible: bool = False
    refer_due_days: int = REFER_DUE_DAYS
    reason: str | None = None
    """Why a visit is amended, when given before the conversation (--reason)."""
    keeping: dict[str, Observation] = attrs.Factory(dict)
    """When amending: the values the visit had, kept by Enter."""
    asked: set[str] = attrs.Factory(set)

    def reader(self, protocol: Protocol) -> ObservationReader:
        return ObservationReader(protocol, self.accept_implausible)

    def check_writable(self, consequence: str) -> None:
        try:
            self.store.check_writable()  # before anything is typed, not after
        except StoreWriteError as error:
            raise DosingError(
                f"the patient store cannot be written, so {consequence}: {error}"
            ) from None

    def run(self, patient_id: str | None, protocol_id: str | None) -> VisitResult:
        self.check_writable("no visit was started")
        if patient_id is None:
            mention_unsaved(self.store, self.console)
        patient_id = patient_id or self.required("Patient id")
        decided_from = self.store.course_version(patient_id)  # before the course is read
        known = self.store.patient(patient_id)
        history = self.store.visits(patient_id) if known else []
        loaded = offer_unsaved(self.store, self.console, self.ask, patient_id, known)
        unsaved = loaded[1] if loaded else None
        if unsaved is not None:
            self.date = dt.date.fromisoformat(unsaved.date)
        if known is None:
            chosen = unsaved.protocol if unsaved else protocol_id
            protocol = self.protocol_for(chosen) if chosen else self.ask_protocol()
            facts = dict(unsaved.facts) if unsaved and unsaved.facts else None
            patient = Patient(patient_id, protocol.id, facts or self.new_facts(protocol))
            record = PatientRecord()
            self.console.print(f"New patient {patient_id} on {protocol.id}.")
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
        if history and self.date < history[-1].date:
            raise DosingError(
                f"the visit date {self.date} is before {patient_id}'s last visit "
                f"({history[-1].date}); nothing was stored. A visit is entered on or after the "
                f"last one; to correct an earlier visit: dosing amend {patient_id} --visit N"
            )
        given = self.typed_before(protocol, unsaved)
        if history and self.date == history[-1].date:
            self.confirm_amend(patient_id, history[-1])
            result = self.amend(protocol, patient, decided_from, history, len(history) - 1, given)
            if loaded is not None:
                unsaved_visits.discard(loaded[0])
            return result
        observations = self.facts_as_observations(protocol, patient)
        typed = self.ask_labs(protocol, record, given)
        typed += self.ask_assessments(protocol, record, [*observations, *typed], given)
        observations += typed
        note = stored_note(history[-1]) if history else None
        decision, after = self.decide(protocol, record, observations, patient_id, note)
        response = self.answer(protocol, decision, unsaved.answer if unsaved else None)
        after = self.follow(protocol, decision, after, response)
        attempt = Attempt(patient, decided_from, self.date, observations, typed, decision,
                          response, after)  # fmt: skip
        row = save_or_keep(self.store, self.console, self.ask, attempt)
        if loaded is not None:
            unsaved_visits.discard(loaded[0])
        said = f"Saved visit {row} for {patient_id}. Next check: {decision.next_check or '-'}"
        due = next_due(decision.next_check, decision.action, self.date, self.refer_due_days)
        if decision.next_check is None and due is not None:
            said += (
                f"; due again {due}, {self.refer_due_days} "
                f"{'day' if self.refer_due_days == 1 else 'days'} after the referral "
                "(site parameter: --refer-due)"
            )
        self.console.print(f"{said}. Answered by {self.clinician}.", markup=False)
        return VisitResult(decision, response, after, row)

    def ask_protocol(self) -> Protocol:
        """Ask for the protocol of a new patient until it names one (a typo is asked again,
        with the closest shipped protocol as a did-you-mean)."""
        while True:
            answer = self.required("Protocol")
            try:
                return self.protocol_for(answer)
            except ProtocolError as error:
                # Text, not markup: what was typed is shown as typed, brackets and all.
                self.console.print(Text(f"  {error}", style="red"), soft_wrap=True)

    def decide(
        self,
        protocol: Protocol,
        record: PatientRecord,
        observations: list[Observation],
        patient_id: str,
        note: str | None,
    ) -> tuple[Decision, PatientRecord]:
        """The engine's decision, shown; `note` is the warning after an override just before."""
        decision, after = step(protocol, record, self.date, observations, patient_id)
        if note is not None:
            decision = attrs.evolve(decision, warnings=(*decision.warnings, note))
        self.console.print(decision_panel(decision))
        return decision, after

    def follow(
        self, protocol: Protocol, decision: Decision, record: PatientRecord, response: Response
    ) -> PatientRecord:
        """The record after the answer: an override moves the course to the dose chosen."""
        if not followed(decision, response):
            return record
        assert response.dose is not None
        after, note = apply_choice(protocol, record, response.dose, self.date)
        self.console.print(note)
        return after

    def confirm_amend(self, patient_id: str, last: StoredVisit) -> None:
        """A visit on the date of the last one amends it, or nothing is stored."""
        self.console.print(
            f"{patient_id} already has a visit on {self.date} (visit {last.row}: "
            f"{visit_summary(last)}; dose {current_dose(last)}). A patient has one visit a day: "
            "this one would amend it, "
            "replacing its labs and decision (the visit stays in the history as amended).",
            markup=False,
            highlight=False,
        )
        while (choice := self.ask("Amend that visit? (yes/no)", None).strip().lower()) not in (
            "yes", "y", "no", "n",
        ):  # fmt: skip
            self.console.print("  Answer yes or no.")
        if choice in ("no", "n"):
            raise VisitCancelled(
                f"nothing was stored: {patient_id} has a visit on {self.date} already. Give "
                "another --date, or amend it"
            )

    def amend(
        self,
        protocol: Protocol,
        patient: Patient,
        decided_from: CourseVersion,
        history: list[StoredVisit],
        index: int,
        given: dict[str, Observation],
    ) -> VisitResult:
        """Enter the visit at `index` again (Enter keeps each value it had), decide it and
        the visits after it, show which later decisions change, and store the correction."""
        old = history[index]
        before = history[index - 1] if index else None
        record = before.record if before else course_start(patient)
        self.keeping = {o.name: o for o in old.observations}
        self.console.print(
            f"Amending visit {old.row} of {patient.patient_id} on {old.date} "
            f"({visit_summary(old)}). Enter keeps the value it had.",
            markup=False,
            highlight=False,
        )
        observations = self.facts_as_observations(protocol, patient)
        typed = self.ask_labs(protocol, record, given)
        typed += self.ask_assessments(protocol, record, [*observations, *typed], given)
        # What the visit had and was not asked again stays as it was entered.
        typed += [
            o for name, o in self.keeping.items()
            if name not in self.asked and name not in given and name not in protocol.facts
        ]  # fmt: skip
        observations += typed
        note = stored_note(before) if before else None
        decision, after = self.decide(protocol, record, observations, patient.patient_id, note)
        response = self.answer(protocol, decision)
        after = self.follow(protocol, decision, after, response)
        redecided = redecide(
            protocol, after, note_after(self.date, decision, response, after),
            history[index + 1 :], patient.patient_id, f"after visit {old.row} was amended",
        )  # fmt: skip
        show_changes(self.console, patient.patient_id, redecided)
        reason = self.reason or self.required("Reason for the amendment")
        amended = ImportedVisit(self.date, observations, decision, response, after)
        replacements = [
            Replacement(old.row, "amended", self.clinician, reason, amended),
            *redecided_replacements(redecided, self.clinician, old.row, "amended", reason),
        ]
        rows: list[int] = []

        def save() -> int:
            rows.extend(self.store.save_corrections(patient, decided_from, replacements))
            return rows[0]

        if index == len(history) - 1:  # the last visit: if the store refuses, kept for later
            attempt = Attempt(patient, decided_from, self.date, observations, typed, decision,
                              response, after)  # fmt: skip
            save_or_keep(self.store, self.console, self.ask, attempt, save)
        else:
            save()
        again = f"; {len(rows) - 1} later visits re-decided" if rows[1:] else ""
        last = redecided[-1].decision if redecided else decision
        self.console.print(
            f"Amended visit {old.row} of {patient.patient_id}: saved as visit {rows[0]}, by "
            f"{self.clinician}{again}. Next check: {last.next_check or '-'}",
            markup=False,
            highlight=False,
        )
        return VisitResult(decision, response, after, rows[0])

    def typed_before(
        self, protocol: Protocol, unsaved: unsaved_visits.UnsavedVisit | None
    ) -> dict[str, Observation]:
        """A loaded visit's labs and assessments, read again (a value that no longer reads
        is asked for again)."""
        if unsaved is None:
            return {}
        reader = self.reader(protocol)
        given = {}
        for name, text, drawn in unsaved.observations:
            try:
                given[name] = reader.read(name, text, dt.date.fromisoformat(drawn))
            except (ObservationError, ValueError):
                continue
        return given

    def required(self, question: str, default: str | None = None) -> str:
        while True:
            answer = self.ask(question, default).strip()
            if answer:
                return answer
            self.console.print(f"  {question} is required.")

    def new_facts(self, protocol: Protocol) -> dict[str, str]:
        facts: dict[str, str] = {}
        for name in protocol.facts:
            if name == "age":
                while True:
                    text = self.required("Birth date (YYYY-MM-DD)")
                    try:
                        birth = dt.date.fromisoformat(text)
                    except ValueError:
                        self.console.print(f"  '{text}' is not a date; write YYYY-MM-DD.")
                        continue
                    if birth > self.date:
                        self.console.print(f"  {birth} is after the visit date {self.date}.")
                        continue
                    facts["birth_date"] = birth.isoformat()
                    break
            elif name in OPTIONAL_FACTS:
                question = f"{self.question(protocol, name)} [Enter: {OPTIONAL_FACTS[name]}]"
                text = self.ask(question, None).strip()
                if text:
                    facts[name] = self.valid(protocol, name, text)
            else:
                facts[name] = self.valid(
                    protocol, name, self.required(self.question(protocol, name))
                )
        return facts

    def question(self, protocol: Protocol, name: str) -> str:
        entry = VOCABULARY[name]
        measure = entry.measure
        if isinstance(measure, Categorical):
            return f"{entry.label} ({'/'.join(measure.values)})"
        reading = protocol.readings.get(name)
        return f"{entry.label} ({reading.unit if reading else measure.canonical})"

    def valid(self, protocol: Protocol, name: str, text: str) -> str:
        """Ask again until the text reads as a valid observation; returns the text."""
        reader = self.reader(protocol)
        while True:
            try:
                reader.read(name, text, self.date)
                return text
            except ObservationError as error:
                self.console.print(f"  [red]{error}[/]", highlight=False, soft_wrap=True)
                text = self.required(self.question(protocol, name))

    def facts_as_observations(self, protocol: Protocol, patient: Patient) -> list[Observation]:
        reader = self.reader(protocol)
        observations = []
        for name in protocol.facts:
            if name == "age" and "birth_date" in patient.facts:
                birth = dt.date.fromisoformat(patient.facts["birth_date"])
                observations.append(age_observation(birth, self.date))
            elif name == "age" and "age_on" in patient.facts:  # imported: an age on a date
                since = dt.date.fromisoformat(patient.facts["age_on"])
                then = reader.read("age", patient.facts["age"], since)
                observations.append(age_since(then, self.date))
            elif name in patient.facts:
                observations.append(reader.read(name, patient.facts[name], self.date))
        return observations

    def ask_labs(
        self, protocol: Protocol, record: PatientRecord, given: dict[str, Observation]
    ) -> list[Observation]:
        state = record.state or protocol.initial
        reads = protocol.reads.get(state, frozenset())
        reader = self.reader(protocol)
        observations = []
        for name in protocol.labs:
            if name in reads:
                observation = self.given_or_asked(protocol, reader, name, record, given)
                if observation is not None:
                    observations.append(observation)
        return observations

    def ask_assessments(
        self,
        protocol: Protocol,
        record: PatientRecord,
        observations: list[Observation],
        given: dict[str, Observation],
    ) -> list[Observation]:
        """Ask an assessment only while the decision depends on it, one at a time; first,
        each one carried forward from an earlier visit that this state reads, so that it can
        be updated (Enter keeps it)."""
        reader = self.reader(protocol)
        asked: list[Observation] = []
        skipped: set[str] = set()
        reads = protocol.reads.get(record.state or protocol.initial, frozenset())
        for name in protocol.carried_forward:
            if name in reads and self.reusable(protocol, name, record) is not None:
                kept = self.given_or_asked(protocol, reader, name, record, given)
                if kept is not None:
                    asked.append(kept)
        while True:
            lacking = missing_for_decision(protocol, record, self.date, [*observations, *asked])
            wanted = [
                name
                for name in protocol.assessments
                if name in lacking and name not in skipped and name not in protocol.if_not_recorded
            ]
            if not wanted:
                return asked
            observation = self.given_or_asked(protocol, reader, wanted[0], record, given)
            if observation is None:
                skipped.add(wanted[0])
            else:
                asked.append(observation)

    def given_or_asked(
        self,
        protocol: Protocol,
        reader: ObservationReader,
        name: str,
        record: PatientRecord,
        given: dict[str, Observation],
    ) -> Observation | None:
        if name in given:
            self.console.print(f"{self.question(protocol, name)}: {given[name].entered} (loaded)")
            return given[name]
        return self.ask_one(protocol, reader, name, record)

    def ask_one(
        self, protocol: Protocol, reader: ObservationReader, name: str, record: PatientRecord
    ) -> Observation | None:
        reusable = self.reusable(protocol, name, record)
        self.asked.add(name)
        kept = self.keeping.get(name)
        if kept is not None:  # amending: Enter keeps what the visit had
            reusable = kept
        question = self.question(protocol, name)
        if kept is not None:
            question += f" [Enter: keep {kept.entered} from {kept.drawn_on}]"
        elif reusable is not None:
            question += f" [Enter: {reusable.entered} from {reusable.drawn_on}]"
        elif name in protocol.if_not_recorded:
            question += f" [Enter: {protocol.if_not_recorded[name]}]"
        else:
            question += f" [Enter: not {'measured' if name in protocol.labs else 'assessed'}]"
        while True:
            text = self.ask(question, None).strip()
            if not text:
                return reusable  # carried forward by the engine too; None = not measured
            try:
                return reader.read(name, text, self.date)
            except ObservationError as error:
                self.console.print(f"  [red]{error}[/]", highlight=False, soft_wrap=True)

    def reusable(self, protocol: Protocol, name: str, record: PatientRecord) -> Observation | None:
        """An earlier lab, or an assessment carried forward, still young enough to use."""
        earlier = record.observations.get(name)
        if earlier is None:
            return None
        lab, kept = protocol.labs.get(name), protocol.carried_forward.get(name)
        limit = lab.max_age_days if lab else kept.max_age_days if kept else None
        age = (self.date - earlier.drawn_on).days
        return earlier if limit is not None and 0 <= age <= limit else None

    def answer(
        self, protocol: Protocol, decision: Decision, earlier: Response | None = None
    ) -> Response:
        choices = "accept/override" if decision.action != "refer" else "override"
        if earlier is not None:  # shown, never a default: the decision may differ this time
            self.console.print(
                f"Answered before: {earlier.kind}"
                + (f", {earlier.dose} ({earlier.reason})" if earlier.kind == "overridden" else "")
            )
        while True:
            text = self.ask(f"The clinician's answer ({choices})", None).strip().lower()
            if text in ("a", "accept", "accepted") and decision.action != "refer":
                return Response("accepted", clinician=self.clinician)
            if text in ("o", "override", "overridden"):
                chosen = self.dose_chosen(protocol, decision, earlier)
                if chosen is not None:
                    break
                continue
            self.console.print(f"  Answer {choices}.")
        dose, confirmed = chosen
        reason = self.required("Reason for the override", earlier.reason if earlier else None)
        return Response("overridden", dose, reason, self.clinician, confirmed)

    def dose_chosen(
        self, protocol: Protocol, decision: Decision, earlier: Response | None
    ) -> tuple[str, str | None] | None:
        """The dose chosen instead of the advice, and what the clinician confirmed about it
        (a dose no tablets make, or above the maximum, is given only when confirmed); None
        when the dose typed is the advice itself (answer accept, then)."""
        while True:
            dose = self.required(
                "Dose actually chosen (e.g. 400 mg qd, or none)", earlier.dose if earlier else None
            )
            if not is_dose(dose):
                self.console.print(
                    f"  '{dose}' is not a dose: write AMOUNT mg FREQUENCY (qd, bid, qod, weekly), "
                    "or none."
                )
                continue
            if matches(dose, decision) is True:
                self.console.print(f"  {dose} is what dosing recommends: answer accept.")
                return None
            found = concerns(protocol, dose)
            if not found:
                return dose, None
            for concern in found:
                self.console.print(f"  [bold red]{concern}[/]", highlight=False, soft_wrap=True)
            answer = self.ask(f"Give {dose} all the same? Type confirm, or Enter for another dose",
                              None)  # fmt: skip
            if answer.strip().lower() == "confirm":
                return dose, "; ".join(found)

    def show_course(self, protocol: Protocol, patient: Patient, history: list[StoredVisit]) -> None:
        if not history:
            self.console.print(f"{patient.patient_id} on {protocol.id}: no visits yet.")
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
        self.console.print(table)
        labs = Table("last labs", "value", "drawn", title_justify="left")
        for name, observation in last.record.observations.items():
            if name in protocol.labs:
                labs.add_row(name, observation.entered, str(observation.drawn_on))
        self.console.print(labs)


def current_dose(visit: StoredVisit) -> str:
    """The dose in force after a visit: the one chosen if overridden, else the one advised."""
    return dose_in_force(visit.decision.get("doses", []), visit.response)
