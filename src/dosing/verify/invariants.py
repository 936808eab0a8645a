"""Label invariants, watched along a course: what a source forbids, checked against the
decisions the engine actually made, visit by visit.

Pure: a `CourseWatch` is given each visit (the record before it, the observations and the
decision) and answers with the first invariant the visit breaks. It reads the values the
engine reads at that visit (`engine.visit_values`: a stale lab is unknown), never the rules'
own memory, so a wrong rule cannot satisfy its own invariant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from fractions import Fraction

import attrs

from dosing.core.units import format_number
from dosing.engine.decision import Decision, daily_amount
from dosing.engine.gathering import visit_values
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.guards import Value, evaluate
from dosing.protocol.model import Invariant, Protocol


@attrs.frozen
class Breach:
    """An invariant broken at a visit, and how."""

    invariant: Invariant
    date: dt.date
    message: str


@attrs.define
class _Seen:
    """What one invariant has seen of the course so far."""

    once_on: dt.date | None = None
    events: list[dt.date] = attrs.Factory(list)
    bound: Fraction | None = None
    strict: bool = False


class _Made:
    """One decision, read once for every invariant: the rules that fired, the daily amount
    per drug, and (only for a breach) its description."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.fired = frozenset(rule.id for rule in decision.rules)
        self._daily: dict[str, Fraction] = {}

    def daily(self, drug: str) -> Fraction:
        if drug not in self._daily:
            self._daily[drug] = daily_amount(self.decision.doses, drug)
        return self._daily[drug]

    def text(self) -> str:
        return _decided(self.decision)


