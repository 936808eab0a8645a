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

import datetime as dt
import math
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Literal

import attrs

from dosing.core.errors import DosingError
from dosing.core.units import format_number
from dosing.engine.observations import Observation, ObservationReader
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
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
from dosing.protocol.checks import DOSES_PER_DAY, describe_point, makeable
from dosing.protocol.guards import WHOLE_DAYS, Comparison, CountType, Guard, comparisons_in
from dosing.protocol.model import DoseSpec, Protocol
from dosing.verify.scenarios import SCENARIO_START, run_scenario

Severity = Literal["error", "warning", "note"]


@attrs.frozen
class Finding:
    """One result of a check: what, where, how serious."""

    check: str
    severity: Severity
    where: str
    message: str
    timeline: tuple[str, ...] = ()
    """For a broken property or invariant: the minimal timeline, one line per visit."""

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = attrs.asdict(self)
        record["timeline"] = list(self.timeline)
        return record


@attrs.frozen
class Report:
    """All findings for one protocol, and what was exercised."""

    protocol: str
    findings: tuple[Finding, ...]
    scenarios: int = 0
    transitions_exercised: int = 0
    transitions: int = 0
    boundary_cases: int = 0
    properties: int = 0
    """Declared properties searched on generated timelines."""
    invariants: int = 0
    """Label invariants searched on generated courses."""

    @property
    def errors(self) -> int:
        return sum(1 for finding in self.findings if finding.severity == "error")

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "errors": self.errors,
            "scenarios": self.scenarios,
            "transitions": self.transitions,
            "transitions_exercised": self.transitions_exercised,
            "boundary_cases": self.boundary_cases,
            "properties": self.properties,
            "invariants": self.invariants,
            "findings": [finding.to_json() for finding in self.findings],
        }


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
    from dosing.verify import property_search

    names = {invariant.name for invariant in protocol.invariants}
    findings = []
    try:
        searched = property_search.search_all(protocol, examples or property_search.EXAMPLES)
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


def boundary_tests(protocol: Protocol) -> tuple[int, list[Finding]]:
    """Each threshold on an observation, just below/on/above, in every exact spelling."""
    findings: list[Finding] = []
    cases = 0
    reader = ObservationReader(protocol, accept_implausible=True)
    for name, state in protocol.states.items():
        base = _base(protocol, reader)
        seen: set[tuple[str, Fraction]] = set()
        ops: dict[tuple[str, Fraction], set[str]] = {}
        for transition in state.transitions:
            for atom in comparisons_in(transition.when):
                if isinstance(atom, Comparison) and atom.reference is None:
                    ops.setdefault((atom.subject, atom.factor), set()).add(atom.op)
        for transition in state.transitions:
            for atom in comparisons_in(transition.when):
                if not isinstance(atom, Comparison) or atom.reference is not None:
                    continue
                reading = protocol.readings.get(atom.subject)
                if reading is None or (atom.subject, atom.factor) in seen:
                    continue
                seen.add((atom.subject, atom.factor))
                for label, value in _around(atom.factor):
                    if not reading.low <= value <= reading.high:
                        continue
                    outcomes = set()
                    for spelling, conversion in reading.spellings.items():
                        typed = conversion.invert(value)
                        if typed.denominator > 10**12:
                            continue
                        observation = Observation(
                            atom.subject, value, f"{typed} {spelling}", SCENARIO_START
                        )
                        decision = _decide(protocol, name, base, observation)
                        outcomes.add(decision)
                        cases += 1
                    if len(outcomes) > 1:
                        findings.append(
                            Finding(
                                "units disagree",
                                "error",
                                f"states.{name}",
                                f"{atom.subject} {label} {format_number(atom.factor)} {atom.unit} "
                                "gives "
                                f"different decisions in different units: {sorted(outcomes)}",
                            )
                        )
                if len(ops[(atom.subject, atom.factor)]) > 1:
                    continue  # several rules meet at this point: 'on' is theirs to share
                on = _decide(
                    protocol,
                    name,
                    base,
                    Observation(atom.subject, atom.factor, "on", SCENARIO_START),
                )
                holds_on = atom.op in ("<=", ">=", "==")
                side = _nudge(atom, holds_on)
                beside = _decide(
                    protocol, name, base, Observation(atom.subject, side, "beside", SCENARIO_START)
                )
                if on != beside:
                    findings.append(
                        Finding(
                            "boundary",
                            "warning",
                            f"states.{name}",
                            f"{atom.text}: the value on the threshold decides {on[1]}, "
                            "but the value just "
                            f"on its {'inner' if holds_on else 'outer'} side decides {beside[1]}",
                        )
                    )
    return cases, findings


def _around(threshold: Fraction) -> list[tuple[str, Fraction]]:
    step_ = abs(threshold) / 100 if threshold else Fraction(1, 100)
    return [("just below", threshold - step_), ("on", threshold), ("just above", threshold + step_)]


def _nudge(atom: Comparison, holds_on: bool) -> Fraction:
    """A value next to the threshold, on the side where the comparison is as true as on it."""
    step_ = abs(atom.factor) / 1000 if atom.factor else Fraction(1, 1000)
    below_holds = atom.op in ("<", "<=")
    inward = -step_ if below_holds else step_
    return atom.factor + (inward if holds_on else -inward)


def _base(protocol: Protocol, reader: ObservationReader) -> list[Observation]:
    """The protocol's scenario defaults as observations: an ordinary patient to vary."""
    texts: dict[str, str] = {}
    if protocol.scenarios:
        texts = {
            name: text for name, (text, _) in protocol.scenarios[0].visits[0].observations.items()
        }
    observations = []
    for name, text in texts.items():
        try:
            observations.append(reader.read(name, text, SCENARIO_START))
        except DosingError:
            continue
    return observations


def _decide(
    protocol: Protocol, state: str, base: list[Observation], varied: Observation
) -> tuple[str, str, str]:
    started = SCENARIO_START - dt.timedelta(days=60)
    record = PatientRecord(
        state=state, state_since=started, therapy_started_on=started, dose_since=started
    )
    observations = [o for o in base if o.name != varied.name] + [varied]
    try:
        decision, _ = step(protocol, record, SCENARIO_START, observations)
    except DosingError as error:
        return ("error", type(error).__name__, "")
    return (decision.state, decision.action, ", ".join(d.short() for d in decision.doses))


# ---------------------------------------------------------------- scenarios


def scenario_coverage(protocol: Protocol) -> tuple[int, list[Finding], int]:
    fired: set[tuple[str, str]] = set()
    findings = []
    for scenario in protocol.scenarios:
        try:
            results = run_scenario(protocol, scenario)
        except DosingError as error:
            findings.append(Finding("scenario", "error", f"scenario '{scenario.name}'", str(error)))
            continue
        for result in results:
            for failure in result.failures:
                findings.append(
                    Finding(
                        "scenario",
                        "error",
                        f"scenario '{scenario.name}' day {result.visit.day}",
                        failure,
                    )
                )
            for rule in result.decision.rules:
                fired.add((result.origin, rule.id))
    exercised = 0
    for name, state in protocol.states.items():
        for index, transition in enumerate(state.transitions):
            if (name, transition.rule) in fired:
                exercised += 1
            else:
                findings.append(
                    Finding(
                        "coverage",
                        "warning",
                        f"states.{name}.transitions[{index}]",
                        f"no scenario makes rule '{transition.rule}' fire",
                    )
                )
    return exercised, findings, len(protocol.scenarios)
