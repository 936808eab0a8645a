"""Where a realistic replay spends its time: the profile behind `replay_million.py`'s ratio.

Generates the same realistic cohort as `replay_million.py` (default 100,000 rows), replays it
in this process under cProfile, as `dosing replay --format jsonl` does (the compiled
evaluator, JSON lines), and prints each stage's share of the replay: reading the file,
reading the values, gathering a visit's values, choosing the rule (guard evaluation), putting
findings into words, the dose and the record, and writing JSON. The stages nest in the engine
as they run, so the shares are of the whole, measured where each stage starts.

    python benchmarks/replay_profile.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from replay_million import generate

STAGES = (
    ("reading the file (csv, dates, names)", "timeline.py", "read_timeline"),
    ("reading values (text -> exact, units)", "replay.py", "_read_visit"),
    ("gathering a visit's values", "gathering.py", "gather"),
    ("choosing the rule (guards)", "choosing.py", "choose"),
    ("findings in words (describe)", "recording.py", "explain"),
    ("nearest findings (stay, wait)", "explain.py", "nearest"),
    ("rules above, not met", "explain.py", "not_met"),
    ("dose, next check, record", "dosing_step.py", "conclude"),
    ("JSON lines", "writers.py", "jsonl_line"),
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--visits", type=int, default=25)
    arguments = parser.parse_args()
    from dosing.protocol.catalog import load
    from dosing.replay.replay import StartPoint, replay
    from dosing.replay.run import load_timeline
    from dosing.replay.writers import jsonl_line

    protocol = load("imatinib-hes")
    patients = max(1, round(arguments.rows / (arguments.visits * 9.2)))
    with tempfile.TemporaryDirectory(prefix="dosing-profile-") as folder:
        path = Path(folder) / "timeline.csv"
        rows = generate(path, patients, arguments.visits)

        def run() -> int:
            timeline = load_timeline(path, None)
            written = 0
            for patient in replay(protocol, timeline, StartPoint()):
                written += sum(len(jsonl_line(decision)) for decision in patient.decisions)
            return written

        profile = cProfile.Profile()
        profile.runcall(run)
    stats = pstats.Stats(profile)
    table = stats.stats  # type: ignore[attr-defined]
    total = max(cumulative for _, _, _, cumulative, _ in table.values())
    print(f"profile of replaying {rows:,} rows ({patients:,} patients), {total:.1f} s profiled")
    for label, module, function in STAGES:
        spent = sum(
            cumulative
            for (filename, _, name), (_, _, _, cumulative, _) in table.items()
            if name == function and filename.endswith(module)
        )
        print(f"  {label:40} {100 * spent / total:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
