"""Plots a clinician reads: the dose on its own panel, a panel per lab the rules read, holds
shaded with their rule, values used again drawn as such, and a message for no course."""

from __future__ import annotations

import datetime as dt
import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from dosing.engine.decision import Decision, RuleRef
from dosing.protocol.catalog import load
from dosing.replay.course_panels import carried, merged_points, periods, plan
from dosing.replay.plots import plot_course
from dosing.replay.replay import LabPoint, replay
from dosing.replay.run import load_timeline
from tests.conftest import ROOT
from tests.replay.test_replay import TIMELINES

pytest.importorskip("matplotlib")

LIVER = "ALT, AST, bilirubin (x ULN)"
EXPECTED = {
    ("imatinib-hes", "P01"): ("dose", "ANC", "platelets", LIVER),
    ("imatinib-hes", "P02"): ("dose", "ANC", "platelets", LIVER),
    ("imatinib-hes", "P03"): ("dose", "ANC", "platelets", LIVER),
    ("imatinib-escalation-nilg", "N01"): ("dose", "ANC", "platelets", LIVER),
    ("imatinib-escalation-nilg", "N02"): ("message",),
    ("imatinib-low-dose-mdacc", "M01"): ("dose", "ANC", "platelets", LIVER),
    ("ruxolitinib-hes", "R01"): ("dose", "ANC", "platelets"),
    ("ruxolitinib-hes", "R02"): ("dose", "ANC", "platelets"),
    ("ruxolitinib-hlh", "H01"): ("dose", "ALT", "CrCl"),
    ("tacrolimus-trough", "T01"): ("dose", "tacrolimus trough"),
    ("tacrolimus-trough", "T02"): ("dose", "tacrolimus trough"),
    ("tacrolimus-trough", "T03"): ("message",),
}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def expected_height(panels: tuple[str, ...]) -> int:
    """10 in wide at 100 dpi; a title and axis band, the dose panel, 1.5 in per lab panel;
    a message is one short panel."""
    if panels == ("message",):
        return 260
    return round((1.3 + 1.6 + 1.5 * (len(panels) - 1)) * 100)


@pytest.mark.parametrize("protocol_id", sorted(TIMELINES))
def test_every_example_timeline_plots_its_panels(protocol_id: str, tmp_path: Path) -> None:
    """Issue 15: every patient of every shipped example timeline is drawn, PNG and SVG, with
    the dose on its own panel and one panel per lab the protocol's rules read on treatment
    (liver tests together as multiples of ULN); a patient never dosed gets a message."""
    protocol = load(protocol_id)
    timeline = load_timeline(TIMELINES[protocol_id], None)
    for patient in replay(protocol, timeline, keep_values=True):
        drawn = plot_course(protocol, patient.patient_id, patient.decisions, patient.values,
                            tmp_path)  # fmt: skip
        assert drawn.panels == EXPECTED[(protocol_id, patient.patient_id)]
        png, svg = drawn.files
        assert png_size(png) == (1000, expected_height(drawn.panels))
        text = svg.read_text()
        axes = len(drawn.panels) if drawn.panels != ("message",) else 1
        assert text.count('<g id="axes_') == axes
        assert 10_000 < png.stat().st_size < 1_000_000


def test_thresholds_come_from_the_rules_in_each_labs_unit() -> None:
    """The lab panels and their bands are read from the protocol: ruxolitinib-hes holds at
    ANC < 0.5 and restarts above the site's 0.75; its liver tests are read only at the
    start, so they are no panel of the course."""
    panels = {panel.title: panel for panel in plan(load("ruxolitinib-hes"))}
    assert list(panels) == ["ANC", "platelets"]
    anc = panels["ANC"]
    assert [t.label(anc.unit) for t in anc.thresholds] == [
        "0.5 x10^9/L · hold",
        "0.75 x10^9/L · resume, increase",
    ]
    liver = plan(load("imatinib-hes"))[-1]
    assert (liver.title, liver.unit, liver.per_uln) == (LIVER, "x ULN", True)
    assert [float(t.value) for t in liver.thresholds] == [1.5, 2.5, 3.0, 5.0]


