"""The files a user names: regular files to read, protocols of a bounded size, and places
where a result can be written.

A FIFO given as a protocol or timeline blocked forever, and /dev/zero was read without end.
A path is opened without blocking, checked to be a regular file on the open descriptor (no
window for it to be swapped), and only then read. A place to write (--output, --rejects,
--plot) is checked before any work is done, so a replay of a million rows does not end in
an error about the output folder.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from dosing.core.errors import OutputError

MAX_PROTOCOL_BYTES = 1_000_000
"""The largest protocol file read: the largest shipped one is about 70 KB."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotAFile(OSError):
    """The path exists but is not a regular file; `kind` says what it is."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"it is {kind}, not a file")
        self.kind = kind


def open_regular(path: Path) -> int:
    """A descriptor open for reading on a regular file, or NotAFile / OSError."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = next((kind for test, kind in _KINDS if test(mode)), "not a regular file")
            raise NotAFile(kind)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def read_protocol_bytes(path: Path) -> bytes:
    """A protocol file's bytes; raises NotAFile, OSError, or ValueError when it is too large."""
    with os.fdopen(open_regular(path), "rb") as stream:
        data = stream.read(MAX_PROTOCOL_BYTES + 1)
    if len(data) > MAX_PROTOCOL_BYTES:
        raise ValueError(f"larger than {MAX_PROTOCOL_BYTES} bytes")
    return data


def open_text(path: Path, encoding: str) -> IO[str]:
    """A regular file opened as text with universal newlines left to the csv module."""
    return open(open_regular(path), encoding=encoding, newline="")


def check_writable(path: Path, option: str) -> None:
    """Raise OutputError unless a file can be written (or replaced) at `path`."""
    if path.is_dir():
        raise OutputError(f"{option} {path}: it is a directory; give a file name")
    _check_folder_of(path, option)


def check_folder(path: Path, option: str) -> None:
    """Raise OutputError unless `path` is a folder files can be written into, or can be made."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: it is a file, not a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{option} {path}: cannot write in it (permission denied)")
        return
    _check_folder_of(path, option)


def _check_folder_of(path: Path, option: str) -> None:
    folder = path.parent
    if not folder.exists():
        raise OutputError(f"{option} {path}: there is no folder {folder}")
    if not folder.is_dir():
        raise OutputError(f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: cannot write in {folder} (permission denied)")


def write_failed(option: str, path: Path, error: OSError) -> OutputError:
    """The message for a write that failed midway (a full disk, a vanished folder)."""
    return OutputError(f"{option} {path}: could not be written: {error.strerror or error}")
