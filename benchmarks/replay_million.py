"""Benchmark: `dosing replay` on a million-row timeline, against reading it with csv + float.

Generates (in a temporary folder, never committed) a realistic cohort on imatinib-hes, as a
long-format CSV: about --rows rows (a million by default: 4,761 patients x 25 weekly visits),
each patient with age, sex, weight and height (a few children), eligibility, five labs in mixed
units (ANC, platelets, ALT, AST, bilirubin) drifting around the patient's usual values with
toxicity episodes (so holds, resumed and reduced doses happen), and bleeding, response,
relapse and life-threatening disease assessed at every visit (so tapers start, and relapses
escalate). Then, in the same run:

- the floor: a pure-Python loop that reads the file with the csv module and converts each
  value to float (timed in this process);
- the replay: `dosing replay imatinib-hes FILE --format jsonl --output OUT --jobs 1` (a child
  process, one core: the target), and the same with `--jobs 2` (the speed-up), with the peak
  memory (the largest maximum resident set size of the replay's processes).

With --shuffled the replays read a copy of the timeline with its rows in a random order
(patients and dates mixed), which `dosing replay` partitions by patient on disk before
replaying; the floor still reads the file as generated.

Reports the decision mix (each action's share, the rules that fired most), medians of --runs
(default 3), the ratio, rows per second and the peak memory of each replay (the largest
maximum resident set size of its processes). Targets (issue 14): ratio <= 3, peak <= 200 MB,
at 1M and at 5M rows (the replay streams: its memory does not grow with the file).

    python benchmarks/replay_million.py [--rows 1000000 | --patients N] [--visits 25] [--runs 3]
        [--shuffled]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import dosing_command

UNITS: dict[str, list[tuple[str, float]]] = {
    "anc": [("/mm3", 1000), ("x10^9/L", 1), ("K/uL", 1)],
    "platelets": [("G/L", 1), ("x10^9/L", 1)],
    "alt": [("U/L", 1), ("IU/L", 1)],
    "ast": [("U/L", 1), ("IU/L", 1)],
    "bilirubin": [("mg/dL", 1), ("umol/L", 17.1)],
}
"""Each lab's spellings as labs send them, with the factor from the canonical unit."""
USUAL: dict[str, tuple[float, float]] = {
    "anc": (2.0, 6.0), "platelets": (150, 350), "alt": (15, 40), "ast": (15, 40),
    "bilirubin": (0.3, 1.0),
}  # fmt: skip
"""A patient's usual value of each lab (x10^9/L, U/L, mg/dL), drawn once per patient."""
EPISODES: dict[str, tuple[float, float, float]] = {
    "anc": (0.04, 0.3, 0.95), "platelets": (0.03, 20, 45), "alt": (0.01, 220, 420),
    "ast": (0.01, 220, 420), "bilirubin": (0.005, 3.5, 5.0),
}  # fmt: skip
"""Per lab: the weekly chance that a toxicity episode starts, and the range of its values
(neutropenia, thrombocytopenia, transaminases over 5 x ULN, bilirubin over 3 x ULN); an
episode lasts 1 to 3 weeks, so holds, recoveries and resumed doses happen."""
ROWS_PER_VISIT = len(UNITS) + 4  # the labs, bleeding, response, relapse, life-threatening


def _facts(rng: random.Random) -> list[tuple[str, str, str]]:
    """Age, sex, weight and height at the first visit: adults, and a few children."""
    child = rng.random() < 0.03
    age = rng.randint(8, 17) if child else rng.randint(18, 85)
    weight = rng.uniform(25, 60) if child else rng.uniform(50, 110)
    height = rng.uniform(125, 170) if child else rng.uniform(150, 195)
    return [
        ("age", str(age), "years"),
        ("sex", rng.choice("FM"), ""),
        ("weight", f"{weight:.1f}", "kg"),
        ("height", f"{height:.0f}", "cm"),
        ("eligibility_confirmed", "yes" if rng.random() < 0.97 else "no", ""),
    ]


def _lab(rng: random.Random, name: str, usual: float, episode: int) -> tuple[str, str, str]:
    """One lab value: the patient's usual value with weekly noise, or an episode's value."""
    if episode:
        low, high = EPISODES[name][1:]
        value = rng.uniform(low, high)
    else:
        value = usual * rng.lognormvariate(0, 0.2)
    unit, scale = rng.choice(UNITS[name])
    value *= scale
    digits = 0 if value >= 100 else 2
    return name, f"{value:.{digits}f}", unit


def _assessments(rng: random.Random, week: int, complete_from: int) -> list[tuple[str, str, str]]:
    """Bleeding, response, relapse and life-threatening disease, assessed at every visit: a
    partial response at first, complete from a week drawn per patient (for most), then now
    and again a relapse."""
    if week < complete_from:
        response = "partial" if week >= 2 or rng.random() < 0.5 else "none"
    else:
        response = "complete" if rng.random() < 0.97 else "partial"
    relapse = "no"
    if week > complete_from + 8 and rng.random() < 0.01:
        relapse = rng.choice(("hematologic", "molecular", "clinical"))
    return [
        ("bleeding", "yes" if rng.random() < 0.005 else "no", ""),
        ("response", response, ""),
        ("relapse", relapse, ""),
        ("life_threatening", "yes" if rng.random() < 0.01 else "no", ""),
    ]


