"""Writing to the patient store: a visit, corrections, an imported course and a clinician's
answer, each in one transaction, refused if the course changed since it was read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

from dosing.clinic.store_connection import _pause_for_crash_test
from dosing.clinic.store_file import StoreError as StoreError
from dosing.clinic.store_reads import CourseReads
from dosing.clinic.store_records import (
    CourseVersion,
    ImportedVisit,
    Patient,
    Replacement,
    Response,
    record_to_json,
    stored_text,
)
from dosing.engine.decision import Decision
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord


class StaleCourse(StoreError):
    """The patient's course changed in the store since the visit was decided from it."""


class CourseWrites(CourseReads):
    """Visits, corrections, courses and answers, each all or nothing."""

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
            [(row, observation.name, observation.entered, stored_text(observation.value),
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
