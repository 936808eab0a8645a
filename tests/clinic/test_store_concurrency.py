"""Concurrent writers, with real processes: a visit decided from a course another process has
since changed is refused (what was typed is kept), a patient is registered once, and no
override is lost."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import re
import sqlite3
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pexpect
import pytest

from dosing.clinic.store import Store
from dosing.clinic.store_records import Patient, Response
from dosing.clinic.store_writes import StaleCourse
from dosing.engine.decision import Decision
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from tests.clinic.test_visit import FIRST, dosing, env, visit
from tests.conftest import ROOT

IMATINIB_LABS = ["0.8 x10^9/L", "", "", "", ""]  # ANC 0.8; Enter reuses the others


def spawn(db: Path, *args: str) -> pexpect.spawn[str]:
    command = f"{sys.executable} -m dosing visit --db {db} {' '.join(args)}"
    return pexpect.spawn(command, cwd=str(ROOT), env=env(TERM="xterm"), encoding="utf-8",
                         timeout=30)  # fmt: skip


def plain(text: object) -> str:
    """Terminal output without styling, on one line."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())


def unsaved_files() -> list[Path]:
    folder = Path(os.environ["XDG_DATA_HOME"]) / "dosing" / "unsaved-visits"
    return sorted(folder.glob("*.json")) if folder.exists() else []


@pytest.fixture(autouse=True)
def no_unsaved_visits_left() -> None:
    for path in unsaved_files():
        path.unlink()


def test_two_visits_at_once_the_later_write_is_refused_and_no_override_is_lost(
    tmp_path: Path,
) -> None:
    """Issue 10: two same-date visits of P01 start from the same record. B overrides and
    saves first; A's accept is refused (it was decided from the course before B), what A
    typed is kept, and B's override stays the current state. Issue 11: a patient has one
    visit a day, so A's next run loads A's labs, shows B's visit of that date and asks
    whether A's amends it; amended, it is decided from the course before B's visit."""
    db = tmp_path / "p.sqlite"
    assert visit(db, FIRST, "--date", "2026-01-05").returncode == 0
    a = spawn(db, "P01", "--date", "2026-01-12")
    for answer in IMATINIB_LABS:
        a.expect(r"\[Enter: ")
        a.sendline(answer)
    a.expect("HOLD")
    a.expect("answer")

    b = visit(
        db,
        ["1.6 x10^9/L", "", "", "", "", "override", "400 mg qd", "B: counts recovered"],
        "P01", "--date", "2026-01-12",
    )  # fmt: skip
    assert b.returncode == 0, b.stderr
    assert "The next decision starts from state dose_400 (400 mg qd)." in b.stdout

    a.sendline("accept")
    a.expect(pexpect.EOF)
    a.close()
    assert a.exitstatus == 2
    (kept,) = unsaved_files()
    said = plain(a.before)
    assert (
        "error: P01's course changed while this visit was being entered (a visit for "
        "2026-01-12 was saved meanwhile); nothing was saved, so that no decision is made from "
        f"an out-of-date course. What was typed is kept in {kept}. Run dosing visit P01 again: "
        "it offers to load what was typed and decides from the course as it now stands"
    ) in said
    assert oct(kept.stat().st_mode & 0o777) == "0o600"

    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM visits").fetchone() == (2,)
    patients = dosing("patients", "--db", str(db))
    assert "400 mg qd (overridden)" in patients.stdout
    history = dosing("history", "P01", "--db", str(db), "--format", "jsonl")
    assert [json.loads(line)["dose_given"] for line in history.stdout.splitlines()] == [
        "300 mg qd", "400 mg qd",
    ]  # fmt: skip

    again = visit(db, ["load", "yes", "accept", "A's labs"], "P01", "--date", "2026-01-12")
    assert again.returncode == 0, again.stderr
    out = " ".join(again.stdout.split())
    assert "A visit of P01 for 2026-01-12 was typed at" in out
    assert "but not saved (P01's course changed while this visit was being entered" in out
    assert (
        "P01 already has a visit on 2026-01-12 (visit 2: continue 300 mg qd [dose_300:continue] "
        "-> dose_300; dose 400 mg qd (overridden))"
    ) in out
    assert "ANC (x10^9/L): 0.8 x10^9/L (loaded)" in out
    assert "state hold_heme" in out  # held from 300 mg: decided from the course before B
    assert "HOLD" in out
    assert "Amended visit 2 of P01: saved as visit 3" in out
    assert unsaved_files() == []


