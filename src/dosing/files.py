"""Opening the files a user names: regular files only, protocols of a bounded size.

A FIFO given as a protocol or timeline blocked forever, and /dev/zero was read without end.
A path is opened without blocking, checked to be a regular file on the open descriptor (no
window for it to be swapped), and only then read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

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
