"""Visits typed at the prompt that the store refused: kept, so that nothing typed is lost.

When a visit cannot be written (a full disk, a read-only store, or a course another process
changed meanwhile), what the clinician typed is kept as a small JSON file in the user's data
directory (a private folder, files 0600, written atomically), and the next `dosing visit` for
that store and patient offers to load it. The files hold what the store would have held, no
more; they are read only from that private folder, never through a symbolic link.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import attrs

from dosing.clinic.store_records import Response

_MAX_BYTES = 1024 * 1024


@attrs.frozen
class UnsavedVisit:
    """A visit as it was typed, with why it was not saved."""

    store: str
    """The store it was meant for (resolved path)."""
    patient_id: str
    protocol: str
    date: str
    """The visit date, ISO."""
    facts: dict[str, str]
    """A new patient's facts as typed (empty for a patient already in the store)."""
    observations: list[tuple[str, str, str]]
    """(name, value as typed, drawn on ISO) for each lab and assessment typed."""
    answer: Response
    """The clinician's answer."""
    reason: str
    """Why it was not saved."""
    typed_at: str


def folder() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("dosing", appauthor=False)) / "unsaved-visits"


def keep(visit: UnsavedVisit) -> Path:
    """Write the visit to a new private file; returns its path. Raises OSError."""
    where = folder()
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(os.lstat(where), where)
    name = f"visit-{visit.typed_at.replace(':', '')}-{os.urandom(4).hex()}.json"
    temporary = where / f".{name}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(attrs.asdict(visit), stream, ensure_ascii=False, indent=1)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, where / name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return where / name


def waiting(store: Path, patient_id: str | None = None) -> list[tuple[Path, UnsavedVisit]]:
    """Unsaved visits for this store (and patient), oldest first. Files that are not ours or
    not understood are left alone."""
    where = folder()
    try:
        _check_private(os.lstat(where), where)
        names = sorted(os.listdir(where))
    except OSError:
        return []
    target = str(store.resolve())
    found = []
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):
            continue
        visit = _read(where / name)
        if visit is None or visit.store != target:
            continue
        if patient_id is None or visit.patient_id == patient_id:
            found.append((where / name, visit))
    return found


def discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _check_private(info: os.stat_result, path: Path) -> None:
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{path} is not a plain directory")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(f"{path} can be written by other users")


def _read(path: Path) -> UnsavedVisit | None:
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(descriptor)
        if (
            not stat.S_ISREG(info.st_mode)
            or (hasattr(os, "getuid") and info.st_uid != os.getuid())
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            return None
        content = stream.read(_MAX_BYTES + 1)
    try:
        data: dict[str, Any] = json.loads(content)
        return UnsavedVisit(
            store=str(data["store"]),
            patient_id=str(data["patient_id"]),
            protocol=str(data["protocol"]),
            date=str(data["date"]),
            facts={str(key): str(value) for key, value in data["facts"].items()},
            observations=[(str(n), str(v), str(d)) for n, v, d in data["observations"]],
            answer=_response(data["answer"]),
            reason=str(data["reason"]),
            typed_at=str(data["typed_at"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _response(data: dict[str, Any]) -> Response:
    kind = data["kind"]
    if kind not in ("accepted", "overridden"):
        raise ValueError("not an answer")
    return Response(kind, _text(data["dose"]), _text(data["reason"]))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
