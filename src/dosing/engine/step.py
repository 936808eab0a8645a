"""The engine: (protocol, patient record, a visit's observations) -> (decision, next record).

Pure: no I/O, no printing, no clock. A lab older than its maximum age is not used; when a
rule that could fire needs it, the decision is `refer` and says what to measure, never a
dose from old data. A rule may declare that its missing data means "not yet" (`waits`): when
only such rules are undecided, the state's stay applies (the current dose continues) and the
decision names what to measure or assess, and by when.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable

import attrs

from dosing.core.errors import EngineError
from dosing.engine.choosing import MEANWHILE, awaited, choose
from dosing.engine.decision import Decision, RuleRef
from dosing.engine.dosing_step import DoseMaker
from dosing.engine.evaluator import REFERENCE, Evaluator
from dosing.engine.explain import not_met
from dosing.engine.gathering import (
    check_dates,
    conflict_message,
    conflicts,
    gather,
    remember_once,
    twin_present,
    with_tracked,
)
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.guards import Outcome
from dosing.protocol.model import Action, Protocol, State, Transition


def step(
    protocol: Protocol,
    record: PatientRecord,
    visit: dt.date,
    observations: Iterable[Observation] = (),
    patient_id: str | None = None,
    explain: bool = True,
    evaluator: Evaluator = REFERENCE,
) -> tuple[Decision, PatientRecord]:
    """Decide one visit. Returns the decision and the patient's record after it.

    `explain=False` leaves out the per-value reasons (each finding in words): a search over
    thousands of generated visits reads only the action, doses, rules and next check.
    `evaluator` evaluates the guards and words the findings; the default is the reference
    (`evaluator.REFERENCE`), and a compiled one must give the same decisions, byte for byte."""
    origin = record.state or protocol.initial
    if origin not in protocol.states:
        raise EngineError(
            f"'{origin}' is not a state of {protocol.id}; states: {', '.join(protocol.states)}"
        )
    observations = tuple(observations)
    check_dates(record, visit)
    clash = conflicts(observations)
    if clash:
        raise EngineError(conflict_message(clash))
    warnings: list[str] = []
    merged = dict(record.observations)
    for observation in observations:
        if observation.drawn_on > visit:
            raise EngineError(
                f"{observation.name} is dated {observation.drawn_on}, after the visit ({visit})"
            )
        known = merged.get(observation.name)
        if known is None or observation.drawn_on >= known.drawn_on:
            merged[observation.name] = observation
        if observation.name not in protocol.scope:
            warnings.append(f"{observation.name} is not used by {protocol.id}; ignored")
    memory = {name: record.memory.get(name, slot.initial) for name, slot in protocol.memory.items()}
    facts = gather(protocol, record, visit, merged, memory, evaluator)
    noted = remember_once(protocol, memory, facts, protocol.reads.get(origin, frozenset()))
    reads = protocol.reads.get(origin, frozenset())
    noted += [said for name, said in facts.carried.items() if name in reads]
    for name, why in facts.absent.items():
        if name in protocol.labs and name in merged and name in reads:
            warnings.append(why)  # a stale result the rules here would have read
    state = protocol.states[origin]
    choice = choose(state, facts)
    chosen, outcome = choice.chosen, choice.outcome
    decide = _Decider(
        protocol, record, visit, patient_id, facts, merged, memory, warnings, noted, explain
    )
    if outcome is not None and outcome.truth is None:
        decision, after = decide.cannot_decide(state, outcome, chosen)
    elif chosen is not None and outcome is not None:
        decide.note_undecided(choice.undecided, chosen)
        decision, after = decide.fire(state, chosen, outcome, choice.passed)
    elif choice.waiting:
        decision, after = decide.wait(state, choice.waiting, choice.considered)
    else:
        decision, after = decide.stay(state, choice.considered)
    if decision.action == "refer":
        return decision, after  # nothing was acted on: the band the last visit acted in stays
    return decision, with_tracked(protocol, facts, after)


@attrs.define
class _Decider(DoseMaker):
    """A step's moves: fire a rule, stay, or wait for data; the parts it builds on record the
    decision (`recording`) and give the dose (`dosing_step`)."""

    def fire(
        self,
        state: State,
        transition: Transition,
        outcome: Outcome,
        passed: list[tuple[Transition, Outcome]] = [],  # noqa: B006 - read only
    ) -> tuple[Decision, PatientRecord]:
        target = self.protocol.states[transition.target]
        reasons = [transition.message, *self.explain(outcome.findings)]
        if passed and self.explaining:
            above = [rule.rule for rule, _ in passed]
            findings = [found for _, checked in passed for found in checked.findings]
            line = not_met(
                above, findings, outcome.findings, self.protocol.scope, self.memory,
                self.facts.evaluator,
            )  # fmt: skip
            if line is not None:
                reasons.append(line)
        rules = (RuleRef(transition.rule, transition.source),)
        memory = self.remember(state, transition, reasons)
        if memory is None:
            return self.refer(rules, reasons)
        started = self.record.therapy_started_on
        if transition.action == "start" and started is None:
            started = self.visit
        moved = target.name != state.name
        changed = transition.action in ("start", "increase", "decrease", "resume")
        record = PatientRecord(
            state=target.name,
            state_since=self.visit if moved else (self.record.state_since or self.visit),
            therapy_started_on=started,
            dose_since=self.visit if changed else self.record.dose_since,
            memory=memory,
            observations=self.merged,
        )
        return self.conclude(target, transition.action, rules, reasons, record)

    def stay(self, state: State, considered: list[Outcome]) -> tuple[Decision, PatientRecord]:
        findings = [f for outcome in considered for f in outcome.findings]
        if state.stay is None:
            reasons = [
                f"No rule applies in state {state.name}: the clinician decides",
                *self.explain(findings),
            ]
            return self.refer((), reasons)
        reasons = [
            f"No rule fired in state {state.name}",
            *self.explain(self.facts.evaluator.nearest(findings)),
        ]
        return self.stay_as_before(state, state.stay, reasons)

    def stay_as_before(
        self, state: State, stay: Action, reasons: list[str]
    ) -> tuple[Decision, PatientRecord]:
        """The state's stay: the patient stays in the state, memory and labs kept."""
        record = attrs.evolve(
            self.record,
            state=state.name,
            state_since=self.record.state_since or self.visit,
            memory=self.memory,
            observations=self.merged,
        )
        rules = (RuleRef(f"{state.name}:{stay}", state.source),)
        return self.conclude(state, stay, rules, reasons, record)

    def wait(
        self,
        state: State,
        waiting: list[tuple[Transition, Outcome]],
        considered: list[Outcome],
    ) -> tuple[Decision, PatientRecord]:
        """Only rules that wait for missing data could not be decided: not yet. The state's
        stay applies, and the decision names what to measure or assess, and by when."""
        assert state.stay is not None  # waiting is allowed only where staying means something
        lacking = set().union(*(awaited(t, o, self.facts) for t, o in waiting))
        lacking -= {name for name in lacking if twin_present(name, self.facts)}
        for name in sorted(lacking):
            said = self.facts.absent.get(name, f"{name} is not known")
            if said not in self.warnings:
                self.warnings.append(said)
        labels = ", ".join(sorted({self.label(name) for name in lacking}))
        many = len(waiting) > 1
        rules = ", ".join(f"'{transition.rule}'" for transition, _ in waiting)
        meanwhile = MEANWHILE.get(state.stay, f"{state.stay} as before")
        reasons = [
            f"Not yet: {'rules' if many else 'rule'} {rules} {'wait' if many else 'waits'} "
            f"for {labels}; {meanwhile} until then"
        ]
        whys = dict.fromkeys(
            (t.waits.because, t.waits.source) for t, _ in waiting if t.waits is not None
        )
        reasons += [f"Not yet, because {because} ({source})" for because, source in whys]
        findings = (f for outcome in considered for f in outcome.findings)
        reasons += self.explain(self.facts.evaluator.nearest(findings))
        decision, record = self.stay_as_before(state, state.stay, reasons)
        if decision.action == "refer":
            return decision, record  # no dose can be given as the state says
        next_check = decision.next_check
        rechecks = [t.waits.recheck_days for t, _ in waiting if t.waits and t.waits.recheck_days]
        if rechecks:
            soonest = self.visit + dt.timedelta(days=math.ceil(min(rechecks)))
            next_check = soonest if next_check is None else min(next_check, soonest)
        by = f" by the next check ({next_check})" if next_check else ""
        return attrs.evolve(
            decision,
            next_check=next_check,
            warnings=(*decision.warnings, f"Still to measure or assess{by}: {labels}"),
            awaiting=tuple(sorted(lacking)),
        ), record
