"""Searching generated timelines for a counterexample to a protocol's declared properties and
label invariants.

Two kinds of timeline are generated:

- from the scenarios: a timeline starts where a scenario starts, each visit borrows a scenario
  visit's observations (so assessments and facts stay realistic) and now and then redraws a
  lab, mostly to a value some scenario uses (each side of every threshold);
- clinically shaped courses: one patient from screening (or from where a scenario starts),
  seen weekly to monthly, whose counts drift, fall and recover step by step through the
  values the scenarios use, now and then jump, or go unmeasured; whose assessments hold for
  long runs and sometimes change. Holds, restarts, reductions and long responses arise from
  the course itself, not from a scenario written beside a rule.

hypothesis generates both and shrinks a failure to a minimal timeline. Pure: no example
database, no output, and the same search every run (derandomized), so a report is
reproducible.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from fractions import Fraction

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from dosing.engine import step
from dosing.guards import CategoryType
from dosing.invariants import CourseWatch
from dosing.model import LabInput, Property, Protocol
from dosing.observations import Observation
from dosing.patient import PatientRecord
from dosing.properties import lower_raises, over_maximum_at
from dosing.scenarios import SCENARIO_START, run_scenario, starting_record
from dosing.units import format_number

Template = tuple[tuple[Observation, int], ...]
"""A scenario visit's observations, each with how many days before the visit it was drawn."""

EXAMPLES = 100
"""Timelines of each kind tried per protocol by `dosing check`."""
MOST_VISITS = 8
MOST_COURSE_VISITS = 12
_GAPS = (7, 14, 7, 28, 1, 3, 56)
"""Days between the visits of a course: weekly to monthly mostly (shrinks toward weekly)."""


@attrs.frozen
class PlannedVisit:
    """One generated visit: its date, what was observed, and how far to lower a lab."""

    date: dt.date
    observations: tuple[Observation, ...]
    lowering: Fraction = Fraction(0)
    """Where the lowered value falls between the lab's plausible floor (0) and the value (1)."""


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


def templates(protocol: Protocol) -> list[Template]:
    """Every scenario visit's observations."""
    found = []
    for scenario in protocol.scenarios:
        for result in run_scenario(protocol, scenario):
            date = SCENARIO_START + dt.timedelta(days=result.visit.day)
            found.append(tuple((o, (date - o.drawn_on).days) for o in result.observations))
    return found


def _lab_values(templates: Sequence[Template]) -> dict[str, list[Fraction]]:
    values: dict[str, set[Fraction]] = {}
    for template in templates:
        for observation, _ in template:
            if isinstance(observation.value, Fraction):
                values.setdefault(observation.name, set()).add(observation.value)
    return {name: sorted(found) for name, found in values.items()}


def _lab_value(lab: LabInput, seen: Sequence[Fraction]) -> st.SearchStrategy[Fraction]:
    anywhere = st.integers(0, 10_000).map(
        lambda k: lab.low + (lab.high - lab.low) * Fraction(k, 10_000)
    )
    return st.integers(0, 9).flatmap(lambda k: anywhere if k == 0 else st.sampled_from(seen))


def _typed(lab: LabInput, value: Fraction) -> str:
    return f"{format_number(value, 3)} {lab.unit}"


@st.composite
def timelines(
    draw: st.DrawFn,
    protocol: Protocol,
    templates: Sequence[Template],
    seen: dict[str, list[Fraction]],
    most: int = MOST_VISITS,
) -> tuple[PatientRecord, list[PlannedVisit]]:
    """A starting record (where a scenario starts) and up to `most` visits made of scenario
    visits' observations, a lab now and then redrawn (`seen`: each lab's scenario values)."""
    record = starting_record(protocol, draw(st.sampled_from(protocol.scenarios)))
    date = SCENARIO_START
    visits = []
    for _ in range(draw(st.integers(1, most))):
        observations = []
        for observation, days_before in templates[draw(st.integers(0, len(templates) - 1))]:
            lab = protocol.labs.get(observation.name)
            value, entered = observation.value, observation.entered
            if lab is not None and isinstance(value, Fraction) and draw(st.integers(0, 4)) == 0:
                value = draw(_lab_value(lab, seen[observation.name]))
                entered = _typed(lab, value)
            drawn_on = date - dt.timedelta(days=days_before)
            observations.append(
                attrs.evolve(observation, value=value, entered=entered, drawn_on=drawn_on)
            )
        lowering = Fraction(draw(st.integers(0, 99)), 100)
        visits.append(PlannedVisit(date, tuple(observations), lowering))
        date += dt.timedelta(days=draw(st.sampled_from([1, 7, 14, 28, 56, 84])))
    return record, visits


