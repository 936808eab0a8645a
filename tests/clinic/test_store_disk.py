"""A full disk and a read-only file system, for real, where the system allows a private mount
namespace (unshare -rm): the scenarios in small_disk_scenarios.py run inside one, on a tmpfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _namespaces_work(folder: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
        capture_output=True,
    )
    return probe.returncode == 0


def test_full_disk_and_read_only_file_system(tmp_path: Path) -> None:
    """Issue 10: a full disk or a read-only file system is named before any lab is asked; a
    disk that fills up after the labs are typed loses nothing (retry, or keep and load the
    next time)."""
    if not _namespaces_work(tmp_path):
        pytest.skip("needs unshare -rm with a tmpfs mount (user and mount namespaces)")
    result = subprocess.run(
        ["unshare", "-rm", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "small_disk_scenarios.py")],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "DOSING_SMALL_DISK": str(tmp_path / "disk")},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "6 passed" in result.stdout