def decided(day: int, action: str, rule: str = "") -> Decision:
    return Decision(
        "P1", dt.date(2026, 1, 5) + dt.timedelta(days=day), "x", "1", "", "s", action,  # type: ignore[arg-type]
        (), None, (RuleRef(rule, "src"),) if rule else (), (), (),
    )  # fmt: skip


def test_a_hold_is_one_shaded_period_named_for_the_rule_that_began_it() -> None:
    """A hold and the visits that keep it form one period, labelled with the first rule."""
    course = [
        decided(0, "start", "start-full"), decided(7, "hold", "hematologic-hold"),
        decided(14, "hold", "hold_heme:hold"), decided(21, "resume", "resume-400"),
        decided(28, "refer", "hepatic-recovery-refer"),
    ]  # fmt: skip
    found = [(p.start.day, p.end.day, p.kind, p.rule) for p in periods(course)]
    assert found == [
        (12, 26, "held", "hematologic-hold"),
        (2, 9, "referred", "hepatic-recovery-refer"),
    ]


def test_a_value_used_again_is_drawn_at_its_draw_date_not_as_a_new_measurement() -> None:
    """Issue 15: reused values were drawn as new measurements at the later visit. Now a value
    is one point at the date it was drawn (filled if measured for a visit, hollow if only
    ever used again), and each later use is a dotted line to that visit."""
    day = dt.date(2026, 1, 5)
    week = dt.timedelta(days=7)
    points = [
        LabPoint(day, "platelets", Fraction(180)),
        LabPoint(day, "platelets", Fraction(180), used_on=day + week),
        LabPoint(day - week, "anc", Fraction(2), used_on=day),
    ]
    shown = merged_points(points)
    assert [(p.name, p.drawn_on, p.reused) for p in shown] == [
        ("anc", day - week, True),
        ("platelets", day, False),
    ]
    assert [(p.name, p.used_on) for p in carried(points)] == [
        ("anc", day), ("platelets", day + week),
    ]  # fmt: skip


def dosing(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dosing", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}, timeout=300,
    )  # fmt: skip


def test_replay_plot_writes_png_svg_and_a_pdf_report(tmp_path: Path) -> None:
    """--plot DIR writes PATIENT.png and .svg; --pdf adds the report with its table."""
    timeline = str(ROOT / "examples" / "imatinib-hes-timeline.csv")
    result = dosing("replay", "imatinib-hes", timeline, "--format", "jsonl", "--plot",
                    str(tmp_path), "--pdf")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"P0{n}.{kind}" for n in (1, 2, 3) for kind in ("pdf", "png", "svg")
    ]
    assert (tmp_path / "P01.pdf").read_bytes()[:5] == b"%PDF-"
    alone = dosing("replay", "imatinib-hes", timeline, "--pdf")
    assert alone.returncode == 2
    assert "--pdf writes a report beside each plot: give --plot FOLDER too" in alone.stderr


def test_history_plot_draws_the_stored_course(tmp_path: Path) -> None:
    """Issue 15: in history --plot, platelets of 250 sat on the 400 mg dose line (one axis
    for both). Now the stored course is drawn like a replay: the dose alone on its panel."""
    db = tmp_path / "p.sqlite"
    imported = dosing("import-timeline", "imatinib-hes", "examples/imatinib-hes-timeline.csv",
                      "--db", str(db))  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    for name in ("course.png", "course.svg", "course.pdf"):
        result = dosing("history", "P01", "--db", str(db), "--plot", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        assert f"Wrote {tmp_path / name}" in result.stdout
    panels = EXPECTED[("imatinib-hes", "P01")]
    assert png_size(tmp_path / "course.png") == (1000, expected_height(panels))
    assert (tmp_path / "course.svg").read_text().count('<g id="axes_') == len(panels)
    assert (tmp_path / "course.pdf").read_bytes()[:5] == b"%PDF-"
    wrong = dosing("history", "P01", "--db", str(db), "--plot", str(tmp_path / "course.jpg"))
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert f"--plot {tmp_path / 'course.jpg'}: name a .png, .svg or .pdf file" in wrong.stderr
