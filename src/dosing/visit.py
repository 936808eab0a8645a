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
import re
from collections.abc import Callable
from fractions import Fraction

import attrs
from rich.console import Console
from rich.prompt import Prompt
from rich.table import Table
from rich.text import Text

from dosing import unsaved as unsaved_visits
from dosing.decision import Decision
from dosing.derived import age_on
from dosing.due import REFER_DUE_DAYS, next_due
from dosing.engine import missing_for_decision, step
from dosing.errors import Cancelled, DosingError, ObservationError, ProtocolError
from dosing.model import Protocol
from dosing.observations import Observation, ObservationReader
from dosing.output import decision_panel
from dosing.patient import PatientRecord
from dosing.store import Patient, Response, Store, StoredVisit, StoreWriteError, dose_in_force
from dosing.units import format_number
from dosing.visit_save import Attempt, mention_unsaved, offer_unsaved, save_or_keep
from dosing.vocabulary import VOCABULARY, Categorical

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


_DOSE = re.compile(
    r"^\s*(?:(?P<drug>[A-Za-z][\w-]*)\s+)?(?P<amount>\d+(?:\.\d+)?)\s*mg\s+(?P<frequency>qd|bid|qod|weekly)\s*$"
)


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
    accept_implausible: bool = False,
    refer_due_days: int = REFER_DUE_DAYS,
) -> VisitResult:
    """The whole conversation for one visit. Raises VisitCancelled if it is not completed.

    `accept_implausible`: values outside their plausible range are used knowingly.
    `refer_due_days`: after a referral, the patient is due again this many days later."""
    conversation = _Conversation(
        store, protocol_for, console, ask, date, accept_implausible, refer_due_days
    )
    try:
        return conversation.run(patient_id, protocol_id)
    except (KeyboardInterrupt, EOFError):
        raise VisitCancelled("the visit was not completed; nothing was stored") from None


@attrs.define
class _Conversation:
    store: Store
    protocol_for: Callable[[str], Protocol]
    console: Console
    ask: Ask
    date: dt.date
    accept_implausible: bool = False
    refer_due_days: int = REFER_DUE_DAYS

    def reader(self, protocol: Protocol) -> ObservationReader:
        return ObservationReader(protocol, self.accept_implausible)

    def run(self, patient_id: str | None, protocol_id: str | None) -> VisitResult:
        try:
            self.store.check_writable()  # before anything is typed, not after
        except StoreWriteError as error:
            raise DosingError(
                f"the patient store cannot be written, so no visit was started: {error}"
            ) from None
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
                f"the visit date {self.date} is before the last visit ({history[-1].date})"
            )
        given = self.typed_before(protocol, unsaved)
        observations = self.facts_as_observations(protocol, patient)
        typed = self.ask_labs(protocol, record, given)
        typed += self.ask_assessments(protocol, record, [*observations, *typed], given)
        observations += typed
        decision, after = step(protocol, record, self.date, observations, patient_id)
        if history and history[-1].response and history[-1].response.kind == "overridden":
            decision = attrs.evolve(
                decision, warnings=(*decision.warnings, _override_note(history[-1], record))
            )
        self.console.print(decision_panel(decision))
        response = self.answer(decision, unsaved.answer if unsaved else None)
        after, note = apply_choice(protocol, after, response, self.date)
        if note:
            self.console.print(note)
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
        self.console.print(said)
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
                years = age_on(birth, self.date)
                text = f"{format_number(years, 2)} years"
                observations.append(Observation("age", years, f"{text}, born {birth}", self.date))
            elif name == "age" and "age_on" in patient.facts:  # imported: an age on a date
                then = reader.read("age", patient.facts["age"], self.date).value
                assert isinstance(then, Fraction)
                since = dt.date.fromisoformat(patient.facts["age_on"])
                years = then + Fraction((self.date - since).days * 4, 1461)
                text = f"{format_number(years, 2)} years"
                observations.append(Observation("age", years, text, self.date))
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
        question = self.question(protocol, name)
        if reusable is not None:
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

    def answer(self, decision: Decision, earlier: Response | None = None) -> Response:
        choices = "accept/override" if decision.action != "refer" else "override"
        if earlier is not None:  # shown, never a default: the decision may differ this time
            self.console.print(
                f"Answered before: {earlier.kind}"
                + (f", {earlier.dose} ({earlier.reason})" if earlier.kind == "overridden" else "")
            )
        while True:
            text = self.ask(f"The clinician's answer ({choices})", None).strip().lower()
            if text in ("a", "accept", "accepted") and decision.action != "refer":
                return Response("accepted")
            if text in ("o", "override", "overridden"):
                break
            self.console.print(f"  Answer {choices}.")
        while True:
            dose = self.required(
                "Dose actually chosen (e.g. 400 mg qd, or none)", earlier.dose if earlier else None
            )
            if dose.lower() in ("none", "held", "hold") or _DOSE.match(dose):
                break
            self.console.print(
                f"  '{dose}' is not a dose: write AMOUNT mg FREQUENCY (qd, bid, qod, weekly), "
                "or none."
            )
        reason = self.required("Reason for the override", earlier.reason if earlier else None)
        return Response("overridden", dose, reason)

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


def _override_note(last: StoredVisit, record: PatientRecord) -> str:
    assert last.response is not None
    advised = ", ".join(
        f"{d['amount']} {d['unit']} {d['frequency']}" for d in last.decision.get("doses", [])
    )
    return (
        f"At the last visit ({last.date}) the recommendation ({advised or 'no dose'}) was "
        f"overridden: {last.response.dose} chosen ({last.response.reason}). This decision starts "
        f"from state {record.state}."
    )


def apply_choice(
    protocol: Protocol, record: PatientRecord, response: Response, date: dt.date
) -> tuple[PatientRecord, str]:
    """The record after the clinician's answer: an overridden dose moves the patient to the
    state (or ladder level) that gives it, when one does; the note says what was done."""
    if response.kind != "overridden" or response.dose is None:
        return record, ""
    match = _DOSE.match(response.dose)
    if match is None:
        return record, (
            f"The dose chosen ({response.dose}) is no protocol dose; the next decision continues "
            f"from state {record.state}."
        )
    amount, frequency = Fraction(match["amount"]), match["frequency"]
    state = protocol.states[record.state or protocol.initial]
    for spec in state.doses:
        slot = protocol.memory.get(spec.level_from or "")
        if slot is not None and spec.frequency == frequency:
            levels = protocol.ladders[slot.ladder].levels if slot.ladder else ()
            on_step = slot.step is not None and (amount / slot.step).denominator == 1
            if amount in levels or on_step:
                memory = {**record.memory, slot.name: amount}
                note = f"The next decision starts from the chosen {response.dose} ({slot.name})."
                return attrs.evolve(record, memory=memory, dose_since=date), note
    for candidate in protocol.states.values():
        fixed = [d for d in candidate.doses if d.amount is not None]
        if (
            not candidate.final
            and len(fixed) == 1
            and fixed[0].amount == amount
            and fixed[0].frequency == frequency
        ):
            moved = attrs.evolve(record, state=candidate.name, state_since=date, dose_since=date)
            return moved, f"The next decision starts from state {candidate.name} ({response.dose})."
    return record, (
        f"No state of {protocol.id} gives {response.dose}; the next decision continues from "
        f"state {record.state}."
    )
