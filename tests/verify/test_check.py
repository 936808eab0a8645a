"""dosing check: shipped protocols pass; broken ones are caught with their exact message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dosing.protocol.loader import load_protocol
from dosing.verify.check import check
from dosing.verify.mutation import mutation_score
from tests.conftest import PROTOCOL_FILES, ROOT, load_file

BROKEN = sorted((Path(__file__).parent / "broken_protocols").glob("*.yaml"))
INVALID = Path(__file__).parents[1] / "protocol" / "invalid_protocols"


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_shipped_protocol_passes_every_check(path: Path) -> None:
    """No errors on any shipped protocol: no gap, shadowed rule, dead end, unit disagreement."""
    # Declared properties are searched in tests/verify/test_properties.py (more timelines).
    report = check(load_file(path), property_examples=0)
    errors = [
        f"{f.check}: {f.where}: {f.message}" for f in report.findings if f.severity == "error"
    ]
    assert not errors, "\n".join(errors)
    assert report.transitions_exercised == report.transitions
    assert report.boundary_cases > 50


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_mutation_score_is_at_least_90_percent(path: Path) -> None:
    """The scenarios catch at least 90% of small mutants of the rules."""
    result = mutation_score(load_file(path))
    assert result.score >= 0.9, [m.change for m in result.survivors]


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_protocol_is_caught(path: Path) -> None:
    """Each broken protocol gives the finding written on its first line."""
    text = path.read_text(encoding="utf-8")
    expected = text.splitlines()[0].removeprefix("# expect: ")
    findings = check(load_protocol(text, path.name), property_examples=0).findings
    assert expected in [
        f"{f.check}: {f.where}: {f.message}" for f in findings if f.severity == "error"
    ]


def dosing(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dosing", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,  # a blow-up fails the test instead of the CI run
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("overlap", "rules 'start-full' and 'start-reduced' have equal priority 0 and both apply"),
        ("unreachable", "there are unreachable states: dose_300"),
        (
            "unit_mismatch",
            "mg/dL measures mass concentration, but ANC is measured as count per volume",
        ),
        (
            "ladder_over_maximum",
            "the top level, 800 mg qd, is 800 mg/day, above the protocol's maximum",
        ),
    ],
)
def test_check_reports_protocols_that_do_not_load(name: str, message: str) -> None:
    """Overlaps, unreachable states, unit mismatches and escalation past the maximum fail
    loading; dosing check reports them as errors and exits 1."""
    result = dosing("check", str(INVALID / f"{name}.yaml"), "--json")
    assert result.returncode == 1
    (report,) = json.loads(result.stdout)
    assert report["errors"] == 1
    assert message in report["findings"][0]["message"]


def test_check_all_shipped_exits_zero_with_a_report() -> None:
    """dosing check with no arguments checks every shipped protocol."""
    result = dosing("check")
    assert result.returncode == 0, result.stdout
    for path in PROTOCOL_FILES:
        assert f"{path.stem}: no errors" in result.stdout


def test_check_mutate_reports_the_score() -> None:
    """--mutate adds the share of mutants caught."""
    result = dosing("check", "tacrolimus-trough", "--mutate")
    assert result.returncode == 0
    assert "mutation: 30 of 30 mutants caught by scenarios (100%; target >= 90%)\n" in result.stdout


def test_check_exits_1_on_a_gap() -> None:
    """A broken protocol fails the command."""
    result = dosing("check", str(BROKEN[0]))
    assert result.returncode == 1
    assert "errors" in result.stdout


def test_diff_lists_changed_rules_and_decisions(tmp_path: Path) -> None:
    """A threshold change (hold below ANC 0.75 instead of 1.0) shows the rules that changed
    and, on the example timeline, every decision that differs."""
    original = (ROOT / "protocols" / "imatinib-hes.yaml").read_text(encoding="utf-8")
    revised = tmp_path / "revised.yaml"
    before = "        when: anc < 1.0 x10^9/L or platelets < 50 x10^9/L\n"
    assert before in original
    revised.write_text(original.replace(before, before.replace("1.0", "0.75")), encoding="utf-8")
    result = dosing(
        "diff", "imatinib-hes", str(revised), "--timeline", "examples/imatinib-hes-timeline.csv"
    )
    assert result.returncode == 0, result.stderr
    assert "states.dose_400: hematologic-hold" in result.stdout
    assert "anc < 0.75 x10^9/L or platelets < 50 x10^9/L" in result.stdout
    assert "P01     │ 2026-01-19 │ hold no dose [hematologic-hold] -> hold_heme" in result.stdout
    assert "continue 400 mg qd [dose_400:continue] -> dose_400" in result.stdout


def test_diff_of_a_protocol_with_itself_is_empty() -> None:
    """No change, no differences."""
    result = dosing(
        "diff",
        "tacrolimus-trough",
        "tacrolimus-trough",
        "--timeline",
        "examples/tacrolimus-trough-wide.csv",
    )
    assert "No rule, dose, parameter or limit changed." in result.stdout
    assert "No decision on examples/tacrolimus-trough-wide.csv differs." in result.stdout


def test_a_guard_too_complex_to_analyse_is_reported_in_bounded_time() -> None:
    """Issue 10 item 13: 20 and-ed disjunctions ran `dosing check` for over 90 s and 7.7 GB."""
    result = dosing(
        "check", "tests/verify/broken_protocols/too_complex.yaml", "--json", "--timelines", "0"
    )
    assert result.returncode == 1
    (report,) = json.loads(result.stdout)
    found = [
        {key: finding[key] for key in ("check", "severity", "where", "message")}
        for finding in report["findings"]
    ]
    assert {
        "check": "too complex",
        "severity": "error",
        "where": "states.screening",
        "message": "too complex to analyse: the guards of screening multiply into more than "
        "1000 cases, so gaps and shadowed rules were not checked there; simplify them (fewer "
        "'or' inside 'and', or definitions)",
    } in found


def test_check_mutate_shows_progress_on_a_terminal() -> None:
    """Issue 15: `dosing check --mutate` showed a blank screen for about 30 s; on a terminal a
    bar now counts the protocols checked and the mutants run, and is cleared before the
    report. Piped, nothing but the report is written."""
    import re

    import pexpect

    args = ["-m", "dosing", "check", "tacrolimus-trough", "--mutate", "--timelines", "5"]
    child = pexpect.spawn(
        sys.executable, args, cwd=str(ROOT), encoding="utf-8", dimensions=(30, 120),
        env={k: v for k, v in os.environ.items() if k != "COLUMNS"}, timeout=300,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", str(child.before))
    assert child.exitstatus == 0, shown
    assert re.search(r"checking protocols .*1/1", shown)
    assert re.search(r"tacrolimus-trough: mutants against the scenarios .*(\d+)/\1", shown)
    assert "mutation: 30 of 30 mutants caught" in shown
    piped = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert "mutants against the scenarios" not in piped.stdout + piped.stderr
    assert piped.stderr == ""
