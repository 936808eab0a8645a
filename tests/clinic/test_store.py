"""The patient store: migrations, permissions, append-only history, exact round trips."""

from __future__ import annotations

import datetime as dt
import sqlite3
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from dosing.clinic.store import Store, StoreError
from dosing.clinic.store_records import dose_in_force, record_from_json, record_to_json
from dosing.clinic.store_schema import SCHEMA_VERSION
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord


def test_new_store_is_owner_only_and_migrated(tmp_path: Path) -> None:
    """A new store file is created 0600 and at the current schema version."""
    path = tmp_path / "deep" / "patients.sqlite"
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION == 4
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_migrates_an_empty_file(tmp_path: Path) -> None:
    """An existing empty file is migrated from version 0."""
    path = tmp_path / "empty.sqlite"
    path.touch(mode=0o600)
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        tables = {
            r[0]
            for r in store.connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert {"patients", "visits", "observations", "decisions", "responses", "records"} <= tables
    assert {"cds_cards", "cds_feedback"} <= tables  # the CDS Hooks service's cards, feedback


def test_wal_mode(tmp_path: Path) -> None:
    """The journal is write-ahead."""
    with Store(tmp_path / "p.sqlite") as store:
        assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_history_is_append_only(tmp_path: Path) -> None:
    """UPDATE and DELETE are refused on every table."""
    with Store(tmp_path / "p.sqlite") as store:
        store.connection.execute(
            "INSERT INTO visits (patient_id, date, recorded_at) VALUES ('P', '2026-01-05', 'now')"
        )
        with pytest.raises(sqlite3.DatabaseError, match="history is append-only"):
            store.connection.execute("UPDATE visits SET date = '2026-01-06'")
        with pytest.raises(sqlite3.DatabaseError, match="history is append-only"):
            store.connection.execute("DELETE FROM visits")


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A store written by a newer dosing is not opened blindly."""
    path = tmp_path / "p.sqlite"
    with Store(path) as store:
        store.connection.execute("PRAGMA user_version = 99")
    knows = f"has schema version 99; this dosing knows up to {SCHEMA_VERSION}"
    with pytest.raises(StoreError, match=knows):
        Store(path)


def test_record_round_trip_is_exact() -> None:
    """A patient record survives the store exactly: fractions, dates, memory, observations."""
    day = dt.date(2026, 1, 5)
    record = PatientRecord(
        state="dose_300",
        state_since=day,
        therapy_started_on=day,
        dose_since=day,
        memory={"heme_holds": Fraction(1), "held_from": "dose_400", "level": Fraction(300)},
        observations={"anc": Observation("anc", Fraction(6, 5), "1200/mm3", day)},
    )
    assert record_from_json(record_to_json(record)) == record


def _version_1_store(path: Path) -> None:
    """A store as dosing wrote it before migration 2, with the same patient registered twice
    (as concurrent visits could do then)."""
    from dosing.clinic.store_schema import MIGRATIONS

    with sqlite3.connect(path, isolation_level=None) as connection:
        connection.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
        for protocol in ("imatinib-hes", "ruxolitinib-hes"):
            connection.execute(
                "INSERT INTO patients (patient_id, protocol, facts, recorded_at) "
                "VALUES ('P01', ?, '{}', 'then')",
                (protocol,),
            )
    path.chmod(0o600)


def test_migration_2_indexes_the_visit_keys(tmp_path: Path) -> None:
    """Issue 10: the tables a visit is joined by get indexes, in a migration that also runs
    on a store holding a duplicate registration from before."""
    path = tmp_path / "old.sqlite"
    _version_1_store(path)
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        plans = {
            table: " ".join(
                str(step)
                for step in store.connection.execute(
                    f"EXPLAIN QUERY PLAN SELECT * FROM {table} WHERE {column} = 1"
                )
            )
            for table, column in (
                ("observations", "visit"), ("decisions", "visit"), ("records", "visit"),
                ("responses", "decision"),
            )
        }  # fmt: skip
        assert len(list(store.current_courses())) == 1
    for table, plan in plans.items():
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (table, plan)


def test_current_courses_agree_with_each_patients_visits(tmp_path: Path) -> None:
    """The one-query list `dosing patients` prints gives, for every patient, what reading each
    course in full gives: imported courses, overrides, a superseded last visit, no visits."""
    import subprocess
    import sys

    from dosing.clinic.visit import current_dose
    from tests.conftest import ROOT

    path = tmp_path / "p.sqlite"
    subprocess.run(
        [sys.executable, "-m", "dosing", "import-timeline", "imatinib-hes",
         "examples/imatinib-hes-timeline.csv", "--db", str(path)],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    with Store(path) as store:
        execute = store.connection.execute
        execute("INSERT INTO patients (patient_id, protocol, facts, recorded_at) "
                "VALUES ('P04', 'imatinib-hes', '{}', 'now')")  # fmt: skip
        last = execute("SELECT max(row) FROM visits WHERE patient_id = 'P01'").fetchone()[0]
        correction = execute(
            "INSERT INTO visits (patient_id, date, recorded_at, supersedes) "
            "SELECT patient_id, date, 'now', row FROM visits WHERE row = ?",
            (last,),
        ).lastrowid
        decision = execute(
            "INSERT INTO decisions (visit, protocol_sha256, record) "
            "SELECT ?, protocol_sha256, record FROM decisions WHERE visit = ?",
            (correction, last - 1),
        ).lastrowid
        execute("INSERT INTO records (visit, record) SELECT ?, record FROM records "
                "WHERE visit = ?", (correction, last - 1))  # fmt: skip
        execute(
            "INSERT INTO responses (decision, kind, dose, reason, recorded_at) "
            "VALUES (?, 'overridden', '200 mg qd', 'corrected', 'now')",
            (decision,),
        )
        listed = store.current_courses()
        assert [course.patient_id for course in listed] == ["P01", "P02", "P03", "P04"]
        for course in listed:
            visits = store.visits(course.patient_id)
            if not visits:
                assert (course.last_visit, course.state) == (None, None)
                continue
            reference = visits[-1]
            assert course.last_visit == reference.date
            assert course.state == reference.record.state
            assert course.next_check == reference.decision["next_check"]
            assert dose_in_force(course.doses, course.response) == current_dose(reference)
    assert dose_in_force(listed[0].doses, listed[0].response) == "200 mg qd (overridden)"


def test_history_of_an_unknown_id_names_close_ids_not_every_id(tmp_path: Path) -> None:
    """Issue 10: `dosing history` with an unknown id says how many patients there are and at
    most three close ids (it printed every id in the store)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = tmp_path / "p.sqlite"
    with Store(path) as store:
        store.connection.executemany(
            "INSERT INTO patients (patient_id, protocol, facts, recorded_at) "
            "VALUES (?, 'imatinib-hes', '{}', 'now')",
            [(f"HES-{number:03d}",) for number in range(1, 301)],
        )

    def history(patient: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dosing", "history", patient, "--db", str(path)],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip

    typo = history("HES-0012")
    assert typo.returncode == 2
    assert typo.stderr == (
        f"error: no patient 'HES-0012' in {path} (300 patients); did you mean HES-012, "
        "HES-002, HES-001?\n"
    )
    unrelated = history("Smith")
    assert unrelated.stderr == f"error: no patient 'Smith' in {path} (300 patients)\n"


def test_processes_opening_a_new_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    """Six processes open one new store at the same moment: all succeed (two imports at once
    used to fail with 'migration to version 1 failed: table patients already exists')."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    path = tmp_path / "p.sqlite"
    start = context.Barrier(6)
    results = context.Queue()
    processes = [
        context.Process(target=_open_version, args=(str(path), start, results)) for _ in range(6)
    ]
    for process in processes:
        process.start()
    versions = sorted(str(results.get(timeout=60)) for _ in processes)
    for process in processes:
        process.join()
    assert versions == [str(SCHEMA_VERSION)] * 6


def _open_version(path: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        with Store(Path(path)) as store:
            results.put(store.version)
    except StoreError as error:
        results.put(str(error))


def test_migration_3_keeps_answers_and_adds_who_and_corrections(tmp_path: Path) -> None:
    """A version-2 store with visits opens at version 3: the visits read as before, with no
    clinician recorded; a visit is superseded at most once, and a voided one leaves the
    course."""
    import subprocess
    import sys

    from dosing.clinic.store_schema import MIGRATIONS
    from tests.conftest import ROOT

    new = tmp_path / "new.sqlite"
    subprocess.run(
        [sys.executable, "-m", "dosing", "import-timeline", "imatinib-hes",
         "examples/imatinib-hes-timeline.csv", "--db", str(new)],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path, isolation_level=None) as connection:  # as version 2 wrote it
        connection.executescript(MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version = 2;")
        connection.execute("ATTACH DATABASE ? AS new", (str(new),))
        for table, columns in (
            ("patients", "*"), ("visits", "row, patient_id, date, recorded_at, supersedes"),
            ("observations", "*"), ("decisions", "*"),
            ("responses", "row, decision, kind, dose, reason, recorded_at"), ("records", "*"),
        ):  # fmt: skip
            connection.execute(f"INSERT INTO main.{table} SELECT {columns} FROM new.{table}")
    path.chmod(0o600)
    with Store(path) as store:
        assert store.version == SCHEMA_VERSION
        first = store.visits("P01")[0]
        assert first.response is not None
        assert (first.response.kind, first.response.clinician) == ("accepted", None)
        void = (
            "INSERT INTO visits (patient_id, date, recorded_at, supersedes, correction) "
            "VALUES ('P01', ?, 'now', ?, 'voided')"
        )
        store.connection.execute(void, (first.date.isoformat(), first.row))
        with pytest.raises(sqlite3.DatabaseError, match="visit already superseded"):
            store.connection.execute(void, (first.date.isoformat(), first.row))
        assert store.visits("P01")[0].date > first.date
