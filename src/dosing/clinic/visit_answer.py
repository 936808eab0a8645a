"""The decision shown at the prompt and the clinician's answer to it: accept, or override with
the dose actually chosen and a reason (a dose no tablets make, or above the maximum, is given
only when confirmed). An override moves the course to the dose chosen."""

from __future__ import annotations

import attrs

from dosing.clinic.corrections import followed
from dosing.clinic.store_records import Response
from dosing.clinic.visit_questions import VisitPrompt
from dosing.engine.choice import apply_choice, concerns, is_dose, matches
from dosing.engine.decision import Decision
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Protocol
from dosing.render.output import decision_panel


@attrs.frozen
class ClinicianAnswer:
    """Shows the engine's decision, takes the clinician's answer, and follows an override."""

    prompt: VisitPrompt
    clinician: str
    """Who answers, recorded with the answer."""

    def decide(
        self,
        protocol: Protocol,
        record: PatientRecord,
        observations: list[Observation],
        patient_id: str,
        note: str | None,
    ) -> tuple[Decision, PatientRecord]:
        """The engine's decision, shown; `note` is the warning after an override just before."""
        decision, after = step(protocol, record, self.prompt.date, observations, patient_id)
        if note is not None:
            decision = attrs.evolve(decision, warnings=(*decision.warnings, note))
        self.prompt.console.print(decision_panel(decision))
        return decision, after

    def follow(
        self, protocol: Protocol, decision: Decision, record: PatientRecord, response: Response
    ) -> PatientRecord:
        """The record after the answer: an override moves the course to the dose chosen."""
        if not followed(decision, response):
            return record
        assert response.dose is not None
        after, note = apply_choice(protocol, record, response.dose, self.prompt.date)
        self.prompt.console.print(note)
        return after

    def answer(
        self, protocol: Protocol, decision: Decision, earlier: Response | None = None
    ) -> Response:
        choices = "accept/override" if decision.action != "refer" else "override"
        if earlier is not None:  # shown, never a default: the decision may differ this time
            self.prompt.console.print(
                f"Answered before: {earlier.kind}"
                + (f", {earlier.dose} ({earlier.reason})" if earlier.kind == "overridden" else "")
            )
        while True:
            text = self.prompt.ask(f"The clinician's answer ({choices})", None).strip().lower()
            if text in ("a", "accept", "accepted") and decision.action != "refer":
                return Response("accepted", clinician=self.clinician)
            if text in ("o", "override", "overridden"):
                chosen = self.dose_chosen(protocol, decision, earlier)
                if chosen is not None:
                    break
                continue
            self.prompt.console.print(f"  Answer {choices}.")
        dose, confirmed = chosen
        reason = self.prompt.required(
            "Reason for the override", earlier.reason if earlier else None
        )
        return Response("overridden", dose, reason, self.clinician, confirmed)

    def dose_chosen(
        self, protocol: Protocol, decision: Decision, earlier: Response | None
    ) -> tuple[str, str | None] | None:
        """The dose chosen instead of the advice, and what the clinician confirmed about it
        (a dose no tablets make, or above the maximum, is given only when confirmed); None
        when the dose typed is the advice itself (answer accept, then)."""
        while True:
            dose = self.prompt.required(
                "Dose actually chosen (e.g. 400 mg qd, or none)", earlier.dose if earlier else None
            )
            if not is_dose(dose):
                self.prompt.console.print(
                    f"  '{dose}' is not a dose: write AMOUNT mg FREQUENCY (qd, bid, qod, weekly), "
                    "or none."
                )
                continue
            if matches(dose, decision) is True:
                self.prompt.console.print(f"  {dose} is what dosing recommends: answer accept.")
                return None
            found = concerns(protocol, dose)
            if not found:
                return dose, None
            for concern in found:
                self.prompt.console.print(
                    f"  [bold red]{concern}[/]", highlight=False, soft_wrap=True
                )
            answer = self.prompt.ask(
                f"Give {dose} all the same? Type confirm, or Enter for another dose", None
            )
            if answer.strip().lower() == "confirm":
                return dose, "; ".join(found)
