"""The store's file: a store that is another user's, open to others, a link or not SQLite at
all is refused with a message that says how to fix it."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dosing.clinic.store import Store
from tests.conftest import ROOT


def dosing(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dosing", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **env},
        cwd=ROOT,
    )


def someone_elses_file(tmp_path: Path) -> Path:
    """A store-like file owned by another user: made so as root, else a system file."""
    if os.getuid() == 0:
        target = tmp_path / "theirs.sqlite"
        with Store(target):
            pass
        os.chown(target, 65534, 65534)
        return target
    for candidate in (Path("/etc/passwd"), Path("/etc/hostname")):
        if candidate.exists() and candidate.stat().st_uid != os.getuid():
            return candidate
    pytest.skip("no file of another user to point at")


def test_dosing_db_linked_to_another_users_file_is_refused(tmp_path: Path) -> None:
    """Issue 10: DOSING_DB, through a symbolic link, at another user's file: refused, and the
    file is not touched."""
    target = someone_elses_file(tmp_path)
    before = target.read_bytes()
    link = tmp_path / "patients.sqlite"
    link.symlink_to(target)
    result = dosing("patients", DOSING_DB=str(link))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: the patient store {link} (a symbolic link to {target}) belongs to another "
        f"user (uid {target.stat().st_uid}); dosing opens only a store of your own. Give --db "
        "(or DOSING_DB) a store you own\n"
    )
    assert target.read_bytes() == before


def test_store_others_can_read_is_refused_until_made_private(tmp_path: Path) -> None:
    """Issue 10: a pre-existing 0644 store is not used; the message gives the chmod; after
    it, the store opens."""
    path = tmp_path / "patients.sqlite"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    result = dosing("patients", "--db", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: the patient store {path} can be read by other users (mode 0644); it holds "
        f"patient data. Make it private with: chmod 600 {path}\n"
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o600)
    assert dosing("patients", "--db", str(path)).returncode == 0


def test_a_loose_write_ahead_log_is_named_too(tmp_path: Path) -> None:
    """The -wal file beside a private store holds patient data as well: it must be private."""
    path = tmp_path / "patients.sqlite"
    with Store(path):
        pass
    wal = Path(f"{path}-wal")
    wal.touch(mode=0o640)
    wal.chmod(0o640)
    result = dosing("patients", "--db", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: the patient store {path} can be read by its group (mode 0640); it holds "
        f"patient data. Make it private with: chmod 600 {wal}\n"
    )


def test_link_to_a_missing_file_is_not_followed(tmp_path: Path) -> None:
    """A dangling link is refused; no store is created where it points."""
    link = tmp_path / "patients.sqlite"
    target = tmp_path / "elsewhere.sqlite"
    link.symlink_to(target)
    result = dosing("patients", "--db", str(link))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: the patient store {link} (a symbolic link to {target}) leads to no file; "
        "remove the link or give another --db\n"
    )
    assert not target.exists()


def test_link_to_your_own_private_store_is_used(tmp_path: Path) -> None:
    """A link to a private store of the user's own is fine."""
    target = tmp_path / "real.sqlite"
    with Store(target):
        pass
    link = tmp_path / "patients.sqlite"
    link.symlink_to(target)
    assert dosing("patients", "--db", str(link)).returncode == 0


def test_a_file_that_is_not_sqlite_gets_a_message_not_exit_70(tmp_path: Path) -> None:
    """Issue 10, item 14: a store that is not SQLite is named as such (was exit 70)."""
    path = tmp_path / "notes.txt"
    path.write_text("these are not patients\n" * 100)
    path.chmod(0o600)
    for command in (["patients"], ["history", "P01"], ["visit", "P01"]):
        result = dosing(*command, "--db", str(path))
        assert result.returncode == 2, command
        assert result.stderr == (
            f"error: cannot open the patient store {path}: {path} is not a SQLite file, so "
            "not a patient store; give another --db\n"
        )
    assert path.read_text() == "these are not patients\n" * 100


def test_new_store_is_created_private_in_a_private_folder(tmp_path: Path) -> None:
    """A new store is 0600, in a folder made 0700 (made by an import: `patients` only reads)."""
    path = tmp_path / "new" / "patients.sqlite"
    timeline = "examples/tacrolimus-trough-wide.csv"
    assert (
        dosing("import-timeline", "tacrolimus-trough", timeline, "--db", str(path)).returncode == 0
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
