"""Benchmark: `dosing patients` on a store of 10,000 patients and 100,000 visits.

Builds the store (in a temporary folder, never committed) the way users fill one: a generated
timeline of --templates patients x --visits weekly visits on imatinib-hes (mixed units, some
doses given that differ from the advice, so some answers are overrides) is imported with
dosing's own import; those courses are then copied under new ids until the store holds
--patients patients (copying rows is only a faster way to a large store: every row is one
the import wrote). Then, in the same run, interleaved:

- the baseline: a Python process that imports sqlite3, rich and typer and counts the visits;
- `dosing patients --db STORE` (a child process, output discarded).

Reports medians of --runs and their ratio. Target (issue 10): dosing patients under 1 s.

    python benchmarks/patients_list.py [--patients 10000] [--visits 10] [--runs 7] [--check]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from _common import dosing_command, interleaved_medians, print_medians

UNITS: dict[str, list[tuple[str, float]]] = {
    "anc": [("/mm3", 1000), ("x10^9/L", 1), ("K/uL", 1)],
    "platelets": [("G/L", 1), ("x10^9/L", 1)],
    "alt": [("U/L", 1)],
    "ast": [("U/L", 1)],
    "bilirubin": [("mg/dL", 1), ("umol/L", 17.1)],
}
MEANS: dict[str, float] = {"anc": 3.0, "platelets": 200, "alt": 30, "ast": 30, "bilirubin": 0.7}
TARGET_SECONDS = 1.0


def generate(path: Path, patients: int, visits: int) -> None:
    """A long-format timeline for imatinib-hes."""
    rng = random.Random(20261122)
    start = dt.date(2026, 1, 5)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(("patient_id", "date", "name", "value", "unit"))
        for number in range(patients):
            patient = f"T{number:04d}"
            writer.writerow((patient, start.isoformat(), "age", str(rng.randint(20, 80)), "years"))
            writer.writerow((patient, start.isoformat(), "sex", rng.choice("FM"), ""))
            for week in range(visits):
                date = (start + dt.timedelta(weeks=week)).isoformat()
                for name, choices in UNITS.items():
                    unit, scale = rng.choice(choices)
                    value = max(0.05, rng.gauss(MEANS[name], MEANS[name] * 0.35)) * scale
                    digits = 0 if scale >= 1000 or name in ("platelets", "alt", "ast") else 2
                    writer.writerow((patient, date, name, f"{value:.{digits}f}", unit))
                writer.writerow((patient, date, "bleeding", "no", ""))
                if week >= 4:  # assessed once on treatment, so decisions go on past day 28
                    (response,) = rng.choices(("partial", "complete", "none"), (70, 28, 2))
                    writer.writerow((patient, date, "response", response, ""))
                    writer.writerow((patient, date, "life_threatening", "no", ""))
                    writer.writerow((patient, date, "relapse", "no", ""))
                if rng.random() < 0.1:
                    writer.writerow((patient, date, "dose_given", "400 mg qd", ""))


def build(store: Path, folder: Path, options: argparse.Namespace) -> tuple[int, int]:
    """Import the template courses, then copy them to reach --patients; (patients, visits)."""
    from dosing.clinic.history import import_into_store
    from dosing.clinic.store import Store
    from dosing.protocol import catalog
    from dosing.render.output import console

    timeline = folder / "templates.csv"
    generate(timeline, options.templates, options.visits)
    with Store(store) as opened, console.capture():
        opened.connection.execute("PRAGMA synchronous = OFF")  # setup only: speed, not safety
        import_into_store(opened, catalog.load("imatinib-hes"), timeline)
    connection = sqlite3.connect(store, isolation_level=None)
    connection.execute("PRAGMA synchronous = OFF")
    sizes = {
        table: connection.execute(f"SELECT max(row) FROM {table}").fetchone()[0]
        for table in ("patients", "visits", "decisions")
    }
    copies = -(-options.patients // options.templates)
    connection.execute("BEGIN")
    for copy in range(1, copies):
        v, d = copy * sizes["visits"], copy * sizes["decisions"]
        wanted = options.patients - copy * options.templates
        connection.execute(
            "INSERT INTO patients (patient_id, protocol, facts, recorded_at) SELECT "
            "patient_id || ?, protocol, facts, recorded_at FROM patients "
            "WHERE row <= ? ORDER BY row LIMIT ?",
            (f"-{copy}", sizes["patients"], wanted),
        )
        connection.execute(
            "INSERT INTO visits (row, patient_id, date, recorded_at) SELECT row + ?, "
            "patient_id || ?, date, recorded_at FROM visits WHERE row <= ? AND patient_id IN "
            "(SELECT patient_id FROM patients WHERE row <= ? ORDER BY row LIMIT ?)",
            (v, f"-{copy}", sizes["visits"], sizes["patients"], wanted),
        )
        connection.execute(
            "INSERT INTO observations (visit, name, entered, canonical, drawn_on) SELECT "
            "visit + ?, name, entered, canonical, drawn_on FROM observations "
            "WHERE visit <= ? AND visit + ? IN (SELECT row FROM visits)",
            (v, sizes["visits"], v),
        )
        connection.execute(
            "INSERT INTO decisions (row, visit, protocol_sha256, record) SELECT row + ?, "
            "visit + ?, protocol_sha256, record FROM decisions "
            "WHERE row <= ? AND visit + ? IN (SELECT row FROM visits)",
            (d, v, sizes["decisions"], v),
        )
        connection.execute(
            "INSERT INTO responses (decision, kind, dose, reason, recorded_at) SELECT "
            "decision + ?, kind, dose, reason, recorded_at FROM responses "
            "WHERE decision <= ? AND decision + ? IN (SELECT row FROM decisions)",
            (d, sizes["decisions"], d),
        )
        connection.execute(
            "INSERT INTO records (visit, record) SELECT visit + ?, record FROM records "
            "WHERE visit <= ? AND visit + ? IN (SELECT row FROM visits)",
            (v, sizes["visits"], v),
        )
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = tuple(
        connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("patients", "visits")
    )
    connection.close()
    return counts[0], counts[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--visits", type=int, default=10, help="visits per patient")
    parser.add_argument("--templates", type=int, default=100, help="patients really imported")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 if over the target")
    options = parser.parse_args()
    options.templates = min(options.templates, options.patients)
    folder = Path(tempfile.mkdtemp(prefix="dosing-bench-"))
    try:
        store = folder / "patients.sqlite"
        patients, visits = build(store, folder, options)
        print(f"store: {patients:,} patients, {visits:,} visits, "
              f"{store.stat().st_size / 1e6:.0f} MB")  # fmt: skip
        env = {**os.environ, "DOSING_CACHE_DIR": str(folder / "cache"), "NO_COLOR": "1"}
        count = f"import sqlite3, rich, typer; sqlite3.connect({str(store)!r}).execute("
        count += "'SELECT count(*) FROM visits').fetchone()"
        commands = {
            "baseline: python, sqlite3 + rich + typer, count visits": (
                [sys.executable, "-c", count],
                env,
            ),
            "dosing patients": ([*dosing_command(), "patients", "--db", str(store)], env),
        }
        medians = interleaved_medians(commands, options.runs)
        print_medians(medians, options.runs, width=56)
        listed = medians["dosing patients"]
        print(f"target: dosing patients < {TARGET_SECONDS:.0f} s; median {listed:.2f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if options.check and listed >= TARGET_SECONDS else 0


if __name__ == "__main__":
    raise SystemExit(main())
