"""Course tables at 80 columns: no word broken, on a real terminal and piped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from rich.console import Console

from dosing.render.tables import CourseTable, Row, for_terminal, plain, wrap_items
from tests.conftest import ROOT

EXAMPLE = str(ROOT / "examples" / "imatinib-hes-timeline.csv")
HLH = str(ROOT / "tests" / "replay" / "ruxolitinib-hlh.csv")
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_a_terminal(*args: str, columns: int = 80) -> list[str]:
    """`dosing ARGS` in a pseudo-terminal of `columns` columns; the lines it shows."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    child = pexpect.spawn(
        sys.executable, ["-m", "dosing", *args], cwd=str(ROOT), encoding="utf-8",
        dimensions=(50, columns), env={**env, "TERM": "xterm"}, timeout=60,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return _ESCAPES.sub("", str(child.before)).replace("\r\n", "\n").splitlines()


def piped(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dosing", *args], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def words_shown(lines: list[str]) -> set[str]:
    return {word.strip(",·") for line in lines for word in line.split()}


def assert_whole(lines: list[str], texts: list[str], columns: int = 80) -> None:
    """Every line fits, and every word of every text appears whole somewhere."""
    assert all(len(line) <= columns for line in lines), [ln for ln in lines if len(ln) > columns]
    shown = words_shown(lines)
    broken = {word for text in texts for word in text.split() if word.strip(",") not in shown}
    assert not broken, broken


def replay_records(protocol: str, timeline: str) -> list[dict[str, object]]:
    out = piped("replay", protocol, timeline, "--format", "jsonl")
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize(
    ("protocol", "timeline"), [("imatinib-hes", EXAMPLE), ("ruxolitinib-hlh", HLH)]
)
def test_replay_table_on_an_80_column_terminal_breaks_no_word(protocol: str, timeline: str) -> None:
    """Issue 15: at 80 columns dates wrapped ('2026-01-' / '05') and rule ids broke
    ('hematolog' / 'ic-hold'); now every date, state, rule id, dose and warning is whole."""
    lines = on_a_terminal("replay", protocol, timeline)
    texts: list[str] = []
    for record in replay_records(protocol, timeline):
        texts += [str(record["date"]), str(record["state"]), str(record["action"])]
        stays = f"{record['state']}:{record['action']}"  # shown as '-'
        texts += [str(r["id"]) for r in record["rules"] if r["id"] != stays]  # type: ignore[attr-defined]
        texts += [str(warning) for warning in record["warnings"]]  # type: ignore[attr-defined]
    assert_whole(lines, texts)
    assert not [line for line in lines if re.search(r"\w-$", line)]  # no hyphen at a break


def test_replay_table_at_80_columns_reads_one_visit_per_line() -> None:
    """The example fits as a table: one line per visit, a long rule id coded under it."""
    lines = on_a_terminal("replay", "imatinib-hes", EXAMPLE)
    assert "2026-01-19  hold_heme  hold      -          hematologic-hold       = held" in lines
    assert (
        "2026-02-04  dose_300      resume    300 mg qd  R1                   = 300 mg qd" in lines
    )
    assert "rules: R1 resume-after-hepatotoxicity" in lines
    assert not any("warnings" in line for line in lines)  # an empty column is left out


def test_history_table_on_an_80_column_terminal_breaks_no_word(tmp_path: Path) -> None:
    """History at 80 columns: a row per visit, its labs under it wrapped between values."""
    db = tmp_path / "p.sqlite"
    imported = subprocess.run(
        [sys.executable, "-m", "dosing", "import-timeline", "imatinib-hes", EXAMPLE, "--db",
         str(db)], capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    lines = on_a_terminal("history", "P03", "--db", str(db))
    timeline = (ROOT / "examples" / "imatinib-hes-timeline.csv").read_text().splitlines()
    labs = [" ".join(row.split(",")[2:]).strip() for row in timeline if row.startswith("P03,")]
    facts = ("dose_given", "age", "sex")  # facts are the patient's, not the visit's labs
    assert_whole(lines, [lab for lab in labs if not lab.startswith(facts)])
    # a dose given against the advice with no reason recorded is 'unknown' (issue 11)
    assert "2026-01-21  hold_hepatic  hold      -             hepatotoxicity-hold  unknown" in lines
    assert "            given: 400 mg qd" in lines
    assert "rules: R1 resume-after-hepatotoxicity" in lines
    assert "            labs: anc 3500 /mm3, platelets 210 G/L, alt 55 U/L, ast 30 U/L," in lines
    assert "                  bilirubin 70 umol/L" in lines


def test_piped_replay_is_plain_one_row_per_line() -> None:
    """Without a terminal: no box, no colour, one visit per line whatever its length."""
    out = piped("replay", "ruxolitinib-hlh", HLH)
    assert not set(out) & set("┏━┃│└─\x1b")
    rows = [line for line in out.splitlines() if line[:4] == "2026"]
    assert len(rows) == len(replay_records("ruxolitinib-hlh", HLH))
    assert any("20 mg bid, 4 mg bid, 120 mg weekly  add-etoposide" in row for row in rows)
    assert any(len(row) > 80 for row in rows)  # not wrapped: a pipe has no width


def table(rows: list[Row]) -> CourseTable:
    return CourseTable("P1", ("date", "state", "action", "dose", "rule"), tuple(rows), "rule")


def rendered(course: CourseTable, width: int) -> list[str]:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(for_terminal(course, width))
    return console.export_text().splitlines()


def test_a_table_that_fits_keeps_its_ids_and_drops_empty_columns() -> None:
    """Wide enough: every id in full; an empty column and an empty notes column are gone."""
    course = CourseTable(
        "P1", ("date", "rule", "given"), (Row(("2026-01-05", "hematologic-hold", "")),), "rule"
    )
    assert rendered(course, 80) == [
        "P1", "date        rule", "──────────  ────────────────", "2026-01-05  hematologic-hold",
    ]  # fmt: skip


def test_long_rule_ids_are_coded_with_a_legend_and_warnings_numbered_once() -> None:
    """Too wide: the long id becomes R1 with a legend; a warning seen twice has one number."""
    stale = "ANC from 2026-01-01 is 14 days old (at most 7 days): not used; measure ANC again"
    rows = [
        Row(("2026-01-05", "dose_400", "start", "400 mg qd", "start-full")),
        Row(("2026-01-12", "hold_hepatic", "hold", "-", "hematologic-toxicity-during-hepatic-hold"),
            notes=(stale,)),
        Row(("2026-01-19", "hold_hepatic", "refer", "-", "hepatic-recovery-refer"), notes=(stale,)),
    ]  # fmt: skip
    lines = rendered(table(rows), 60)
    assert lines[3:6] == [
        "2026-01-05  dose_400      start   400 mg qd  start-full",
        "2026-01-12  hold_hepatic  hold    -          R1          1",
        "2026-01-19  hold_hepatic  refer   -          R2          1",
    ]
    assert lines[6:] == [
        "rules: R1 hematologic-toxicity-during-hepatic-hold",
        "       R2 hepatic-recovery-refer",
        " 1. ANC from 2026-01-01 is 14 days old (at most 7 days): not",
        "    used; measure ANC again",
    ]


def test_a_narrow_terminal_stacks_each_row() -> None:
    """Too narrow even with codes: date, action and dose, then the rest by name, in full."""
    rows = [Row(("2026-01-12", "hold_hepatic", "hold", "-", "hematologic-toxicity-hold"))]
    assert rendered(table(rows), 40) == [
        "P1",
        "2026-01-12  hold  -",
        "  state hold_hepatic",
        "  rule hematologic-toxicity-hold",
    ]


def test_plain_is_one_row_per_line_with_details_as_columns() -> None:
    """Plain text: aligned, details and warnings as the last columns, nothing wrapped."""
    course = CourseTable(
        "P1 on x", ("date", "answer"),
        (Row(("2026-01-05", "accepted"), (("labs", ("anc 1.2 x10^9/L", "alt 30 U/L")),)),
         Row(("2026-01-12", "overridden"), (("override", ("300 mg qd (why)",)),), ("stale",))),
        detail_headers=("labs", "override"),
    )  # fmt: skip
    assert plain(course).splitlines() == [
        "P1 on x",
        "date        answer      labs                         override         warnings",
        "2026-01-05  accepted    anc 1.2 x10^9/L, alt 30 U/L",
        "2026-01-12  overridden                               300 mg qd (why)  stale",
        "",
    ]


def test_items_wrap_between_items_only() -> None:
    """A value and its unit stay together; the comma stays at the end of its line."""
    assert wrap_items("labs: ", ["anc 1.2 x10^9/L", "platelets 180 x10^9/L"], 30, ", ") == [
        "labs: anc 1.2 x10^9/L,",
        "      platelets 180 x10^9/L",
    ]
