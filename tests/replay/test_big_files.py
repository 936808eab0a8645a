"""Big files: a Parquet timeline replays as the same timeline in CSV does; decisions written
as Parquet or as gzip- or zstd-compressed JSON lines hold what the plain output holds; a
Parquet column that would not be exact is refused by name."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "imatinib-hes-timeline.csv"
WIDE = ROOT / "examples" / "tacrolimus-trough-wide.csv"


def run(protocol: str, *args: str) -> tuple[int, str, str]:
    """`dosing replay` as a user runs it: exit code, standard output, standard error."""
    result = subprocess.run(
        [sys.executable, "-m", "dosing", "replay", protocol, *args],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def as_parquet(source: Path, target: Path, value_type: str = "string") -> Path:
    """The CSV's columns as Parquet: text, or the value column as decimals or doubles, and
    the date column as dates."""
    with source.open(newline="") as stream:
        header, *rows = list(csv.reader(stream))
    columns: dict[str, pa.Array] = {}
    for index, name in enumerate(header):
        cells = [row[index] for row in rows]
        if name == "date":
            columns[name] = pa.array([dt.date.fromisoformat(c) for c in cells])
        elif name == "value" and value_type == "decimal":
            numbers = [Decimal(c) if c.replace(".", "", 1).isdigit() else None for c in cells]
            columns[name] = pa.array(numbers, type=pa.decimal128(12, 3))
        elif name == "value" and value_type == "double":
            columns[name] = pa.array([float(c) if c.replace(".", "", 1).isdigit() else None
                                      for c in cells])  # fmt: skip
        else:
            columns[name] = pa.array(cells, type=pa.string())
    pq.write_table(pa.table(columns), target)
    return target


@pytest.mark.parametrize(
    ("protocol", "source"), [("imatinib-hes", EXAMPLE), ("tacrolimus-trough", WIDE)]
)
def test_a_parquet_timeline_replays_as_its_csv(tmp_path: Path, protocol: str, source: Path) -> None:
    """Long and wide: the same decisions, row for row, from Parquet as from CSV."""
    parquet = as_parquet(source, tmp_path / "timeline.parquet")
    assert run(protocol, str(parquet), "--format", "jsonl") == run(
        protocol, str(source), "--format", "jsonl"
    )


def test_decimal_values_are_read_as_written(tmp_path: Path) -> None:
    """A decimal column is read as its exact decimal text, scale included, and the CSV
    reader's rules apply to it: '3500.000' cells per mm3 are refused as ambiguous (the point
    may separate thousands), by line, as they would be in a CSV; never read through a float."""
    parquet = as_parquet(EXAMPLE, tmp_path / "decimal.parquet", "decimal")
    assert str(pq.read_table(parquet).column("value")[0].as_py()) == "3500.000"
    code, _, err = run("imatinib-hes", str(parquet), "--format", "jsonl")
    assert code == 1
    assert f"{parquet}:2: column value: '3500.000 /mm3': anc=3500.000 /mm3: " in err
    assert "is ambiguous" in err


def test_a_floating_point_column_is_refused(tmp_path: Path) -> None:
    """Doubles are not exact: the column is named, and nothing is replayed (exit 2)."""
    parquet = as_parquet(EXAMPLE, tmp_path / "double.parquet", "double")
    code, out, err = run("imatinib-hes", str(parquet))
    assert code == 2
    assert out == ""
    assert "column value holds floating-point numbers (double)" in err


def test_not_parquet_is_refused(tmp_path: Path) -> None:
    """A .parquet file that is not one: exit 2 with the file named."""
    bad = tmp_path / "bad.parquet"
    bad.write_text("patient_id,date\n")
    code, _, err = run("imatinib-hes", str(bad))
    assert code == 2
    assert f"{bad}: not a Parquet file" in err


def test_decisions_as_parquet_hold_the_csv_rows(tmp_path: Path) -> None:
    """--format parquet --output: the CSV output's columns and rows, as text."""
    code, plain, _ = run("imatinib-hes", str(EXAMPLE), "--format", "csv")
    assert code == 0
    target = tmp_path / "decisions.parquet"
    assert run("imatinib-hes", str(EXAMPLE), "--format", "parquet", "--output", str(target))[0] == 0
    table = pq.read_table(target)
    header, *rows = list(csv.reader(plain.splitlines()))
    assert table.column_names == header
    assert [list(row.values()) for row in table.to_pylist()] == rows


def test_parquet_output_needs_a_file() -> None:
    """Parquet is not written to a terminal: the option to give is named."""
    code, _, err = run("imatinib-hes", str(EXAMPLE), "--format", "parquet")
    assert code == 2
    assert "--format parquet writes a file: give --output FILE.parquet" in err


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_json_lines(tmp_path: Path, suffix: str) -> None:
    """An output named .gz or .zst is the JSON lines, compressed; the same bytes each run."""
    _, plain, _ = run("imatinib-hes", str(EXAMPLE), "--format", "jsonl")
    target = tmp_path / f"decisions{suffix}"
    assert run("imatinib-hes", str(EXAMPLE), "--format", "jsonl", "--output", str(target))[0] == 0
    packed = target.read_bytes()
    if suffix.endswith(".gz"):
        text = gzip.decompress(packed).decode()
    else:
        text = zstandard.ZstdDecompressor().stream_reader(packed).read().decode()
    assert text == plain
    run("imatinib-hes", str(EXAMPLE), "--format", "jsonl", "--output", str(target))
    assert target.read_bytes() == packed
