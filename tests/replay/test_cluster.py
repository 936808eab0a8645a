"""`dosing replay --engine dask` on a LocalCluster of 2 workers: each patient's decisions are
the ones `--jobs 1` writes, across several partitions of the file, with the file's line
numbers in what the decisions say."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dosing.cli.app import app
from dosing.replay import cluster
from tests.replay.test_big_files import as_parquet
from tests.replay.test_parallel import cohort


def by_patient(lines: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        found[json.loads(line)["patient_id"]].append(line)
    return dict(found)


def test_dask_replays_each_patient_as_one_machine_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """120 patients read in small partitions (so the shuffle moves rows between them), on
    2 workers: every patient's decision records, byte for byte, as --jobs 1 writes them."""
    monkeypatch.setattr(cluster, "BLOCKSIZE", "8KB")
    path = cohort(tmp_path, copies=40)
    runner = CliRunner()
    local = runner.invoke(app, ["replay", "imatinib-hes", str(path), "--format", "jsonl",
                                "--jobs", "1"])  # fmt: skip
    assert local.exit_code == 0
    out = tmp_path / "parts"
    result = runner.invoke(app, ["replay", "imatinib-hes", str(path), "--engine", "dask",
                                 "--jobs", "2", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    parts = sorted(out.glob("part-*.jsonl"))
    assert len(parts) > 1
    written = [line for part in parts for line in part.read_text().splitlines(keepends=True)]
    assert by_patient(written) == by_patient(local.stdout.splitlines(keepends=True))
    assert f"written to {out}" in result.stderr
    assert "rejected" not in result.stderr


def test_dask_needs_an_output_folder() -> None:
    """The parts go into a folder: without --output the command says so, and exits 2."""
    result = CliRunner().invoke(
        app, ["replay", "imatinib-hes", "examples/imatinib-hes-timeline.csv", "--engine", "dask"]
    )
    assert result.exit_code != 0
    assert "--engine dask writes JSON lines parts into a folder" in str(result.exception)


def test_dask_reads_parquet_as_the_csv(tmp_path: Path) -> None:
    """A Parquet timeline (dates as dates) on the cluster: each patient's decisions as the
    CSV gives them on one machine."""
    path = cohort(tmp_path, copies=2)
    parquet = as_parquet(path, tmp_path / "cohort.parquet")
    runner = CliRunner()
    local = runner.invoke(app, ["replay", "imatinib-hes", str(path), "--format", "jsonl"])
    out = tmp_path / "parts"
    result = runner.invoke(app, ["replay", "imatinib-hes", str(parquet), "--engine", "dask",
                                 "--jobs", "2", "--output", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    written = [line for part in sorted(out.glob("part-*.jsonl"))
               for line in part.read_text().splitlines(keepends=True)]  # fmt: skip
    assert by_patient(written) == by_patient(local.stdout.splitlines(keepends=True))


def test_dask_lists_the_rows_it_rejects_as_one_machine_does(tmp_path: Path) -> None:
    """A bad value and a bad date on the cluster: the same rejects file as --jobs 1 writes
    (line, patient, date, name, column, value, reason), the same report on stderr, exit 1."""
    path = cohort(tmp_path, copies=2)
    lines = path.read_text().splitlines(keepends=True)
    lines[5] = lines[5].replace(lines[5].split(",")[3], "8 .5", 1)
    lines[-1] = lines[-1].replace(lines[-1].split(",")[1], "2026-13-40", 1)  # another patient
    path.write_text("".join(lines))
    runner = CliRunner()
    local_rejects, dask_rejects = tmp_path / "local.csv", tmp_path / "dask.csv"
    local = runner.invoke(app, ["replay", "imatinib-hes", str(path), "--format", "jsonl",
                                "--rejects", str(local_rejects)])  # fmt: skip
    assert local.exit_code == 1
    out = tmp_path / "parts"
    result = runner.invoke(app, ["replay", "imatinib-hes", str(path), "--engine", "dask",
                                 "--jobs", "2", "--output", str(out),
                                 "--rejects", str(dask_rejects)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert dask_rejects.read_text() == local_rejects.read_text()
    assert "8 .5" in dask_rejects.read_text()
    assert "2026-13-40" in dask_rejects.read_text()
    report = result.stderr[result.stderr.index("rejected") - 6 :]
    expected = local.stderr[local.stderr.index("rejected") - 6 :]
    assert report.replace(str(dask_rejects), "FILE") == expected.replace(str(local_rejects), "FILE")
