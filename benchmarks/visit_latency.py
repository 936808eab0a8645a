"""Benchmark: time from entering the last lab to the decision being shown, in `dosing visit`.

Runs the real visit conversation (run_visit, a real store in a temporary folder, the rich
decision panel) with scripted answers. The clock starts when the last lab's answer is handed
back to the conversation and stops when the panel's last line is written. Reports the median
over --runs first visits (new patient, screening) and follow-up visits (a known patient).
Target: under 50 ms.

    python benchmarks/visit_latency.py [--runs 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from dosing.clinic.store import Store
from dosing.clinic.visit import run_visit
from dosing.protocol import catalog

NEW = ["imatinib-hes", "1975-06-01", "F", "70 kg", "170 cm"]
LABS_FIRST = ["1.2 x10^9/L", "180 x10^9/L", "30 U/L", "28 U/L", "0.7 mg/dL"]
LABS_NEXT = ["1.4 x10^9/L", "170 x10^9/L", "29 U/L", "27 U/L", "0.6 mg/dL"]


class _Clocked(io.StringIO):
    """A console file that notes when the decision panel's closing line is written."""

    def __init__(self) -> None:
        super().__init__()
        self.shown_at = 0.0

    def write(self, text: str) -> int:
        if "dosing recommends; a person decides." in text and not self.shown_at:
            self.shown_at = time.perf_counter()
        return super().write(text)


def one_visit(
    store: Store, patient: str, answers: list[str], last_lab: int, date: dt.date
) -> float:
    stream = _Clocked()
    console = Console(file=stream, width=100)
    remaining = list(answers)
    entered = 0.0

    def ask(question: str, default: str | None) -> str:
        nonlocal entered
        answer = remaining.pop(0)
        if len(answers) - len(remaining) == last_lab:
            entered = time.perf_counter()
        return answer

    run_visit(store, catalog.load, patient, None, date, console, ask, clinician="benchmark")
    return stream.shown_at - entered


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100)
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dosing-latency-"))
    first, follow = [], []
    with Store(folder / "patients.sqlite") as store:
        for number in range(options.runs + 5):
            patient = f"P{number:04d}"
            answers = [*NEW, *LABS_FIRST, "yes", "accept"]  # yes: eligibility confirmed
            first.append(one_visit(store, patient, answers, len(answers) - 1, dt.date(2026, 1, 5)))
            answers = [*LABS_NEXT, "accept"]
            follow.append(
                one_visit(store, patient, answers, len(answers) - 1, dt.date(2026, 1, 12))
            )
    first, follow = first[5:], follow[5:]  # the first runs load and cache the protocol
    for name, times in (("first visit (new patient)", first), ("follow-up visit", follow)):
        median = statistics.median(times) * 1000
        worst = max(times) * 1000
        print(f"{name:28s} median {median:6.2f} ms   max {worst:6.2f} ms   ({len(times)} runs)")
    print("target: median under 50 ms from the last lab entered to the decision shown")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
