"""Amending a stored visit at the prompt: its labs entered again (Enter keeps each value it
had), the visit decided again and the visits after it re-decided; the later decisions that
change are shown before the correction is stored, with who made it and why."""

from __future__ import annotations

import attrs

from dosing.clinic.correcting import redecided_replacements, show_changes, visit_summary
from dosing.clinic.corrections import course_start, note_after, redecide, stored_note
from dosing.clinic.store import Store
from dosing.clinic.store_records import (
    CourseVersion,
    ImportedVisit,
    Patient,
    Replacement,
    StoredVisit,
)
from dosing.clinic.visit_answer import ClinicianAnswer
from dosing.clinic.visit_questions import FactQuestions, LabQuestions
from dosing.clinic.visit_save import Attempt, VisitResult, save_or_keep
from dosing.engine.observations import Observation
from dosing.protocol.model import Protocol


@attrs.frozen
class Amendment:
    """One visit amended at the prompt, and the correction of the course stored."""

    store: Store
    facts: FactQuestions
    labs: LabQuestions
    answering: ClinicianAnswer
    reason: str | None = None
    """Why the visit is amended, when given before the conversation (--reason)."""

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
        prompt = self.labs.prompt  # facts, labs and the answer share the visit's prompt
        console, date = prompt.console, prompt.date
        old = history[index]
        before = history[index - 1] if index else None
        record = before.record if before else course_start(patient)
        self.labs.keeping = {o.name: o for o in old.observations}
        console.print(
            f"Amending visit {old.row} of {patient.patient_id} on {old.date} "
            f"({visit_summary(old)}). Enter keeps the value it had.",
            markup=False,
            highlight=False,
        )
        observations = self.facts.as_observations(protocol, patient)
        typed = self.labs.ask_labs(protocol, record, given)
        typed += self.labs.ask_assessments(protocol, record, [*observations, *typed], given)
        # What the visit had and was not asked again stays as it was entered.
        typed += [
            o for name, o in self.labs.keeping.items()
            if name not in self.labs.asked and name not in given and name not in protocol.facts
        ]  # fmt: skip
        observations += typed
        note = stored_note(before) if before else None
        decision, after = self.answering.decide(
            protocol, record, observations, patient.patient_id, note
        )
        response = self.answering.answer(protocol, decision)
        after = self.answering.follow(protocol, decision, after, response)
        redecided = redecide(
            protocol, after, note_after(date, decision, response, after),
            history[index + 1 :], patient.patient_id, f"after visit {old.row} was amended",
        )  # fmt: skip
        show_changes(console, patient.patient_id, redecided)
        reason = self.reason or prompt.required("Reason for the amendment")
        amended = ImportedVisit(date, observations, decision, response, after)
        replacements = [
            Replacement(old.row, "amended", self.answering.clinician, reason, amended),
            *redecided_replacements(
                redecided, self.answering.clinician, old.row, "amended", reason
            ),
        ]
        rows: list[int] = []

        def save() -> int:
            rows.extend(self.store.save_corrections(patient, decided_from, replacements))
            return rows[0]

        if index == len(history) - 1:  # the last visit: if the store refuses, kept for later
            attempt = Attempt(patient, decided_from, date, observations, typed, decision,
                              response, after)  # fmt: skip
            save_or_keep(self.store, console, prompt.ask, attempt, save)
        else:
            save()
        again = f"; {len(rows) - 1} later visits re-decided" if rows[1:] else ""
        last = redecided[-1].decision if redecided else decision
        console.print(
            f"Amended visit {old.row} of {patient.patient_id}: saved as visit {rows[0]}, by "
            f"{self.answering.clinician}{again}. Next check: {last.next_check or '-'}",
            markup=False,
            highlight=False,
        )
        return VisitResult(decision, response, after, rows[0])
