"""Reading courses from the patient store: a patient, the current courses (for the
worklist), a course's visits with their decisions and answers, and its corrections.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from dosing.clinic.store_connection import StoreConnection
from dosing.clinic.store_file import StoreError as StoreError
from dosing.clinic.store_records import (
    CorrectionRow,
    CourseVersion,
    CurrentCourse,
    Patient,
    Response,
    StoredVisit,
    Superseded,
    record_from_json,
    stored_value,
)
from dosing.engine.observations import Observation

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


class CourseReads(StoreConnection):
    """Queries over patients, visits and corrections; the latest row of each wins."""

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
            Observation(name, stored_value(canonical), entered, dt.date.fromisoformat(drawn))
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
