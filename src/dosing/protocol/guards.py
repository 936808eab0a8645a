"""Bound guards: typed, exact thresholds, and three-valued evaluation.

A guard is written as text in a protocol file, parsed by `guard_parser` and bound by
`guard_binding`; what the engine holds is this bound form, where every threshold is an exact
fraction in the subject's canonical unit. Evaluation is Kleene logic: a missing value makes a
comparison unknown, and unknown only matters where it could change the answer.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from fractions import Fraction

import attrs

# ---------------------------------------------------------------------------- types


@attrs.frozen
class QuantityType:
    """A value with a unit; comparisons convert the threshold into `unit` exactly."""

    unit: str
    label: str
    molar_mass: str | None = None


@attrs.frozen
class CategoryType:
    """A value from a fixed set (yes/no, response, a state name)."""

    values: tuple[str, ...]
    label: str


@attrs.frozen
class CountType:
    """A plain number without a unit (how many holds so far)."""

    label: str


NameType = QuantityType | CategoryType | CountType
Scope = Mapping[str, NameType]


# ---------------------------------------------------------------------------- bound guards

WHOLE_DAYS = frozenset({"days_on_therapy", "days_in_state", "days_at_dose"})
"""Durations the engine derives from the patient record, always whole days."""

COMPARE: dict[str, Callable[[Fraction, Fraction], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
NEGATED_OP = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


@attrs.frozen
class Comparison:
    """subject OP factor [* reference], all in the subject's canonical unit, exactly."""

    subject: str
    op: str
    factor: Fraction
    reference: str | None
    unit: str
    text: str
    completed_years: bool = False
    """An age against a threshold in years: the age is taken in completed years, as trial
    eligibility counts it ('<= 22 years' includes a 22-year-old until the 23rd birthday)."""

    def threshold(self, values: Mapping[str, Value]) -> Fraction | None:
        if self.reference is None:
            return self.factor
        reference = values.get(self.reference)
        return None if reference is None else self.factor * _number(reference)


@attrs.frozen
class Membership:
    """subject is one of `values`."""

    subject: str
    values: frozenset[str]
    text: str
    domain: frozenset[str] = frozenset()
    """Every value the subject can take (for negation in analysis)."""


@attrs.frozen
class Tally:
    """count(items) OP threshold: how many of the conditions hold, against a plain number."""

    items: tuple[Guard, ...]
    op: str
    threshold: Fraction
    text: str
    counted: str
    """The count(...) text, the variable this atom constrains in analysis."""


@attrs.frozen
class Either:
    """One analyte reported in one of two measures that do not convert (triglycerides in
    mg/dL or in mmol/L): each comparison reads its own measure, and the value that was
    measured is compared with the threshold written in its unit."""

    items: tuple[Comparison, ...]
    text: str


@attrs.frozen
class Conjunction:
    items: tuple[Guard, ...]


@attrs.frozen
class Disjunction:
    items: tuple[Guard, ...]


@attrs.frozen
class Complement:
    item: Guard


Guard = Comparison | Membership | Tally | Either | Conjunction | Disjunction | Complement
Value = Fraction | str


def _number(value: Value) -> Fraction:
    if isinstance(value, str):
        raise TypeError("a category is not a number")
    return value


def exact_years(comparison: Comparison) -> Guard:
    """A completed-years comparison as plain comparisons of the exact age, for analysis:
    floor(age) <= 22 is age < 23, floor(age) == 15 is 15 <= age < 16."""
    if not comparison.completed_years:
        return comparison
    plain = attrs.evolve(comparison, completed_years=False)
    low, high = Fraction(math.ceil(comparison.factor)), Fraction(math.floor(comparison.factor) + 1)
    if comparison.op == "<":
        return attrs.evolve(plain, factor=low)
    if comparison.op == ">=":
        return attrs.evolve(plain, factor=low)
    if comparison.op == "<=":
        return attrs.evolve(plain, op="<", factor=high)
    if comparison.op == ">":
        return attrs.evolve(plain, op=">=", factor=high)
    within = Conjunction(
        (attrs.evolve(plain, op=">=", factor=low), attrs.evolve(plain, op="<", factor=high))
    )
    return within if comparison.op == "==" else Complement(within)


def names_in(guard: Guard) -> frozenset[str]:
    """Every name a guard reads."""
    if isinstance(guard, Comparison):
        return frozenset({guard.subject} | ({guard.reference} if guard.reference else set()))
    if isinstance(guard, Membership):
        return frozenset({guard.subject})
    if isinstance(guard, Complement):
        return names_in(guard.item)
    return frozenset().union(*(names_in(item) for item in guard.items))


