"""The compiled evaluator against the reference: the same decision records, byte for byte.

`engine.step` with its default evaluator is the reference. Replay uses the compiled one
(`engine.compiled`). Every scenario of every shipped protocol, re-typed in every unit its
values can be written in, and the timelines `dosing check` generates, go through both; the
JSON line of every decision and the record after it must be identical.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Iterator
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dosing.core.errors import DosingError, UnitError
from dosing.core.units import accepted_spellings, conversion, format_number
from dosing.engine.compiled import BAND, CachedReader, CompiledEvaluator, fast_compare
from dosing.engine.observations import Observation, ObservationReader
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.catalog import load, shipped_ids
from dosing.protocol.model import Protocol, Scenario
from dosing.replay.writers import jsonl_line
from dosing.verify.property_search import check_timelines
from dosing.verify.scenarios import SCENARIO_START, starting_record

PROTOCOLS = shipped_ids()


def _spellings(protocol: Protocol, reader: ObservationReader, name: str, text: str) -> list[str]:
    """`text` and every other way of writing the same value exactly, one per unit spelling
    the lab accepts (a value that is not a finite decimal in a unit is left out there)."""
    reading = protocol.readings.get(name)
    try:
        value = reader.read(name, text, SCENARIO_START).value
    except DosingError:
        return [text]
    if reading is None or not isinstance(value, Fraction):
        return [text]
    typed = [text]
    for spelling in accepted_spellings(reading.unit, reading.molar_mass):
        try:
            number = conversion(spelling, reading.unit, name, reading.molar_mass).invert(value)
        except UnitError:
            continue
        written = format_number(number, 12)
        if Fraction(written) != number:
            continue  # not a finite decimal in this unit
        again = f"{written} {spelling}"
        try:
            if reader.read(name, again, SCENARIO_START).value == value:
                typed.append(again)
        except DosingError:
            continue  # implausible or refused in this spelling: not an equivalent
    return typed


def _retyped(protocol: Protocol, scenario: Scenario) -> Iterator[dict[tuple[int, str], str]]:
    """The scenario's texts, per variant: variant k writes each value in its k-th spelling."""
    reader = ObservationReader(protocol)
    choices = {
        (number, name): _spellings(protocol, reader, name, text)
        for number, visit in enumerate(scenario.visits)
        for name, (text, _) in visit.observations.items()
    }
    for k in range(max((len(texts) for texts in choices.values()), default=1)):
        yield {where: texts[k % len(texts)] for where, texts in choices.items()}


def _both(
    protocol: Protocol,
    compiled: CompiledEvaluator,
    record: PatientRecord,
    date: dt.date,
    observations: tuple[Observation, ...],
    patient: str | None,
) -> PatientRecord:
    """One visit through both evaluators; returns the record after it. A visit the engine
    refuses must be refused by both, with the same message (DosingError is raised on)."""
    try:
        expected, after = step(protocol, record, date, observations, patient)
    except DosingError as error:
        refused = str(error)
    else:
        got, got_after = step(protocol, record, date, observations, patient, evaluator=compiled)
        assert jsonl_line(got) == jsonl_line(expected)
        assert got_after == after
        return after
    with pytest.raises(DosingError) as raised:
        step(protocol, record, date, observations, patient, evaluator=compiled)
    assert str(raised.value) == refused
    raise raised.value


@pytest.mark.parametrize("protocol_id", PROTOCOLS)
def test_every_scenario_in_every_unit_is_decided_identically(protocol_id: str) -> None:
    protocol = load(protocol_id)
    compiled = CompiledEvaluator(protocol)  # one for all: later visits hit what earlier kept
    reader = CachedReader(protocol)
    visits = 0
    for scenario in protocol.scenarios:
        for texts in _retyped(protocol, scenario):
            record = starting_record(protocol, scenario)
            for number, visit in enumerate(scenario.visits):
                date = SCENARIO_START + dt.timedelta(days=visit.day)
                observations = tuple(
                    reader.read(name, texts[(number, name)], date - dt.timedelta(days=before))
                    for name, (_, before) in visit.observations.items()
                )
                try:
                    record = _both(protocol, compiled, record, date, observations, scenario.name)
                except DosingError:
                    break
                visits += 1
    assert visits > 0


@pytest.mark.parametrize("protocol_id", PROTOCOLS)
def test_the_timelines_check_generates_are_decided_identically(protocol_id: str) -> None:
    protocol = load(protocol_id)
    compiled = CompiledEvaluator(protocol)
    timelines = check_timelines(protocol, examples=40)
    assert timelines or not protocol.scenarios
    for record, visits in timelines:
        for visit in visits:
            try:
                record = _both(protocol, compiled, record, visit.date, visit.observations, None)
            except DosingError:
                break


def test_a_retyped_scenario_really_changes_units() -> None:
    """The re-typing is not a no-op: an ANC is written in more than one unit."""
    protocol = load("imatinib-hes")
    reader = ObservationReader(protocol)
    typed = _spellings(protocol, reader, "anc", "1200 /mm3")
    assert len(typed) >= 3
    assert {reader.read("anc", text, SCENARIO_START).value for text in typed} == {Fraction(6, 5)}


_OPS = ("<", "<=", ">", ">=", "==", "!=")
_EXACT = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@given(
    threshold=st.fractions(max_denominator=10**6).filter(lambda f: abs(f) < 10**9),
    nudge=st.integers(-(10**6), 10**6),
    scale=st.sampled_from([10**3, 10**9, 10**12, 10**15, 10**18, 10**30]),
    op=st.sampled_from(_OPS),
)
@example(threshold=Fraction(3, 2), nudge=1, scale=10**15, op="<")
@example(threshold=Fraction(0), nudge=1, scale=10**30, op=">")
@example(threshold=Fraction(1, 3), nudge=0, scale=10**3, op="==")
def test_fast_comparisons_are_exact_on_and_around_a_threshold(
    threshold: Fraction, nudge: int, scale: int, op: str
) -> None:
    """Values a hair from the threshold (inside the float band and just outside it) compare
    exactly as Fractions do."""
    value = threshold + Fraction(nudge, scale) * (abs(threshold) or 1)
    assert fast_compare(op)(value, threshold) is _EXACT[op](value, threshold)


def test_the_band_is_wider_than_float_error() -> None:
    assert 1e-15 < BAND < 1e-9


def test_a_refused_value_is_refused_again_with_the_same_message() -> None:
    protocol = load("imatinib-hes")
    reader = CachedReader(protocol)
    messages = []
    for _ in range(2):
        with pytest.raises(DosingError) as raised:
            reader.read("anc", "8 .5 x10^9/L", SCENARIO_START)
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert "8 .5" in messages[0]