def _step_to(seen: Sequence[Fraction], value: Fraction, steps: int) -> Fraction:
    """The value `steps` places along the sorted values the scenarios use (down if < 0)."""
    below = [v for v in seen if v < value]
    above = [v for v in seen if v > value]
    if steps < 0:
        return below[max(len(below) + steps, 0)] if below else value
    return above[min(steps - 1, len(above) - 1)] if above else value


_MOVES = ("down", "up", "down", "jump", "anywhere", "unmeasured", "down2", "up2")
"""How a lab changes between visits (a fall is drawn more often than a rise)."""


@attrs.frozen
class _CourseParts:
    """The strategies a course draws from, built once per protocol (building a strategy
    costs more than drawing from it)."""

    labs: tuple[str, ...]
    assessed: tuple[str, ...]
    lab_changes: st.SearchStrategy[list[tuple[str, str]]]
    answers: st.SearchStrategy[list[tuple[str, int]]]
    seen: dict[str, list[Fraction]]
    jumps: dict[str, st.SearchStrategy[Fraction]]
    anywhere: dict[str, st.SearchStrategy[Fraction]]
    gaps: st.SearchStrategy[int]

    @classmethod
    def of(cls, protocol: Protocol, seen: dict[str, list[Fraction]]) -> _CourseParts:
        labs = tuple(name for name in protocol.labs if seen.get(name))
        assessed = tuple(
            name
            for name in protocol.assessments
            if isinstance(protocol.scope.get(name), CategoryType)
        )
        nothing: st.SearchStrategy[list[tuple[str, str]]] = st.just([])
        return cls(
            labs=labs,
            assessed=assessed,
            lab_changes=st.lists(
                st.tuples(st.sampled_from(labs), st.sampled_from(_MOVES)), max_size=3
            )
            if labs
            else nothing,
            answers=st.lists(st.tuples(st.sampled_from(assessed), st.integers(-1, 7)), max_size=2)
            if assessed
            else st.just([]),
            seen=seen,
            jumps={name: st.sampled_from(seen[name]) for name in labs},
            anywhere={name: _lab_value(protocol.labs[name], seen[name]) for name in labs},
            gaps=st.sampled_from(_GAPS),
        )


