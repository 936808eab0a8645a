"""The patient store: SQLite, append-only, one transaction per visit.

- The file is created owner-only (0600) and must stay so: it holds patient data
  (`store_file`).
- WAL journal; a schema version (PRAGMA user_version) with migrations run on open.
- History is append-only: triggers refuse UPDATE and DELETE. A correction is a new row that
  names the row it supersedes.
- A visit (its observations, the decision record, the clinician's answer and the patient's
  record after it) is written in one transaction: all of it or none of it. The course it was
  decided from is checked again inside that transaction (`CourseVersion`): a visit decided
  from a course another process has since changed is refused, never written over it.
- An imported patient's whole course is one transaction too: an import that is killed leaves
  each patient whole or absent, and running it again completes it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import attrs

from dosing.clinic.store_file import StoreError as StoreError
from dosing.clinic.store_file import check_private, open_private, why_not_writable
from dosing.engine.decision import Decision
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord


class StoreWriteError(StoreError):
    """A write to the store failed; the message names the cause in the user's terms."""


class StaleCourse(StoreError):
    """The patient's course changed in the store since the visit was decided from it."""


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
    # 2: indexes on the keys every visit is joined by (without them, listing the patients read
    # every observation once per visit), and one registration per patient id.
    """
    CREATE INDEX observations_by_visit ON observations(visit);
    CREATE INDEX decisions_by_visit ON decisions(visit);
    CREATE INDEX responses_by_decision ON responses(decision);
    CREATE INDEX records_by_visit ON records(visit);
    CREATE INDEX visits_superseded ON visits(supersedes) WHERE supersedes IS NOT NULL;
    CREATE INDEX patients_superseded ON patients(supersedes) WHERE supersedes IS NOT NULL;
    CREATE TRIGGER patients_registered_once BEFORE INSERT ON patients
    WHEN NEW.supersedes IS NULL
        AND EXISTS (SELECT 1 FROM patients WHERE patient_id = NEW.patient_id)
    BEGIN SELECT RAISE(ABORT, 'patient already registered: add a superseding row'); END;
    """,
    # 3: who decided, and corrections. A response records the clinician who gave it and
    # what they confirmed (a dose no tablets make, or above the maximum). A visit row that
    # supersedes another says how (amended, voided, re-decided after an earlier correction),
    # by whom and why; a voided visit is superseded by a row with no decision. A visit is
    # superseded once.
    """
    ALTER TABLE responses ADD COLUMN clinician TEXT;
    ALTER TABLE responses ADD COLUMN confirmed TEXT;
    ALTER TABLE visits ADD COLUMN correction TEXT
        CHECK (correction IN ('amended', 'voided', 're-decided'));
    ALTER TABLE visits ADD COLUMN clinician TEXT;
    ALTER TABLE visits ADD COLUMN reason TEXT;
    CREATE TRIGGER visits_superseded_once BEFORE INSERT ON visits
    WHEN NEW.supersedes IS NOT NULL
        AND EXISTS (SELECT 1 FROM visits WHERE supersedes = NEW.supersedes)
    BEGIN SELECT RAISE(ABORT, 'visit already superseded'); END;
    """,
    # 4: the CDS Hooks service (`cds_store`): each card it returned, with what is needed to
    # store its visit, and the feedback on it (the visit is stored with the clinician's answer
    # when the feedback comes: `visit` names it).
    """
    CREATE TABLE cds_cards (
        row INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        service TEXT NOT NULL,
        hook_instance TEXT NOT NULL,
        patient_id TEXT NOT NULL,
        date TEXT NOT NULL,
        pending TEXT NOT NULL,          -- JSON: the visit as decided, ready to be saved
        recorded_at TEXT NOT NULL
    );
    CREATE TABLE cds_feedback (
        row INTEGER PRIMARY KEY,
        card INTEGER NOT NULL REFERENCES cds_cards(row),
        outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
        reason TEXT,
        outcome_at TEXT NOT NULL,       -- outcomeTimestamp, as the CDS client sent it
        visit INTEGER REFERENCES visits(row),
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX cds_feedback_by_card ON cds_feedback(card);
    """
    + "".join(
        f"""
    CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
    BEGIN SELECT RAISE(ABORT, 'history is append-only: add a superseding row'); END;
    CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
    BEGIN SELECT RAISE(ABORT, 'history is append-only: add a superseding row'); END;
    """
        for table in ("cds_cards", "cds_feedback")
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
    """'unknown' for an imported decision: no answer was recorded, only (maybe) the dose
    given."""
    dose: str | None = None
    """The dose chosen when overridden; for 'unknown', the dose given if recorded."""
    reason: str | None = None
    clinician: str | None = None
    """Who answered (None for imported decisions, and answers stored before it was kept)."""
    confirmed: str | None = None
    """What the clinician confirmed about the dose chosen: why it needed confirming."""


Correction = Literal["amended", "voided", "re-decided"]


@attrs.frozen
class Superseded:
    """How a visit row replaced an earlier one: by whom, when and why."""

    row: int
    """The visit row replaced."""
    kind: Correction
    clinician: str | None
    reason: str | None
    recorded_at: str


@attrs.frozen
class StoredVisit:
    """One visit as stored, for history and the next visit."""

    row: int
    date: dt.date
    observations: tuple[Observation, ...]
    decision: dict[str, Any]
    response: Response | None
    record: PatientRecord
    supersedes: Superseded | None = None
    """Set when this visit replaced an earlier one (an amendment or a re-decision)."""


@attrs.frozen
class CorrectionRow:
    """A row of a patient's chain of corrections: the new row, and the one it replaced."""

    row: int
    date: dt.date
    superseded: Superseded


@attrs.frozen
class Replacement:
    """A correction to store: the visit row replaced, and its new content (None: voided)."""

    supersedes: int
    kind: Correction
    clinician: str
    reason: str
    visit: ImportedVisit | None


def dose_in_force(doses: list[dict[str, Any]], response: Response | None) -> str:
    """The dose after a visit: the one chosen if the advice was overridden (or the one given,
    recorded without an answer), else the advised doses (`doses` as in the decision record)."""
    if response is not None and response.kind == "overridden":
        return f"{response.dose} (overridden)"
    if response is not None and response.kind == "unknown" and response.dose is not None:
        return f"{response.dose} (given)"
    return (
        ", ".join(f"{d['drug']} {d['amount']} {d['unit']} {d['frequency']}" for d in doses)
        or "none"
    )


@attrs.frozen
class CourseVersion:
    """Where a patient's course stood when it was read: the newest registration row and the
    newest visit row (None: none yet). Any new row for the patient changes it."""

    patient_row: int | None
    visit_row: int | None


@attrs.frozen
class CurrentCourse:
    """A patient as `dosing patients` lists them: where the course stands after the last
    visit (None fields: no visit yet)."""

    patient_id: str
    protocol: str
    state: str | None
    doses: list[dict[str, Any]]
    response: Response | None
    last_visit: dt.date | None
    next_check: str | None
    action: str | None = None
    """The last decision's action ('refer': due again after the site's referral interval)."""


@attrs.frozen
class ImportedVisit:
    """One replayed visit, ready to be stored."""

    date: dt.date
    observations: list[Observation]
    decision: Decision
    response: Response
    record: PatientRecord


class Store:
    """An open patient store. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        open_private(path)
        checked = check_private(path)
        try:
            self.connection = sqlite3.connect(path, isolation_level=None, timeout=10)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as error:
            reason = why_not_writable(path, error) or error
            raise StoreError(f"cannot open the patient store {path}: {reason}") from None
        opened = check_private(path)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            self.connection.close()
            raise StoreError(f"the patient store {path} was replaced while it was opened")
        self._migrate()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    def _migrate(self) -> None:
        version = self.version
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
                if self.version > number:
                    continue  # another process opening the store ran this migration first
                reason = why_not_writable(self.path, error) or error
                raise StoreError(
                    f"{self.path}: migration to version {number + 1} failed: {reason}"
                ) from None

    @property
    def version(self) -> int:
        return int(self.connection.execute("PRAGMA user_version").fetchone()[0])

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def check_writable(self) -> None:
        """Raise StoreWriteError, naming the cause, if a visit could not be written now."""
        reason = why_not_writable(self.path)
        if reason is not None:
            raise StoreWriteError(reason)
        try:  # a write SQLite must be able to start; rolled back, so nothing is kept
            with self.transaction():
                self.connection.execute("CREATE TABLE write_probe (x)")
                raise _Probed
        except _Probed:
            return

    # ------------------------------------------------------------------ patients

    def patient(self, patient_id: str) -> Patient | None:
        row = self.connection.execute(
            "SELECT patient_id, protocol, facts FROM patients WHERE patient_id = ? "
            "AND row NOT IN (SELECT supersedes FROM patients WHERE supersedes IS NOT NULL) "
            "ORDER BY row DESC LIMIT 1",
            (patient_id,),
        ).fetchone()
        return None if row is None else Patient(row[0], row[1], json.loads(row[2]))

    def patient_ids(self) -> list[str]:
        """Every patient id in the store, sorted."""
        rows = self.connection.execute("SELECT DISTINCT patient_id FROM patients ORDER BY 1")
        return [patient_id for (patient_id,) in rows]

    def course_version(self, patient_id: str) -> CourseVersion:
        """Where the patient's course stands now; compare it again when writing."""
        (patient_row,) = self.connection.execute(
            "SELECT max(row) FROM patients WHERE patient_id = ?", (patient_id,)
        ).fetchone()
        (visit_row,) = self.connection.execute(
            "SELECT max(row) FROM visits WHERE patient_id = ?", (patient_id,)
        ).fetchone()
        return CourseVersion(patient_row, visit_row)

    def current_courses(self) -> list[CurrentCourse]:
        """Every patient with where their course stands, in one query (sorted by id)."""
        rows = self.connection.execute(_CURRENT_COURSES)
        return [
            CurrentCourse(
                patient_id=patient_id,
                protocol=protocol,
                state=state,
                doses=json.loads(doses) if doses else [],
                response=None if kind is None else Response(kind, dose, reason),
                last_visit=None if date is None else dt.date.fromisoformat(date),
                next_check=next_check,
                action=action,
            )
            for (
                patient_id, protocol, date, state, next_check, doses, kind, dose, reason, action
            ) in rows
        ]  # fmt: skip

    # ------------------------------------------------------------------ visits

    def visits(self, patient_id: str) -> list[StoredVisit]:
        """The patient's visits in date order, superseded and voided ones left out."""
        rows = self.connection.execute(
            f"{_VISIT} WHERE v.patient_id = ? AND v.row NOT IN "
            "(SELECT supersedes FROM visits WHERE supersedes IS NOT NULL) ORDER BY v.date, v.row",
            (patient_id,),
        ).fetchall()
        return [self._stored(row) for row in rows]

    def visit(self, row: int) -> StoredVisit | None:
        """Any visit row with its decision, superseded or not (None: no such decided visit)."""
        found = self.connection.execute(f"{_VISIT} WHERE v.row = ?", (row,)).fetchone()
        return None if found is None else self._stored(found)

    def corrections(self, patient_id: str) -> list[CorrectionRow]:
        """Every row of the patient that replaced another, oldest first: the chain."""
        rows = self.connection.execute(
            "SELECT row, date, supersedes, correction, clinician, reason, recorded_at FROM visits "
            "WHERE patient_id = ? AND supersedes IS NOT NULL ORDER BY row",
            (patient_id,),
        )
        return [
            CorrectionRow(row, dt.date.fromisoformat(date),
                          Superseded(old, kind or "amended", clinician, reason, recorded_at))
            for row, date, old, kind, clinician, reason, recorded_at in rows
        ]  # fmt: skip

    def _stored(self, row: tuple[Any, ...]) -> StoredVisit:
        visit_row, date, decision_row, decision, record = row[:5]
        old, kind, clinician, reason, recorded_at = row[5:]
        observations = tuple(
            Observation(name, _value(canonical), entered, dt.date.fromisoformat(drawn))
            for name, entered, canonical, drawn in self.connection.execute(
                "SELECT name, entered, canonical, drawn_on FROM observations WHERE visit = ?"
                " ORDER BY row",
                (visit_row,),
            )
        )
        answer = self.connection.execute(
            "SELECT kind, dose, reason, clinician, confirmed FROM responses WHERE decision = ? "
            "ORDER BY row DESC",
            (decision_row,),
        ).fetchone()
        return StoredVisit(
            row=visit_row,
            date=dt.date.fromisoformat(date),
            observations=observations,
            decision=json.loads(decision),
            response=None if answer is None else Response(*answer),
            record=record_from_json(record),
            supersedes=None
            if old is None
            else Superseded(old, kind or "amended", clinician, reason, recorded_at),
        )

    def save_visit(
        self,
        patient: Patient,
        decided_from: CourseVersion,
        date: dt.date,
        observations: list[Observation],
        decision: Decision,
        response: Response,
        record: PatientRecord,
        also: Callable[[int], None] | None = None,
    ) -> int:
        """Write a whole visit in one transaction; returns the visit's row.

        `decided_from` is the course version the visit was decided from; if the course has
        changed since (another visit saved, the patient registered meanwhile), StaleCourse is
        raised and nothing is written. `also` is called with the visit's row inside the same
        transaction (the CDS service links its feedback to the visit)."""
        with self.transaction():
            now = self._now()
            self._refuse_stale(patient, decided_from)
            if decided_from.patient_row is None:
                self._register(patient, now)
            row = self._write_visit(
                patient.patient_id, ImportedVisit(date, observations, decision, response, record),
                now,
            )  # fmt: skip
            if also is not None:
                also(row)
            return row

    def save_corrections(
        self, patient: Patient, decided_from: CourseVersion, replacements: list[Replacement]
    ) -> list[int]:
        """Write corrections (an amended or voided visit, and the later visits re-decided) in
        one transaction; returns the new rows. Nothing is updated: each new row supersedes
        the row it replaces. StaleCourse if the course changed since `decided_from`."""
        with self.transaction():
            now = self._now()
            self._refuse_stale(patient, decided_from)
            rows = []
            for replacement in replacements:
                if replacement.visit is None:
                    (date,) = self.connection.execute(
                        "SELECT date FROM visits WHERE row = ?", (replacement.supersedes,)
                    ).fetchone()
                    rows.append(self._visit_row(patient.patient_id, date, now, replacement))
                else:
                    rows.append(
                        self._write_visit(patient.patient_id, replacement.visit, now, replacement)
                    )
            return rows

    def save_course(self, patient: Patient, visits: list[ImportedVisit]) -> bool:
        """Register a patient with their whole course in one transaction. False (and nothing
        written) if the patient is already in the store."""
        with self.transaction():
            if self.course_version(patient.patient_id).patient_row is not None:
                return False
            now = self._now()
            self._register(patient, now)
            for visit in visits:
                self._write_visit(patient.patient_id, visit, now)
        return True

    def add_response(
        self, visit_row: int, response: Response, also: Callable[[int], None] | None = None
    ) -> None:
        """Record another answer to a stored visit's decision (the latest one counts); `also`
        as for save_visit."""
        with self.transaction():
            (decision_row,) = self.connection.execute(
                "SELECT max(row) FROM decisions WHERE visit = ?", (visit_row,)
            ).fetchone()
            self.connection.execute(
                "INSERT INTO responses (decision, kind, dose, reason, recorded_at, clinician, "
                "confirmed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (decision_row, response.kind, response.dose, response.reason, self._now(),
                 response.clinician, response.confirmed),
            )  # fmt: skip
            if also is not None:
                also(visit_row)

    @staticmethod
    def _now() -> str:
        return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def _refuse_stale(self, patient: Patient, decided_from: CourseVersion) -> None:
        now = self.course_version(patient.patient_id)
        if now == decided_from:
            return
        if decided_from.patient_row is None:
            registered = self.patient(patient.patient_id)
            protocol = registered.protocol if registered else "?"
            raise StaleCourse(
                f"{patient.patient_id} was registered (on {protocol}) by another dosing while "
                "this visit was being entered; nothing was saved"
            )
        (date,) = self.connection.execute(
            "SELECT date FROM visits WHERE row = ?", (now.visit_row,)
        ).fetchone()
        raise StaleCourse(
            f"{patient.patient_id}'s course changed while this visit was being entered (a "
            f"visit for {date} was saved meanwhile); nothing was saved, so that no decision "
            "is made from an out-of-date course"
        )

    def _register(self, patient: Patient, now: str) -> None:
        self.connection.execute(
            "INSERT INTO patients (patient_id, protocol, facts, recorded_at) VALUES (?, ?, ?, ?)",
            (patient.patient_id, patient.protocol, json.dumps(patient.facts), now),
        )

    def _visit_row(
        self, patient_id: str, date: str, now: str, replacing: Replacement | None
    ) -> int:
        fields: tuple[object, ...] = (None, None, None, None)
        if replacing is not None:
            fields = (replacing.supersedes, replacing.kind, replacing.clinician, replacing.reason)
        row = self.connection.execute(
            "INSERT INTO visits (patient_id, date, recorded_at, supersedes, correction, "
            "clinician, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (patient_id, date, now, *fields),
        ).lastrowid
        assert row is not None
        return row

    def _write_visit(
        self, patient_id: str, visit: ImportedVisit, now: str, replacing: Replacement | None = None
    ) -> int:
        execute = self.connection.execute
        row = self._visit_row(patient_id, visit.date.isoformat(), now, replacing)
        execute_many = self.connection.executemany
        execute_many(
            "INSERT INTO observations (visit, name, entered, canonical, drawn_on) "
            "VALUES (?, ?, ?, ?, ?)",
            [(row, observation.name, observation.entered, _text(observation.value),
              observation.drawn_on.isoformat()) for observation in visit.observations],
        )  # fmt: skip
        _pause_for_crash_test()
        decision_row = execute(
            "INSERT INTO decisions (visit, protocol_sha256, record) VALUES (?, ?, ?)",
            (row, visit.decision.protocol_sha256, json.dumps(visit.decision.to_json())),
        ).lastrowid
        response = visit.response
        execute(
            "INSERT INTO responses (decision, kind, dose, reason, recorded_at, clinician, "
            "confirmed) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (decision_row, response.kind, response.dose, response.reason, now,
             response.clinician, response.confirmed),
        )  # fmt: skip
        execute(
            "INSERT INTO records (visit, record) VALUES (?, ?)",
            (row, record_to_json(visit.record)),
        )
        return row


