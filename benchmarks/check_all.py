"""Benchmark: `dosing check` on every shipped protocol (without --mutate); target under 10 s.

Timed in the same run, interleaved, against `dosing protocols` (the same start-up and catalog,
no checking) as the baseline; medians and ratios. Also times `--timelines 0` (every check but
the property search) to show what the search costs.

    python benchmarks/check_all.py [--runs 5] [--check]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

from _common import dosing_command, interleaved_medians, print_medians

TARGET_SECONDS = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if dosing check takes {TARGET_SECONDS} s or more",
    )
    options = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="dosing-bench-cache-")
    env = {**os.environ, "DOSING_CACHE_DIR": cache, "NO_COLOR": "1"}
    dosing = dosing_command()
    commands = {
        "baseline: dosing protocols": ([*dosing, "protocols"], env),
        "dosing check": ([*dosing, "check"], env),
        "dosing check --timelines 0": ([*dosing, "check", "--timelines", "0"], env),
    }
    medians = interleaved_medians(commands, options.runs)
    print_medians(medians, options.runs, width=30, seconds=True)
    full = medians["dosing check"]
    print(f"target: dosing check < {TARGET_SECONDS:g} s; median {full:.2f} s")
    shutil.rmtree(cache, ignore_errors=True)
    return 1 if options.check and full >= TARGET_SECONDS else 0


if __name__ == "__main__":
    raise SystemExit(main())
