"""The patient store: SQLite, append-only, one transaction per visit.

- The file is created owner-only (0600): it holds patient data.
- WAL journal; a schema version (PRAGMA user_version) with migrations run on open.
- History is append-only: triggers refuse UPDATE and DELETE. A correction is a new row that
  names the row it supersedes.
- A visit (its observations, the decision record, the clinician's answer and the patient's
  record after it) is written in one transaction: all of it or none of it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import attrs

from dosing.decision import Decision
from dosing.errors import DosingError
from dosing.observations import Observation
from dosing.patient import PatientRecord


class StoreError(DosingError):
    """The patient store cannot be opened or written."""


_TABLES = ("patients", "visits", "observations", "decisions", "responses", "records")

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE patients (
        row INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL,
        protocol TEXT NOT NULL,
        facts TEXT NOT NULL,            -- JSON: name -> value as entered (birth_date, sex, ...)
        recorded_at TEXT NOT NULL,
        supersedes INTEGER REFERENCES patients(row)
    );
    CREATE INDEX patients_by_id ON patients(patient_id);
    CREATE TABLE visits (
        row INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL,
        date TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        supersedes INTEGER REFERENCES visits(row)
    );
    CREATE INDEX visits_by_patient ON visits(patient_id, date);
    CREATE TABLE observations (
        row INTEGER PRIMARY KEY,
        visit INTEGER NOT NULL REFERENCES visits(row),
        name TEXT NOT NULL,
        entered TEXT NOT NULL,          -- as typed, with its unit
        canonical TEXT NOT NULL,        -- exact: 'numerator/denominator', or the category
        drawn_on TEXT NOT NULL
    );
    CREATE TABLE decisions (
        row INTEGER PRIMARY KEY,
        visit INTEGER NOT NULL REFERENCES visits(row),
        protocol_sha256 TEXT NOT NULL,
        record TEXT NOT NULL            -- the decision record, JSON as `dosing step --json`
    );
    CREATE TABLE responses (
        row INTEGER PRIMARY KEY,
        decision INTEGER NOT NULL REFERENCES decisions(row),
        kind TEXT NOT NULL CHECK (kind IN ('accepted', 'overridden', 'unknown')),
        dose TEXT,                      -- the dose actually chosen, when overridden
        reason TEXT,
        recorded_at TEXT NOT NULL
    );
    CREATE TABLE records (
        row INTEGER PRIMARY KEY,
        visit INTEGER NOT NULL REFERENCES visits(row),
        record TEXT NOT NULL            -- the patient's place in the protocol after the visit
    );
    """
    + "".join(
        f"""
    CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
    BEGIN SELECT RAISE(ABORT, 'history is append-only: add a superseding row'); END;
    CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
    BEGIN SELECT RAISE(ABORT, 'history is append-only: add a superseding row'); END;
    """
        for table in _TABLES
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_path() -> Path:
    """--db, else $DOSING_DB, else the user's data directory (platformdirs)."""
    configured = os.environ.get("DOSING_DB")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("dosing", appauthor=False)) / "patients.sqlite"


@attrs.frozen
class Patient:
    """A patient as stored: id, protocol and facts as entered."""

    patient_id: str
    protocol: str
    facts: dict[str, str]


@attrs.frozen
class Response:
    """The clinician's answer to a decision."""

    kind: Literal["accepted", "overridden", "unknown"]
    """'unknown' for an imported decision whose dose given was not recorded."""
    dose: str | None = None
    reason: str | None = None


@attrs.frozen
class StoredVisit:
    """One visit as stored, for history and the next visit."""

    row: int
    date: dt.date
    observations: tuple[Observation, ...]
    decision: dict[str, Any]
    response: Response | None
    record: PatientRecord


