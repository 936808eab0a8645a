"""dosing visit: piped answers, a real terminal, a crash mid-write, overrides, history, import."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from tests.conftest import ROOT

FIRST = [
    "P01", "imatinib-hes", "1975-06-01", "F", "70 kg", "170 cm",
    "1.2 mg/dL", "1.2 x10^9/L", "180 x10^9/L", "30 U/L", "28 U/L", "0.7 mg/dL", "yes", "accept",
]  # fmt: skip


def env(**extra: str) -> dict[str, str]:
    """The test environment: plain output; answers recorded as dr-lee ($DOSING_CLINICIAN)."""
    return {
        **os.environ, "COLUMNS": "120", "NO_COLOR": "1", "DOSING_CLINICIAN": "dr-lee", **extra
    }  # fmt: skip


def visit(db: Path, answers: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run dosing visit with answers piped on stdin, one per line."""
    return subprocess.run(
        [sys.executable, "-m", "dosing", "visit", "--db", str(db), *args],
        input="\n".join(answers) + "\n", capture_output=True, text=True, env=env(), cwd=ROOT,
    )  # fmt: skip


def dosing(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dosing", *args], capture_output=True, text=True, env=env(), cwd=ROOT
    )


def start_then_hold(db: Path) -> None:
    """P01 starts 300 mg qd on 2026-01-05 and is held for ANC 0.8 on 2026-01-12 (accepted)."""
    assert visit(db, FIRST, "--date", "2026-01-05").returncode == 0
    held = visit(db, ["0.8 x10^9/L", "", "", "", "", "accept"], "P01", "--date", "2026-01-12")
    assert held.returncode == 0, held.stderr


def test_piped_first_visit_explains_a_wrong_unit_and_keeps_going(tmp_path: Path) -> None:
    """A wrong unit is explained and asked again; the rest is kept; 300 mg qd is stored."""
    db = tmp_path / "p.sqlite"
    result = visit(db, FIRST, "--date", "2026-01-05")
    assert result.returncode == 0, result.stderr
    assert "anc=1.2 mg/dL: mg/dL measures mass concentration" in result.stdout
    assert "START  imatinib 300 mg qd" in result.stdout
    assert "Saved visit 1 for P01. Next check: 2026-01-12" in result.stdout


def test_end_of_input_stores_nothing(tmp_path: Path) -> None:
    """Answers that stop before the decision is answered leave the store empty."""
    db = tmp_path / "p.sqlite"
    result = visit(db, FIRST[:-1], "--date", "2026-01-05")
    assert result.returncode == 130
    assert "nothing was stored" in result.stderr
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM visits").fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM patients").fetchone() == (0,)


def test_real_terminal_session(tmp_path: Path) -> None:
    """Through a pseudo-terminal: a new patient, a wrong unit, 300 mg qd accepted; a week
    later the state is shown, ANC 0.8 gives a hold, and the history shows both visits."""
    db = tmp_path / "p.sqlite"
    command = f"{sys.executable} -m dosing visit --db {db} --date 2026-01-05"
    child = pexpect.spawn(
        command, cwd=str(ROOT), env=env(TERM="xterm"), encoding="utf-8", timeout=30
    )
    for prompt, answer in [
        ("Patient id", "P01"), ("Protocol", "imatinib-hes"), ("Birth date", "1975-06-01"),
        ("sex", "F"), ("weight", "70 kg"), ("height", "170 cm"), ("ANC", "1.2 mg/dL"),
    ]:  # fmt: skip
        child.expect(prompt)
        child.sendline(answer)
    child.expect("mg/dL measures mass concentration, but anc is measured as count per volume")
    child.expect("ANC")
    child.sendline("1.2 x10^9/L")
    for prompt, answer in [
        ("platelets", "180 x10^9/L"),
        ("ALT", "30 U/L"),
        ("AST", "28 U/L"),
        ("bilirubin", "0.7 mg/dL"),
        ("other eligibility criteria met", "yes"),
    ]:
        child.expect(prompt)
        child.sendline(answer)
    child.expect("START[^\n]*imatinib 300 mg qd")  # bold styling may sit between the words
    child.expect("answer")
    child.sendline("accept")
    child.expect("Saved visit 1 for P01")
    child.expect(pexpect.EOF)

    command = f"{sys.executable} -m dosing visit P01 --db {db} --date 2026-01-12"
    child = pexpect.spawn(
        command, cwd=str(ROOT), env=env(TERM="xterm"), encoding="utf-8", timeout=30
    )
    child.expect("dose_300")
    child.expect("ANC")
    child.sendline("0.8 x10^9/L")
    for _ in range(4):  # platelets, ALT, AST, bilirubin: Enter reuses last week's results
        child.expect("Enter: ")
        child.sendline("")
    child.expect("HOLD")
    child.expect("answer")
    child.sendline("accept")
    child.expect("Saved visit 2 for P01")
    child.expect(pexpect.EOF)

    history = dosing("history", "P01", "--db", str(db), "--format", "jsonl")
    records = [json.loads(line) for line in history.stdout.splitlines()]
    assert [(r["date"], r["action"], r["state"]) for r in records] == [
        ("2026-01-05", "start", "dose_300"),
        ("2026-01-12", "hold", "hold_heme"),
    ]


