"""Shared test set-up: protocols from the repository, a private compile cache, no colour."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from dosing.protocol.loader import load_protocol
from dosing.protocol.model import Protocol

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_FILES = sorted((ROOT / "protocols").glob("*.yaml"))

# Before anything imports the CLI: a throwaway compile cache, config directory (the cache's
# key) and data directory (recovered visits), and plain, wide output.
for variable in ("DOSING_CACHE_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
    os.environ[variable] = tempfile.mkdtemp(prefix=f"dosing-test-{variable.lower()}-")
    atexit.register(shutil.rmtree, os.environ[variable], ignore_errors=True)
os.environ["NO_COLOR"] = "1"
os.environ["COLUMNS"] = "200"
os.environ.pop("FORCE_COLOR", None)


def load_file(path: Path) -> Protocol:
    """Load a protocol file the way the CLI does, named as in messages."""
    return load_protocol(path.read_text(encoding="utf-8"), path.name)


@pytest.fixture(scope="session")
def imatinib() -> Protocol:
    """The shipped imatinib-hes protocol."""
    return load_file(ROOT / "protocols" / "imatinib-hes.yaml")


class TookTooLong(Exception):
    """Raised inside code that ran past its time limit (a hang, not a slow machine)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with TookTooLong instead of hanging: for inputs that once looped or blew up."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TookTooLong(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
