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
import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from dosing.core.units import format_number
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.guards import CategoryType, Comparison, Guard, comparisons_in
from dosing.protocol.model import LabInput, Property, Protocol
from dosing.verify.invariants import CourseWatch
from dosing.verify.properties import lower_raises, over_maximum_at
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


def _typed(lab: LabInput, value: Fraction) -> str:
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
                entered = _typed(lab, value)
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
class _CourseParts:
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
    ) -> _CourseParts:
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
    parts: _CourseParts,
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
    parts: _CourseParts,
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
                current[name] = attrs.evolve(observation, value=value, entered=_typed(lab, value))
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
    found: dict[str, str] = {}
    for visit in visits:
        decision, after = step(protocol, record, visit.date, visit.observations, explain=False)
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


SCRIPTED_VISITS = 15
"""Visits of a scripted course, every 14 days: past 6 months, where stops and tapers fall."""


def scripted_courses(
    protocol: Protocol, found: Sequence[Template], parts: _CourseParts
) -> list[tuple[PatientRecord, list[PlannedVisit]]]:
    """Courses that make the usual events certain rather than likely: from a start at
    screening with usual values and the usual answers (the scenarios' most common), seen
    every 2 weeks for 7 months,

    - each lab at the middle and at both ends of each band other than its usual one (a
      count below a threshold, a liver test above one, a value exactly on a threshold), at
      the first visit or at the third (a lab only read on treatment), usual again after;
    - each pair of labs, one moved to its band farthest from usual and the other to each of
      its other bands, together for two visits, or staggered (the second still out when the
      first is back), or both at their extremes and the second then only partly back, from
      the second visit and again from the sixth (after the first changes for response): two
      toxicities at one visit, a hold with a second low count, a restart before both recover;
    - and every patient a scenario starts from screening, followed for a month.
    """
    if not parts.screenings:
        return []
    usual = parts.usual
    base = max(
        parts.screenings,
        key=lambda t: sum(1 for o, _ in t if usual.get(o.name) == o.value),
    )
    answers = _usual_answers(protocol, found)
    away = {
        name: _away_from_usual(bands, usual.get(name))
        for name, bands in parts.bands.items()
        if len(bands) > 1 and name in parts.labs
    }
    away = {name: values for name, values in away.items() if values}
    plans: list[dict[int, dict[str, Fraction]]] = []
    for name, values in away.items():  # alone: the middle and both ends of each band
        ends = _away_from_usual(parts.bands[name], usual.get(name), at=(0, -1))
        for value in dict.fromkeys([*values, *ends]):
            plans += [{0: {name: value}}, {2: {name: value}}]  # at the start; once on treatment
    for first, extremes in away.items():
        for second, values in away.items():
            if second == first:
                continue
            for value in values:
                both = {first: extremes[-1], second: value}
                for at in (1, 5):  # early, and after the first changes for response
                    plans.append({at: both, at + 1: both})  # out together, back together
                    # staggered: the second goes out while the first is out, back later
                    plans.append({at: {first: extremes[-1]}, at + 1: both, at + 2: {second: value}})
            if len(values) >= 2:  # both at their extremes, then the second only partly back
                for at in (1, 5):
                    extreme = {first: extremes[-1], second: values[-1]}
                    plans.append({at: extreme, at + 1: {second: values[-2]}})
    unique = {
        tuple(sorted((at, tuple(sorted(labs.items()))) for at, labs in plan.items())): plan
        for plan in plans
    }  # a pair at both extremes is the same course whichever lab is named first
    courses = [
        _scripted(protocol, base, answers, usual, plan, _length(plan)) for plan in unique.values()
    ]
    # every patient a scenario starts (their age, size, labs), followed for a month
    courses += [_scripted(protocol, start, answers, {}, {}, 3) for start in parts.screenings]
    return courses


def _length(plan: dict[int, dict[str, Fraction]]) -> int:
    """A course long enough for what follows its last change: the recovery, the restart and
    the rules that wait weeks after it (12 weeks), or the full course for a change at the
    start (a low baseline is remembered all course long)."""
    last = max(plan)
    return SCRIPTED_VISITS if last < 2 else min(SCRIPTED_VISITS, last + 7)


def _away_from_usual(
    bands: Sequence[Sequence[Fraction]], usual: Fraction | None, at: Sequence[int] = ()
) -> list[Fraction]:
    """A value in each band other than the usual one, the band farthest from usual last:
    the band's middle scenario value (clear of a threshold it may sit on), or the values at
    the positions `at` (0 and -1: the ends, on or next to a threshold)."""
    if usual is None:
        return []
    here = next((i for i, band in enumerate(bands) if band[0] <= usual), len(bands) - 1)
    if at:
        ends = [[band[i] for i in at] for band in bands]
        above_ends = [v for band in reversed(ends[:here]) for v in band]
        below_ends = [v for band in ends[here + 1 :] for v in band]
        return above_ends + below_ends
    middle = [band[len(band) // 2] for band in bands]
    above = list(reversed(middle[:here]))  # bands run from high to low
    below = middle[here + 1 :]
    # the side with more bands (below for a count, above for a liver test) goes last
    return above + below if len(below) >= len(above) else below + above


def _usual_answers(protocol: Protocol, found: Sequence[Template]) -> dict[str, str]:
    """Each assessment's most common answer in the scenarios."""
    counts: dict[str, Counter[str]] = {}
    for template in found:
        for observation, _ in template:
            if isinstance(observation.value, str) and observation.name in protocol.assessments:
                counts.setdefault(observation.name, Counter())[observation.value] += 1
    return {name: found.most_common(1)[0][0] for name, found in counts.items()}


def _scripted(
    protocol: Protocol,
    base: Template,
    answers: dict[str, str],
    usual: dict[str, Fraction],
    plan: dict[int, dict[str, Fraction]],
    length: int = SCRIPTED_VISITS,
) -> tuple[PatientRecord, list[PlannedVisit]]:
    visits = []
    for number in range(length):
        date = SCENARIO_START + dt.timedelta(days=14 * number)
        changed = plan.get(number, {})
        observations = {}
        for observation, _ in base:
            value = changed.get(observation.name, observation.value)
            entered = observation.entered
            if value != observation.value:
                entered = _typed(protocol.labs[observation.name], value)  # type: ignore[arg-type]
            observations[observation.name] = attrs.evolve(
                observation, value=value, entered=entered, drawn_on=date
            )
        for name, value in {**usual, **changed}.items():  # a lab the screening visit lacks
            if name not in observations and name in protocol.labs:
                typed = _typed(protocol.labs[name], value)
                observations[name] = Observation(name, value, typed, date)
        for name, answer in answers.items():
            observations.setdefault(name, Observation(name, answer, answer, date))
        visits.append(PlannedVisit(date, tuple(observations.values())))
    return PatientRecord(), visits


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
    found, screenings, firsts = templates(protocol)
    seen = _with_thresholds(_lab_values(found), thresholds(protocol))
    parts = _CourseParts.of(protocol, seen, _usual_values(found), screenings, firsts)
    results: dict[str, Counterexample] = {}
    for course in scripted_courses(protocol, found, parts):
        for name in _failures(protocol, course):
            if name not in results:
                results[name] = _first_breach(protocol, course, name)
                if first_only:
                    return [results[name]]
    strategies = (
        courses(protocol, found, parts, max(most_visits, MOST_COURSE_VISITS)),
        timelines(protocol, found, seen, firsts, most_visits),
    )
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
