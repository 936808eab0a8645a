"""The properties each protocol declares, searched for counterexamples with hypothesis.

A timeline starts where one of the protocol's scenarios starts. Each visit borrows the
observations of a scenario visit (so assessments and patient facts stay realistic) and
redraws any of its labs anywhere in the lab's plausible range. Along the timeline:
- `within_max_daily_dose`: no decision exceeds limits.max_daily_dose;
- `lower_never_raises`: from the same record, a lower value of the lab never gives a higher
  daily dose.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dosing.engine import step
from dosing.errors import ProtocolError
from dosing.model import LabInput, Property, Protocol
from dosing.observations import Observation
from dosing.patient import PatientRecord
from dosing.properties import lower_raises, over_maximum
from dosing.protocol_file import load_protocol
from dosing.scenarios import SCENARIO_START, run_scenario, starting_record

from .conftest import PROTOCOL_FILES, ROOT, load_file

Template = tuple[tuple[Observation, int], ...]
"""A scenario visit's observations, each with how many days before the visit it was drawn."""

WITH_PROPERTIES = [p for p in PROTOCOL_FILES if load_file(p).properties]


def _templates(protocol: Protocol) -> list[Template]:
    templates = []
    for scenario in protocol.scenarios:
        for result in run_scenario(protocol, scenario):
            date = SCENARIO_START + dt.timedelta(days=result.visit.day)
            templates.append(tuple((o, (date - o.drawn_on).days) for o in result.observations))
    return templates


def _lab_values(templates: Sequence[Template]) -> dict[str, list[Fraction]]:
    """Per lab, every value the scenarios use: normal ones and each side of every threshold."""
    values: dict[str, set[Fraction]] = {}
    for template in templates:
        for observation, _ in template:
            if isinstance(observation.value, Fraction):
                values.setdefault(observation.name, set()).add(observation.value)
    return {name: sorted(found) for name, found in values.items()}


def _lab_value(lab: LabInput, seen: Sequence[Fraction]) -> st.SearchStrategy[Fraction]:
    """Mostly a value the scenarios use; sometimes anywhere in the plausible range."""
    anywhere = st.integers(0, 10_000).map(
        lambda k: lab.low + (lab.high - lab.low) * Fraction(k, 10_000)
    )
    return st.integers(0, 9).flatmap(lambda k: anywhere if k == 0 else st.sampled_from(seen))


@attrs.frozen
class PlannedVisit:
    date: dt.date
    observations: tuple[Observation, ...]
    lowering: Fraction
    """Where the lowered value falls between the lab's floor (0) and the value seen (1)."""


@st.composite
def _timelines(
    draw: st.DrawFn, protocol: Protocol, templates: Sequence[Template]
) -> tuple[PatientRecord, list[PlannedVisit]]:
    seen = _lab_values(templates)
    scenario = draw(st.sampled_from(protocol.scenarios))
    record = starting_record(protocol, scenario)
    date = SCENARIO_START
    visits = []
    for _ in range(draw(st.integers(1, 8))):
        template = draw(st.sampled_from(templates))
        observations = []
        for observation, days_before in template:
            lab = protocol.labs.get(observation.name)
            value = observation.value
            if lab is not None and isinstance(value, Fraction) and draw(st.integers(0, 4)) == 0:
                value = draw(_lab_value(lab, seen[observation.name]))
            drawn_on = date - dt.timedelta(days=days_before)
            observations.append(
                attrs.evolve(observation, value=value, entered=str(value), drawn_on=drawn_on)
            )
        lowering = Fraction(draw(st.integers(0, 99)), 100)
        visits.append(PlannedVisit(date, tuple(observations), lowering))
        date += dt.timedelta(days=draw(st.sampled_from([1, 7, 14, 28, 56, 84])))
    return record, visits


def _violations(
    protocol: Protocol, record: PatientRecord, visits: Sequence[PlannedVisit]
) -> list[str]:
    """Every declared property broken along the timeline, described."""
    found = []
    for prop in protocol.properties:
        if prop.within_max_daily_dose:
            broken = over_maximum(protocol, record, [(v.date, v.observations) for v in visits])
            if broken is not None:
                found.append(f"{prop.name}: {broken}")
        found += _lowering_violations(protocol, prop, record, visits)
    return found


def _lowering_violations(
    protocol: Protocol, prop: Property, record: PatientRecord, visits: Sequence[PlannedVisit]
) -> list[str]:
    found = []
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
                    found.append(f"{prop.name}: {visit.date} {broken}")
        _, record = step(protocol, record, visit.date, visit.observations)
    return found


def _search(protocol: Protocol, examples: int, derandomize: bool = False) -> None:
    # A deliberately broken protocol (derandomize) only needs the counterexample, not its
    # shrunk form: skipping the shrink keeps those tests fast.
    """Search generated timelines; fails (with hypothesis's shrunk timeline) on a violation."""
    templates = _templates(protocol)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        phases=[Phase.generate] if derandomize else list(Phase),
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(_timelines(protocol, templates))
    def holds(timeline: tuple[PatientRecord, list[PlannedVisit]]) -> None:
        record, visits = timeline
        assert _violations(protocol, record, visits) == []

    holds()


@pytest.mark.parametrize("path", WITH_PROPERTIES, ids=lambda p: p.stem)
def test_declared_properties_hold_on_generated_timelines(path: Path) -> None:
    _search(load_file(path), examples=150)


IMATINIB = ROOT / "protocols" / "imatinib-hes.yaml"


def _imatinib_with(old: str, new: str) -> Protocol:
    text = IMATINIB.read_text(encoding="utf-8")
    assert old in text
    return load_protocol(text.replace(old, new, 1), "imatinib-hes.yaml")


def test_an_escalation_past_the_maximum_is_found() -> None:
    # NILG escalates 100 mg a week up to 400 mg; the loader refuses a ladder above the
    # maximum, so lower the maximum after loading.
    nilg = load_file(ROOT / "protocols" / "imatinib-escalation-nilg.yaml")
    protocol = attrs.evolve(nilg, max_daily_dose=Fraction(200))
    with pytest.raises(
        AssertionError, match=r"300 mg/day would exceed the protocol maximum of 200"
    ):
        _search(protocol, examples=200, derandomize=True)


def test_holding_on_a_normal_count_is_found() -> None:
    # Reversed, the hematologic hold stops imatinib while ANC is normal and continues it once
    # ANC falls: lowering the count raises the dose.
    protocol = _imatinib_with(
        "when: anc < 1.0 x10^9/L or platelets < 50 x10^9/L\n        to: hold_heme",
        "when: anc >= 1.0 x10^9/L or platelets < 50 x10^9/L\n        to: hold_heme",
    )
    with pytest.raises(AssertionError, match=r"lower counts never raise the dose: .* anc "):
        _search(protocol, examples=100, derandomize=True)


def test_a_property_naming_a_lab_the_protocol_does_not_read_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"properties\[0\]\.lower_never_raises.*'trough'"):
        _imatinib_with("lower_never_raises: [anc, platelets]", "lower_never_raises: [trough]")


def test_a_maximum_property_without_a_maximum_is_refused() -> None:
    text = (ROOT / "protocols" / "ruxolitinib-hlh.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "\nscenario_defaults:",
        "\nproperties:\n  - name: capped\n    within_max_daily_dose: true\n\nscenario_defaults:",
        1,
    )
    with pytest.raises(ProtocolError, match=r"within_max_daily_dose needs limits.max_daily_dose"):
        load_protocol(text, "ruxolitinib-hlh.yaml")
