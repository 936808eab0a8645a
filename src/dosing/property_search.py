"""Searching generated timelines for a counterexample to a protocol's declared properties.

A timeline starts where one of the protocol's scenarios starts. Each visit borrows the
observations of a scenario visit (so assessments and patient facts stay realistic) and now
and then redraws one of its labs: mostly to a value some scenario uses (normal values and
each side of every threshold), sometimes anywhere in the lab's plausible range. hypothesis
generates the timelines and shrinks a failure to a minimal one. Pure: no example database,
no output, and the same search every run (derandomized), so a report is reproducible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from fractions import Fraction

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from dosing.engine import step
from dosing.model import LabInput, Property, Protocol
from dosing.observations import Observation
from dosing.patient import PatientRecord
from dosing.properties import lower_raises, over_maximum
from dosing.scenarios import SCENARIO_START, run_scenario, starting_record
from dosing.units import format_number

Template = tuple[tuple[Observation, int], ...]
"""A scenario visit's observations, each with how many days before the visit it was drawn."""

EXAMPLES = 100
"""Timelines tried per protocol by `dosing check` (each up to MOST_VISITS visits)."""
MOST_VISITS = 8


@attrs.frozen
class PlannedVisit:
    """One generated visit: its date, what was observed, and how far to lower a lab."""

    date: dt.date
    observations: tuple[Observation, ...]
    lowering: Fraction
    """Where the lowered value falls between the lab's plausible floor (0) and the value (1)."""


@attrs.frozen
class Counterexample:
    """A property that failed, why, and the minimal timeline that shows it."""

    property: str
    violation: str
    start: str
    visits: tuple[str, ...]

    def describe(self) -> str:
        steps = "; ".join(f"visit {n}: {v}" for n, v in enumerate(self.visits, 1))
        return f"{self.violation}. Minimal timeline from {self.start}: {steps}"


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


@st.composite
def timelines(
    draw: st.DrawFn, protocol: Protocol, templates: Sequence[Template], most: int = MOST_VISITS
) -> tuple[PatientRecord, list[PlannedVisit]]:
    """A starting record and up to `most` visits."""
    seen = _lab_values(templates)
    record = starting_record(protocol, draw(st.sampled_from(protocol.scenarios)))
    date = SCENARIO_START
    visits = []
    for _ in range(draw(st.integers(1, most))):
        observations = []
        for observation, days_before in draw(st.sampled_from(templates)):
            lab = protocol.labs.get(observation.name)
            value, entered = observation.value, observation.entered
            if lab is not None and isinstance(value, Fraction) and draw(st.integers(0, 4)) == 0:
                value = draw(_lab_value(lab, seen[observation.name]))
                entered = f"{format_number(value, 3)} {lab.unit}"
            drawn_on = date - dt.timedelta(days=days_before)
            observations.append(
                attrs.evolve(observation, value=value, entered=entered, drawn_on=drawn_on)
            )
        lowering = Fraction(draw(st.integers(0, 99)), 100)
        visits.append(PlannedVisit(date, tuple(observations), lowering))
        date += dt.timedelta(days=draw(st.sampled_from([1, 7, 14, 28, 56, 84])))
    return record, visits


def violation(
    protocol: Protocol, prop: Property, record: PatientRecord, visits: Sequence[PlannedVisit]
) -> str | None:
    """How the timeline breaks the property, or None."""
    if prop.within_max_daily_dose or prop.rules_within_max_daily_dose:
        timeline = [(v.date, v.observations) for v in visits]
        broken = over_maximum(protocol, record, timeline, prop.rules_within_max_daily_dose)
        if broken is not None:
            return broken
    for visit in visits:
        for lab in prop.lower_never_raises:
            seen = next((o.value for o in visit.observations if o.name == lab), None)
            if isinstance(seen, Fraction):
                floor = protocol.labs[lab].low
                lower = floor + (seen - floor) * visit.lowering
                broken = lower_raises(
                    protocol, prop, record, visit.date, visit.observations, lab, lower
                )
                if broken is not None:
                    return f"{visit.date} {broken}"
        _, record = step(protocol, record, visit.date, visit.observations)
    return None


def _described(
    protocol: Protocol, prop: Property, record: PatientRecord, visits: Sequence[PlannedVisit]
) -> Counterexample | None:
    broken = violation(protocol, prop, record, visits)
    if broken is None:
        return None
    start = record.state or protocol.initial
    memory = ", ".join(f"{k} {_text(v)}" for k, v in record.memory.items())
    lines = []
    for visit in visits:
        observed = ", ".join(f"{o.name} {o.entered}" for o in visit.observations)
        lines.append(f"{visit.date} {observed}")
        _, record = step(protocol, record, visit.date, visit.observations)
    return Counterexample(prop.name, broken, f"{start} ({memory})", tuple(lines))


def _text(value: Fraction | str) -> str:
    return format_number(value) if isinstance(value, Fraction) else value


def search(
    protocol: Protocol,
    examples: int = EXAMPLES,
    most_visits: int = MOST_VISITS,
    shrink: bool = True,
) -> Counterexample | None:
    """The first property of the protocol a generated timeline breaks (shrunk), or None."""
    if not protocol.properties or not protocol.scenarios:
        return None
    found = templates(protocol)

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
    @given(timelines(protocol, found, most_visits))
    def holds(timeline: tuple[PatientRecord, list[PlannedVisit]]) -> None:
        record, visits = timeline
        for prop in protocol.properties:
            counterexample = _described(protocol, prop, record, visits)
            if counterexample is not None:
                raise _Violated(counterexample)

    try:
        holds()
    except _Violated as violated:
        return violated.found
    return None
