"""The decision a step records: its reasons explained in the clinic's words, a referral, a
stay, and what could not be decided.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from fractions import Fraction

import attrs

from dosing.engine.choosing import STATED_ALL_THE_SAME, Facts
from dosing.engine.decision import Decision, DoseLine, RuleRef
from dosing.engine.gathering import twin_present
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.guards import Finding, Outcome
from dosing.protocol.model import Action, Protocol, State, Transition


@attrs.define
class DecisionRecorder:
    """One visit being decided: the protocol, the record and the values, and how the decision
    and its reasons are written."""

    protocol: Protocol
    record: PatientRecord
    visit: dt.date
    patient_id: str | None
    facts: Facts
    merged: dict[str, Observation]
    memory: dict[str, Fraction | str]
    warnings: list[str]
    noted: list[str] = attrs.Factory(list)
    """Reasons for 'once' counts set at this visit."""
    explaining: bool = True

    def label(self, name: str) -> str:
        kind = self.protocol.scope.get(name)
        return kind.label if kind is not None else name

    def explain(self, findings: Iterable[Finding]) -> list[str]:
        texts: list[str] = []
        if not self.explaining:
            return texts
        for finding in findings:
            text = self.facts.evaluator.describe(
                finding, self.protocol.scope, self.facts.entered, self.facts.defaults_used
            )
            derivation = self.facts.derivations.get(getattr(finding.atom, "subject", ""))
            if derivation:
                text = f"{text} [{derivation}]"
            if text not in texts:
                texts.append(text)
        return texts

    def decision(
        self,
        state: str,
        action: Action,
        doses: tuple[DoseLine, ...],
        next_check: dt.date | None,
        rules: tuple[RuleRef, ...],
        reasons: list[str],
    ) -> Decision:
        return Decision(
            patient_id=self.patient_id,
            date=self.visit,
            protocol=self.protocol.id,
            protocol_version=self.protocol.version,
            protocol_sha256=self.protocol.sha256,
            state=state,
            action=action,
            doses=doses,
            next_check=next_check,
            rules=rules,
            reasons=(*reasons, *self.noted),
            warnings=tuple(dict.fromkeys(self.warnings)),  # each warning once
        )

    def refer(
        self, rules: tuple[RuleRef, ...], reasons: list[str]
    ) -> tuple[Decision, PatientRecord]:
        """No dose: the clinician decides, and the patient stays where they were."""
        record = self.unchanged()
        assert record.state is not None
        return self.decision(record.state, "refer", (), None, rules, reasons), record

    def unchanged(self) -> PatientRecord:
        """The record as it was, with this visit's observations and 'once' counts."""
        return attrs.evolve(
            self.record,
            state=self.record.state or self.protocol.initial,
            memory=self.memory,
            observations=self.merged,
        )

    def cannot_decide(
        self, state: State, outcome: Outcome, transition: Transition | None
    ) -> tuple[Decision, PatientRecord]:
        # Ask for everything the state's rules read and lack, so one new draw settles it.
        reads = self.protocol.reads.get(state.name, frozenset())
        lacking = set(outcome.missing) | {name for name in reads if name in self.facts.absent}
        # An analyte measured in one of its two measures is not lacking in the other.
        lacking -= {name for name in lacking if twin_present(name, self.facts)}
        for name in sorted(lacking):
            said = self.facts.absent.get(name, f"{name} is not known")
            if said not in self.warnings:  # one analyte in two measures is asked for once
                self.warnings.append(said)
        labels = ", ".join(sorted({self.label(name) for name in lacking}))
        rule = f"'{transition.rule}' " if transition else ""
        blocking = ", ".join(sorted({self.label(name) for name in outcome.missing}))
        reasons = [
            f"Cannot decide in state {state.name}: rule {rule}needs {blocking}; no dose is "
            f"recommended from missing or stale data (needed here: {labels})",
            *self.explain(outcome.findings),
        ]
        return self.refer((), reasons)

    def note_undecided(
        self, undecided: list[tuple[Transition, Outcome]], chosen: Transition
    ) -> None:
        """Say which rules above a stated hold, stop or exclusion could not be decided, and
        what they lack."""
        if not undecided:
            return
        missing = sorted({name for _, outcome in undecided for name in outcome.missing})
        lacking = ", ".join(sorted({self.label(name) for name in missing}))
        rules = ", ".join(f"'{transition.rule}'" for transition, _ in undecided)
        self.warnings.append(
            f"{'rules' if len(undecided) > 1 else 'rule'} {rules} could not be decided "
            f"(needs {lacking}); {STATED_ALL_THE_SAME[chosen.action]}: {lacking} still to "
            "be measured or assessed before any dose"
        )
        for name in missing:
            said = self.facts.absent.get(name)
            if said is not None and said not in self.warnings:
                self.warnings.append(said)
