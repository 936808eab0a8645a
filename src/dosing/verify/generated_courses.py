"""The timelines `dosing check` generates to search for a counterexample: the protocol's
thresholds and the bands between them, courses that move each lab across them (down, up,
back), and usual values for every input; the scripted courses are `scripted_courses`.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import attrs
from hypothesis import strategies as st

from dosing.core.units import format_number
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.guards import CategoryType, Comparison, Guard, comparisons_in
from dosing.protocol.model import LabInput, Protocol
from dosing.verify.scenarios import SCENARIO_START, run_scenario, starting_record

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
    lowering: Fraction | None = None
    """Where the lowered value falls between the lab's plausible floor (0) and the value (1);
    None: not compared with a lowered value (a clinically shaped course)."""


def templates(protocol: Protocol) -> tuple[list[Template], list[Template], list[Template]]:
    """Every scenario visit's observations; the first visits of scenarios that start
    treatment from screening (where whole courses begin; the exclusions are tried by the
    timelines made from every visit); and each scenario's first visit, in scenario order
    (a course started where a scenario starts keeps that scenario's patient)."""
    found, screenings, firsts = [], [], []
    for scenario in protocol.scenarios:
        for number, result in enumerate(run_scenario(protocol, scenario)):
            date = SCENARIO_START + dt.timedelta(days=result.visit.day)
            template = tuple((o, (date - o.drawn_on).days) for o in result.observations)
            found.append(template)
            if number == 0:
                firsts.append(template)
                if scenario.start_state is None and result.decision.action == "start":
                    screenings.append(template)
    return found, screenings, firsts


def _usual_values(templates: Sequence[Template]) -> dict[str, Fraction]:
    """Each lab's most common value in the scenarios."""
    counts: dict[str, Counter[Fraction]] = {}
    for template in templates:
        for observation, _ in template:
            if isinstance(observation.value, Fraction):
                counts.setdefault(observation.name, Counter())[observation.value] += 1
    return {name: found.most_common(1)[0][0] for name, found in counts.items()}


def _lab_values(templates: Sequence[Template]) -> dict[str, list[Fraction]]:
    values: dict[str, set[Fraction]] = {}
    for template in templates:
        for observation, _ in template:
            if isinstance(observation.value, Fraction):
                values.setdefault(observation.name, set()).add(observation.value)
    return {name: sorted(found) for name, found in values.items()}


def _with_thresholds(
    seen: dict[str, list[Fraction]], cuts: dict[str, list[Fraction]]
) -> dict[str, list[Fraction]]:
    """The scenario values of each lab and each of its thresholds exactly: a value on a
    threshold is where a rule and its source most often disagree ('> 10' read as '>= 10')."""
    return {name: sorted({*values, *cuts.get(name, [])}) for name, values in seen.items()}


def _lab_value(lab: LabInput, seen: Sequence[Fraction]) -> st.SearchStrategy[Fraction]:
    anywhere = st.integers(0, 10_000).map(
        lambda k: lab.low + (lab.high - lab.low) * Fraction(k, 10_000)
    )
    return st.integers(0, 9).flatmap(lambda k: anywhere if k == 0 else st.sampled_from(seen))


def typed_value(lab: LabInput, value: Fraction) -> str:
    return f"{format_number(value, 3)} {lab.unit}"


@st.composite
def timelines(
    draw: st.DrawFn,
    protocol: Protocol,
    templates: Sequence[Template],
    seen: dict[str, list[Fraction]],
    firsts: Sequence[Template],
    most: int = MOST_VISITS,
) -> tuple[PatientRecord, list[PlannedVisit]]:
    """A starting record (where a scenario starts) and up to `most` visits made of scenario
    visits' observations, a lab now and then redrawn (`seen`: each lab's scenario values).
    The patient (age, sex, height, weight) is that scenario's throughout."""
    number = draw(st.integers(0, len(protocol.scenarios) - 1))
    record = starting_record(protocol, protocol.scenarios[number])
    date = SCENARIO_START
    visits: list[PlannedVisit] = []
    patient = {o.name: o for o, _ in firsts[number] if o.name in protocol.facts}
    for _ in range(draw(st.integers(1, most))):
        observations = []
        for observation, days_before in templates[draw(st.integers(0, len(templates) - 1))]:
            if observation.name in protocol.facts:
                kept = patient.setdefault(observation.name, observation)
                observations.append(attrs.evolve(kept, drawn_on=date))
                continue
            lab = protocol.labs.get(observation.name)
            value, entered = observation.value, observation.entered
            if lab is not None and isinstance(value, Fraction) and draw(st.integers(0, 4)) == 0:
                value = draw(_lab_value(lab, seen[observation.name]))
                entered = typed_value(lab, value)
            drawn_on = date - dt.timedelta(days=days_before)
            observations.append(
                attrs.evolve(observation, value=value, entered=entered, drawn_on=drawn_on)
            )
        lowering = Fraction(draw(st.integers(0, 99)), 100)
        visits.append(PlannedVisit(date, tuple(observations), lowering))
        date += dt.timedelta(days=draw(st.sampled_from([1, 7, 14, 28, 56, 84])))
    return record, visits


def _step_to(bands: Sequence[Sequence[Fraction]], value: Fraction, steps: int) -> Fraction:
    """The value `steps` bands away (down if < 0): the middle scenario value of that band, so
    a fall of one step crosses one threshold (platelets with thresholds at 125, 100 and 75:
    250 -> about 110 -> about 90 -> about 60)."""
    here = next((i for i, band in enumerate(bands) if band and band[0] <= value), None)
    here = len(bands) - 1 if here is None else here  # below every band: the lowest
    target = min(max(here - steps, 0), len(bands) - 1)  # bands run from high to low
    if target == here:
        return value
    band = bands[target]
    return band[len(band) // 2]  # inside the band, clear of a threshold it may sit on


def thresholds(protocol: Protocol) -> dict[str, list[Fraction]]:
    """Each lab's thresholds, in its own unit, wherever the protocol compares it: rules,
    monitoring, memory and label invariants (a multiple of a ULN at the default ULN; a site
    parameter at its value)."""
    guards: list[Guard] = []
    for state in protocol.states.values():
        guards += [t.when for t in state.transitions]
        guards += [m.when for m in state.monitoring if m.when is not None]
    guards += [slot.once for slot in protocol.memory.values() if slot.once is not None]
    for invariant in protocol.invariants:
        guards += [g for g in (invariant.while_, invariant.once) if g is not None]
    found: dict[str, set[Fraction]] = {}
    for guard in guards:
        for atom in comparisons_in(guard):
            lab = protocol.labs.get(atom.subject)
            if not isinstance(atom, Comparison) or lab is None:
                continue
            scale: Fraction | None = Fraction(1)
            if atom.reference is not None:
                scale = protocol.constants.get(atom.reference)
                if scale is None and atom.reference == f"{lab.name}_uln":
                    scale = lab.uln_default
            if scale is not None:
                found.setdefault(lab.name, set()).add(atom.factor * scale)
    return {name: sorted(values) for name, values in found.items()}


def _bands(
    seen: dict[str, list[Fraction]], cuts: dict[str, list[Fraction]]
) -> dict[str, list[list[Fraction]]]:
    """Each lab's scenario values grouped between its thresholds, highest band first (a
    value on a threshold opens the band above it); empty bands are left out."""
    bands = {}
    for name, values in seen.items():
        edges = cuts.get(name, [])
        groups: list[list[Fraction]] = [[] for _ in range(len(edges) + 1)]
        for value in values:
            groups[sum(1 for edge in edges if value >= edge)].append(value)
        bands[name] = [group for group in reversed(groups) if group]
    return bands


_MOVES = ("down", "up", "down", "recover", "jump", "anywhere", "unmeasured", "down2", "up2")
"""How a lab changes between visits: a step along the values the scenarios use (a fall is
drawn more often than a rise), back to its usual value, a jump, or not measured."""


@attrs.frozen
class CourseParts:
    """The strategies a course draws from, built once per protocol (building a strategy
    costs more than drawing from it)."""

    labs: tuple[str, ...]
    assessed: tuple[str, ...]
    bands: dict[str, list[list[Fraction]]]
    """Each lab's scenario values between its thresholds (a step moves one band)."""
    screenings: list[Template]
    """The first visits of scenarios that start treatment: where whole courses begin."""
    firsts: list[Template]
    """Each scenario's first visit, in scenario order."""
    lab_changes: st.SearchStrategy[list[tuple[str, str]]]
    answers: st.SearchStrategy[list[tuple[str, int]]]
    seen: dict[str, list[Fraction]]
    usual: dict[str, Fraction]
    """Each lab's most common scenario value (the scenario defaults: a normal count)."""
    trends: st.SearchStrategy[tuple[str, int, int]]
    jumps: dict[str, st.SearchStrategy[Fraction]]
    anywhere: dict[str, st.SearchStrategy[Fraction]]
    gaps: st.SearchStrategy[int]

    @classmethod
    def of(
        cls,
        protocol: Protocol,
        seen: dict[str, list[Fraction]],
        usual: dict[str, Fraction],
        screenings: list[Template],
        firsts: list[Template],
    ) -> CourseParts:
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
            bands=_bands(seen, thresholds(protocol)),
            screenings=screenings,
            firsts=firsts,
            lab_changes=st.lists(
                st.tuples(st.sampled_from(labs), st.sampled_from(_MOVES)), max_size=3
            )
            if labs
            else nothing,
            answers=st.lists(st.tuples(st.sampled_from(assessed), st.integers(-1, 7)), max_size=2)
            if assessed
            else st.just([]),
            seen=seen,
            usual=usual,
            trends=st.tuples(st.sampled_from(_TRENDS), st.integers(1, 4), st.integers(1, 2)),
            jumps={name: st.sampled_from(seen[name]) for name in labs},
            anywhere={name: _lab_value(protocol.labs[name], seen[name]) for name in labs},
            gaps=st.sampled_from(_GAPS),
        )


_TRENDS = ("steady", "falls", "recovers", "dips")


def _follow(
    parts: CourseParts,
    name: str,
    value: Fraction,
    shape: tuple[str, int, int],
    visit: int,
) -> Fraction:
    """A lab's value at a visit of a course, by its shape (trend, turn, stride): 'steady'
    keeps it; 'falls' steps down `stride` bands at every visit; 'recovers' is back at the
    lab's usual value from visit `turn`; 'dips' steps down until visit `turn`, then is back
    at the usual value."""
    trend, turn, stride = shape
    if visit == 0 or trend == "steady":
        return value
    if trend == "falls" or (trend == "dips" and visit < turn):
        return _step_to(parts.bands[name], value, -stride)
    if visit >= turn:
        return parts.usual.get(name, value)
    return value


@st.composite
def courses(
    draw: st.DrawFn,
    protocol: Protocol,
    templates: Sequence[Template],
    parts: CourseParts,
    most: int = MOST_COURSE_VISITS,
) -> tuple[PatientRecord, list[PlannedVisit]]:
    """One patient's course: facts from a scenario visit, labs that drift, fall and recover
    through the values the scenarios use, assessments that hold for long runs. Starts at
    screening, or where a scenario starts. Each visit draws only what changes (a short
    list), so hypothesis shrinks a course to the few changes that matter."""
    starts = [n for n, s in enumerate(protocol.scenarios) if s.start_state is not None]
    # Half the courses start at screening (a whole course, from a scenario's first visit at
    # screening), half where a scenario starts (mid-course: a hold, a taper, with that
    # scenario's patient and first values); the first shrinks toward screening.
    record = PatientRecord()
    pool = parts.screenings or templates
    base = pool[draw(st.integers(0, len(pool) - 1))]
    if len(starts) > 0 and draw(st.booleans()):
        number = starts[draw(st.integers(0, len(starts) - 1))]
        record = starting_record(protocol, protocol.scenarios[number])
        base = parts.firsts[number]
    current = {
        observation.name: attrs.evolve(
            observation, drawn_on=SCENARIO_START - dt.timedelta(days=days_before)
        )
        for observation, days_before in base
    }
    # A course has a shape: each lab holds steady, falls, recovers toward its usual value, or
    # dips and recovers; each assessment starts with an answer that holds until it changes.
    trends = {
        name: draw(parts.trends)
        for name, observation in current.items()
        if name in parts.labs and isinstance(observation.value, Fraction)
    }
    for name in parts.assessed:
        pick = draw(st.integers(-1, 7))
        kind = protocol.scope[name]
        assert isinstance(kind, CategoryType)
        if pick >= 0:
            answer = kind.values[pick % len(kind.values)]
            current[name] = Observation(name, answer, answer, SCENARIO_START)
    date = SCENARIO_START
    visits: list[PlannedVisit] = []
    for _ in range(draw(st.integers(1, most))):
        unmeasured: set[str] = set()
        for name, shape in trends.items():
            observation = current[name]
            assert isinstance(observation.value, Fraction)
            value = _follow(parts, name, observation.value, shape, len(visits))
            if value != observation.value:
                lab = protocol.labs[name]
                current[name] = attrs.evolve(
                    observation, value=value, entered=typed_value(lab, value)
                )
        for name, move in draw(parts.lab_changes):
            found = current.get(name)
            if found is None or not isinstance(found.value, Fraction):
                continue
            observation, lab, value = found, protocol.labs[name], found.value
            if move == "unmeasured":
                unmeasured.add(name)
                continue
            if move == "recover":
                value = parts.usual.get(name, value)
            elif move == "jump":
                value = draw(parts.jumps[name])
            elif move == "anywhere":
                value = draw(parts.anywhere[name])
            else:
                steps = {"down": -1, "up": 1, "down2": -2, "up2": 2}[move]
                value = _step_to(parts.bands[name], value, steps)
            current[name] = attrs.evolve(observation, value=value, entered=typed_value(lab, value))
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
