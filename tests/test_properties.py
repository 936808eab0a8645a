"""The properties each protocol declares, searched for counterexamples with hypothesis.

A timeline starts where one of the protocol's scenarios starts. Each visit borrows the
observations of a scenario visit (so assessments and patient facts stay realistic) and
redraws any of its labs anywhere in the lab's plausible range. Along the timeline:
- `within_max_daily_dose`: no recommended dose exceeds limits.max_daily_dose;
- `rules_within_max_daily_dose`: no rule even asks for more (the engine never has to refer
  because of the maximum);
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
from dosing.observations import Observation, read_observation
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
    draw: st.DrawFn, protocol: Protocol, templates: Sequence[Template], most: int
) -> tuple[PatientRecord, list[PlannedVisit]]:
    seen = _lab_values(templates)
    scenario = draw(st.sampled_from(protocol.scenarios))
    record = starting_record(protocol, scenario)
    date = SCENARIO_START
    visits = []
    for _ in range(draw(st.integers(1, most))):
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
        if prop.within_max_daily_dose or prop.rules_within_max_daily_dose:
            timeline = [(v.date, v.observations) for v in visits]
            broken = over_maximum(protocol, record, timeline, prop.rules_within_max_daily_dose)
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


def _search(
    protocol: Protocol,
    examples: int,
    derandomize: bool = False,
    shrink: bool = True,
    most_visits: int = 8,
) -> None:
    # A deliberately broken protocol (derandomize) is searched the same way every run.
    """Search generated timelines; fails (with hypothesis's shrunk timeline) on a violation."""
    templates = _templates(protocol)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        phases=list(Phase) if shrink else [Phase.generate],
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(_timelines(protocol, templates, most_visits))
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


NILG = ROOT / "protocols" / "imatinib-escalation-nilg.yaml"


def test_an_escalation_past_the_maximum_is_found() -> None:
    # NILG escalates 100 mg a week up to 400 mg; the loader refuses a ladder above the
    # maximum, so lower the maximum after loading.
    protocol = attrs.evolve(load_file(NILG), max_daily_dose=Fraction(200))
    with pytest.raises(
        AssertionError, match=r"300 mg/day would exceed the protocol maximum of 200"
    ):
        _search(protocol, examples=200, derandomize=True, shrink=False)


def test_a_recommended_dose_past_the_maximum_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the engine's safeguard, the escalation itself is recommended.
    monkeypatch.setattr("dosing.engine._Decider.within_limit", lambda self, doses: True)
    nilg = load_file(NILG)
    protocol = attrs.evolve(
        nilg,
        max_daily_dose=Fraction(200),
        properties=tuple(p for p in nilg.properties if not p.rules_within_max_daily_dose),
    )
    with pytest.raises(AssertionError, match=r"300 mg/day in \w+ above 200"):
        _search(protocol, examples=200, derandomize=True, shrink=False)


def test_tacrolimus_rules_can_ask_for_more_than_the_site_maximum() -> None:
    # Why tacrolimus-trough declares only the recommended-dose property: 4 mg bid with a
    # trough of 2 ng/mL scales by the largest step (+50%) to 6 mg bid, 12 mg/day.
    protocol = load_file(ROOT / "protocols" / "tacrolimus-trough.yaml")
    visit = SCENARIO_START
    record = PatientRecord(
        state="on_tacrolimus",
        state_since=visit - dt.timedelta(days=30),
        therapy_started_on=visit - dt.timedelta(days=30),
        dose_since=visit - dt.timedelta(days=7),
        memory={
            **{k: s.initial for k, s in protocol.memory.items()},
            "tacrolimus_dose": Fraction(4),
        },
    )
    typed = {"age": "50 years", "tacrolimus_trough": "2 ng/mL", "sample_timing": "trough"}
    observations = [read_observation(protocol, k, v, visit) for k, v in typed.items()]
    timeline = [(visit, observations)]
    decision, _ = step(protocol, record, visit, observations)
    assert decision.action == "refer", decision
    assert over_maximum(protocol, record, timeline) is None
    strict = over_maximum(protocol, record, timeline, rules_too=True)
    assert strict is not None
    assert "12 mg/day would exceed the protocol maximum of 10" in strict


def test_holding_on_a_normal_count_is_found() -> None:
    # Reversed, the hematologic hold stops imatinib while ANC is normal and continues it once
    # ANC falls: lowering the count raises the dose.
    protocol = _imatinib_with(
        "when: anc < 1.0 x10^9/L or platelets < 50 x10^9/L\n        to: hold_heme",
        "when: anc >= 1.0 x10^9/L or platelets < 50 x10^9/L\n        to: hold_heme",
    )
    with pytest.raises(
        AssertionError, match=r"lower counts never raise the dose: .* anc "
    ) as caught:
        _search(protocol, examples=100, derandomize=True, most_visits=2)
    # Shrunk to a minimal timeline: one visit is enough to show it.
    shrunk = "".join(getattr(caught.value, "__notes__", []))
    assert shrunk.count("PlannedVisit(") == 1, shrunk


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