class Store:
    """An open patient store. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            self.connection = sqlite3.connect(path, isolation_level=None, timeout=10)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the patient store {path}: {error}") from None
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    def _migrate(self) -> None:
        (version,) = self.connection.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}; this dosing knows up to "
                f"{SCHEMA_VERSION}: upgrade dosing"
            )
        for number in range(version, SCHEMA_VERSION):
            # executescript commits on its own, so the script carries its own transaction.
            script = (
                f"BEGIN IMMEDIATE;{MIGRATIONS[number]}PRAGMA user_version = {number + 1};COMMIT;"
            )
            try:
                self.connection.executescript(script)
            except sqlite3.Error as error:
                if self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                raise StoreError(
                    f"{self.path}: migration to version {number + 1} failed: {error}"
                ) from None

    @property
    def version(self) -> int:
        return int(self.connection.execute("PRAGMA user_version").fetchone()[0])

    def transaction(self) -> _Transaction:
        return _Transaction(self.connection)

    # ------------------------------------------------------------------ patients

    def patient(self, patient_id: str) -> Patient | None:
        row = self.connection.execute(
            "SELECT patient_id, protocol, facts FROM patients WHERE patient_id = ? "
            "AND row NOT IN (SELECT supersedes FROM patients WHERE supersedes IS NOT NULL) "
            "ORDER BY row DESC LIMIT 1",
            (patient_id,),
        ).fetchone()
        return None if row is None else Patient(row[0], row[1], json.loads(row[2]))

    def patients(self) -> Iterator[Patient]:
        rows = self.connection.execute(
            "SELECT patient_id, protocol, facts FROM patients WHERE row NOT IN "
            "(SELECT supersedes FROM patients WHERE supersedes IS NOT NULL) ORDER BY patient_id"
        )
        for patient_id, protocol, facts in rows:
            yield Patient(patient_id, protocol, json.loads(facts))

    # ------------------------------------------------------------------ visits

    def visits(self, patient_id: str) -> list[StoredVisit]:
        """The patient's visits in date order, superseded ones left out."""
        rows = self.connection.execute(
            "SELECT v.row, v.date, d.row, d.record, r.record FROM visits v "
            "JOIN decisions d ON d.visit = v.row JOIN records r ON r.visit = v.row "
            "WHERE v.patient_id = ? AND v.row NOT IN "
            "(SELECT supersedes FROM visits WHERE supersedes IS NOT NULL) ORDER BY v.date, v.row",
            (patient_id,),
        ).fetchall()
        visits = []
        for visit_row, date, decision_row, decision, record in rows:
            observations = tuple(
                Observation(name, _value(canonical), entered, dt.date.fromisoformat(drawn))
                for name, entered, canonical, drawn in self.connection.execute(
                    "SELECT name, entered, canonical, drawn_on FROM observations WHERE visit = ?"
                    " ORDER BY row",
                    (visit_row,),
                )
            )
            answer = self.connection.execute(
                "SELECT kind, dose, reason FROM responses WHERE decision = ? ORDER BY row DESC",
                (decision_row,),
            ).fetchone()
            visits.append(
                StoredVisit(
                    row=visit_row,
                    date=dt.date.fromisoformat(date),
                    observations=observations,
                    decision=json.loads(decision),
                    response=None if answer is None else Response(*answer),
                    record=record_from_json(record),
                )
            )
        return visits

    def save_visit(
        self,
        patient: Patient,
        new_patient: bool,
        date: dt.date,
        observations: list[Observation],
        decision: Decision,
        response: Response,
        record: PatientRecord,
    ) -> int:
        """Write a whole visit in one transaction; returns the visit's row."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with self.transaction():
            execute = self.connection.execute
            if new_patient:
                execute(
                    "INSERT INTO patients (patient_id, protocol, facts, recorded_at) "
                    "VALUES (?, ?, ?, ?)",
                    (patient.patient_id, patient.protocol, json.dumps(patient.facts), now),
                )
            visit = execute(
                "INSERT INTO visits (patient_id, date, recorded_at) VALUES (?, ?, ?)",
                (patient.patient_id, date.isoformat(), now),
            ).lastrowid
            for observation in observations:
                execute(
                    "INSERT INTO observations (visit, name, entered, canonical, drawn_on) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (visit, observation.name, observation.entered, _text(observation.value),
                     observation.drawn_on.isoformat()),
                )  # fmt: skip
            _pause_for_crash_test()
            decision_row = execute(
                "INSERT INTO decisions (visit, protocol_sha256, record) VALUES (?, ?, ?)",
                (visit, decision.protocol_sha256, json.dumps(decision.to_json())),
            ).lastrowid
            execute(
                "INSERT INTO responses (decision, kind, dose, reason, recorded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (decision_row, response.kind, response.dose, response.reason, now),
            )
            execute(
                "INSERT INTO records (visit, record) VALUES (?, ?)",
                (visit, record_to_json(record)),
            )
        assert visit is not None
        return visit


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (Ctrl-C included)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.connection.execute("COMMIT")
        else:
            self.connection.execute("ROLLBACK")


def _pause_for_crash_test() -> None:
    """Tests kill the process here, mid-transaction, to prove a visit is all or nothing."""
    delay = os.environ.get("DOSING_TEST_PAUSE_IN_VISIT_WRITE")
    if delay:
        print("writing visit", flush=True)  # the crash test waits for this line
        time.sleep(float(delay))


def _text(value: Fraction | str) -> str:
    return value if isinstance(value, str) else f"{value.numerator}/{value.denominator}"


def _value(text: str) -> Fraction | str:
    numerator, slash, denominator = text.partition("/")
    if slash and numerator.lstrip("-").isdigit() and denominator.isdigit():
        return Fraction(int(numerator), int(denominator))
    return text


def record_to_json(record: PatientRecord) -> str:
    """A patient record as JSON: dates ISO, numbers exact ('n/d')."""
    return json.dumps(
        {
            "state": record.state,
            "state_since": _iso(record.state_since),
            "therapy_started_on": _iso(record.therapy_started_on),
            "dose_since": _iso(record.dose_since),
            "memory": {name: _text(value) for name, value in record.memory.items()},
            "observations": {
                name: [o.entered, _text(o.value), o.drawn_on.isoformat()]
                for name, o in record.observations.items()
            },
        }
    )


def record_from_json(text: str) -> PatientRecord:
    data = json.loads(text)
    return PatientRecord(
        state=data["state"],
        state_since=_date(data["state_since"]),
        therapy_started_on=_date(data["therapy_started_on"]),
        dose_since=_date(data["dose_since"]),
        memory={name: _value(value) for name, value in data["memory"].items()},
        observations={
            name: Observation(name, _value(value), entered, dt.date.fromisoformat(drawn))
            for name, (entered, value, drawn) in data["observations"].items()
        },
    )


def _iso(date: dt.date | None) -> str | None:
    return None if date is None else date.isoformat()


def _date(text: str | None) -> dt.date | None:
    return None if text is None else dt.date.fromisoformat(text)
