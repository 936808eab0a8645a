"""Building what a protocol is checked against: its label invariants, its properties, and
its scenarios (visits with the decision each must give).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from dosing.protocol.build_doses import DoseBuilder
from dosing.protocol.checks import DOSES_PER_DAY
from dosing.protocol.model import (
    ACTIONS,
    Invariant,
    LabInput,
    Property,
    Protocol,
    Scenario,
    ScenarioVisit,
    Source,
)


class ChecksBuilder(DoseBuilder):
    """The `invariants:`, `properties:` and `scenarios:` sections."""

    def invariants(
        self, protocol: Protocol, sources: Mapping[str, Source]
    ) -> tuple[Invariant, ...]:
        """What the sources forbid, in their own words: bound against what can be observed
        (labs, facts, assessments, derived values, days on therapy, site parameters), never
        against the rules' own memory, so that a wrong rule cannot pass its own test."""
        internal = {*protocol.memory, "days_in_state"}  # the dose history is observable
        scope = {name: kind for name, kind in protocol.scope.items() if name not in internal}
        rules = {t.rule for state in protocol.states.values() for t in state.transitions}
        drugs = {dose.drug for state in protocol.states.values() for dose in state.doses}
        found = []
        for index, entry in enumerate(self.entry.invariants):
            path = f"invariants[{index}]"
            forms = {
                "ceiling": entry.ceiling,
                "floor": entry.floor,
                "never": entry.never,
                "stays_at_most_after": entry.stays_at_most_after,
                "recheck_within": entry.recheck_within,
            }
            given = [form for form, value in forms.items() if value is not None]
            if len(given) != 1:
                raise self.fail(
                    path,
                    "an invariant says one thing: exactly one of ceiling, floor, never, "
                    f"stays_at_most_after or recheck_within (found {', '.join(given) or 'none'})",
                )
            kind = given[0]
            if not entry.quote.strip():
                raise self.fail(f"{path}.quote", "quote the source sentence the invariant encodes")
            drug = entry.drug or protocol.drug
            if drug not in drugs:
                raise self.fail(f"{path}.drug", f"'{drug}' is not dosed by this protocol")
            amount = None
            if kind in ("ceiling", "floor"):
                amount = self.daily(str(forms[kind]), f"{path}.{kind}")
            elif kind == "recheck_within":
                amount = self.quantity(str(entry.recheck_within), "days", f"{path}.recheck_within")
            actions = entry.never if entry.never is not None else entry.on
            for number, action in enumerate(actions):
                if action not in (*ACTIONS, "dose"):
                    where = f"{path}.{'never' if entry.never is not None else 'on'}[{number}]"
                    raise self.fail(
                        where, f"'{action}' is not an action ({', '.join(ACTIONS)}, or dose)"
                    )
            events = entry.stays_at_most_after or []
            for key, names in (("after", entry.after), ("stays_at_most_after", events)):
                for number, event in enumerate(names):
                    if event not in ACTIONS and event not in rules:
                        raise self.fail(
                            f"{path}.{key}[{number}]", f"'{event}' is neither an action nor a rule"
                        )
            exempt = entry.until if kind == "stays_at_most_after" else entry.except_
            for number, rule in enumerate(exempt):
                if rule not in rules:
                    key = "until" if kind == "stays_at_most_after" else "except"
                    raise self.fail(f"{path}.{key}[{number}]", f"no rule '{rule}' in this protocol")
            ended_by = [] if kind == "stays_at_most_after" else entry.until
            if ended_by and not (entry.after or entry.once):
                raise self.fail(
                    f"{path}.until", "'until' ends what 'after' or 'once' started: give one"
                )
            for number, event in enumerate(ended_by):
                if event not in ACTIONS and event not in rules:
                    raise self.fail(
                        f"{path}.until[{number}]", f"'{event}' is neither an action nor a rule"
                    )
            if entry.within is not None and not entry.after:
                raise self.fail(f"{path}.within", "'within' counts from an event: give 'after'")
            if entry.times < 1:
                raise self.fail(f"{path}.times", "times is a whole number, 1 or more")
            found.append(
                Invariant(
                    name=entry.name,
                    kind=kind,  # type: ignore[arg-type]
                    source=self.cite(entry.source, sources, f"{path}.source"),
                    quote=" ".join(entry.quote.split()),
                    amount=amount,
                    drug=drug,
                    actions=frozenset(actions),
                    while_=None
                    if entry.while_ is None
                    else self.guard(entry.while_, scope, f"{path}.while"),
                    while_text=" ".join((entry.while_ or "").split()),
                    once=None
                    if entry.once is None
                    else self.guard(entry.once, scope, f"{path}.once"),
                    once_text=" ".join((entry.once or "").split()),
                    after=frozenset(events if kind == "stays_at_most_after" else entry.after),
                    times=entry.times,
                    within_days=None
                    if entry.within is None
                    else self.quantity(entry.within, "days", f"{path}.within"),
                    exempt=frozenset(exempt),
                    ended_by=frozenset(ended_by),
                    below=entry.below,
                    line=self.where.line(path),
                )
            )
        return tuple(found)

    def daily(self, text: str, path: str) -> Fraction:
        """'25 mg bid' or 'child_max_dose qd' (a site parameter and a frequency): mg per day."""
        amount, _, frequency = text.strip().rpartition(" ")
        if frequency not in DOSES_PER_DAY or not amount:
            raise self.fail(
                path,
                f"'{text}': write a dose and how often, e.g. '25 mg bid' "
                f"({', '.join(DOSES_PER_DAY)})",
            )
        return self.quantity(amount, "mg", path) * DOSES_PER_DAY[frequency]

    def properties(self, labs: Mapping[str, LabInput]) -> tuple[Property, ...]:
        found = []
        for index, entry in enumerate(self.entry.properties):
            path = f"properties[{index}]"
            for name in entry.lower_never_raises:
                if name not in labs:
                    raise self.fail(
                        f"{path}.lower_never_raises", f"'{name}' is not a lab of this protocol"
                    )
            for flag in ("within_max_daily_dose", "rules_within_max_daily_dose"):
                if getattr(entry, flag) and self.entry.limits.max_daily_dose is None:
                    raise self.fail(path, f"{flag} needs limits.max_daily_dose")
            found.append(
                Property(
                    entry.name,
                    tuple(entry.lower_never_raises),
                    entry.within_max_daily_dose,
                    entry.rules_within_max_daily_dose,
                )
            )
        return tuple(found)

    def scenarios(self, protocol: Protocol) -> tuple[Scenario, ...]:
        defaults = self.entry.scenario_defaults
        scenarios = []
        for index, entry in enumerate(self.entry.scenarios):
            path = f"scenarios[{index}]"
            visits = []
            for number, visit in enumerate(entry.visits):
                observed: dict[str, tuple[str, int]] = {}
                base = {**defaults.labs} if entry.defaults else {}
                for key, value in {
                    **defaults.patient,
                    **entry.patient,
                    **base,
                    **visit.labs,
                }.items():
                    if key in visit.omit:
                        continue
                    observed[key] = (str(value), visit.drawn_days_before.get(key, 0))
                expect = visit.expect
                visits.append(
                    ScenarioVisit(
                        day=visit.day,
                        observations=observed,
                        expect_state=expect.state,
                        expect_action=expect.action,
                        expect_doses=None if expect.doses is None else tuple(expect.doses),
                        expect_reasons=tuple(expect.reasons),
                        expect_warnings=tuple(expect.warnings),
                        expect_next_check_days=expect.next_check_in_days,
                        expect_rule=expect.rule,
                    )
                )
                if expect.state is not None and expect.state not in protocol.states:
                    raise self.fail(
                        f"{path}.visits[{number}].expect.state", f"no state '{expect.state}'"
                    )
            start_state = entry.start.state if entry.start else None
            if start_state is not None and start_state not in protocol.states:
                raise self.fail(f"{path}.start.state", f"no state '{start_state}'")
            scenarios.append(
                Scenario(
                    name=entry.name,
                    visits=tuple(visits),
                    start_state=start_state,
                    start_memory=self.start_memory(entry.start, protocol, f"{path}.start.memory"),
                    start_days_on_therapy=entry.start.days_on_therapy if entry.start else None,
                    start_days_at_dose=entry.start.days_at_dose if entry.start else None,
                    start_days_in_state=entry.start.days_in_state if entry.start else None,
                    line=self.where.line(path),
                    quote=entry.quote,
                )
            )
        return tuple(scenarios)
