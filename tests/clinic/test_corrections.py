"""Corrections: a visit amended or voided, the later visits decided again, who and why."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.clinic.test_visit import FIRST, dosing, env, start_then_hold, visit
from tests.conftest import ROOT

THIRD = ["0.9 x10^9/L", "190 x10^9/L", "30 U/L", "28 U/L", "0.7 mg/dL", "accept"]


def held_twice(db: Path) -> None:
    """P01: 300 mg qd on 01-05, held for ANC 0.8 on 01-12 and still held on 01-19."""
    start_then_hold(db)
    assert visit(db, THIRD, "P01", "--date", "2026-01-19").returncode == 0


def amend(db: Path, answers: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dosing", "amend", "P01", "--db", str(db), *args],
        input="\n".join(answers) + "\n", capture_output=True, text=True, env=env(), cwd=ROOT,
    )  # fmt: skip


def history_table(db: Path) -> str:
    """`dosing history` wide enough that no cell wraps, with whitespace runs made one space."""
    result = subprocess.run(
        [sys.executable, "-m", "dosing", "history", "P01", "--db", str(db)],
        capture_output=True, text=True, env=env(COLUMNS="400"), cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def history(db: Path) -> list[dict[str, object]]:
    result = dosing("history", "P01", "--db", str(db), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_amending_an_earlier_visit_decides_the_later_ones_again(tmp_path: Path) -> None:
    """ANC 0.8 on 01-12 was a typo for 1.8: the amended visit continues 300 mg; the visit of
    01-19 is decided again from there (a new hold, not the hold going on); the change is
    shown before it is stored, and who and why are recorded."""
    db = tmp_path / "p.sqlite"
    held_twice(db)
    result = amend(
        db, ["1.8 x10^9/L", "", "", "", "", "accept"], "--visit", "2", "--clinician", "dr-kim",
        "--reason", "ANC typed as 0.8, was 1.8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ANC (x10^9/L) [Enter: keep 0.8 x10^9/L from 2026-01-12]" in result.stdout
    assert "platelets (x10^9/L) [Enter: keep 180 x10^9/L from 2026-01-05]" in result.stdout
    assert "CONTINUE  imatinib 300 mg qd" in result.stdout
    said = " ".join(result.stdout.split())
    assert (
        "│ P01 │ 2026-01-19 │ hold no dose [hold_heme:hold] -> hold_heme │ hold no dose "
        "[hematologic-hold] -> hold_heme │"
    ) in said
    assert "Amended visit 2 of P01: saved as visit 4, by dr-kim; 1 later visits re-decided." in (
        said
    )
    records = history(db)
    assert [(r["visit"], r["action"], r["rules"][0]["id"]) for r in records] == [  # type: ignore[index]
        (1, "start", "start-reduced"),
        (4, "continue", "dose_300:continue"),
        (5, "hold", "hematologic-hold"),
    ]
    assert records[1]["supersedes"] == {
        "row": 2, "kind": "amended", "clinician": "dr-kim", "reason": "ANC typed as 0.8, was 1.8",
        "recorded_at": records[1]["supersedes"]["recorded_at"],  # type: ignore[index]
    }  # fmt: skip
    assert records[2]["answer"] == {
        "kind": "accepted", "dose": None, "reason": None, "clinician": "dr-lee", "confirmed": None
    }  # fmt: skip
    with sqlite3.connect(db) as connection:  # nothing updated in place: five visit rows
        assert connection.execute("SELECT count(*) FROM visits").fetchone() == (5,)
    shown = history_table(db)
    assert "amended visit 2 by dr-kim at " in shown  # the row that replaced visit 2
    assert "│ 2 -> 4 │ 2026-01-12 │ amended │ hold no dose [hematologic-hold] -> hold_heme" in shown


def test_a_superseded_visit_is_not_amended_again(tmp_path: Path) -> None:
    """Amending visit 2 after it was amended says which visit it is now."""
    db = tmp_path / "p.sqlite"
    start_then_hold(db)
    first = amend(db, ["1.8 x10^9/L", "", "", "", "", "accept"], "--visit", "2", "--reason", "x")
    assert first.returncode == 0, first.stderr
    again = amend(db, [], "--visit", "2", "--reason", "y")
    assert again.returncode == 2
    assert again.stderr == (
        "error: visit 2 of P01 was amended: it is now visit 3; its visits: 1 (2026-01-05), "
        "3 (2026-01-12)\n"
    )


def test_voiding_a_visit_decides_the_later_ones_without_it(tmp_path: Path) -> None:
    """The hold of 01-12 voided: 01-19 is decided from 300 mg, and is a hold of its own."""
    db = tmp_path / "p.sqlite"
    held_twice(db)
    result = dosing(
        "void", "P01", "--visit", "2", "--reason", "entered for the wrong patient", "--db",
        str(db), "--clinician", "dr-kim",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert (
        "Voided visit 2 of P01 (2026-01-12: hold no dose [hematologic-hold] -> hold_heme), by "
        "dr-kim: entered for the wrong patient; 1 later visits re-decided."
    ) in said
    records = history(db)
    assert [(r["date"], r["rules"][0]["id"]) for r in records] == [  # type: ignore[index]
        ("2026-01-05", "start-reduced"),
        ("2026-01-19", "hematologic-hold"),
    ]
    table = history_table(db)
    assert "│ 2 │ 2026-01-12 │ voided │" in table
    assert "dr-kim │ entered for the wrong patient │" in table
    again = dosing("void", "P01", "--visit", "2", "--reason", "twice", "--db", str(db))
    assert again.returncode == 2
    assert again.stderr == (
        "error: visit 2 of P01 was voided; its visits: 1 (2026-01-05), 5 (2026-01-19)\n"
    )


def test_a_visit_before_the_last_is_refused(tmp_path: Path) -> None:
    """A visit dated before the last stored one stores nothing and says how to correct."""
    db = tmp_path / "p.sqlite"
    start_then_hold(db)
    result = visit(db, [], "P01", "--date", "2026-01-08")
    assert result.returncode == 2
    assert result.stderr == (
        "error: the visit date 2026-01-08 is before P01's last visit (2026-01-12); nothing was "
        "stored. A visit is entered on or after the last one; to correct an earlier visit: "
        "dosing amend P01 --visit N\n"
    )


def test_a_second_visit_on_one_date_not_amending_stores_nothing(tmp_path: Path) -> None:
    """Answering no to 'Amend that visit?' leaves the course as it was."""
    db = tmp_path / "p.sqlite"
    assert visit(db, FIRST, "--date", "2026-01-05").returncode == 0
    result = visit(db, ["no"], "P01", "--date", "2026-01-05")
    assert result.returncode == 130
    assert "P01 already has a visit on 2026-01-05 (visit 1: start 300 mg qd" in result.stdout
    assert result.stderr == (
        "cancelled: nothing was stored: P01 has a visit on 2026-01-05 already. Give another "
        "--date, or amend it\n"
    )
    assert len(history(db)) == 1


def test_the_clinician_is_the_option_else_the_environment_else_the_user(tmp_path: Path) -> None:
    """--clinician wins over $DOSING_CLINICIAN, which wins over the operating-system user."""
    import getpass

    db = tmp_path / "p.sqlite"
    assert visit(db, FIRST, "--date", "2026-01-05", "--clinician", "dr-opt").returncode == 0
    answers = ["0.8 x10^9/L", "", "", "", "", "accept"]
    assert visit(db, answers, "P01", "--date", "2026-01-12").returncode == 0
    bare = {key: value for key, value in env().items() if key != "DOSING_CLINICIAN"}
    third = subprocess.run(
        [sys.executable, "-m", "dosing", "visit", "P01", "--db", str(db), "--date", "2026-01-19"],
        input="\n".join(THIRD) + "\n", capture_output=True, text=True, env=bare, cwd=ROOT,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    who = [r["answer"]["clinician"] for r in history(db)]  # type: ignore[index]
    assert who == ["dr-opt", "dr-lee", getpass.getuser()]


def test_history_csv_has_the_answer_its_reason_and_clinician(tmp_path: Path) -> None:
    """history --format csv: the visit, values with their draw dates, who answered and why."""
    import csv

    db = tmp_path / "p.sqlite"
    start_then_hold(db)
    third = ["2.0 x10^9/L", "200 x10^9/L", "30 U/L", "28 U/L", "0.7 mg/dL", "override",
             "300 mg qd", "tolerated 300 mg before"]  # fmt: skip
    assert visit(db, third, "P01", "--date", "2026-01-19").returncode == 0
    result = dosing("history", "P01", "--db", str(db), "--format", "csv")
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [(r["answer"], r["answer_reason"], r["clinician"]) for r in rows] == [
        ("accepted", "", "dr-lee"),
        ("accepted", "", "dr-lee"),
        ("overridden", "tolerated 300 mg before", "dr-lee"),
    ]
    assert "platelets 180 x10^9/L (drawn 2026-01-05)" in rows[1]["observations"]


IMPORTED = """patient_id,date,name,value,unit
P01,2026-01-05,start_state,dose_400,
P01,2026-01-05,therapy_start,2025-12-01,
P01,2026-01-05,age,17.99,years
P01,2026-01-05,sex,F,
P01,2026-01-05,anc,3,x10^9/L
P01,2026-01-05,platelets,200,x10^9/L
P01,2026-01-05,alt,25,U/L
P01,2026-01-05,ast,25,U/L
P01,2026-01-05,bilirubin,0.6,mg/dL
P01,2026-01-05,dose_given,300 mg qd,
P01,2026-01-05,override_reason,a smaller dose for now,
"""


def test_an_imported_course_continued_at_the_prompt_replays_exactly(tmp_path: Path) -> None:
    """A course imported mid-treatment (start state, therapy start, an age on a date, an
    override), continued at the prompt, exports a timeline that replays to the same
    decisions; amending its first visit starts from where the import placed the patient."""
    db = tmp_path / "p.sqlite"
    source = tmp_path / "course.csv"
    source.write_text(IMPORTED)
    imported = dosing("import-timeline", "imatinib-hes", str(source), "--db", str(db))
    assert imported.returncode == 0, imported.stderr
    later = ["3 x10^9/L", "200 x10^9/L", "25 U/L", "25 U/L", "0.6 mg/dL", "partial", "accept"]
    result = visit(db, later, "P01", "--date", "2026-02-04")
    assert result.returncode == 0, result.stderr
    assert "dose_300" in result.stdout  # the override the import recorded is followed

    exported = tmp_path / "P01.csv"
    exported.write_text(dosing("history", "P01", "--db", str(db), "--format", "timeline").stdout)
    text = exported.read_text()
    assert "P01,2026-01-05,start_state,dose_400,," in text
    assert "P01,2026-02-04,age,17.99,years,2026-01-05" in text  # counted on, as at the prompt
    replayed = dosing("replay", "imatinib-hes", str(exported), "--format", "jsonl")
    assert replayed.returncode == 0, replayed.stderr
    again = [json.loads(line) for line in replayed.stdout.splitlines()]
    kept = history(db)
    assert [r["state"] for r in again] == ["dose_400", "dose_300"]
    assert again == [
        {key: record[key] for key in replay} for record, replay in zip(kept, again, strict=True)
    ]

    same = ["", "", "", "", "", "", "override", "300 mg qd", "a smaller dose for now"]
    amended = amend(db, same, "--visit", "1", "--reason", "checked")
    assert amended.returncode == 0, amended.stderr
    assert "REFER" in amended.stdout  # from dose_400, as imported: not a new start
    assert "No later decision changes" in amended.stdout
    assert [r["state"] for r in history(db)] == ["dose_400", "dose_300"]