@st.composite
def courses(
    draw: st.DrawFn,
    protocol: Protocol,
    templates: Sequence[Template],
    parts: _CourseParts,
    most: int = MOST_COURSE_VISITS,
) -> tuple[PatientRecord, list[PlannedVisit]]:
    """One patient's course: facts from a scenario visit, labs that drift, fall and recover
    through the values the scenarios use, assessments that hold for long runs. Starts at
    screening, or where a scenario starts. Each visit draws only what changes (a short
    list), so hypothesis shrinks a course to the few changes that matter."""
    base = templates[draw(st.integers(0, len(templates) - 1))]
    starts = [s for s in protocol.scenarios if s.start_state is not None]
    chosen = draw(st.sampled_from([None, *starts]))
    record = PatientRecord() if chosen is None else starting_record(protocol, chosen)
    current = {
        observation.name: attrs.evolve(
            observation, drawn_on=SCENARIO_START - dt.timedelta(days=days_before)
        )
        for observation, days_before in base
    }
    date = SCENARIO_START
    visits = []
    for _ in range(draw(st.integers(1, most))):
        unmeasured: set[str] = set()
        for name, move in draw(parts.lab_changes):
            observation = current.get(name)
            if observation is None or not isinstance(observation.value, Fraction):
                continue
            lab = protocol.labs[name]
            value = observation.value
            if move == "unmeasured":
                unmeasured.add(name)
                continue
            if move == "jump":
                value = draw(parts.jumps[name])
            elif move == "anywhere":
                value = draw(parts.anywhere[name])
            else:
                steps = {"down": -1, "up": 1, "down2": -2, "up2": 2}[move]
                value = _step_to(parts.seen[name], value, steps)
            current[name] = attrs.evolve(observation, value=value, entered=_typed(lab, value))
        for name, pick in draw(parts.answers):
            kind = protocol.scope[name]
            assert isinstance(kind, CategoryType)
            if pick < 0:  # not assessed at this visit
                unmeasured.add(name)
                continue
            answer = kind.values[pick % len(kind.values)]
            current[name] = Observation(name, answer, answer, date)
        observations = []
        for name, observation in current.items():
            if name not in unmeasured:
                observation = current[name] = attrs.evolve(observation, drawn_on=date)
            elif name not in protocol.labs:
                continue  # an assessment not made now is absent
            observations.append(observation)  # a lab not measured now keeps its date
        visits.append(PlannedVisit(date, tuple(observations)))
        date += dt.timedelta(days=draw(parts.gaps))
    return record, visits


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
    lines = []
    for visit in visits:
        observed = ", ".join(
            f"{o.name} {o.entered}" + (f" (drawn {o.drawn_on})" if o.drawn_on != visit.date else "")
            for o in visit.observations
        )
        decision, record = step(protocol, record, visit.date, visit.observations)
        doses = ", ".join(str(dose) for dose in decision.doses)
        rules = ", ".join(rule.id for rule in decision.rules)
        decided = f"{decision.action.upper()}{' ' + doses if doses else ''} ({rules or 'no rule'})"
        lines.append(f"{visit.date} {observed} -> {decided}")
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
    found: dict[str, str] = {}
    for visit in visits:
        decision, after = step(protocol, record, visit.date, visit.observations)
        if watch is not None:
            for breach in watch.visit(record, visit.date, visit.observations, decision):
                found.setdefault(breach.invariant.name, breach.message)
        for prop in props:
            if prop.name in found:
                continue
            broken = None
            if prop.within_max_daily_dose or prop.rules_within_max_daily_dose:
                broken = over_maximum_at(protocol, decision, prop.rules_within_max_daily_dose)
            for lab in prop.lower_never_raises:
                if broken is not None:
                    break
                seen = next((o.value for o in visit.observations if o.name == lab), None)
                if isinstance(seen, Fraction):
                    floor = protocol.labs[lab].low
                    lower = floor + (seen - floor) * visit.lowering
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
    found = templates(protocol)
    seen = _lab_values(found)
    strategies = (
        courses(
            protocol, found, _CourseParts.of(protocol, seen), max(most_visits, MOST_COURSE_VISITS)
        ),
        timelines(protocol, found, seen, most_visits),
    )
    results: dict[str, Counterexample] = {}
    for strategy in strategies:
        broken = _broken(protocol, strategy, examples, set(results), first_only)
        for name in broken:
            results[name] = _shrunk(protocol, strategy, name, examples, shrink)
            if first_only:
                return [results[name]]
    order = [*(i.name for i in protocol.invariants), *(p.name for p in protocol.properties)]
    return sorted(results.values(), key=lambda c: order.index(c.property))


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

    run()


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
            invariant = next((i for i in protocol.invariants if i.name == name), None)
            cited = f'{invariant.source}: "{invariant.quote}"' if invariant else ""
            raise _Violated(Counterexample(name, how, start, lines, cited))

    try:
        _run(strategy, fails, examples, shrink)
    except _Violated as violated:
        return violated.found
    raise AssertionError(f"{name} broke, but not again on the same examples")  # derandomized
