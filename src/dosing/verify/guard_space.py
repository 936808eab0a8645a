"""The space of values each state's guards cover, analysed exactly: gaps (values no rule
covers) and shadowed rules (a rule that can never fire because one above it always does),
over interval boxes of the inputs, with integer inputs and a size limit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from fractions import Fraction

from dosing.protocol.analysis import (
    MAX_CASES,
    MAX_PAIRS,
    Interval,
    Region,
    TooComplex,
    dnf,
    region,
    witness,
)
from dosing.protocol.checks import describe_point
from dosing.protocol.guards import WHOLE_DAYS, CountType, Guard
from dosing.protocol.model import Protocol
from dosing.verify.findings import Finding

Domain = Mapping[str, Interval]


def _domain(protocol: Protocol) -> dict[str, Interval]:
    """What values each variable can take: observations within their plausible range,
    derived values and multiples not negative."""
    domain: dict[str, Interval] = {}
    for name, reading in protocol.readings.items():
        domain[name] = Interval(reading.low, True, reading.high, True)
    for name in ("crcl", "bsa", *WHOLE_DAYS):
        domain[name] = Interval(Fraction(0), True)
    return domain


def _integer(protocol: Protocol, key: str) -> bool:
    return (
        isinstance(protocol.scope.get(key), CountType)
        or key.startswith("count(")
        or key in WHOLE_DAYS
    )


def _boxes(protocol: Protocol, guard: Guard, domain: Domain, negated: bool = False) -> list[Region]:
    found = []
    for conjunction in dnf(guard, negated):
        box = region(conjunction)
        if box is not None and _feasible(protocol, box, domain):
            found.append(box)
    return found


def _feasible(protocol: Protocol, box: Region, domain: Domain) -> bool:
    for key, constraint in box.items():
        if not isinstance(constraint, Interval):
            continue
        limits = domain.get(key, Interval(Fraction(0), True) if "/" in key else Interval())
        narrowed = constraint.meet(limits)
        if narrowed.empty():
            return False
        if _integer(protocol, key) and _integers(narrowed) is None:
            return False
        if "/" in key or key.startswith("count("):
            narrowed = narrowed.meet(Interval(Fraction(0), True))
            if narrowed.empty():
                return False
    return True


def _integers(interval: Interval) -> Fraction | None:
    """Some whole number inside the interval, or None."""
    low = interval.low
    if low is None:
        high = interval.high
        candidate = Fraction(math.floor(high)) if high is not None else Fraction(0)
        if high is not None and candidate == high and not interval.high_closed:
            candidate -= 1  # 'count < 2' holds for 1
    else:
        candidate = Fraction(math.ceil(low))
        if candidate == low and not interval.low_closed:
            candidate += 1
    if interval.high is not None and (
        candidate > interval.high or (candidate == interval.high and not interval.high_closed)
    ):
        return None
    return candidate


def _meet(
    protocol: Protocol, boxes: list[Region], guard: Guard, domain: Domain, negated: bool
) -> list[Region]:
    """Boxes narrowed by a guard (or its negation), keeping only the feasible ones."""
    narrowed = []
    conjunctions = dnf(guard, negated)
    if len(boxes) * len(conjunctions) > MAX_PAIRS:
        raise TooComplex(f"more than {MAX_PAIRS} pairs of cases")
    for box in boxes:
        for conjunction in conjunctions:
            combined = region(conjunction, start=box)
            if combined is not None and _feasible(protocol, combined, domain):
                narrowed.append(combined)
        if len(narrowed) > 5000:  # enough to show a gap; keeps the analysis bounded
            break
    return narrowed


def _point(protocol: Protocol, box: Region, domain: Domain) -> str:
    chosen: dict[str, Interval | frozenset[str]] = {}
    for key, constraint in box.items():
        if isinstance(constraint, Interval):
            limits = domain.get(key, Interval(Fraction(0), True) if "/" in key else Interval())
            constraint = constraint.meet(limits)
            if _integer(protocol, key):
                whole = _integers(constraint)
                constraint = Interval(whole, True, whole, True) if whole is not None else constraint
        chosen[key] = constraint
    return describe_point(witness(chosen), protocol.scope)


def _too_complex(state: str) -> Finding:
    return Finding(
        "too complex",
        "error",
        f"states.{state}",
        f"too complex to analyse: the guards of {state} multiply into more than {MAX_CASES} "
        "cases, so gaps and shadowed rules were not checked there; simplify them (fewer 'or' "
        "inside 'and', or definitions)",
    )


def gaps(
    protocol: Protocol, domain: Domain, too_complex: set[str] | None = None
) -> Iterator[Finding]:
    """States that must decide (no 'stay') where some input meets no rule. States whose
    guards are too complex to analyse are added to `too_complex`."""
    for name, state in protocol.states.items():
        if state.stay is not None or state.final:
            continue
        remaining: list[Region] = [{}]
        try:
            for transition in state.transitions:
                remaining = _meet(protocol, remaining, transition.when, domain, negated=True)
                if not remaining:
                    break
        except TooComplex:
            if too_complex is not None:
                too_complex.add(name)
            continue
        if remaining:
            yield Finding(
                "gap",
                "error",
                f"states.{name}",
                f"{_point(protocol, remaining[0], domain)}: no rule applies in {name}, "
                "which must decide",
            )


def shadowed(
    protocol: Protocol, domain: Domain, too_complex: set[str] | None = None
) -> Iterator[Finding]:
    """Rules that never fire: unsatisfiable, or always beaten by higher-priority rules."""
    for name in protocol.states:
        try:
            yield from _shadowed_in(protocol, name, domain)
        except TooComplex:
            if too_complex is not None:
                too_complex.add(name)


def _shadowed_in(protocol: Protocol, name: str, domain: Domain) -> Iterator[Finding]:
    state = protocol.states[name]
    for index, transition in enumerate(state.transitions):
        where = f"states.{name}.transitions[{index}]"
        own = _boxes(protocol, transition.when, domain)
        if not own:
            yield Finding(
                "unsatisfiable",
                "error",
                where,
                f"rule '{transition.rule}' can never apply: '{transition.when_text}' "
                "holds for no input",
            )
            continue
        higher = [t for t in state.transitions if t.priority > transition.priority]
        for other in higher:
            own = _meet(protocol, own, other.when, domain, negated=True)
            if not own:
                beaten = ", ".join(f"'{t.rule}'" for t in higher)
                yield Finding(
                    "shadowed",
                    "error",
                    where,
                    f"rule '{transition.rule}' never fires: higher-priority rules "
                    f"({beaten}) apply whenever it does",
                )
                break
