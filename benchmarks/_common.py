"""What the benchmarks share: how to run the installed `dosing`, and how to time a command."""

from __future__ import annotations

import shutil
import statistics
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


Commands = dict[str, tuple[list[str], dict[str, str]]]
"""Named commands, each with its environment; the first is the baseline."""


def interleaved_medians(commands: Commands, runs: int) -> dict[str, float]:
    """Each command once to warm the OS and compile caches, then `runs` rounds, one run of
    each command per round (so load that comes and goes hits them alike); the median
    seconds of each."""
    for command, env in commands.values():
        time_command(command, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (command, env) in commands.items():
            times[name].append(time_command(command, env))
    return {name: statistics.median(values) for name, values in times.items()}


def print_medians(medians: dict[str, float], runs: int, width: int, seconds: bool = False) -> None:
    """The medians and their ratio to the first (the baseline), one line each."""
    import os

    baseline = medians[next(iter(medians))]
    print(f"{runs} interleaved runs each; medians on {os.cpu_count()} cores")
    for name, median in medians.items():
        shown = f"{median:7.2f} s" if seconds else f"{median * 1000:7.1f} ms"
        ratio = f"{median / baseline:5.1f}" if seconds else f"{median / baseline:4.2f}"
        print(f"  {name:<{width}} {shown}   ratio {ratio}")
