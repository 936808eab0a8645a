"""The patient store's file: who may open it, and, when it cannot be written, why.

A store holds patient data, so dosing opens only a regular file of the user's own that nobody
else can read or write (0600), following a symbolic link only to such a file. A new store is
created 0600 and never through a link. When SQLite cannot write, the reason is named in the
user's terms (a read-only file or file system, a full disk, a lock, a file that is not a
store) rather than as SQLite's error code.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path

from dosing.core.errors import DosingError

MIN_FREE_BYTES = 1024 * 1024
"""Below this much free space a visit is not started: its write could fail."""


class StoreError(DosingError):
    """The patient store cannot be opened or written."""


def open_private(path: Path) -> None:
    """Create the store owner-only if it is missing; refuse one that is not private to the
    user. Raises StoreError saying how to fix it."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        _create(path)
        return
    except OSError as error:
        raise StoreError(f"cannot open the patient store {path}: {error.strerror}") from None
    check_private(path)


def _create(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
        os.close(os.open(path, flags, 0o600))
    except FileExistsError:
        check_private(path)  # another process created it meanwhile
    except OSError as error:
        reason = why_not_writable(path.parent if path.parent.exists() else path) or (error.strerror)
        raise StoreError(f"cannot create the patient store {path}: {reason}") from None


def check_private(path: Path) -> os.stat_result:
    """The store's status, once it is known to be a regular file of ours that no one else can
    read or write (its -wal and -shm files too)."""
    link = os.lstat(path)
    where = str(path)
    if stat.S_ISLNK(link.st_mode):
        target = os.path.realpath(path)
        where = f"{path} (a symbolic link to {target})"
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise StoreError(
                f"the patient store {where} leads to no file; remove the link or give another --db"
            ) from None
    else:
        info = link
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"the patient store {where} is not a regular file")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise StoreError(
            f"the patient store {where} belongs to another user (uid {info.st_uid}); dosing "
            "opens only a store of your own. Give --db (or DOSING_DB) a store you own"
        )
    loose = [
        (candidate, stat.S_IMODE(mode))
        for candidate, mode in _modes(path, info)
        if mode & (stat.S_IRWXG | stat.S_IRWXO)
    ]
    if loose:
        mode = loose[0][1]
        who = "other users" if mode & stat.S_IRWXO else "its group"
        what = "read" if mode & (stat.S_IRGRP | stat.S_IROTH) else "written"
        files = " ".join(str(candidate) for candidate, _ in loose)
        raise StoreError(
            f"the patient store {where} can be {what} by {who} (mode {mode:04o}); it holds "
            f"patient data. Make it private with: chmod 600 {files}"
        )
    return info


def _modes(path: Path, info: os.stat_result) -> list[tuple[Path, int]]:
    """The store and the -wal and -shm files SQLite keeps beside it, with their modes."""
    modes = [(path, info.st_mode)]
    for suffix in ("-wal", "-shm"):
        companion = Path(f"{os.path.realpath(path)}{suffix}")
        with contextlib.suppress(OSError):
            modes.append((companion, os.lstat(companion).st_mode))
    return modes


def why_not_writable(path: Path, error: sqlite3.Error | None = None) -> str | None:
    """Why the store (or, for a new one, its folder) cannot be written; None if it can."""
    folder = path if path.is_dir() else path.parent
    try:
        disk = os.statvfs(folder)
    except (OSError, AttributeError):
        disk = None
    if disk is not None and disk.f_flag & os.ST_RDONLY:
        return f"the file system holding {path} is mounted read-only"
    if disk is not None and disk.f_bavail * disk.f_frsize < MIN_FREE_BYTES:
        free = disk.f_bavail * disk.f_frsize // 1024
        return f"the disk holding {path} is full ({free} KB free)"
    if path.is_file() and not os.access(path, os.W_OK):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        return f"{path} is read-only (mode {mode:04o}); make it writable with: chmod u+w {path}"
    if not os.access(folder, os.W_OK):
        return (
            f"the folder {folder} is read-only, and SQLite writes its -wal and -shm files "
            f"beside the store; make it writable with: chmod u+w {folder}"
        )
    return None if error is None else _sqlite_reason(path, error)


def _sqlite_reason(path: Path, error: sqlite3.Error) -> str:
    code = getattr(error, "sqlite_errorname", "")
    if code == "SQLITE_NOTADB":
        return f"{path} is not a SQLite file, so not a patient store; give another --db"
    if code.startswith("SQLITE_FULL"):
        return f"the disk holding {path} is full"
    if code.startswith("SQLITE_READONLY"):
        return f"{path} is read-only ({error})"
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"{path} is locked by another program (waited 10 s); try again"
    if code.startswith("SQLITE_CORRUPT"):
        return f"{path} is damaged ({error}); restore it from a backup"
    if code.startswith("SQLITE_IOERR"):
        return f"a disk error on {path} ({error})"
    return f"{path}: {error}"
