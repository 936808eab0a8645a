"""Searching generated timelines for a counterexample to a protocol's declared properties and
label invariants.

Three kinds of timeline are tried, in this order:

- scripted courses, the same every run: a patient started with usual values and seen every
  2 weeks for 7 months, with each lab starting low (each band between its thresholds), each
  pair of labs falling together or one after the other, and every patient a scenario starts
  followed for a month. They make the usual events certain: a low baseline count, a hold with
  a second low count, a restart before both recover;
- clinically shaped courses: one patient from a scenario's start (or from where a scenario
  starts mid-course), seen weekly to monthly, whose counts drift, fall and recover a band at
  a time through the values the scenarios use, now and then jump, or go unmeasured; whose
  assessments hold for long runs and sometimes change. Holds, restarts, reductions and long
  responses arise from the course itself, not from a scenario written beside a rule;
- from the scenarios: a timeline starts where a scenario starts, each visit borrows a scenario
  visit's observations (so assessments and facts stay realistic) and now and then redraws a
  lab, mostly to a value some scenario uses (each side of every threshold).

hypothesis generates the last two and shrinks a failure to a minimal timeline; a scripted
course is cut after the visit that breaks. Pure: no example database, no output, and the
same search every run and in every process (derandomized, without the constants hypothesis
would otherwise borrow from whatever modules are loaded), so a report is reproducible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from dosing.core.units import format_number
from dosing.engine.compiled import compiled
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Property, Protocol
from dosing.verify.generated_courses import (
    EXAMPLES,
    MOST_COURSE_VISITS,
    MOST_VISITS,
    CourseParts,
    PlannedVisit,
    _lab_values,
    _usual_values,
    _with_thresholds,
    courses,
    templates,
    thresholds,
    timelines,
)
from dosing.verify.invariants import CourseWatch
from dosing.verify.properties import lower_raises, over_maximum_at
from dosing.verify.scripted_courses import scripted_courses


@attrs.frozen
class Counterexample:
    """A property or invariant that failed, why, and the minimal timeline that shows it."""

    property: str
    violation: str
    start: str
    visits: tuple[str, ...]
    source: str = ""
    """For an invariant: the source it cites, and the sentence quoted."""

    def describe(self) -> str:
        steps = "; ".join(f"visit {n}: {v}" for n, v in enumerate(self.visits, 1))
        cited = f" [{self.source}]" if self.source else ""
        return f"{self.violation}{cited}. Minimal timeline from {self.start}: {steps}"


class _Violated(Exception):
    def __init__(self, found: Counterexample) -> None:
        super().__init__(found.violation)
        self.found = found


def violation(
    protocol: Protocol, prop: Property, record: PatientRecord, visits: Sequence[PlannedVisit]
) -> str | None:
    """How the timeline breaks the property, or None."""
    return _failures(protocol, (record, list(visits)), only=prop.name).get(prop.name)


def _course(
    protocol: Protocol, record: PatientRecord, visits: Sequence[PlannedVisit]
) -> tuple[str, tuple[str, ...]]:
    """The start and each visit, in words: what was observed and what was decided."""
    start = record.state or protocol.initial
    memory = ", ".join(f"{k} {_text(v)}" for k, v in record.memory.items())
    if record.therapy_started_on is not None:
        memory = f"therapy started {record.therapy_started_on}" + (f", {memory}" if memory else "")
    lines = []
    for visit in visits:
        observed = ", ".join(
            f"{o.name} {o.entered}" + (f" (drawn {o.drawn_on})" if o.drawn_on != visit.date else "")
            for o in visit.observations
        )
        begun = record.therapy_started_on
        day = f" (day {(visit.date - begun).days} of therapy)" if begun is not None else ""
        decision, record = step(protocol, record, visit.date, visit.observations)
        doses = ", ".join(str(dose) for dose in decision.doses)
        rules = ", ".join(rule.id for rule in decision.rules)
        decided = f"{decision.action.upper()}{' ' + doses if doses else ''} ({rules or 'no rule'})"
        lines.append(f"{visit.date}{day} {observed} -> {decided}")
    return f"{start} ({memory})" if memory else start, tuple(lines)


def _described(
    protocol: Protocol, prop: Property, record: PatientRecord, visits: Sequence[PlannedVisit]
) -> Counterexample | None:
    broken = violation(protocol, prop, record, visits)
    if broken is None:
        return None
    start, lines = _course(protocol, record, visits)
    return Counterexample(prop.name, broken, start, lines)


def _failures(
    protocol: Protocol,
    timeline: tuple[PatientRecord, Sequence[PlannedVisit]],
    only: str | None = None,
) -> dict[str, str]:
    """Every property and invariant the timeline breaks (or just the one named): name -> how,
    the first time. One pass: each visit is decided once, and a property that compares with
    a lowered lab decides that visit once more per lab."""
    record, visits = timeline
    invariants = tuple(i for i in protocol.invariants if only in (None, i.name))
    watch = CourseWatch(protocol, invariants) if invariants else None
    props = [p for p in protocol.properties if only in (None, p.name)]
    fast = compiled(protocol)  # held to the reference by tests/engine/test_compiled.py
    found: dict[str, str] = {}
    for visit in visits:
        decision, after = step(
            protocol, record, visit.date, visit.observations, explain=False, evaluator=fast
        )
        if watch is not None:
            for breach in watch.visit(record, visit.date, visit.observations, decision):
                found.setdefault(breach.invariant.name, breach.message)
        for prop in props:
            if prop.name in found:
                continue
            broken = None
            if prop.within_max_daily_dose or prop.rules_within_max_daily_dose:
                broken = over_maximum_at(protocol, decision, prop.rules_within_max_daily_dose)
            lowering = visit.lowering
            for lab in prop.lower_never_raises if lowering is not None else ():
                if broken is not None or lowering is None:
                    break
                seen = next((o.value for o in visit.observations if o.name == lab), None)
                if isinstance(seen, Fraction):
                    floor = protocol.labs[lab].low
                    lower = floor + (seen - floor) * lowering
                    raised = lower_raises(
                        protocol,
                        prop,
                        record,
                        visit.date,
                        visit.observations,
                        lab,
                        lower,
                        decision,
                    )
                    broken = None if raised is None else f"{visit.date} {raised}"
            if broken is not None:
                found[prop.name] = broken
        record = after
    return found


def _text(value: Fraction | str) -> str:
    return format_number(value) if isinstance(value, Fraction) else value


def search(
    protocol: Protocol,
    examples: int = EXAMPLES,
    most_visits: int = MOST_VISITS,
    shrink: bool = True,
) -> Counterexample | None:
    """The first property or invariant a generated timeline breaks (shrunk), or None."""
    found = search_all(protocol, examples, most_visits, shrink, first_only=True)
    return found[0] if found else None


def _first_breach(
    protocol: Protocol, course: tuple[PatientRecord, list[PlannedVisit]], name: str
) -> Counterexample:
    """A scripted course cut after the visit that breaks `name`, described."""
    record, visits = course
    for end in range(1, len(visits) + 1):
        how = _failures(protocol, (record, visits[:end]), only=name).get(name)
        if how is not None:
            start, lines = _course(protocol, record, visits[:end])
            return Counterexample(name, how, start, lines, _cited(protocol, name))
    raise AssertionError(f"{name} broke, but not again on the same course")


def _cited(protocol: Protocol, name: str) -> str:
    invariant = next((i for i in protocol.invariants if i.name == name), None)
    return f'{invariant.source}: "{invariant.quote}"' if invariant else ""


def search_all(
    protocol: Protocol,
    examples: int = EXAMPLES,
    most_visits: int = MOST_VISITS,
    shrink: bool = True,
    first_only: bool = False,
) -> list[Counterexample]:
    """Every property and invariant some generated timeline breaks, each with its own shrunk,
    minimal timeline. Searches `examples` clinically shaped courses, then `examples`
    timelines made from the scenarios; a broken one is then searched again alone, so that
    hypothesis shrinks the timeline for it."""
    if not (protocol.properties or protocol.invariants) or not protocol.scenarios:
        return []
    scripted, strategies = _timelines(protocol, most_visits)
    results: dict[str, Counterexample] = {}
    for course in scripted:
        for name in _failures(protocol, course):
            if name not in results:
                results[name] = _first_breach(protocol, course, name)
                if first_only:
                    return [results[name]]
    for strategy in strategies:
        broken = _broken(protocol, strategy, examples, set(results), first_only)
        for name in broken:
            results[name] = _shrunk(protocol, strategy, name, examples, shrink)
            if first_only:
                return [results[name]]
    order = [*(i.name for i in protocol.invariants), *(p.name for p in protocol.properties)]
    return sorted(results.values(), key=lambda c: order.index(c.property))


_Timeline = tuple[PatientRecord, list[PlannedVisit]]


def _timelines(
    protocol: Protocol, most_visits: int
) -> tuple[list[_Timeline], tuple[st.SearchStrategy[_Timeline], ...]]:
    """The scripted courses, and the strategies of clinically shaped courses and of timelines
    made from the scenarios."""
    found, screenings, firsts = templates(protocol)
    seen = _with_thresholds(_lab_values(found), thresholds(protocol))
    parts = CourseParts.of(protocol, seen, _usual_values(found), screenings, firsts)
    strategies = (
        courses(protocol, found, parts, max(most_visits, MOST_COURSE_VISITS)),
        timelines(protocol, found, seen, firsts, most_visits),
    )
    return scripted_courses(protocol, found, parts), strategies


def check_timelines(
    protocol: Protocol, examples: int = EXAMPLES, most_visits: int = MOST_VISITS
) -> list[_Timeline]:
    """The timelines `dosing check` searches, as it draws them (not shrunk): the scripted
    courses, then `examples` of each generated kind. Empty for a protocol without scenarios."""
    if not protocol.scenarios:
        return []
    scripted, strategies = _timelines(protocol, most_visits)
    drawn: list[_Timeline] = list(scripted)
    for strategy in strategies:
        _run(strategy, drawn.append, examples, shrink=False)
    return drawn


class _Stop(Exception):
    """Enough was found."""


def _broken(
    protocol: Protocol,
    strategy: st.SearchStrategy[tuple[PatientRecord, list[PlannedVisit]]],
    examples: int,
    known: set[str],
    first_only: bool,
) -> list[str]:
    """The properties and invariants that some of `examples` timelines break (not shrunk)."""
    broken: list[str] = []

    def record(timeline: tuple[PatientRecord, list[PlannedVisit]]) -> None:
        for name in _failures(protocol, timeline):
            if name not in known and name not in broken:
                broken.append(name)
        if first_only and broken:
            raise _Stop

    with contextlib.suppress(_Stop):
        _run(strategy, record, examples, shrink=False)
    return broken


def _run(
    strategy: st.SearchStrategy[tuple[PatientRecord, list[PlannedVisit]]],
    test: Callable[[tuple[PatientRecord, list[PlannedVisit]]], None],
    examples: int,
    shrink: bool,
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(timeline: tuple[PatientRecord, list[PlannedVisit]]) -> None:
        test(timeline)

    with _same_search_everywhere():
        run()


@contextlib.contextmanager
def _same_search_everywhere() -> Iterator[None]:
    """Hypothesis mixes numbers found in the caller's own modules into what it draws: the
    modules imported so far, and only when dosing is installed editable. The same search
    would then find different courses in `dosing check`, in the tests and in CI. Draw
    without them, so a report depends on the protocol alone. (A private hook: if a
    hypothesis release renames it, the search still runs, only less reproducibly.)"""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - a hypothesis without that module
        yield
        return
    original = getattr(providers, "_get_local_constants", None)
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    constants = getattr(providers, "Constants", None)
    if original is None or cache is None or constants is None:  # pragma: no cover
        yield
        return
    nothing = constants()
    cache.cache.clear()  # permitted constants computed with the local ones
    providers._get_local_constants = lambda: nothing
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def _shrunk(
    protocol: Protocol,
    strategy: st.SearchStrategy[tuple[PatientRecord, list[PlannedVisit]]],
    name: str,
    examples: int,
    shrink: bool,
) -> Counterexample:
    """The minimal timeline hypothesis finds for one broken property or invariant."""

    def fails(timeline: tuple[PatientRecord, list[PlannedVisit]]) -> None:
        how = _failures(protocol, timeline, only=name).get(name)
        if how is not None:
            record, visits = timeline
            start, lines = _course(protocol, record, visits)
            raise _Violated(Counterexample(name, how, start, lines, _cited(protocol, name)))

    try:
        _run(strategy, fails, examples, shrink)
    except _Violated as violated:
        return violated.found
    raise AssertionError(f"{name} broke, but not again on the same examples")  # derandomized
