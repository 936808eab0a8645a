"""What a visit asks at the prompt: a new patient's facts, and the labs and assessments the
protocol reads in the patient's current state, each with its unit shown. A typo is explained
and asked again, keeping everything typed so far; Enter reuses an earlier result still young
enough, or (when amending) keeps the value the visit had."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import attrs
from rich.console import Console

from dosing.clinic import unsaved as unsaved_visits
from dosing.clinic.store_records import Patient
from dosing.core.errors import ObservationError
from dosing.core.vocabulary import VOCABULARY, Categorical
from dosing.engine.gathering import missing_for_decision
from dosing.engine.observations import Observation, ObservationReader, age_observation, age_since
from dosing.engine.patient import PatientRecord
from dosing.protocol.model import Protocol

Ask = Callable[[str, str | None], str]
"""(question, default shown or None) -> the answer typed; raises EOFError at end of input."""


OPTIONAL_FACTS = {"crcl_weight": "the actual weight"}
"""Facts a patient may go without, and what is used instead."""


@attrs.define
class VisitPrompt:
    """The prompt of one visit: who is asked, on what date, and how an answer is read."""

    console: Console
    ask: Ask
    date: dt.date
    """The visit's date: what is typed there was drawn on it."""
    accept_implausible: bool = False

    def reader(self, protocol: Protocol) -> ObservationReader:
        return ObservationReader(protocol, self.accept_implausible)

    def required(self, question: str, default: str | None = None) -> str:
        while True:
            answer = self.ask(question, default).strip()
            if answer:
                return answer
            self.console.print(f"  {question} is required.")

    def question(self, protocol: Protocol, name: str) -> str:
        entry = VOCABULARY[name]
        measure = entry.measure
        if isinstance(measure, Categorical):
            return f"{entry.label} ({'/'.join(measure.values)})"
        reading = protocol.readings.get(name)
        return f"{entry.label} ({reading.unit if reading else measure.canonical})"


@attrs.frozen
class FactQuestions:
    """A new patient's facts (a birth date for the age), kept with the patient; and the facts
    as observations on the visit's date."""

    prompt: VisitPrompt

    def new_facts(self, protocol: Protocol) -> dict[str, str]:
        """Ask a new patient's facts, as they are kept: the text typed, each read once."""
        facts: dict[str, str] = {}
        for name in protocol.facts:
            if name == "age":
                while True:
                    text = self.prompt.required("Birth date (YYYY-MM-DD)")
                    try:
                        birth = dt.date.fromisoformat(text)
                    except ValueError:
                        self.prompt.console.print(f"  '{text}' is not a date; write YYYY-MM-DD.")
                        continue
                    if birth > self.prompt.date:
                        self.prompt.console.print(
                            f"  {birth} is after the visit date {self.prompt.date}."
                        )
                        continue
                    facts["birth_date"] = birth.isoformat()
                    break
            elif name in OPTIONAL_FACTS:
                question = f"{self.prompt.question(protocol, name)} [Enter: {OPTIONAL_FACTS[name]}]"
                text = self.prompt.ask(question, None).strip()
                if text:
                    facts[name] = self.valid(protocol, name, text)
            else:
                facts[name] = self.valid(
                    protocol, name, self.prompt.required(self.prompt.question(protocol, name))
                )
        return facts

    def valid(self, protocol: Protocol, name: str, text: str) -> str:
        """Ask again until the text reads as a valid observation; returns the text."""
        reader = self.prompt.reader(protocol)
        while True:
            try:
                reader.read(name, text, self.prompt.date)
                return text
            except ObservationError as error:
                self.prompt.console.print(f"  [red]{error}[/]", highlight=False, soft_wrap=True)
                text = self.prompt.required(self.prompt.question(protocol, name))

    def as_observations(self, protocol: Protocol, patient: Patient) -> list[Observation]:
        """The patient's facts as observations on the visit's date (the age from the birth
        date, or from an age imported with its date)."""
        reader = self.prompt.reader(protocol)
        observations = []
        for name in protocol.facts:
            if name == "age" and "birth_date" in patient.facts:
                birth = dt.date.fromisoformat(patient.facts["birth_date"])
                observations.append(age_observation(birth, self.prompt.date))
            elif name == "age" and "age_on" in patient.facts:  # imported: an age on a date
                since = dt.date.fromisoformat(patient.facts["age_on"])
                then = reader.read("age", patient.facts["age"], since)
                observations.append(age_since(then, self.prompt.date))
            elif name in patient.facts:
                observations.append(reader.read(name, patient.facts[name], self.prompt.date))
        return observations


