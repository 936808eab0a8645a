"""The properties each protocol declares, searched for counterexamples on generated timelines
(dosing.verify.property_search); the same search runs in `dosing check`."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import attrs
import pytest

from dosing.core.errors import ProtocolError
from dosing.engine.observations import read_observation
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.loader import load_protocol
from dosing.protocol.model import Protocol
from dosing.verify.check import check
from dosing.verify.properties import over_maximum
from dosing.verify.property_search import search
from dosing.verify.scenarios import SCENARIO_START
from tests.conftest import PROTOCOL_FILES, ROOT, load_file

WITH_PROPERTIES = [p for p in PROTOCOL_FILES if load_file(p).properties]
IMATINIB = ROOT / "protocols" / "imatinib-hes.yaml"
NILG = ROOT / "protocols" / "imatinib-escalation-nilg.yaml"


@pytest.mark.parametrize("path", WITH_PROPERTIES, ids=lambda p: p.stem)
def test_declared_properties_hold_on_generated_timelines(path: Path) -> None:
    found = search(load_file(path), examples=150)
    assert found is None, found.describe() if found else ""


def test_every_protocol_but_hlh_declares_properties() -> None:
    # ruxolitinib-hlh has no maximum, and its doses follow weight, not counts.
    assert sorted(p.stem for p in WITH_PROPERTIES) == sorted(
        p.stem for p in PROTOCOL_FILES if p.stem != "ruxolitinib-hlh"
    )


def _imatinib_text_with(old: str, new: str) -> str:
    text = IMATINIB.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


def _imatinib_with(old: str, new: str) -> Protocol:
    return load_protocol(_imatinib_text_with(old, new), "imatinib-hes.yaml")


def _reversed_hold() -> str:
    """imatinib-hes with the hematologic hold reversed: it holds while ANC is normal."""
    return _imatinib_text_with(
        "when: anc < 1.0 x10^9/L or platelets < 50 x10^9/L\n        to: hold_heme",
        "when: anc >= 1.0 x10^9/L or platelets < 50 x10^9/L\n        to: hold_heme",
    )


def test_an_escalation_past_the_maximum_is_found() -> None:
    # NILG escalates 100 mg a week up to 400 mg; the loader refuses a ladder above the
    # maximum, so lower the maximum after loading.
    protocol = attrs.evolve(load_file(NILG), max_daily_dose=Fraction(200))
    found = search(protocol, examples=200, shrink=False)
    assert found is not None
    assert found.property == "no rule asks for more than the maximum"
    assert "300 mg/day would exceed the protocol maximum of 200" in found.violation


def test_a_recommended_dose_past_the_maximum_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the engine's safeguard, the escalation itself is recommended.
    monkeypatch.setattr("dosing.engine.step._Decider.within_limit", lambda self, doses: True)
    nilg = load_file(NILG)
    protocol = attrs.evolve(
        nilg,
        max_daily_dose=Fraction(200),
        properties=tuple(p for p in nilg.properties if not p.rules_within_max_daily_dose),
    )
    found = search(protocol, examples=200, shrink=False)
    assert found is not None
    assert re.search(r"300 mg/day in \w+ above 200", found.violation), found


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
    # ANC falls: lowering the count raises the dose. (The label invariants catch it too, in
    # their own words: see test_invariants.py; here only the declared property is searched.)
    protocol = attrs.evolve(load_protocol(_reversed_hold(), "imatinib-hes.yaml"), invariants=())
    found = search(protocol, most_visits=2)
    assert found is not None
    assert found.property == "lower counts never raise the dose"
    assert re.search(
        r"in dose_[34]00: anc \S+ gives 0 mg/day, \S+ gives [34]00 mg/day", found.violation
    )
    # Shrunk to a minimal timeline: a start and the visit that shows it.
    assert len(found.visits) <= 2, found
    assert "visit 1: 2026-01-05 " in found.describe()


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


def test_dosing_check_reports_a_broken_property_with_its_minimal_timeline(tmp_path: Path) -> None:
    mutant = tmp_path / "imatinib-hes-mutant.yaml"
    mutant.write_text(_reversed_hold(), encoding="utf-8")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "dosing", "check", str(mutant), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 1, run.stderr
    [report] = json.loads(run.stdout)
    [finding] = [f for f in report["findings"] if f["check"] == "property"]
    assert finding["severity"] == "error"
    assert finding["where"] == "properties: lower counts never raise the dose"
    assert "Minimal timeline from " in finding["message"]
    assert finding["timeline"][0].startswith("2026-01-05 ")


def test_properties_without_scenarios_are_reported_as_not_searched() -> None:
    protocol = attrs.evolve(load_file(NILG), scenarios=())
    report = check(protocol)
    assert report.properties == 0
    [finding] = [f for f in report.findings if f.check == "property"]
    assert finding.severity == "warning"
    assert "not searched" in finding.message