def test_a_new_patient_registered_twice_at_once_gets_one_row(tmp_path: Path) -> None:
    """Issue 10: two visits register new patient P02 at once, on different protocols. One is
    stored; the other is refused with a message naming the protocol it got, keeps what was
    typed, and is not loaded onto the other protocol later."""
    db = tmp_path / "p.sqlite"
    a = spawn(db, "P02", "--protocol", "imatinib-hes", "--date", "2026-01-05")
    for answer in FIRST[2:-1]:
        a.expect(r"\): |\]: ")
        a.sendline(answer)
    a.expect("START")
    a.expect("answer")

    b = visit(
        db,
        ["1980-01-01", "F", "70 kg", "", "2.0 x10^9/L", "200 x10^9/L", "30 U/L", "28 U/L",
         "0.7 mg/dL", "1.0 mg/dL", "yes", "no", "accept"],
        "P02", "--protocol", "ruxolitinib-hes", "--date", "2026-01-05",
    )  # fmt: skip
    assert b.returncode == 0, b.stderr

    a.sendline("accept")
    a.expect(pexpect.EOF)
    a.close()
    assert a.exitstatus == 2
    (kept,) = unsaved_files()
    assert (
        "error: P02 was registered (on ruxolitinib-hes) by another dosing while this visit "
        f"was being entered; nothing was saved. What was typed is kept in {kept}."
    ) in plain(a.before)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT protocol FROM patients").fetchall() == [
            ("ruxolitinib-hes",)
        ]
        assert connection.execute("SELECT count(*) FROM visits").fetchone() == (1,)

    later = visit(db, [], "P02", "--date", "2026-01-12")
    out = " ".join(later.stdout.split())
    assert (
        f"It was typed for imatinib-hes, and P02 is on ruxolitinib-hes: it cannot be loaded. "
        f"It stays in {kept}."
    ) in out
    assert later.returncode == 130
    assert unsaved_files() == [kept]


def test_the_store_refuses_a_second_registration(tmp_path: Path) -> None:
    """Whatever the writer, a patient id is registered once (superseding rows aside)."""
    with Store(tmp_path / "p.sqlite") as store:
        insert = "INSERT INTO patients (patient_id, protocol, facts, recorded_at) VALUES (?,?,?,?)"
        store.connection.execute(insert, ("P01", "imatinib-hes", "{}", "now"))
        with pytest.raises(sqlite3.IntegrityError, match="patient already registered"):
            store.connection.execute(insert, ("P01", "ruxolitinib-hes", "{}", "now"))


# ------------------------------------------------------------------ many writers, one course

DAY = dt.date(2026, 1, 5)


def _decision(count: int) -> Decision:
    return Decision(
        patient_id="P01", date=DAY, protocol="p", protocol_version="1", protocol_sha256="0",
        state=f"visit_{count}", action="continue", doses=(), next_check=None, rules=(),
        reasons=(), warnings=(),
    )  # fmt: skip


def _writer(db: str, visits: int, start: Any) -> int:
    """Add `visits` visits, each counting one more than the course it read, a moment (the
    clinician typing) after reading it; retry when the course changed meanwhile. Returns how
    many writes were refused as stale."""
    refused = 0
    start.wait()
    with Store(Path(db)) as store:
        patient = Patient("P01", "p", {})
        written = 0
        while written < visits:
            version = store.course_version("P01")
            course = store.visits("P01")
            count = int(course[-1].record.memory["count"]) + 1 if course else 1
            record = PatientRecord(state=f"visit_{count}", memory={"count": Fraction(count)})
            observation = Observation("anc", Fraction(count), f"{count}/mm3", DAY)
            time.sleep(0.002)
            try:
                store.save_visit(patient, version, DAY, [observation], _decision(count),
                                 Response("accepted"), record)  # fmt: skip
            except StaleCourse:
                refused += 1
                continue
            written += 1
    return refused


def test_many_processes_writing_one_course_never_build_on_a_stale_record(tmp_path: Path) -> None:
    """Four processes each add 15 visits to one course as fast as they can: every visit
    builds on the one before it (counts 1..60, none repeated), and stale writes were refused."""
    db = tmp_path / "p.sqlite"
    with Store(db):
        pass
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Barrier(4)
    with context.Pool(4) as pool:
        refused = pool.starmap(_writer, [(str(db), 15, start)] * 4)
    with Store(db) as store:
        counts = [visit.record.memory["count"] for visit in store.visits("P01")]
        assert store.connection.execute("SELECT count(*) FROM patients").fetchone() == (1,)
    assert counts == list(range(1, 61))
    assert sum(refused) > 0  # the processes did overlap
