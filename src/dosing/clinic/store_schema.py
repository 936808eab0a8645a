"""The patient store's schema: its tables and triggers (append-only history), and the
migrations run in order when a store is opened (PRAGMA user_version).
"""

from __future__ import annotations

from dosing.clinic.store_file import StoreError as StoreError

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
