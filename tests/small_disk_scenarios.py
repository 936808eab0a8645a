"""A full disk and a read-only file system, for real: run by test_store_disk inside a private
mount namespace (unshare), on a 16 MB tmpfs this process mounts. Not collected on its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.clinic.test_import import courses, timeline
from tests.clinic.test_visit import FIRST, dosing, visit
from tests.conftest import ROOT

LABS = ["0.8 x10^9/L", "", "", "", ""]  # ANC 0.8; Enter reuses the other labs


def plain(text: object) -> str:
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())


@pytest.fixture
def disk() -> Iterator[Path]:
    """A fresh 16 MB tmpfs, holding a store where P01 has had one visit."""
    folder = Path(os.environ["DOSING_SMALL_DISK"])
    folder.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], check=True)
    try:
        assert visit(folder / "p.sqlite", FIRST, "--date", "2026-01-05").returncode == 0
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> None:
    """Use up every free block of the tmpfs."""
    descriptor = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(descriptor, b"\0" * 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(descriptor)


def leave_free(folder: Path, free: int) -> None:
    """Fill the tmpfs but for about `free` bytes."""
    disk = os.statvfs(folder)
    with (folder / "filler").open("wb") as stream:
        stream.write(b"\0" * max(0, disk.f_bavail * disk.f_frsize - free))


def remount_read_only(folder: Path) -> None:
    """(Only possible while no process has a file on it open for writing.)"""
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def typed_up_to_the_answer(db: Path) -> pexpect.spawn[str]:
    """dosing visit P01 in a terminal, labs typed, waiting for the clinician's answer."""
    child = pexpect.spawn(
        f"{sys.executable} -m dosing visit P01 --db {db} --date 2026-01-12",
        cwd=str(ROOT), env={**os.environ, "NO_COLOR": "1", "TERM": "xterm"}, encoding="utf-8",
        timeout=30,
    )  # fmt: skip
    for answer in LABS:
        child.expect(r"\[Enter: ")
        child.sendline(answer)
    child.expect("HOLD")
    child.expect("answer")
    return child


def visits(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM visits").fetchone()[0])


def test_full_disk_is_found_before_any_lab_is_asked(disk: Path) -> None:
    db = disk / "p.sqlite"
    fill(disk)
    result = visit(db, ["0.8 x10^9/L"], "P01", "--date", "2026-01-12")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: cannot open the patient store {db}: the disk holding {db} is full (0 KB free)\n"
    )
    assert "ANC" not in result.stdout


def test_disk_filling_up_after_the_labs_then_freed_retry_saves(disk: Path) -> None:
    db = disk / "p.sqlite"
    child = typed_up_to_the_answer(db)
    fill(disk)
    child.sendline("accept")
    child.expect("try again")
    assert f"The visit was not saved: the disk holding {db} is full (0 KB free)" in plain(
        child.before
    )
    (disk / "filler").unlink()
    child.sendline("")
    child.expect("Saved visit 2 for P01")
    child.expect(pexpect.EOF)
    assert visits(db) == 2


def test_disk_full_keep_then_load_next_time(disk: Path) -> None:
    db = disk / "p.sqlite"
    child = typed_up_to_the_answer(db)
    fill(disk)
    child.sendline("accept")
    child.expect("try again")
    child.sendline("keep")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2
    said = plain(child.before)
    kept = re.search(r"What was typed is kept in (\S+);", said)
    assert kept, said
    assert (
        f"error: the visit was not saved: the disk holding {db} is full (0 KB free). What was "
        f"typed is kept in {kept[1]}; dosing visit P01 offers to load it"
    ) in said
    assert visits(db) == 1
    (disk / "filler").unlink()
    again = visit(db, ["load", "accept"], "P01")
    assert again.returncode == 0, again.stderr
    out = plain(again.stdout)
    assert "A visit of P01 for 2026-01-12 was typed at" in out
    assert f"not saved (the disk holding {db} is full (0 KB free))" in out
    assert "ANC (x10^9/L): 0.8 x10^9/L (loaded)" in out
    assert "Saved visit 2 for P01" in out
    assert not Path(kept[1]).exists()


def test_read_only_file_system_before_the_visit(disk: Path) -> None:
    db = disk / "p.sqlite"
    remount_read_only(disk)
    result = visit(db, ["0.8 x10^9/L"], "P01", "--date", "2026-01-12")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: cannot open the patient store {db}: the file system holding {db} is mounted "
        "read-only\n"
    )


def test_disk_filling_up_during_an_import_then_freed_a_rerun_completes(
    disk: Path, tmp_path: Path
) -> None:
    db = disk / "p.sqlite"
    path = timeline(tmp_path, 67)
    leave_free(disk, 1_300_000)
    stopped = dosing("import-timeline", "imatinib-hes", str(path), "--db", str(db))
    assert stopped.returncode == 2
    said = re.fullmatch(
        rf"error: the import stopped: the disk holding {re.escape(str(db))} is full \(\d+ KB "
        r"free\)\. Imported before that: (\d+) patients \((\d+) visits\); each patient is "
        r"stored whole or not at all\. Fix that and run the same command again to import the "
        r"rest\n",
        stopped.stderr,
    )
    assert said, stopped.stderr
    stored = courses(db)
    assert 0 < len(stored) - 1 == int(said[1]) < 201  # P01 was there before
    (disk / "filler").unlink()
    again = dosing("import-timeline", "imatinib-hes", str(path), "--db", str(db))
    assert again.returncode == 0, again.stderr
    assert f"Imported {201 - int(said[1])} patients" in again.stdout
    complete = courses(db)
    assert len(complete) == 202
    assert all(complete[patient] == shape for patient, shape in stored.items())


def test_full_disk_is_found_before_an_import_starts(disk: Path, tmp_path: Path) -> None:
    db = disk / "p.sqlite"
    with (disk / "filler").open("wb") as stream:
        stream.write(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - 500_000))
    result = dosing("import-timeline", "imatinib-hes", str(timeline(tmp_path, 1)), "--db", str(db))
    assert result.returncode == 2
    assert re.fullmatch(
        r"error: the patient store cannot be written, so nothing was imported: the disk "
        rf"holding {re.escape(str(db))} is full \(\d+ KB free\)\n",
        result.stderr,
    ), result.stderr
