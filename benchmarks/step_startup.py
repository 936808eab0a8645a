"""Benchmark: how long `dosing step` takes, against `python -c "import pint, typer, rich"`.

Both are timed in the same run, interleaved, on the same interpreter; the report gives medians
and their ratio (target: <= 1.3). The compile cache is warmed first, as it is for anyone who
has run dosing once; a cold run (no cache) is reported too.

    python benchmarks/step_startup.py [--runs 21] [--check]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from _common import dosing_command, interleaved_medians, print_medians

STEP = [
    "step", "imatinib-hes", "--date", "2026-01-05", "--patient", "age=45", "--patient", "sex=F",
    "--lab", "anc=1200/mm3", "--lab", "platelets=180x10^9/L", "--lab", "alt=30U/L",
    "--lab", "ast=28U/L", "--lab", "bilirubin=0.7mg/dL", "--lab", "bleeding=no",
]  # fmt: skip
TARGET = 1.3


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if a ratio exceeds {TARGET}")
    options = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="dosing-bench-cache-")
    env = {**os.environ, "DOSING_CACHE_DIR": cache, "NO_COLOR": "1"}
    cold_env = {**env, "DOSING_NO_CACHE": "1"}
    commands = {
        "baseline: python -c 'import pint, typer, rich'": (
            [sys.executable, "-c", "import pint, typer, rich"],
            env,
        ),
        "dosing step (panel)": ([*dosing_command(), *STEP], env),
        "dosing step --json": ([*dosing_command(), *STEP, "--json"], env),
        "dosing step, no compile cache": ([*dosing_command(), *STEP], cold_env),
    }
    medians = interleaved_medians(commands, options.runs)
    print_medians(medians, options.runs, width=48)
    baseline = medians[next(iter(medians))]
    worst = max(
        median / baseline
        for name, median in medians.items()
        if name.startswith("dosing step") and "no compile cache" not in name
    )
    print(f"target: dosing step <= {TARGET} x baseline; worst ratio {worst:.2f}")
    shutil.rmtree(cache, ignore_errors=True)
    return 1 if options.check and worst > TARGET else 0


if __name__ == "__main__":
    raise SystemExit(main())
