"""Load-time checks: a bad protocol fails when loaded, naming the states and rules at fault."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from itertools import combinations
from math import gcd, lcm

from dosing.core.errors import ProtocolError
from dosing.core.units import format_number
from dosing.protocol.analysis import TooComplex, common_region, witness
from dosing.protocol.guards import Comparison, Guard, NameType, QuantityType, comparisons_in
from dosing.protocol.model import Protocol

ErrorAt = Callable[[str, str], ProtocolError]

DOSES_PER_DAY: Mapping[str, Fraction] = {
    "qd": Fraction(1),
    "bid": Fraction(2),
    "qod": Fraction(1, 2),
    "weekly": Fraction(1, 7),
}


def check_protocol(protocol: Protocol, error_at: ErrorAt) -> None:
    """Raise the first problem found, in the order a reader would fix them."""
    states = protocol.states
    initial = [name for name, state in states.items() if state.initial]
    if len(initial) != 1:
        found = "none" if not initial else f"{len(initial)} ({', '.join(initial)})"
        raise error_at("states", f"there must be exactly one initial state; found {found}")
    for name, state in states.items():
        for index, transition in enumerate(state.transitions):
            if transition.target not in states:
                raise error_at(
                    f"states.{name}.transitions[{index}].to",
                    f"no state '{transition.target}' (states: {', '.join(states)})",
                )
        if state.final and state.transitions:
            raise error_at(
                f"states.{name}.transitions[0]",
                f"final state '{name}' has transitions; nothing leaves a final state",
            )
        if state.final and state.stay is None:
            raise error_at(
                f"states.{name}.stay", "a final state says what it means (stay: discontinue, ...)"
            )
    reached = {initial[0]}
    frontier = [initial[0]]
    while frontier:
        for transition in states[frontier.pop()].transitions:
            if transition.target not in reached:
                reached.add(transition.target)
                frontier.append(transition.target)
    unreachable = [name for name in states if name not in reached]
    if unreachable:
        raise error_at(
            f"states.{unreachable[0]}",
            f"there are unreachable states: {', '.join(unreachable)} "
            f"(no transition from '{initial[0]}' leads to them)",
        )
    _check_thresholds(protocol, error_at)
    _check_overlaps(protocol, error_at)
    _check_dose_limit(protocol, error_at)


def _guards(protocol: Protocol) -> Iterator[tuple[str, Guard]]:
    """Every guard of the protocol, with its path in the file."""
    for name, state in protocol.states.items():
        for index, transition in enumerate(state.transitions):
            yield f"states.{name}.transitions[{index}].when", transition.when
        for index, monitoring in enumerate(state.monitoring):
            if monitoring.when is not None:
                yield f"states.{name}.monitoring[{index}].when", monitoring.when


def _check_thresholds(protocol: Protocol, error_at: ErrorAt) -> None:
    """A threshold no real value could be near is a misread number or unit (1.5 x10^09/L once
    read as 1.5e-8): the protocol does not load."""
    for path, guard in _guards(protocol):
        for atom in comparisons_in(guard):
            reading = protocol.readings.get(atom.subject)
            if not isinstance(atom, Comparison) or reading is None:
                continue
            if atom.reference is None:
                threshold = atom.factor
            elif atom.reference in protocol.constants:
                threshold = atom.factor * protocol.constants[atom.reference]
            else:
                continue  # a multiple of the patient's own reference value (alt > 3 * alt_uln)
            if reading.plausible(threshold):
                continue
            unit = reading.unit
            if reading.low <= threshold <= reading.high:
                why = (
                    f"is above 0 but below the smallest plausible {atom.subject}, "
                    f"{format_number(reading.smallest)} {unit}"
                )
            else:
                why = (
                    f"is outside the plausible range of {atom.subject}, "
                    f"{format_number(reading.low)}-{format_number(reading.high)} {unit}"
                )
            raise error_at(
                path,
                f"'{atom.text}': the threshold {format_number(threshold, 12)} {unit} {why}; "
                "check the number and its unit",
            )


def _check_overlaps(protocol: Protocol, error_at: ErrorAt) -> None:
    for name, state in protocol.states.items():
        indexed = list(enumerate(state.transitions))
        for (_i, first), (j, second) in combinations(indexed, 2):
            if first.priority != second.priority:
                continue
            try:
                box = common_region(first.when, second.when)
            except TooComplex:
                raise error_at(
                    f"states.{name}.transitions[{j}]",
                    f"rules '{first.rule}' and '{second.rule}' have equal priority "
                    f"{first.priority}, and their guards are too complex to show that they never "
                    "both apply; give one a higher priority or simplify them",
                ) from None
            if box is not None:
                example = describe_point(witness(box), protocol.scope)
                raise error_at(
                    f"states.{name}.transitions[{j}]",
                    f"rules '{first.rule}' and '{second.rule}' have equal priority "
                    f"{first.priority} and both apply, e.g. {example}; "
                    "give one a higher priority or make their guards exclusive",
                )


def _check_dose_limit(protocol: Protocol, error_at: ErrorAt) -> None:
    limit = protocol.max_daily_dose
    if limit is None:
        return
    for name, ladder in protocol.ladders.items():
        daily = ladder.levels[-1] * DOSES_PER_DAY[ladder.frequency]
        if ladder.drug == protocol.drug and daily > limit:
            raise error_at(
                f"ladders.{name}.levels",
                f"the top level, {format_number(ladder.levels[-1])} mg {ladder.frequency}, is "
                f"{format_number(daily)} mg/day, above the protocol's maximum of "
                f"{format_number(limit)} mg/day",
            )
    for name, state in protocol.states.items():
        for index, dose in enumerate(state.doses):
            if dose.amount is None:
                continue
            daily = dose.amount * DOSES_PER_DAY[dose.frequency]
            if daily > limit:
                raise error_at(
                    f"states.{name}.doses[{index}]",
                    f"{format_number(dose.amount)} mg {dose.frequency} is {format_number(daily)} "
                    f"mg/day, above the protocol's maximum of {format_number(limit)} mg/day",
                )


def makeable(amount: Fraction, strengths: tuple[Fraction, ...]) -> bool:
    """Whether whole units of the strengths add up to the amount (change-making)."""
    scale = lcm(*(value.denominator for value in (amount, *strengths)))
    coins = [int(strength * scale) for strength in strengths]
    common = gcd(*coins)
    target, remainder = divmod(int(amount * scale), common)
    if remainder:
        return False
    coins = [coin // common for coin in coins]
    # Every amount past the Frobenius number is made, which is below (smallest - 1) x
    # (largest - 1) (Schur): a dose typed at the prompt cannot make the table below huge.
    if target >= (min(coins) - 1) * (max(coins) - 1):
        return True
    reachable = [True] + [False] * target
    for value in range(1, target + 1):
        reachable[value] = any(coin <= value and reachable[value - coin] for coin in coins)
    return reachable[target]


def describe_point(point: Mapping[str, Fraction | str], scope: Mapping[str, NameType]) -> str:
    """'anc = 0.5 x10^9/L, alt = 3 x alt_uln, bleeding = yes' for a witness."""
    parts = []
    for key, value in point.items():
        if isinstance(value, str):
            parts.append(f"{key} = {value}")
        elif "/" in key:
            subject, reference = key.split("/", 1)
            parts.append(f"{subject} = {format_number(value)} x {reference}")
        else:
            kind = scope.get(key)
            unit = f" {kind.unit}" if isinstance(kind, QuantityType) else ""
            parts.append(f"{key} = {format_number(value)}{unit}")
    return ", ".join(parts)