@attrs.define
class CourseWatch:
    """Follows one patient's course and reports the first invariant a decision breaks."""

    protocol: Protocol
    invariants: tuple[Invariant, ...]
    seen: dict[str, _Seen] = attrs.Factory(dict)
    last_dose: dict[str, Fraction] = attrs.Factory(dict)
    """mg/day last given, per drug (the dose at an interruption)."""

    @classmethod
    def of(cls, protocol: Protocol) -> CourseWatch:
        return cls(protocol, protocol.invariants)

    def visit(
        self,
        record: PatientRecord,
        date: dt.date,
        observations: Iterable[Observation],
        decision: Decision,
    ) -> list[Breach]:
        """Check one visit (`record` is the patient before it): the invariants it breaks.

        What the decision did is checked first; the visit's values are read only when an
        invariant needs them (a 'once' to update, or a decision its conditions might forbid)."""
        known: dict[str, Value | None] | None = None

        def values() -> dict[str, Value | None]:
            nonlocal known
            if known is None:
                known = visit_values(self.protocol, record, date, observations)
                if record.therapy_started_on is None:
                    known["days_on_therapy"] = Fraction(0)  # not started: no day on therapy
            return known

        breaches = []
        made = _Made(decision)
        for invariant in self.invariants:
            seen = self.seen.setdefault(invariant.name, _Seen())
            once = invariant.once
            if once is not None and seen.once_on is None and evaluate(once, values()).truth:
                seen.once_on = date
            found = self._breaks(invariant, seen, date, made)
            if found is not None:
                unknown = self._applies(invariant, seen, values(), date, decision.awaiting)
                if unknown is not None:
                    if unknown:  # the condition could not be ruled out: say what was missing
                        found += f"; not known at this visit: {', '.join(sorted(unknown))}"
                    breaches.append(Breach(invariant, date, found))
            self._remember(invariant, seen, date, made)
        for drug in {dose.drug for dose in decision.doses}:
            self.last_dose[drug] = made.daily(drug)
        return breaches

    def _applies(
        self,
        invariant: Invariant,
        seen: _Seen,
        values: Mapping[str, Value | None],
        date: dt.date,
        awaiting: tuple[str, ...] = (),
    ) -> frozenset[str] | None:
        """None when the invariant does not apply at this visit; otherwise the names its
        condition lacked (empty when it was known to hold).

        `awaiting`: what the decision's rules declared they wait for ("not yet", cited in the
        protocol and listed by `dosing check`): a condition unknown only for want of that
        data does not apply: the visit continued as before, it decided nothing on it."""
        if invariant.once is not None and seen.once_on is None:
            return None
        # Unknown counts as holding: a missing value never excuses what the source forbids.
        unknown: frozenset[str] = frozenset()
        if invariant.while_ is not None:
            condition = evaluate(invariant.while_, values)
            if condition.truth is False:
                return None
            if condition.truth is None:
                if condition.missing <= frozenset(awaiting):
                    return None
                unknown = condition.missing
        if invariant.kind == "stays_at_most_after" or not invariant.after:
            return unknown
        if len(seen.events) < invariant.times:
            return None
        within = invariant.within_days
        return unknown if within is None or (date - seen.events[-1]).days < within else None

    def _breaks(self, invariant: Invariant, seen: _Seen, date: dt.date, made: _Made) -> str | None:
        decision, fired = made.decision, made.fired
        daily = made.daily(invariant.drug)
        what = made.text
        if invariant.kind == "stays_at_most_after":
            if seen.bound is None or daily == 0 or fired & invariant.exempt:
                return None
            over = daily >= seen.bound if seen.strict else daily > seen.bound
            if not over:
                return None
            limit = f"{'below' if seen.strict else 'at most'} {_mg(seen.bound)}"
            return f"{date}: {what()}, where the dose stays {limit} after {_events(invariant)}"
        if fired & invariant.exempt:
            return None
        if invariant.kind == "never":
            forbidden = decision.action in invariant.actions or (
                "dose" in invariant.actions and daily > 0
            )
            return f"{date}: {what()}{_context(invariant)}" if forbidden else None
        if invariant.kind == "recheck_within":
            assert invariant.amount is not None
            if decision.next_check is None or (
                invariant.actions and decision.action not in invariant.actions
            ):
                return None
            days = (decision.next_check - date).days
            if days <= invariant.amount:
                return None
            return (
                f"{date}: {what()}, next check in {days} days, not within "
                f"{format_number(invariant.amount)} days{_context(invariant)}"
            )
        assert invariant.amount is not None
        if daily == 0 or (invariant.actions and decision.action not in invariant.actions):
            return None
        if invariant.kind == "ceiling" and daily > invariant.amount:
            return f"{date}: {what()}, above {_mg(invariant.amount)}{_context(invariant)}"
        if invariant.kind == "floor" and daily < invariant.amount:
            return f"{date}: {what()}, below {_mg(invariant.amount)}{_context(invariant)}"
        return None

    def _remember(self, invariant: Invariant, seen: _Seen, date: dt.date, made: _Made) -> None:
        decision, fired = made.decision, made.fired
        event = decision.action in invariant.after or bool(fired & invariant.after)
        if invariant.kind != "stays_at_most_after":
            if decision.action in invariant.ended_by or fired & invariant.ended_by:
                seen.events.clear()  # 'until the next resume': the period ends
                seen.once_on = None
            if event:
                seen.events.append(date)
            return
        daily = made.daily(invariant.drug)
        if fired & invariant.exempt and daily > 0:
            seen.bound, seen.strict = daily, False  # the named rule sets the new level
        if not event:
            return
        seen.events.append(date)
        if daily > 0:  # a reduction: at most the new dose from now on
            seen.bound, seen.strict = daily, False
        elif invariant.drug in self.last_dose:  # a hold: the dose at the interruption
            seen.bound, seen.strict = self.last_dose[invariant.drug], invariant.below


def _mg(daily: Fraction) -> str:
    return f"{format_number(daily)} mg/day"


def _decided(decision: Decision) -> str:
    doses = ", ".join(str(dose) for dose in decision.doses)
    rules = ", ".join(rule.id for rule in decision.rules) or "no rule"
    return f"{decision.action.upper()}{' ' + doses if doses else ''} (rule {rules})"


def _events(invariant: Invariant) -> str:
    return " or ".join(sorted(invariant.after))


def _context(invariant: Invariant) -> str:
    parts = []
    if invariant.while_text:
        parts.append(f"while {invariant.while_text}")
    if invariant.once_text:
        since = (
            " since the last " + " or ".join(sorted(invariant.ended_by))
            if invariant.ended_by and not invariant.after
            else ""
        )
        parts.append(f"once {invariant.once_text} has held{since}")
    if invariant.after:
        times = f" {invariant.times} times" if invariant.times > 1 else ""
        within = (
            f" within {format_number(invariant.within_days)} days"
            if invariant.within_days is not None
            else ""
        )
        until = f" until {' or '.join(sorted(invariant.ended_by))}" if invariant.ended_by else ""
        parts.append(f"after {_events(invariant)}{times}{within}{until}")
    return f" ({'; '.join(parts)})" if parts else ""