def generate(path: Path, patients: int, visits: int) -> int:
    """Write a realistic cohort's timeline (long format, weekly visits); returns the rows."""
    rng = random.Random(20261122)
    start = dt.date(2026, 1, 5)
    dates = [(start + dt.timedelta(weeks=week)).isoformat() for week in range(visits)]
    rows = 0
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(("patient_id", "date", "name", "value", "unit"))
        for number in range(patients):
            patient = f"P{number:06d}"
            usual = {name: rng.uniform(*bounds) for name, bounds in USUAL.items()}
            complete_from = rng.randint(4, 16) if rng.random() < 0.8 else visits + 1
            episodes = dict.fromkeys(UNITS, 0)
            for week, date in enumerate(dates):
                found: list[tuple[str, str, str]] = _facts(rng) if week == 0 else []
                for name in UNITS:
                    if episodes[name]:
                        episodes[name] -= 1
                    elif week and rng.random() < EPISODES[name][0]:
                        episodes[name] = rng.randint(1, 3)
                    found.append(_lab(rng, name, usual[name], episodes[name]))
                found.extend(_assessments(rng, week, complete_from))
                writer.writerows((patient, date, *row) for row in found)
                rows += len(found)
    return rows


def floor(path: Path) -> float:
    """Read every row with csv and convert each value to float; seconds taken."""
    started = time.perf_counter()
    with path.open(newline="") as stream:
        reader = csv.reader(stream)
        next(reader)
        total = 0.0
        for row in reader:
            try:
                total += float(row[3])
            except ValueError:  # an assessment or a fact: read, not converted
                continue
    return time.perf_counter() - started


def shuffle(source: Path, target: Path) -> None:
    """The timeline's rows in a random order, the header first."""
    with source.open(newline="") as stream:
        header, *rows = stream.readlines()
    random.Random(14).shuffle(rows)
    with target.open("w", newline="") as stream:
        stream.write(header)
        stream.writelines(rows)


def replay(path: Path, out: Path, env: dict[str, str], jobs: int) -> tuple[float, float]:
    """Seconds, and the peak memory in MB (the replay's largest process: its own or a
    worker's, each counted when it has ended)."""
    started = time.perf_counter()
    command = [*dosing_command(), "replay", "imatinib-hes", str(path), "--format", "jsonl"]
    command += ["--output", str(out), "--jobs", str(jobs)]
    child = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, command)
    return seconds, usage.ru_maxrss / 1024


def decision_mix(out: Path) -> tuple[Counter[str], Counter[str]]:
    """How many decisions of each action, and of each rule that fired, the replay wrote."""
    actions: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    with out.open() as stream:
        for line in stream:
            record = json.loads(line)
            actions[record["action"]] += 1
            rules.update(rule["id"] for rule in record.get("rules", []))
    return actions, rules


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=None)
    parser.add_argument("--visits", type=int, default=25)
    parser.add_argument(
        "--rows", type=int, default=1_000_000,
        help="about how many rows (sets --patients when it is not given)",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="processes for the second replay")
    parser.add_argument("--shuffled", action="store_true", help="replay the rows in a random order")
    options = parser.parse_args()
    rows_per_patient = options.visits * ROWS_PER_VISIT + 5
    patients = options.patients or max(1, round(options.rows / rows_per_patient))
    folder = Path(tempfile.mkdtemp(prefix="dosing-bench-"))
    try:
        timeline = folder / "timeline.csv"
        rows = generate(timeline, patients, options.visits)
        size = timeline.stat().st_size / 1e6
        print(f"timeline: {rows:,} rows, {size:.0f} MB, {patients:,} patients x "
              f"{options.visits} weekly visits (mixed units, facts, assessments)")  # fmt: skip
        replayed = timeline
        if options.shuffled:
            replayed = folder / "shuffled.csv"
            shuffle(timeline, replayed)
            print("replayed: a copy with the rows in a random order")
        env = {**os.environ, "DOSING_CACHE_DIR": str(folder / "cache"), "TMPDIR": str(folder)}
        out = folder / "decisions.jsonl"
        replay(replayed, out, env, 1)  # warm the OS cache and compile the protocol once
        floors: list[float] = []
        replays: list[float] = []
        parallel: list[float] = []
        peaks: dict[int, float] = {1: 0.0, options.jobs: 0.0}
        for _ in range(options.runs):
            floors.append(floor(timeline))
            for jobs, times in ((1, replays), (options.jobs, parallel)):
                seconds, peak = replay(replayed, out, env, jobs)
                times.append(seconds)
                peaks[jobs] = max(peaks[jobs], peak)
        actions, rules = decision_mix(out)
        decisions = sum(actions.values())
        floor_s, replay_s = statistics.median(floors), statistics.median(replays)
        print(f"floor (csv + float):  median {floor_s:6.2f} s  of {[round(t, 2) for t in floors]}")
        parallel_s = statistics.median(parallel)
        print(
            f"dosing replay --jobs 1:  median {replay_s:6.2f} s  of "
            f"{[round(t, 2) for t in replays]}"
        )
        print(
            f"dosing replay --jobs {options.jobs}:  median {parallel_s:6.2f} s  of "
            f"{[round(t, 2) for t in parallel]}  (speed-up {replay_s / parallel_s:.2f}x)"
        )
        mix = ", ".join(
            f"{action} {count / decisions:.1%}" for action, count in actions.most_common()
        )
        print(f"decisions written: {decisions:,}: {mix}")
        top = ", ".join(f"{rule} {count:,}" for rule, count in rules.most_common(8))
        print(f"rules that fired most: {top}")
        print(f"rows per second, --jobs 1: {rows / replay_s:,.0f}; --jobs {options.jobs}: "
              f"{rows / parallel_s:,.0f}; floor {rows / floor_s:,.0f}")  # fmt: skip
        print(f"ratio, --jobs 1: {replay_s / floor_s:.1f}x the floor (target <= 3)")
        print(
            f"peak memory of a replay: --jobs 1: {peaks[1]:.0f} MB, --jobs {options.jobs}: "
            f"{peaks[options.jobs]:.0f} MB (target <= 200)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