_VISIT = (
    "SELECT v.row, v.date, d.row, d.record, r.record, v.supersedes, v.correction, v.clinician, "
    "v.reason, v.recorded_at FROM visits v "
    "JOIN decisions d ON d.visit = v.row JOIN records r ON r.visit = v.row"
)
"""A decided visit and how it replaced another, if it did (a void row has no decision)."""

_CURRENT_COURSES = """
WITH registered AS (
    SELECT max(row) AS row FROM patients
    WHERE row NOT IN (SELECT supersedes FROM patients WHERE supersedes IS NOT NULL)
    GROUP BY patient_id
), latest AS MATERIALIZED (
    SELECT p.patient_id, p.protocol, (
        SELECT v.row FROM visits v
        WHERE v.patient_id = p.patient_id
            AND v.row NOT IN (SELECT supersedes FROM visits WHERE supersedes IS NOT NULL)
            AND EXISTS (SELECT 1 FROM decisions WHERE visit = v.row)
            AND EXISTS (SELECT 1 FROM records WHERE visit = v.row)
        ORDER BY v.date DESC, v.row DESC LIMIT 1
    ) AS visit
    FROM registered JOIN patients p ON p.row = registered.row
)
SELECT latest.patient_id, latest.protocol, v.date,
       json_extract(r.record, '$.state'),
       json_extract(d.record, '$.next_check'),
       json_extract(d.record, '$.doses'),
       answer.kind, answer.dose, answer.reason,
       json_extract(d.record, '$.action')
FROM latest
LEFT JOIN visits v ON v.row = latest.visit
LEFT JOIN decisions d ON d.row = (SELECT max(row) FROM decisions WHERE visit = latest.visit)
LEFT JOIN records r ON r.row = (SELECT max(row) FROM records WHERE visit = latest.visit)
LEFT JOIN responses answer ON answer.row = (SELECT max(row) FROM responses WHERE decision = d.row)
ORDER BY latest.patient_id
"""


class _Probed(Exception):
    """Raised inside the write probe to roll it back."""


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (Ctrl-C included). A failed
    write raises StoreWriteError naming its cause."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.connection = store.connection

    def __enter__(self) -> None:
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise self._failed(error) from None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, *rest: object
    ) -> None:
        if kind is None:
            try:
                self.connection.execute("COMMIT")
                return
            except sqlite3.Error as failure:
                error = failure
        if self.connection.in_transaction:  # SQLite may have rolled back already
            self.connection.execute("ROLLBACK")
        if isinstance(error, sqlite3.Error):
            raise self._failed(error) from None

    def _failed(self, error: sqlite3.Error) -> StoreWriteError:
        return StoreWriteError(why_not_writable(self.store.path, error) or str(error))


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
