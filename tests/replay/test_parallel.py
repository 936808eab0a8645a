"""`dosing replay --jobs N`: the same output, byte for byte and in the same order, as one
process, whatever the format, with rejected rows and a patient stopped at a bad row."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dosing.cli.app import app
from dosing.replay import parallel
from dosing.replay.parallel import MIN_PATIENTS
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "imatinib-hes-timeline.csv"


def cohort(folder: Path, copies: int, bad_copy: int | None = None) -> Path:
    """The example's patients `copies` times under new ids; with `bad_copy`, one of that
    copy's rows has a date that is not one (its patient stops there; the others go on)."""
    with EXAMPLE.open(newline="") as stream:
        header, *rows = list(csv.reader(stream))
    path = folder / f"cohort-{copies}.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for copy in range(copies):
            for number, row in enumerate(rows):
                date = "2026-13-40" if copy == bad_copy and number == 20 else row[1]
                writer.writerow([f"C{copy:03d}-{row[0]}", date, *row[2:]])
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["replay", "imatinib-hes", *args])
    return result.exit_code, result.stdout


@pytest.mark.parametrize("output_format", ["jsonl", "csv", "table"])
def test_two_processes_write_what_one_writes(
    tmp_path: Path, output_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a hundred patients on two processes: every decision, in the same order, and the
    same summary, as on one."""
    path = cohort(tmp_path, copies=40)
    one = run(str(path), "--format", output_format, "--summary", "--jobs", "1")

    def one_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("replayed in one process")

    monkeypatch.setattr(parallel, "replay", one_process)  # --jobs 2 must not fall back
    monkeypatch.setattr(parallel, "replay_here", one_process)  # nor when streamed
    two = run(str(path), "--format", output_format, "--summary", "--jobs", "2")
    assert one[0] == 0
    assert two == one
    assert one[1].count("C039-P03") > 0  # the last patient of the last copy is there


def test_a_bad_row_stops_its_patient_on_any_process(tmp_path: Path) -> None:
    """A patient stopped at a bad row, in the middle of the cohort: the same decisions before
    it, the same rejected row, exit 1, with two processes as with one."""
    path = cohort(tmp_path, copies=40, bad_copy=25)
    one = run(str(path), "--format", "jsonl", "--jobs", "1")
    two = run(str(path), "--format", "jsonl", "--jobs", "2")
    assert one[0] == 1
    assert two == one
    assert "C025-P" in one[1]


def test_the_file_written_is_the_same(tmp_path: Path) -> None:
    """--output with --jobs 2 writes the same bytes as --jobs 1."""
    path = cohort(tmp_path, copies=MIN_PATIENTS)
    for jobs in ("1", "2"):
        code, _ = run(
            str(path), "--format", "jsonl", "--output", str(tmp_path / jobs), "--jobs", jobs
        )
        assert code == 0
    assert (tmp_path / "1").read_bytes() == (tmp_path / "2").read_bytes()


def test_jobs_must_be_a_positive_number() -> None:
    """--jobs 0 is refused by name, before anything is read."""
    code, _ = run(str(EXAMPLE), "--jobs", "0")
    assert code == 2
