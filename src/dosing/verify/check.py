"""Proving a protocol before it touches a patient: analysis beyond the load-time checks.

Pure: takes a loaded Protocol, returns findings. The load-time checks (one initial state,
targets, reachability, final states, units, equal-priority overlaps, fixed doses over the
maximum) have already run when a protocol loads; this adds:

- guards as sets of inputs: gaps in states that must decide, shadowed and unsatisfiable rules;
- graph: states with no way out that are not final, escalation without a bound;
- dose bounds: per-m2 doses against the maximum, doses made from the strengths available;
- generated boundary tests: every threshold just below, on and above, in every equivalent
  unit, through the engine: the decision agrees across units, and 'on' lands on the side the
  comparison says;
- the protocol's scenarios, and which transitions they exercise;
- for review, every rule whose missing data means "not yet" (`waits_for`) and every
  assessment carried forward to later visits, each with its reason and source.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

from dosing.core.errors import DosingError
from dosing.core.units import format_number
from dosing.protocol.checks import DOSES_PER_DAY, makeable
from dosing.protocol.model import DoseSpec, Protocol
from dosing.verify.boundaries import (
    boundary_tests,
    scenario_coverage,
)
from dosing.verify.findings import Finding, Report
from dosing.verify.guard_space import (
    _domain,
    _too_complex,
    gaps,
    shadowed,
)


def check(protocol: Protocol, property_examples: int | None = None) -> Report:
    """Every check, in the order a reader would fix what they find.

    `property_examples`: timelines generated per protocol to search for a counterexample to
    its declared properties (0 skips the search; None uses the default)."""
    domain = _domain(protocol)
    too_complex: set[str] = set()
    findings = [
        *gaps(protocol, domain, too_complex),
        *shadowed(protocol, domain, too_complex),
        *(_too_complex(name) for name in protocol.states if name in too_complex),
        *graph(protocol),
        *dose_bounds(protocol),
        *not_yet(protocol),
    ]
    cases, boundary = boundary_tests(protocol)
    findings += boundary
    exercised, scenario_findings, count = scenario_coverage(protocol)
    findings += scenario_findings
    findings += properties(protocol, property_examples)
    total = sum(len(state.transitions) for state in protocol.states.values())
    searched = property_examples != 0 and bool(protocol.scenarios)
    return Report(
        protocol.id,
        tuple(findings),
        count,
        exercised,
        total,
        cases,
        len(protocol.properties) if searched else 0,
        len(protocol.invariants) if searched else 0,
    )


def properties(protocol: Protocol, examples: int | None) -> list[Finding]:
    """The first declared property or label invariant a generated timeline breaks, with the
    minimal timeline (and, for an invariant, the source sentence it encodes)."""
    if examples == 0 or not (protocol.properties or protocol.invariants):
        return []
    if not protocol.scenarios:
        return [
            Finding(
                "property",
                "warning",
                "properties",
                "not searched: timelines start from the protocol's scenarios, and it has none",
            )
        ]
    # hypothesis costs a few hundred ms to import; only `dosing check` needs it.
    from dosing.verify import generated_courses, property_search

    names = {invariant.name for invariant in protocol.invariants}
    findings = []
    try:
        searched = property_search.search_all(protocol, examples or generated_courses.EXAMPLES)
    except DosingError as error:
        return [Finding("property", "error", "properties", f"a generated course: {error}")]
    for found in searched:
        kind = "invariant" if found.property in names else "property"
        where = f"{'invariants' if kind == 'invariant' else 'properties'}: {found.property}"
        cited = f" [{found.source}]" if found.source else ""
        message = f"{found.violation}{cited}. Minimal timeline from {found.start}:"
        findings.append(Finding(kind, "error", where, message, found.visits))
    return findings


# ---------------------------------------------------------------- guards as sets of inputs


# ---------------------------------------------------------------- graph and dose bounds


def graph(protocol: Protocol) -> Iterator[Finding]:
    for name, state in protocol.states.items():
        if not state.final and not state.transitions:
            yield Finding(
                "no way out",
                "error",
                f"states.{name}",
                f"state '{name}' is not final and no rule leaves it",
            )
        for index, transition in enumerate(state.transitions):
            for effect in transition.effects:
                if effect.kind == "scale" and protocol.max_daily_dose is None:
                    yield Finding(
                        "unbounded escalation",
                        "error",
                        f"states.{name}.transitions[{index}]",
                        f"rule '{transition.rule}' scales {effect.name} with no bound: the "
                        "protocol declares no limits.max_daily_dose",
                    )


def not_yet(protocol: Protocol) -> Iterator[Finding]:
    """Every rule that waits for data, and every assessment carried forward: listed for the
    reviewer, since each lets a visit go on without data being entered at it."""
    for state in protocol.states.values():
        for transition in state.transitions:
            wait = transition.waits
            if wait is None:
                continue
            recheck = ""
            if wait.recheck_days is not None:
                recheck = f"; check again within {format_number(wait.recheck_days, 2)} days"
            yield Finding(
                "not yet",
                "note",
                f"states.{state.name}: {transition.rule}",
                f"{transition.action} waits for {', '.join(wait.data)}: without it, "
                f"{state.stay} as before{recheck}. Because {wait.because} ({wait.source})",
            )
    for name, kept in protocol.carried_forward.items():
        yield Finding(
            "carried forward",
            "note",
            f"inputs.carry_forward.{name}",
            f"{name} is used at later visits for at most {format_number(kept.max_age_days, 2)} "
            f"days after it was assessed ({kept.source})",
        )


def dose_bounds(protocol: Protocol) -> Iterator[Finding]:
    strengths = protocol.strengths
    for name, state in protocol.states.items():
        for index, dose in enumerate(state.doses):
            where = f"states.{name}.doses[{index}]"
            if dose.per_m2 is not None:
                yield from _per_m2_cap(protocol, dose, where)
            amounts = [dose.amount] if dose.amount is not None else []
            if dose.round_to is not None:
                amounts.append(dose.round_to)
            slot = protocol.memory.get(dose.level_from or "")
            if slot is not None and slot.ladder is not None:
                amounts += protocol.ladders[slot.ladder].levels
            if slot is not None and slot.step is not None:
                amounts.append(slot.step)
            for amount in amounts:
                options = strengths.get(dose.drug)
                if options and not makeable(amount, options):
                    listed = ", ".join(f"{format_number(s)} mg" for s in options)
                    yield Finding(
                        "strengths",
                        "error",
                        where,
                        f"{dose.drug} {format_number(amount)} mg cannot be made from the "
                        f"strengths available ({listed})",
                    )


def _per_m2_cap(protocol: Protocol, dose: DoseSpec, where: str) -> Iterator[Finding]:
    """Where a per-m² dose stops being given: its own ceiling, or the protocol's daily
    maximum, whichever binds at the smaller BSA (above it the engine refers)."""
    assert dose.per_m2 is not None
    per_dose = f"{format_number(dose.per_m2)} mg/m² {dose.frequency}"
    per_day = dose.per_m2 * DOSES_PER_DAY[dose.frequency]
    limit = protocol.max_daily_dose if dose.drug == protocol.drug else None
    if dose.ceiling is not None and (
        limit is None or dose.ceiling * DOSES_PER_DAY[dose.frequency] <= limit
    ):
        raw, inclusive = _ceiling_passed(dose, dose.ceiling)
        bsa = raw / dose.per_m2
        yield Finding(
            "per-m2 cap",
            "note",
            where,
            f"{per_dose}: the rounded dose passes its ceiling of {format_number(dose.ceiling)} mg "
            f"({dose.ceiling_name}) {'from' if inclusive else 'above'} a BSA of "
            f"{format_number(bsa, 2)} m²; the engine refers there",
        )
    elif limit is not None:
        bsa = limit / per_day
        yield Finding(
            "per-m2 cap",
            "note",
            where,
            f"{per_dose} exceeds the maximum of {format_number(limit)} mg/day above a BSA of "
            f"{format_number(bsa, 2)} m²; the engine refers instead of dosing there",
        )


def _ceiling_passed(dose: DoseSpec, ceiling: Fraction) -> tuple[Fraction, bool]:
    """The calculated amount from which (True) or above which (False) the rounded dose is
    more than the ceiling, rounding as the engine does (nearest: a tie rounds down)."""
    step = dose.round_to
    if step is None:
        return ceiling, False
    above = (math.floor(ceiling / step) + 1) * step  # the first rounded dose over the ceiling
    if dose.rounding == "nearest":
        return above - step / 2, False
    return Fraction(above), True


# ---------------------------------------------------------------- boundary tests


# ---------------------------------------------------------------- scenarios
