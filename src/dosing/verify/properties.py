"""Protocol properties, evaluated on timelines: pure, so a generator can search for
counterexamples (the tests drive it with hypothesis, which shrinks them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from fractions import Fraction

import attrs

from dosing.engine.compiled import compiled
from dosing.engine.decision import Decision, daily_amount
from dosing.engine.dosing_step import OVER_MAXIMUM
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Property, Protocol

Visit = tuple[dt.date, Sequence[Observation]]


def daily_dose(protocol: Protocol, decision: Decision) -> Fraction:
    """The protocol drug's total mg per day in a decision (0 when no dose)."""
    return daily_amount(decision.doses, protocol.drug)


def over_maximum(
    protocol: Protocol,
    record: PatientRecord,
    visits: Sequence[Visit],
    rules_too: bool = False,
) -> str | None:
    """The first visit recommending more than the maximum daily dose, described, or None.

    With `rules_too`, also the first visit whose rules asked for more (the engine refers then
    instead of recommending it): a protocol that should never need that safeguard."""
    for date, observations in visits:
        decision, record = step(protocol, record, date, observations)
        broken = over_maximum_at(protocol, decision, rules_too)
        if broken is not None:
            return broken
    return None


def over_maximum_at(protocol: Protocol, decision: Decision, rules_too: bool = False) -> str | None:
    """Whether one decision recommends more than the maximum (or, `rules_too`, its rules
    asked for more), described."""
    assert protocol.max_daily_dose is not None
    daily = daily_dose(protocol, decision)
    if daily > protocol.max_daily_dose:
        return (
            f"{decision.date}: {daily} mg/day in {decision.state} above {protocol.max_daily_dose}"
        )
    guarded = next((w for w in decision.warnings if OVER_MAXIMUM in w), None)
    if rules_too and guarded is not None:
        return f"{decision.date}: in {decision.state}, {guarded}"
    return None


def lower_raises(
    protocol: Protocol,
    prop: Property,
    record: PatientRecord,
    date: dt.date,
    observations: Sequence[Observation],
    lab: str,
    lower: Fraction,
    before: Decision | None = None,
) -> str | None:
    """Whether replacing `lab` by a lower value raises the dose from the same record
    (`before`: the decision with the value as observed, when already made).

    Only two recommended doses are compared: a referral (say, for an assessment that only a
    higher count makes relevant) recommends none, so it is neither higher nor lower."""
    assert lab in prop.lower_never_raises
    current = next((o for o in observations if o.name == lab), None)
    if current is None or not isinstance(current.value, Fraction) or lower >= current.value:
        return None
    lowered = [o for o in observations if o.name != lab]
    lowered.append(attrs.evolve(current, value=lower, entered=f"{lower}"))
    fast = compiled(protocol)  # held to the reference by tests/engine/test_compiled.py
    if before is None:
        before, _ = step(protocol, record, date, observations, explain=False, evaluator=fast)
    after, _ = step(protocol, record, date, lowered, explain=False, evaluator=fast)
    if "refer" in (before.action, after.action):
        return None  # a referral recommends no dose: the clinician decides
    if daily_dose(protocol, after) > daily_dose(protocol, before):
        return (
            f"in {record.state or protocol.initial}: {lab} {float(current.value):g} gives "
            f"{daily_dose(protocol, before)} mg/day, {float(lower):g} gives "
            f"{daily_dose(protocol, after)} mg/day"
        )
    return None
