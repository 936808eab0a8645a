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

Its parts: `store_connection` (opening, migrations, transactions), `store_reads`,
`store_writes`, `store_schema` and `store_records` (what is kept).
"""

from __future__ import annotations

import os
from pathlib import Path

from dosing.clinic.store_file import StoreError as StoreError
from dosing.clinic.store_writes import CourseWrites


def default_path() -> Path:
    """--db, else $DOSING_DB, else the user's data directory (platformdirs)."""
    configured = os.environ.get("DOSING_DB")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("dosing", appauthor=False)) / "patients.sqlite"


class Store(CourseWrites):
    """An open patient store. Use as a context manager: it reads courses (`CourseReads`) and
    writes visits (`CourseWrites`) over one connection (`StoreConnection`)."""

    def __enter__(self) -> Store:
        return self
