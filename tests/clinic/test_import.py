"""dosing import-timeline under stress: two at once, killed at random points, interrupted:
each patient is stored once, whole or not at all, and running it again completes the rest."""

from __future__ import annotations

import csv
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dosing.cli.app import app
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "imatinib-hes-timeline.csv"
KILLS = 20
SEED = 20261122


def timeline(folder: Path, copies: int) -> Path:
    """The example timeline's three patients, `copies` times over under new ids."""
    with EXAMPLE.open(newline="") as stream:
        header, *rows = list(csv.reader(stream))
    path = folder / f"timeline-{copies}.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for copy in range(copies):
            writer.writerows([f"C{copy:03d}-{row[0]}", *row[1:]] for row in rows)
    return path


def start_import(db: Path, path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dosing", "import-timeline", "imatinib-hes", str(path),
         "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip


def import_in_process(db: Path, path: Path) -> str:
    result = CliRunner().invoke(
        app, ["import-timeline", "imatinib-hes", str(path), "--db", str(db)]
    )
    assert result.exit_code == 0, result.output
    return result.output


Shape = tuple[int, int, int, int, int]


def courses(db: Path) -> dict[str, Shape]:
    """Per patient: registrations, visits, observations, decisions, answers and records."""
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = connection.execute(
            """
            SELECT p.patient_id,
                (SELECT count(*) FROM patients WHERE patient_id = p.patient_id),
                (SELECT count(*) FROM visits WHERE patient_id = p.patient_id),
                (SELECT count(*) FROM observations o JOIN visits v ON o.visit = v.row
                 WHERE v.patient_id = p.patient_id),
                (SELECT count(*) FROM decisions d JOIN visits v ON d.visit = v.row
                 JOIN responses r ON r.decision = d.row JOIN records c ON c.visit = v.row
                 WHERE v.patient_id = p.patient_id),
                (SELECT count(*) FROM visits WHERE patient_id NOT IN
                 (SELECT patient_id FROM patients))
            FROM (SELECT DISTINCT patient_id FROM patients) p
            """
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Shape]]:
    """A 30-patient timeline and the shape of each patient's course when fully imported."""
    folder = tmp_path_factory.mktemp("import")
    path = timeline(folder, 10)
    import_in_process(folder / "reference.sqlite", path)
    whole = courses(folder / "reference.sqlite")
    assert len(whole) == 30
    return path, whole


def test_two_imports_of_one_file_at_once_store_each_patient_once(tmp_path: Path) -> None:
    """Issue 10: two concurrent imports of a 201-patient CSV (was: 42 imported twice). Each
    patient is stored once and whole, and between them the two runs say so for every one."""
    path = timeline(tmp_path, 67)
    db = tmp_path / "p.sqlite"
    first, second = start_import(db, path), start_import(db, path)
    outputs = [process.communicate(timeout=120) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [err for _, err in outputs]
    stored = courses(db)
    assert len(stored) == 201
    assert {shape[0] for shape in stored.values()} == {1}
    assert all(shape[4] == 0 for shape in stored.values())
    imported = [
        {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("Imported ")
         and line.endswith("visits.") and ":" in line}
        for out, _ in outputs
    ]  # fmt: skip
    assert imported[0] | imported[1] == set(stored)
    assert imported[0] & imported[1] == set()
    reference = tmp_path / "reference.sqlite"
    import_in_process(reference, path)
    assert stored == courses(reference)


def test_killed_at_random_points_each_patient_is_whole_or_absent(
    tmp_path: Path, small: tuple[Path, dict[str, Shape]]
) -> None:
    """Issue 10: SIGKILL at 20 random points (seeded) while dosing import-timeline writes: every
    time the store passes integrity_check and holds each patient whole or not at all, and
    running the import again completes the rest, saying which were already there."""
    path, whole = small
    rng = random.Random(SEED)
    partial = 0
    for kill in range(KILLS):
        db = tmp_path / f"kill-{kill}.sqlite"
        after = rng.randrange(len(whole))  # patients reported imported before the kill
        process = start_import(db, path)
        assert process.stdout is not None
        seen = 0
        while seen < after:
            line = process.stdout.readline()
            assert line, f"the import ended before {after} patients"
            seen += line.startswith("Imported ")
        time.sleep(rng.uniform(0, 0.015))  # somewhere inside the next patient's write
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        assert process.stderr is not None
        process.stderr.close()
        assert process.returncode == -signal.SIGKILL
        stored = courses(db) if db.exists() else {}
        for patient, shape in stored.items():
            assert shape == whole[patient], f"kill {kill}: {patient} is half-imported"
        partial += 0 < len(stored) < len(whole)
        said = import_in_process(db, path)
        assert courses(db) == whole
        for patient in whole:
            skipped = f"{patient} is already in the store with these visits: skipped."
            assert (skipped in said) == (patient in stored), f"kill {kill}: {patient}"
    assert partial >= KILLS // 2  # most kills really landed mid-import


def test_ctrl_c_says_what_was_imported_and_a_rerun_completes(
    tmp_path: Path, small: tuple[Path, dict[str, Shape]]
) -> None:
    """Issue 10: Ctrl-C during an import (was: exit 130, no message) says what was imported
    before it; each patient is whole or absent; the same command again completes it."""
    path, whole = small
    db = tmp_path / "p.sqlite"
    process = start_import(db, path)
    assert process.stdout is not None
    imported: list[str] = []
    while len(imported) < 5:
        line = process.stdout.readline()
        assert line
        if line.startswith("Imported "):
            imported.append(line)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    stored = courses(db)
    assert all(shape == whole[patient] for patient, shape in stored.items())
    done = len(imported) + sum(line.startswith("Imported C") for line in out.splitlines())
    assert len(stored) == done
    visits = sum(shape[1] for shape in stored.values())
    assert err == (
        f"cancelled: the import was interrupted. Imported before that: {done} patients "
        f"({visits} visits); each patient is stored whole or not at all. Run the same command "
        "again to import the rest (patients already in the store are skipped)\n"
    )
    said = import_in_process(db, path)
    assert courses(db) == whole
    assert f"Imported {len(whole) - done} patients" in said


def test_a_patient_stored_with_another_course_is_named_not_imported(tmp_path: Path) -> None:
    """Importing a timeline whose P01 has one visit more than the one stored says so, and
    leaves the stored course as it was."""
    db = tmp_path / "p.sqlite"
    import_in_process(db, EXAMPLE)
    longer = tmp_path / "longer.csv"
    text = EXAMPLE.read_text()
    longer.write_text(text + "P01,2026-03-16,anc,3000,/mm3\nP01,2026-03-16,platelets,200,G/L\n")
    before = courses(db)
    said = import_in_process(db, longer)
    assert said.splitlines()[:4] == [
        "P01 is already in the store with a different course (8 visits stored, 9 in "
        "longer.csv): not imported.",
        "P02 is already in the store with these visits: skipped.",
        "P03 is already in the store with these visits: skipped.",
        "Imported 0 patients (0 visits); 3 already in the store.",
    ]
    assert courses(db) == before