def test_killed_mid_write_leaves_all_or_nothing(tmp_path: Path) -> None:
    """SIGKILL inside the visit's transaction: the store opens, passes integrity_check, and
    holds the earlier visit whole and nothing of the interrupted one."""
    db = tmp_path / "p.sqlite"
    assert visit(db, FIRST, "--date", "2026-01-05").returncode == 0
    answers = "\n".join(["0.8 x10^9/L", "", "", "", "", "accept"]) + "\n"
    child = subprocess.Popen(
        [sys.executable, "-m", "dosing", "visit", "P01", "--db", str(db), "--date", "2026-01-12"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env=env(DOSING_TEST_PAUSE_IN_VISIT_WRITE="60"),
    )  # fmt: skip
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(answers)
    child.stdin.close()
    seen = ""
    while "writing visit" not in seen:
        chunk = child.stdout.readline()
        assert chunk, f"the visit ended before writing: {seen[-500:]}"
        seen += chunk
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for table, count in [("visits", 1), ("decisions", 1), ("responses", 1), ("records", 1)]:
            assert connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (count,), table
        assert connection.execute(
            "SELECT count(*) FROM observations WHERE visit NOT IN (SELECT row FROM visits)"
        ).fetchone() == (0,)
    history = dosing("history", "P01", "--db", str(db), "--format", "jsonl")
    assert [json.loads(line)["date"] for line in history.stdout.splitlines()] == ["2026-01-05"]


def test_override_is_stored_shown_and_the_next_decision_starts_from_it(tmp_path: Path) -> None:
    """Recovery after a hold from 300 mg is a refer; the clinician chooses 300 mg qd with a
    reason; the history shows it, and the next decision starts from dose_300 and says so."""
    db = tmp_path / "p.sqlite"
    start_then_hold(db)
    third = visit(
        db,
        [*["2.0 x10^9/L", "200 x10^9/L", "30 U/L", "28 U/L", "0.7 mg/dL"], "override", "300 mg qd",
         "tolerated 300 mg before"],
        "P01", "--date", "2026-01-19",
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    assert "REFER" in third.stdout
    assert "The next decision starts from state dose_300 (300 mg qd)." in third.stdout
    table = subprocess.run(
        [sys.executable, "-m", "dosing", "history", "P01", "--db", str(db)],
        capture_output=True, text=True, env=env(COLUMNS="250"), cwd=ROOT,
    )  # fmt: skip
    row = next(line for line in table.stdout.splitlines() if line.startswith("2026-01-19"))
    assert row.endswith("  300 mg qd (tolerated 300 mg before)")
    assert " overridden  dr-lee " in row  # the answer, then who gave it
    fourth = visit(
        db,
        ["2.1 x10^9/L", "210 x10^9/L", "29 U/L", "27 U/L", "0.6 mg/dL", "accept"],
        "P01",
        "--date",
        "2026-01-26",
    )
    assert fourth.returncode == 0, fourth.stderr
    assert "CONTINUE  imatinib 300 mg qd" in fourth.stdout
    said = "was overridden: 300 mg qd chosen (tolerated 300 mg before). This decision starts"
    assert said in " ".join(fourth.stdout.replace("│", " ").split())
    patients = dosing("patients", "--db", str(db))
    assert "P01" in patients.stdout
    assert "imatinib 300 mg qd" in patients.stdout


def test_history_timeline_replays_to_the_same_decisions(tmp_path: Path) -> None:
    """--format timeline is a CSV that dosing replay reads back to the stored decisions."""
    db = tmp_path / "p.sqlite"
    start_then_hold(db)
    exported = tmp_path / "P01.csv"
    exported.write_text(dosing("history", "P01", "--db", str(db), "--format", "timeline").stdout)
    replayed = dosing("replay", "imatinib-hes", str(exported), "--format", "jsonl")
    assert replayed.returncode == 0, replayed.stderr
    actions = [
        (json.loads(line)["action"], json.loads(line)["matches_given"])
        for line in replayed.stdout.splitlines()
    ]
    assert actions == [("start", True), ("hold", True)]


def test_import_timeline_then_continue_at_the_prompt(tmp_path: Path) -> None:
    """An imported course lands in the store with its current state; the next visit goes on."""
    db = tmp_path / "p.sqlite"
    imported = dosing(
        "import-timeline", "imatinib-hes", "examples/imatinib-hes-timeline.csv", "--db", str(db)
    )
    assert imported.returncode == 0, imported.stderr
    assert "hold_hepatic" in imported.stdout
    assert "dose_300" in imported.stdout
    again = dosing(
        "import-timeline", "imatinib-hes", "examples/imatinib-hes-timeline.csv", "--db", str(db)
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == (
        "P01 is already in the store with these visits: skipped.\n"
        "P02 is already in the store with these visits: skipped.\n"
        "P03 is already in the store with these visits: skipped.\n"
        "Imported 0 patients (0 visits); 3 already in the store.\n"
    )
    nxt = visit(
        db,
        ["2.2 x10^9/L", "150 x10^9/L", "31 U/L", "30 U/L", "15 umol/L", "partial", "accept"],
        "P03",
        "--date",
        "2026-02-11",
    )
    assert nxt.returncode == 0, nxt.stderr
    assert "CONTINUE  imatinib 300 mg qd" in nxt.stdout


@pytest.mark.parametrize(
    "command", ["visit", "patients", "history", "import-timeline", "amend", "void"]
)
def test_store_commands_have_help_with_an_example(command: str) -> None:
    """Every store command's help ends with an example."""
    result = dosing(command, "--help")
    assert result.returncode == 0
    assert "Example:" in result.stdout


def test_history_plot_is_a_png(tmp_path: Path) -> None:
    """history --plot reuses the replay plot and writes a valid PNG."""
    db = tmp_path / "p.sqlite"
    assert visit(db, FIRST, "--date", "2026-01-05").returncode == 0
    png = tmp_path / "course.png"
    result = dosing("history", "P01", "--db", str(db), "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_superseding_visit_replaces_the_old_one_in_the_course(tmp_path: Path) -> None:
    """A correction is a new row naming the one it supersedes; the course shows the new one."""
    db = tmp_path / "p.sqlite"
    start_then_hold(db)
    with sqlite3.connect(db) as connection:
        old = connection.execute("SELECT row FROM visits WHERE date = '2026-01-12'").fetchone()[0]
        new = connection.execute(
            "INSERT INTO visits (patient_id, date, recorded_at, supersedes) "
            "VALUES ('P01', '2026-01-13', 'now', ?)",
            (old,),
        ).lastrowid
        for table, column in (("decisions", "visit"), ("records", "visit")):
            connection.execute(
                f"INSERT INTO {table} SELECT NULL, ?, "
                + ("protocol_sha256, record" if table == "decisions" else "record")
                + f" FROM {table} WHERE {column} = ?",
                (new, old),
            )
    history = dosing("history", "P01", "--db", str(db), "--format", "jsonl")
    dates = [json.loads(line)["date"] for line in history.stdout.splitlines()]
    assert len(dates) == 2
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM visits").fetchone() == (3,)


# --- issue 11, item 7: the prompt -------------------------------------------------------------


def test_a_typo_at_the_protocol_prompt_is_asked_again_with_a_did_you_mean(tmp_path: Path) -> None:
    """A mistyped protocol no longer ends the session: the closest one is suggested, and the
    question is asked again, keeping the patient id typed before it."""
    db = tmp_path / "p.sqlite"
    result = visit(db, [FIRST[0], "imatinb-hes", *FIRST[1:]], "--date", "2026-01-05")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert "no protocol 'imatinb-hes' (did you mean imatinib-hes?); shipped: " in said
    assert said.count("Protocol:") == 2
    assert "Saved visit 1 for P01. Next check: 2026-01-12" in said


def test_a_protocol_mistyped_on_the_command_line_is_an_error_with_a_did_you_mean(
    tmp_path: Path,
) -> None:
    """--protocol is not asked again (nothing to ask at), but the message suggests."""
    db = tmp_path / "p.sqlite"
    result = visit(db, ["1975-06-01"], "P01", "--protocol", "imatinib-hs", "--date", "2026-01-05")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no protocol 'imatinib-hs' (did you mean imatinib-hes?)")


@pytest.mark.parametrize("accept", [False, True])
def test_accept_implausible_works_in_dosing_visit(tmp_path: Path, accept: bool) -> None:
    """Platelets 3500 x10^9/L is outside the plausible range: refused and asked again, as the
    message says, unless --accept-implausible was given; then it is used."""
    db = tmp_path / "p.sqlite"
    answers = [*FIRST[:8], "3500 x10^9/L", *FIRST[9:]]  # platelets 3500 instead of 180
    if not accept:
        answers.insert(9, FIRST[8])  # refused and asked again: 180 is typed
    flags = ["--accept-implausible"] if accept else []
    result = visit(db, answers, *flags, "--date", "2026-01-05")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    refusal = "is outside the plausible range 0-3000 x10^9/L; check for a typo, or accept it"
    assert (refusal in said) is not accept
    stored = dosing("history", "P01", "--db", str(db), "--format", "timeline").stdout
    assert ("P01,2026-01-05,platelets,3500,x10^9/L" in stored) is accept
    assert ("P01,2026-01-05,platelets,180,x10^9/L" in stored) is not accept


def _refer_on_the_19th(db: Path) -> None:
    """P01: 300 mg, held on the 12th, counts recovered on the 19th: a referral (the label
    gives no dose to resume after a hold from 300 mg), overridden with no dose."""
    start_then_hold(db)
    referred = visit(
        db,
        [*["2.0 x10^9/L", "200 x10^9/L", "30 U/L", "28 U/L", "0.7 mg/dL"], "override", "none",
         "seen in clinic tomorrow"],
        "P01", "--date", "2026-01-19",
    )  # fmt: skip
    assert referred.returncode == 0, referred.stderr
    assert "REFER" in referred.stdout
    said = " ".join(referred.stdout.split())
    assert (
        "Saved visit 3 for P01. Next check: -; due again 2026-01-20, 1 day after the referral "
        "(site parameter: --refer-due)"
    ) in said


def patients_list(db: Path, *args: str, **variables: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dosing", "patients", "--db", str(db), *args],
        capture_output=True, text=True, env=env(COLUMNS="200", **variables), cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_after_a_referral_the_patient_stays_on_the_list_due_the_next_day(tmp_path: Path) -> None:
    """A referral has no next check; the patient is due the next day (site parameter, default
    1 day), flagged when that has passed, and a site may set another interval."""
    db = tmp_path / "p.sqlite"
    _refer_on_the_19th(db)
    row = patients_list(db, "--date", "2026-01-25").splitlines()[3]
    assert row.split("│")[1:-1] == [
        " P01     ", " imatinib-hes ", " hold_heme ", " none (overridden) ", " 2026-01-19 ",
        " 2026-01-20 (referred) ", " OVERDUE 5 days ",
    ]  # fmt: skip
    assert due_and_overdue(db, "--date", "2026-01-21") == ["2026-01-20 (referred)", "OVERDUE 1 day"]
    assert due_and_overdue(db, "--date", "2026-01-20") == ["2026-01-20 (referred)", ""]
    weekly = due_and_overdue(db, "--date", "2026-01-25", DOSING_REFER_DUE_DAYS="7")
    assert weekly == ["2026-01-26 (referred)", ""]
    three = due_and_overdue(db, "--date", "2026-01-25", "--refer-due", "3")
    assert three == ["2026-01-22 (referred)", "OVERDUE 3 days"]


def due_and_overdue(db: Path, *args: str, **variables: str) -> list[str]:
    """The next due and overdue cells of the first patient listed."""
    row = patients_list(db, *args, **variables).splitlines()[3]
    return [cell.strip() for cell in row.split("│")[6:8]]


def test_patients_are_listed_soonest_due_first_with_the_overdue_flagged(tmp_path: Path) -> None:
    """The example course: P02 was referred on 27 January, P03 is due on 11 February, P01 on
    23 March; on 20 February the first two are overdue."""
    db = tmp_path / "p.sqlite"
    imported = dosing(
        "import-timeline", "imatinib-hes", "examples/imatinib-hes-timeline.csv", "--db", str(db)
    )
    assert imported.returncode == 0, imported.stderr
    rows = patients_list(db, "--date", "2026-02-20").splitlines()
    assert [row.split("│")[1].strip() for row in rows[3:-1]] == ["P02", "P03", "P01"]
    assert [" ".join(row.split("│")[6:8]).split() for row in rows[3:-1]] == [
        ["2026-01-28", "(referred)", "OVERDUE", "23", "days"],
        ["2026-02-11", "OVERDUE", "9", "days"],
        ["2026-03-23"],
    ]


def test_a_tacrolimus_visit_without_a_trough_continues_and_asks_for_one(tmp_path: Path) -> None:
    """Issue 11: Enter at the trough prompt (none drawn) continues the dose, names the trough
    still to be drawn, and sets the next check 3 days on; the list shows it due then."""
    db = tmp_path / "t.sqlite"
    started = visit(
        db, ["T01", "tacrolimus-trough", "1970-01-01", "yes", "accept"], "--date", "2026-01-05"
    )
    assert started.returncode == 0, started.stderr
    second = visit(db, ["", "accept"], "T01", "--date", "2026-01-19")
    assert second.returncode == 0, second.stderr
    said = " ".join(second.stdout.replace("│", " ").split())
    assert "tacrolimus trough (ng/mL) [Enter: not measured]:" in said
    assert "sample timing" not in said.split("╭")[0]  # no timing asked for a trough not drawn
    assert "CONTINUE tacrolimus 1 mg bid" in said
    assert (
        "! Still to measure or assess by the next check (2026-01-22): sample timing, "
        "tacrolimus trough"
    ) in said
    assert "Saved visit 2 for T01. Next check: 2026-01-22" in said
    assert due_and_overdue(db, "--date", "2026-01-23") == ["2026-01-22", "OVERDUE 1 day"]


def test_a_carried_assessment_is_offered_with_enter_and_the_taper_starts(tmp_path: Path) -> None:
    """Issue 11: in complete response, life_threatening assessed a month before is offered
    ('Enter: no from ...'); Enter keeps it, and the taper starts at 300 mg. The decision says
    when it was assessed."""
    db = tmp_path / "p.sqlite"
    start = tmp_path / "p09.csv"
    rows = [
        "start_state,dose_400,", "therapy_start,2025-11-01,", "age,45,years", "sex,F,",
        "weight,70,kg", "height,170,cm", "anc,4,x10^9/L", "platelets,250,x10^9/L", "alt,25,U/L",
        "ast,25,U/L", "bilirubin,0.6,mg/dL", "response,complete,", "life_threatening,no,",
    ]  # fmt: skip
    start.write_text(
        "patient_id,date,name,value,unit\n" + "".join(f"P09,2026-01-05,{r}\n" for r in rows)
    )
    imported = dosing("import-timeline", "imatinib-hes", str(start), "--db", str(db))
    assert imported.returncode == 0, imported.stderr
    assert "dose_400_cr" in imported.stdout
    labs = ["4 x10^9/L", "250 x10^9/L", "25 U/L", "25 U/L", "0.6 mg/dL"]
    result = visit(db, [*labs, "", "complete", "accept"], "P09", "--date", "2026-02-06")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.replace("│", " ").split())
    assert "life-threatening disease (yes/no) [Enter: no from 2026-01-05]:" in said
    assert "DECREASE imatinib 300 mg qd" in said
    assert "life_threatening: no, as assessed on 2026-01-05 (32 days ago; carried forward" in said


def test_terminal_reuse_amend_confirm_then_export_and_replay(tmp_path: Path) -> None:
    """Through a pseudo-terminal: labs reused with Enter keep the day they were drawn; a
    second visit on one date amends the first; an override with a dose no tablets make is
    given only when confirmed; the history shows who and why; the exported course replays to
    the same decisions."""
    db = tmp_path / "p.sqlite"

    def session(*args: str) -> pexpect.spawn[str]:
        command = f"{sys.executable} -m dosing visit --db {db} {' '.join(args)}"
        return pexpect.spawn(
            command, cwd=str(ROOT), env=env(TERM="xterm"), encoding="utf-8", timeout=30
        )

    def answer(child: pexpect.spawn[str], *pairs: tuple[str, str]) -> None:
        for prompt, text in pairs:
            child.expect_exact(prompt)
            child.sendline(text)

    child = session("--date", "2026-03-02")
    prompts = ["Patient id", "Protocol", "Birth date", "sex", "weight", "height", "ANC"]
    prompts += ["platelets", "ALT", "AST", "bilirubin", "other eligibility criteria met"]
    answers = [*FIRST[:6], *FIRST[7:]]  # no wrong unit this time
    answer(child, *zip(prompts, answers[:-1], strict=True))
    answer(child, ("The clinician's answer", "accept"))
    child.expect("Saved visit 1 for P01")
    child.expect(pexpect.EOF)

    child = session("P01", "--date", "2026-03-09")  # a week later: Enter reuses last week's
    answer(child, ("ANC (x10^9/L) [Enter: 1.2 x10^9/L from 2026-03-02]", "1.4 x10^9/L"))
    for lab in ("platelets (x10^9/L)", "ALT (U/L)", "AST (U/L)", "bilirubin (mg/dL)"):
        answer(child, (f"{lab} [Enter: ", ""))
    answer(child, ("The clinician's answer (accept/override)", "accept"))
    child.expect("Saved visit 2 for P01")
    child.expect(pexpect.EOF)

    child = session("P01", "--date", "2026-03-09")  # the same date again: an amendment
    answer(
        child,
        ("Amend that visit? (yes/no)", "yes"),
        ("ANC (x10^9/L) [Enter: keep 1.4 x10^9/L from 2026-03-09]", "1.6 x10^9/L"),
        ("platelets (x10^9/L) [Enter: keep 180 x10^9/L from 2026-03-02]", ""),
        ("ALT (U/L) [Enter: keep 30 U/L from 2026-03-02]", ""),
        ("AST (U/L) [Enter: keep 28 U/L from 2026-03-02]", ""),
        ("bilirubin (mg/dL) [Enter: keep 0.7 mg/dL from 2026-03-02]", ""),
        ("The clinician's answer (accept/override)", "accept"),
        ("Reason for the amendment", "ANC read again"),
    )
    child.expect_exact("Amended visit 2 of P01: saved as visit 3, by dr-lee")
    child.expect(pexpect.EOF)

    child = session("P01", "--date", "2026-03-14")  # the reused labs are now 12 days old
    answer(child, ("ANC (x10^9/L)", "1.5 x10^9/L"))
    for lab in ("platelets (x10^9/L)", "ALT (U/L)", "AST (U/L)", "bilirubin (mg/dL)"):
        answer(child, (f"{lab} [Enter: not measured]", ""))
    child.expect_exact("platelets from 2026-03-02 is 12 days old")
    answer(
        child,
        ("The clinician's answer (override)", "override"),
        ("Dose actually chosen", "350 mg qd"),
    )
    child.expect_exact(
        "no combination of the imatinib strengths available (100 mg, 400 mg) makes 350 mg"
    )
    answer(
        child,
        ("Give 350 mg qd all the same? Type confirm, or Enter for another dose", ""),
        ("Dose actually chosen", "350 mg qd"),
        ("Give 350 mg qd all the same? Type confirm, or Enter for another dose", "confirm"),
        ("Reason for the override", "patient prefers 350 mg"),
    )
    child.expect("Saved visit 4 for P01")
    child.expect(pexpect.EOF)

    table = subprocess.run(
        [sys.executable, "-m", "dosing", "history", "P01", "--db", str(db)],
        capture_output=True, text=True, env=env(COLUMNS="400"), cwd=ROOT,
    )  # fmt: skip
    shown = " ".join(table.stdout.split())
    assert "platelets 180 x10^9/L (drawn 2026-03-02)" in shown
    assert "amended visit 2 by " in shown
    assert "overridden dr-lee" in shown
    assert "350 mg qd (patient prefers 350 mg)" in shown
    assert (
        "no combination of the imatinib strengths available (100 mg, 400 mg) makes 350 mg"
    ) in shown
    exported = tmp_path / "P01.csv"
    exported.write_text(dosing("history", "P01", "--db", str(db), "--format", "timeline").stdout)
    assert "P01,2026-03-09,platelets,180,x10^9/L,2026-03-02" in exported.read_text()
    replayed = dosing("replay", "imatinib-hes", str(exported), "--format", "jsonl")
    assert replayed.returncode == 0, replayed.stderr
    stored = dosing("history", "P01", "--db", str(db), "--format", "jsonl")
    again = [json.loads(line) for line in replayed.stdout.splitlines()]
    kept = [json.loads(line) for line in stored.stdout.splitlines()]
    assert [r["action"] for r in again] == ["start", "continue", "refer"]
    assert again == [
        {key: record[key] for key in replay} for record, replay in zip(kept, again, strict=True)
    ]
