"""What the benchmarks share: how to run the installed `dosing`, and how to time a command."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path


def dosing_command() -> list[str]:
    """The `dosing` script next to this interpreter, else on PATH, else `python -m dosing`."""
    script = Path(sys.executable).with_name("dosing")
    found = str(script) if script.exists() else shutil.which("dosing")
    return [found] if found else [sys.executable, "-m", "dosing"]


def time_command(command: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds for one run of the command (output discarded; it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start