@attrs.define
class LabQuestions:
    """The labs and assessments the protocol reads in the patient's current state: each given
    (loaded from a visit the store refused), or asked; Enter reuses an earlier result still
    young enough, or keeps the value an amended visit had."""

    prompt: VisitPrompt
    keeping: dict[str, Observation] = attrs.Factory(dict)
    """When amending: the values the visit had, kept by Enter."""
    asked: set[str] = attrs.Factory(set)

    def typed_before(
        self, protocol: Protocol, unsaved: unsaved_visits.UnsavedVisit | None
    ) -> dict[str, Observation]:
        """A loaded visit's labs and assessments, read again (a value that no longer reads
        is asked for again)."""
        if unsaved is None:
            return {}
        reader = self.prompt.reader(protocol)
        given = {}
        for name, text, drawn in unsaved.observations:
            try:
                given[name] = reader.read(name, text, dt.date.fromisoformat(drawn))
            except (ObservationError, ValueError):
                continue
        return given

    def ask_labs(
        self, protocol: Protocol, record: PatientRecord, given: dict[str, Observation]
    ) -> list[Observation]:
        state = record.state or protocol.initial
        reads = protocol.reads.get(state, frozenset())
        reader = self.prompt.reader(protocol)
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
        reader = self.prompt.reader(protocol)
        asked: list[Observation] = []
        skipped: set[str] = set()
        reads = protocol.reads.get(record.state or protocol.initial, frozenset())
        for name in protocol.carried_forward:
            if name in reads and self.reusable(protocol, name, record) is not None:
                kept = self.given_or_asked(protocol, reader, name, record, given)
                if kept is not None:
                    asked.append(kept)
        while True:
            lacking = missing_for_decision(
                protocol, record, self.prompt.date, [*observations, *asked]
            )
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
            self.prompt.console.print(
                f"{self.prompt.question(protocol, name)}: {given[name].entered} (loaded)"
            )
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
        question = self.prompt.question(protocol, name)
        if kept is not None:
            question += f" [Enter: keep {kept.entered} from {kept.drawn_on}]"
        elif reusable is not None:
            question += f" [Enter: {reusable.entered} from {reusable.drawn_on}]"
        elif name in protocol.if_not_recorded:
            question += f" [Enter: {protocol.if_not_recorded[name]}]"
        else:
            question += f" [Enter: not {'measured' if name in protocol.labs else 'assessed'}]"
        while True:
            text = self.prompt.ask(question, None).strip()
            if not text:
                return reusable  # carried forward by the engine too; None = not measured
            try:
                return reader.read(name, text, self.prompt.date)
            except ObservationError as error:
                self.prompt.console.print(f"  [red]{error}[/]", highlight=False, soft_wrap=True)

    def reusable(self, protocol: Protocol, name: str, record: PatientRecord) -> Observation | None:
        """An earlier lab, or an assessment carried forward, still young enough to use."""
        earlier = record.observations.get(name)
        if earlier is None:
            return None
        lab, kept = protocol.labs.get(name), protocol.carried_forward.get(name)
        limit = lab.max_age_days if lab else kept.max_age_days if kept else None
        age = (self.prompt.date - earlier.drawn_on).days
        return earlier if limit is not None and 0 <= age <= limit else None
