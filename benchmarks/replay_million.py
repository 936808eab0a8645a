"""Benchmark: `dosing replay` on a million-row timeline, against reading it with csv + float.

Generates (in a temporary folder, never committed) a long-format CSV of 10,000 patients x 25
weekly visits x 4 labs (anc, platelets, alt, bilirubin) in mixed units, then, in the same run:

- the floor: a pure-Python loop that reads the file with the csv module and converts each
  value to float (timed in this process);
- the replay: `dosing replay imatinib-hes FILE --format jsonl --output OUT` (a child process),
  with its peak memory (the child's maximum resident set size).

Reports medians of --runs (default 3) and the ratio. Targets: ratio <= 3, peak <= 400 MB.

    python benchmarks/replay_million.py [--patients 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import dosing_command

UNITS: dict[str, list[tuple[str, float]]] = {
    "anc": [("/mm3", 1000), ("x10^9/L", 1), ("K/uL", 1)],
    "platelets": [("G/L", 1), ("x10^9/L", 1)],
    "alt": [("U/L", 1), ("IU/L", 1)],
    "bilirubin": [("mg/dL", 1), ("umol/L", 17.1)],
}
MEANS: dict[str, float] = {"anc": 3.5, "platelets": 220, "alt": 30, "bilirubin": 0.7}


def generate(path: Path, patients: int, visits: int) -> int:
    """Write the timeline; returns the number of data rows."""
    rng = random.Random(20261121)
    start = dt.date(2026, 1, 5)
    dates = [(start + dt.timedelta(weeks=week)).isoformat() for week in range(visits)]
    rows = 0
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(("patient_id", "date", "name", "value", "unit"))
        for number in range(patients):
            patient = f"P{number:05d}"
            for date in dates:
                for name, choices in UNITS.items():
                    unit, scale = rng.choice(choices)
                    value = max(0.0, rng.gauss(MEANS[name], MEANS[name] * 0.35)) * scale
                    digits = 0 if scale >= 1000 or name in ("platelets", "alt") else 2
                    writer.writerow((patient, date, name, f"{value:.{digits}f}", unit))
                    rows += 1
    return rows


def floor(path: Path) -> float:
    """Read every row with csv and convert each value to float; seconds taken."""
    started = time.perf_counter()
    with path.open(newline="") as stream:
        reader = csv.reader(stream)
        next(reader)
        total = 0.0
        for row in reader:
            total += float(row[3])
    return time.perf_counter() - started


def replay(path: Path, out: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    command = [*dosing_command(), "replay", "imatinib-hes", str(path), "--format", "jsonl"]
    subprocess.run([*command, "--output", str(out)], check=True, env=env, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--visits", type=int, default=25)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dosing-bench-"))
    try:
        timeline = folder / "timeline.csv"
        rows = generate(timeline, options.patients, options.visits)
        size = timeline.stat().st_size / 1e6
        print(f"timeline: {rows:,} rows, {size:.0f} MB, {options.patients:,} patients")
        env = {**os.environ, "DOSING_CACHE_DIR": str(folder / "cache")}
        out = folder / "decisions.jsonl"
        replay(timeline, out, env)  # warm the OS cache and compile the protocol once
        floors, replays = [], []
        for _ in range(options.runs):
            floors.append(floor(timeline))
            replays.append(replay(timeline, out, env))
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        decisions = sum(1 for _ in out.open())
        floor_s, replay_s = statistics.median(floors), statistics.median(replays)
        print(f"floor (csv + float):  median {floor_s:6.2f} s  of {[round(t, 2) for t in floors]}")
        print(
            f"dosing replay jsonl:  median {replay_s:6.2f} s  of {[round(t, 2) for t in replays]}"
        )
        print(f"decisions written: {decisions:,}")
        print(f"ratio: {replay_s / floor_s:.1f}x the floor (target <= 3)")
        print(f"peak memory of the replay: {peak_mb:.0f} MB (target <= 400)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