def map_comparisons(guard: Guard, change: Callable[[Comparison], Comparison]) -> Guard:
    """The guard with every comparison passed through `change` (the structure kept)."""
    if isinstance(guard, Comparison):
        return change(guard)
    if isinstance(guard, Membership):
        return guard
    if isinstance(guard, Complement):
        return Complement(map_comparisons(guard.item, change))
    if isinstance(guard, Either):
        return attrs.evolve(guard, items=tuple(change(item) for item in guard.items))
    items = tuple(map_comparisons(item, change) for item in guard.items)
    if isinstance(guard, Tally):
        return attrs.evolve(guard, items=items)
    return Conjunction(items) if isinstance(guard, Conjunction) else Disjunction(items)


def comparisons_in(guard: Guard) -> tuple[Comparison | Membership, ...]:
    """Every atom of a guard, in reading order."""
    if isinstance(guard, Comparison | Membership):
        return (guard,)
    if isinstance(guard, Complement):
        return comparisons_in(guard.item)
    return tuple(atom for item in guard.items for atom in comparisons_in(item))


# ---------------------------------------------------------------------------- evaluation


@attrs.frozen
class Finding:
    """One atom's result, with the values it used: the raw material of a decision's reasons."""

    atom: Comparison | Membership | Tally
    holds: bool
    value: Value
    threshold: Fraction | None = None
    reference_value: Fraction | None = None


@attrs.frozen
class Outcome:
    """A guard's truth (None: unknown), the findings behind it, and the names it lacked."""

    truth: bool | None
    findings: tuple[Finding, ...] = ()
    missing: frozenset[str] = frozenset()


def _tally(guard: Tally, values: Mapping[str, Value | None]) -> Outcome:
    """Counted three-valued: decided when every possible count gives the same answer."""
    parts = [evaluate(item, values) for item in guard.items]
    met = sum(1 for part in parts if part.truth is True)
    open_ = sum(1 for part in parts if part.truth is None)
    compare = COMPARE[guard.op]
    outcomes = {compare(Fraction(count), guard.threshold) for count in range(met, met + open_ + 1)}
    findings = tuple(f for part in parts if part.truth is True for f in part.findings)
    if len(outcomes) > 1:
        missing = frozenset().union(*(part.missing for part in parts if part.truth is None))
        return Outcome(None, findings, missing)
    holds = outcomes.pop()
    summary = Finding(guard, holds, Fraction(met), guard.threshold)
    return Outcome(holds, (summary, *findings))


def _either(guard: Either, values: Mapping[str, Value | None]) -> Outcome:
    """Decided by the measure(s) present; two measures that disagree decide nothing."""
    parts = [evaluate(item, values) for item in guard.items]
    known = [part for part in parts if part.truth is not None]
    if not known:
        return Outcome(None, (), frozenset({guard.items[0].subject}))
    truths = {part.truth for part in known}
    findings = tuple(f for part in known for f in part.findings)
    if len(truths) > 1:
        return Outcome(None, findings, frozenset(item.subject for item in guard.items))
    return Outcome(truths.pop(), findings)


def evaluate(guard: Guard, values: Mapping[str, Value | None]) -> Outcome:
    """Three-valued evaluation. Findings explain the result: what made it true, or false."""
    if isinstance(guard, Comparison):
        value = values.get(guard.subject)
        threshold = guard.threshold(values)  # type: ignore[arg-type]
        if value is None or threshold is None:
            lacking = {guard.subject} if value is None else set()
            if guard.reference is not None and values.get(guard.reference) is None:
                lacking.add(guard.reference)
            return Outcome(None, (), frozenset(lacking))
        number = _number(value)
        compared = Fraction(math.floor(number)) if guard.completed_years else number
        holds = COMPARE[guard.op](compared, threshold)
        reference = values.get(guard.reference) if guard.reference else None
        finding = Finding(guard, holds, number, threshold, reference)  # type: ignore[arg-type]
        return Outcome(holds, (finding,))
    if isinstance(guard, Membership):
        value = values.get(guard.subject)
        if value is None:
            return Outcome(None, (), frozenset({guard.subject}))
        holds = value in guard.values
        return Outcome(holds, (Finding(guard, holds, value),))
    if isinstance(guard, Complement):
        inner = evaluate(guard.item, values)
        truth = None if inner.truth is None else not inner.truth
        return Outcome(truth, inner.findings, inner.missing)
    if isinstance(guard, Tally):
        return _tally(guard, values)
    if isinstance(guard, Either):
        return _either(guard, values)
    parts = [evaluate(item, values) for item in guard.items]
    deciding = isinstance(guard, Disjunction)  # a true part decides an 'or', a false an 'and'
    decided = [part for part in parts if part.truth is deciding]
    if decided:
        return Outcome(deciding, tuple(f for part in decided for f in part.findings))
    missing = frozenset().union(*(part.missing for part in parts))
    findings = tuple(f for part in parts for f in part.findings)
    if missing:
        return Outcome(None, findings, missing)
    return Outcome(not deciding, findings)
