"""Change impact between two versions of a protocol: the rules that changed, and with a
timeline, every decision that would be different."""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from dosing.core.units import format_number
from dosing.engine.decision import Decision
from dosing.protocol.model import Protocol, State, Transition
from dosing.replay.replay import replay
from dosing.replay.timeline import Timeline


@attrs.frozen
class RuleChange:
    """One difference between the versions: where, and what it was and is."""

    where: str
    what: str
    old: str
    new: str


@attrs.frozen
class DecisionChange:
    """A visit decided differently by the new version."""

    patient_id: str
    date: str
    old: str
    new: str


def rule_changes(old: Protocol, new: Protocol) -> list[RuleChange]:
    """States, doses, rules, parameters and limits that differ, in file order."""
    changes = []
    for name in dict.fromkeys([*old.states, *new.states]):
        before, after = old.states.get(name), new.states.get(name)
        if before is None or after is None:
            changes.append(RuleChange(f"states.{name}", "state", _present(before), _present(after)))
            continue
        changes += _state_changes(name, before, after)
    for name in dict.fromkeys([*old.parameters, *new.parameters]):
        a, b = old.parameters.get(name), new.parameters.get(name)
        if (a and a.value) != (b and b.value):
            changes.append(
                RuleChange(
                    f"parameters.{name}", "value", a.value if a else "-", b.value if b else "-"
                )
            )
    if old.max_daily_dose != new.max_daily_dose:
        changes.append(
            RuleChange(
                "limits.max_daily_dose", "value", _mg(old.max_daily_dose), _mg(new.max_daily_dose)
            )
        )
    return changes


def _present(state: State | None) -> str:
    return "absent" if state is None else "present"


def _mg(value: object) -> str:
    return "-" if value is None else f"{format_number(value)} mg"  # type: ignore[arg-type]


def _state_changes(name: str, before: State, after: State) -> Iterator[RuleChange]:
    if before.doses != after.doses:
        yield RuleChange(f"states.{name}", "doses", _doses(before), _doses(after))
    if before.stay != after.stay:
        yield RuleChange(f"states.{name}", "when no rule fires", str(before.stay), str(after.stay))
    old_rules = {t.rule: t for t in before.transitions}
    new_rules = {t.rule: t for t in after.transitions}
    for rule in dict.fromkeys([*old_rules, *new_rules]):
        a, b = old_rules.get(rule), new_rules.get(rule)
        where = f"states.{name}: {rule}"
        if a is None or b is None:
            yield RuleChange(where, "rule", _describe(a), _describe(b))
            continue
        for field, label in (
            ("when_text", "when"),
            ("target", "to"),
            ("priority", "priority"),
            ("action", "action"),
            ("source", "source"),
            ("effects", "remember"),
        ):
            if getattr(a, field) != getattr(b, field):
                yield RuleChange(where, label, str(getattr(a, field)), str(getattr(b, field)))
        if a.waits != b.waits:
            yield RuleChange(where, "waits for", _waits(a), _waits(b))


def _waits(transition: Transition) -> str:
    wait = transition.waits
    return "-" if wait is None else f"{', '.join(wait.data)} ({wait.because}; {wait.source})"


def _describe(transition: Transition | None) -> str:
    if transition is None:
        return "absent"
    return f"{transition.when_text} -> {transition.target} ({transition.action})"


def _doses(state: State) -> str:
    parts = []
    for dose in state.doses:
        amount = dose.amount if dose.amount is not None else dose.per_m2
        unit = "mg" if dose.amount is not None else "mg/m²"
        shown = format_number(amount) if amount else dose.level_from
        parts.append(f"{dose.drug} {shown} {unit} {dose.frequency}")
    return ", ".join(parts) or "none"


def decision_changes(old: Protocol, new: Protocol, timeline: Timeline) -> list[DecisionChange]:
    """Replay the same timeline under both versions; every visit decided differently."""
    before = {(d.patient_id, d.date): d for p in replay(old, timeline) for d in p.decisions}
    after = {(d.patient_id, d.date): d for p in replay(new, timeline) for d in p.decisions}
    changes = []
    for key in dict.fromkeys([*before, *after]):
        a, b = before.get(key), after.get(key)
        if decision_summary(a) != decision_summary(b):
            patient, date = key
            changes.append(
                DecisionChange(patient or "", str(date), decision_summary(a), decision_summary(b))
            )
    return changes


def decision_summary(decision: Decision | None) -> str:
    """'hold no dose [hepatotoxicity-hold] -> hold_hepatic': what a decision comes to."""
    if decision is None:
        return "not decided"
    doses = ", ".join(dose.short() for dose in decision.doses) or "no dose"
    rules = ", ".join(rule.id for rule in decision.rules)
    return f"{decision.action} {doses} [{rules}] -> {decision.state}"
