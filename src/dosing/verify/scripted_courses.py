"""Scripted courses, the same every run: a patient started with usual values and seen every
2 weeks, with each lab in turn moved away from usual and back, so that every rule a course
can reach is reached before any random search.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import attrs

from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.model import Protocol
from dosing.verify.generated_courses import CourseParts, PlannedVisit, Template, typed_value
from dosing.verify.scenarios import SCENARIO_START

SCRIPTED_VISITS = 15
"""Visits of a scripted course, every 14 days: past 6 months, where stops and tapers fall."""


def scripted_courses(
    protocol: Protocol, found: Sequence[Template], parts: CourseParts
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
                entered = typed_value(protocol.labs[observation.name], value)  # type: ignore[arg-type]
            observations[observation.name] = attrs.evolve(
                observation, value=value, entered=entered, drawn_on=date
            )
        for name, value in {**usual, **changed}.items():  # a lab the screening visit lacks
            if name not in observations and name in protocol.labs:
                typed = typed_value(protocol.labs[name], value)
                observations[name] = Observation(name, value, typed, date)
        for name, answer in answers.items():
            observations.setdefault(name, Observation(name, answer, answer, date))
        visits.append(PlannedVisit(date, tuple(observations.values())))
    return PatientRecord(), visits
