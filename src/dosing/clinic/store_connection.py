"""An open connection to the patient store: opened private (0600, checked not replaced),
WAL, migrated to the current schema, and its write transactions (BEGIN IMMEDIATE ...
COMMIT, rolled back on any exception, a failed write named by its cause).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from dosing.clinic.store_file import StoreError as StoreError
from dosing.clinic.store_file import check_private, open_private, why_not_writable
from dosing.clinic.store_schema import MIGRATIONS, SCHEMA_VERSION


class StoreWriteError(StoreError):
    """A write to the store failed; the message names the cause in the user's terms."""


class StoreConnection:
    """The store's file and connection: opening, migrating, transactions."""

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


class _Probed(Exception):
    """Raised inside the write probe to roll it back."""


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (Ctrl-C included). A failed
    write raises StoreWriteError naming its cause."""

    def __init__(self, store: StoreConnection) -> None:
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
