"""`dosing replay` streams CSV and Parquet files patient by patient: grouped files directly,
unsorted ones through buckets on disk. Whatever the file (grouped, shuffled, with bad rows,
long or wide, CSV or Parquet), the user sees what reading the whole file first gave: the same
output, summary, rejected rows, messages and exit code, byte for byte; and no temporary file is
left behind, also when the run fails or is interrupted."""

from __future__ import annotations

import csv
import os
import random
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dosing.cli.app import app
from dosing.core.errors import TimelineError
from dosing.replay import parallel, partition, run, streaming
from dosing.replay.replay import replay_patient
from dosing.replay.run import ReplayOptions, run_replay
from dosing.replay.streaming import PatientRows, stream_timeline
from dosing.replay.timeline import read_timeline
from tests.conftest import ROOT, load_file
from tests.replay.test_big_files import as_parquet

EXAMPLE = ROOT / "examples" / "imatinib-hes-timeline.csv"
WIDE = ROOT / "examples" / "tacrolimus-trough-wide.csv"
Seen = tuple[int, str, str, dict[str, bytes], str]
"""What a user sees of a run: exit code, stdout, stderr, the files written, and the error
the command ends with (the entry point prints it on stderr, exit 2)."""


def cohort(folder: Path, copies: int, bad: bool = False, name: str = "cohort.csv") -> Path:
    """The example's three patients `copies` times under new ids, each patient's rows
    together; with `bad`, rows of every kind that is refused, each in a different patient
    (and a second one for one of them)."""
    with EXAMPLE.open(newline="") as stream:
        header, *rows = list(csv.reader(stream))
    lines = [",".join(header) + "\n"]
    for copy in range(copies):
        for number, row in enumerate(rows):
            patient = f"C{copy:03d}-{row[0]}"
            lines.append(",".join([patient, *row[1:]]) + "\n")
            if bad and number == 10 and copy < 8:
                lines.append(BAD_ROWS[copy].format(patient=patient))
            if bad and number == 40 and copy == 2:
                lines.append(BAD_ROWS[0].format(patient=patient))
    path = folder / name
    path.write_text("".join(lines), encoding="utf-8")
    return path


BAD_ROWS = [
    "{patient},2026-01-12,anc,3000\n",  # ragged
    "{patient},2026-13-40,anc,3000,/mm3\n",  # a date that is not one
    "{patient},2026-01-12,neutro,3000,/mm3\n",  # no such observation
    "{patient},2026-01-12,anc,3.0,\n",  # a count without its unit: stops the patient in replay
    ",2026-01-12,anc,3000,/mm3\n",  # no patient
    '{patient},2026-01-12,anc,"3000,/mm3\n' + "x" * 140_000 + "\n",  # an unclosed quote
    "{patient},2026-01-12,anc,-5,/mm3\n",  # a value out of range
    "{patient},2026-01-26,start_state,standard,\n",  # a start after the first date
]
"""A row of each kind a replay refuses or stops at."""


def shuffled(source: Path, target: Path) -> Path:
    """The file's records in a random order (the header first; the unclosed quote stays with
    the long line that ends its record)."""
    header, *lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    records: list[str] = []
    for line in lines:
        if line.startswith("xxx"):
            records[-1] += line
        else:
            records.append(line)
    random.Random(14).shuffle(records)
    target.write_text(header + "".join(records), encoding="utf-8")
    return target


@pytest.fixture
def buckets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """Small buckets (a few patients each) and small batches, in a temporary folder of the
    test's own; yields the bucket files on disk at each write, and checks that none is left."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    monkeypatch.setattr(streaming, "ROWS_PER_BUCKET", 100)
    monkeypatch.setattr(partition, "WAITING_ROWS", 50)
    seen: list[list[str]] = []
    write = partition._Buckets.write

    def spy(self: Any) -> None:
        write(self)
        seen.append(sorted(os.listdir(self.folder)))

    monkeypatch.setattr(partition._Buckets, "write", spy)
    yield seen
    assert os.listdir(temporary) == []


def replay_both(
    monkeypatch: pytest.MonkeyPatch, folder: Path, protocol: str, timeline: Path, *args: str
) -> tuple[Seen, Seen]:
    """The run streamed, then with the file read whole (as before streaming): what the user
    sees of each. Arguments may name {out} and {rejects}: a file for each run."""
    seen = []
    for way in ("streamed", "whole"):
        files = {"out": folder / f"{way}.out", "rejects": folder / f"{way}.rejects.csv"}
        with monkeypatch.context() as patch:
            if way == "whole":
                patch.setattr(run, "_streams", lambda path, options: False)
            given = [arg.format(**files) for arg in args]
            result = CliRunner().invoke(app, ["replay", protocol, str(timeline), *given])
        written = {name: path.read_bytes() for name, path in files.items() if path.exists()}
        stderr = result.stderr
        for name, path in files.items():
            stderr = stderr.replace(str(path), f"{{{name}}}")
        error = result.exception
        shown = "" if error is None or isinstance(error, SystemExit) else f"{type(error)} {error}"
        for name, path in files.items():
            shown = shown.replace(str(path), f"{{{name}}}")
        seen.append((result.exit_code, result.stdout, stderr, written, shown))
    return seen[0], seen[1]


OUTPUTS = [
    ("--format", "jsonl", "--summary", "--rejects", "{rejects}"),
    ("--format", "csv", "--output", "{out}", "--summary"),
    ("--format", "table", "--summary", "--rejects", "{rejects}"),
    ("--format", "parquet", "--output", "{out}", "--rejects", "{rejects}"),
]


@pytest.mark.parametrize("args", OUTPUTS, ids=["jsonl", "csv", "table", "parquet"])
@pytest.mark.parametrize("order", ["grouped", "shuffled"])
def test_streamed_output_is_the_whole_files(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    buckets: list[list[str]],
    order: str,
    args: tuple[str, ...],
) -> None:
    """Thirty patients with every kind of bad row, grouped or shuffled: the decisions, the
    summary, the rejected rows (file and report) and the exit code are the ones reading the
    whole file gives; a shuffled file goes through several buckets on disk, a grouped one
    through none."""
    path = cohort(tmp_path, copies=10, bad=True)
    if order == "shuffled":
        path = shuffled(path, tmp_path / "shuffled.csv")
    streamed, whole = replay_both(monkeypatch, tmp_path, "imatinib-hes", path, *args)
    assert streamed == whole
    assert streamed[0] == 1
    assert " rows rejected, " in streamed[2]
    if order == "shuffled":
        assert "note: rows were not in date order for 30 patients" in streamed[2]
        assert len(buckets) > 2  # several batches
        assert max(len(files) for files in buckets) > 3  # several buckets
    else:
        assert "9 rows rejected, 310 rows not replayed after a bad row" in streamed[2]
        assert buckets == []


def test_the_bad_rows_are_each_named(tmp_path: Path) -> None:
    """The bad rows of the test cohort are refused where a user expects, by line and reason,
    and a bad value stops only its patient (the other copies replay in full)."""
    path = cohort(tmp_path, copies=10, bad=True)
    result = CliRunner().invoke(app, ["replay", "imatinib-hes", str(path), "--format", "jsonl"])
    reasons = [
        "4 fields, expected 5",
        "expected an ISO date",
        "not a known observation",
        "a number needs its unit",
        "a patient_id is required",
        "a field longer than 131072 characters (an unclosed quote?)",
        "is outside the plausible range",
        "start_state is only read on a patient's first date",
    ]
    for reason in reasons:
        assert reason in result.stderr
    decisions = [line.split(",")[0] for line in result.stdout.splitlines()]
    assert decisions.count('{"patient_id": "C003-P01"') < decisions.count(
        '{"patient_id": "C009-P01"'
    )
    assert decisions.count('{"patient_id": "C003-P02"') == decisions.count(
        '{"patient_id": "C009-P02"'
    )


@pytest.mark.parametrize("order", ["grouped", "shuffled", "reappearing"])
def test_wide_files_stream_as_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buckets: list[list[str]], order: str
) -> None:
    """A wide file (';', units in the header), with a row of no values (a visit row all the
    same) and a patient whose rows come back after another's: the same bytes."""
    header, *rows = WIDE.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [row.replace("T0", f"T{copy}") for copy in range(12) for row in rows]
    rows.insert(18, "T25;2026-02-10;;;;;;\n")  # between two copies
    if order == "reappearing":
        rows.append(rows[0])
    path = tmp_path / "wide.csv"
    path.write_text(header + "".join(rows), encoding="utf-8")
    if order == "shuffled":
        path = shuffled(path, tmp_path / "shuffled.csv")
    args = ("--format", "jsonl", "--summary", "--rejects", "{rejects}")
    streamed, whole = replay_both(monkeypatch, tmp_path, "tacrolimus-trough", path, *args)
    assert streamed == whole
    assert '"patient_id": "T25"' not in streamed[1]  # replayed, with nothing to decide
    assert "37 patients" in streamed[2]
    assert (buckets == []) == (order == "grouped")


@pytest.mark.parametrize("order", ["grouped", "shuffled"])
def test_parquet_streams_as_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buckets: list[list[str]], order: str
) -> None:
    """A Parquet timeline, grouped or not: the same bytes as reading it whole."""
    path = cohort(tmp_path, copies=10)
    if order == "shuffled":
        path = shuffled(path, tmp_path / "shuffled.csv")
    parquet = as_parquet(path, tmp_path / "timeline.parquet")
    args = ("--format", "jsonl", "--output", "{out}", "--summary")
    streamed, whole = replay_both(monkeypatch, tmp_path, "imatinib-hes", parquet, *args)
    assert streamed == whole
    assert streamed[0] == 0
    assert len(streamed[3]["out"].splitlines()) == 170
    assert (buckets == []) == (order == "grouped")


def test_patients_come_in_the_order_of_their_first_accepted_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buckets: list[list[str]]
) -> None:
    """A patient first named by a refused row comes after a patient whose good row comes
    before the first good one of the first (as when the file is read whole), one a bucket."""
    monkeypatch.setattr(streaming, "ROWS_PER_BUCKET", 1)
    good = EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)[1:9]
    text = "patient_id,date,name,value,unit\n" + "A,2026-13-01,anc,3000,/mm3\n"
    text += "".join(line.replace("P01", "B") for line in good)
    text += "".join(line.replace("P01", "A") for line in good)
    path = tmp_path / "order.csv"
    path.write_text(text, encoding="utf-8")
    streamed, whole = replay_both(monkeypatch, tmp_path, "imatinib-hes", path, "--format", "csv")
    assert streamed == whole
    assert [line.split(",")[0] for line in streamed[1].splitlines()[1:]] == ["B"]
    assert "1 row rejected, 8 rows not replayed after a bad row" in streamed[2]  # A's


def test_header_only_and_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buckets: list[list[str]]
) -> None:
    """A header with no rows says so; --strict with a bad row writes no file and names the
    first bad row by line, exit 2, streamed as read whole."""
    empty = tmp_path / "empty.csv"
    empty.write_text("patient_id,date,name,value,unit\n", encoding="utf-8")
    streamed, whole = replay_both(monkeypatch, tmp_path, "imatinib-hes", empty, "--summary")
    assert streamed == whole
    assert "has a header but no data rows" in streamed[2]
    path = shuffled(cohort(tmp_path, copies=10, bad=True), tmp_path / "shuffled.csv")
    args = ("--format", "jsonl", "--output", "{out}", "--strict", "--rejects", "{rejects}")
    streamed, whole = replay_both(monkeypatch, tmp_path, "imatinib-hes", path, *args)
    assert streamed == whole
    assert streamed[3] == {}
    assert streamed[4].startswith("<class 'dosing.core.errors.TimelineError'> ")
    assert streamed[4].endswith("(--strict: nothing was written)")


@pytest.mark.parametrize("order", ["grouped", "shuffled"])
def test_two_processes_write_what_one_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buckets: list[list[str]], order: str
) -> None:
    """A streamed file of 75 patients with bad rows on two processes: the same bytes, in the
    same order, as on one; every patient went to the workers in chunks."""
    path = cohort(tmp_path, copies=25, bad=True)
    if order == "shuffled":
        path = shuffled(path, tmp_path / "shuffled.csv")
    sent: list[int] = []
    chunks = parallel._chunks

    def counted(patients: Any, size: int) -> Iterator[list[PatientRows]]:
        for chunk in chunks(patients, size):
            sent.append(len(chunk))
            yield chunk

    monkeypatch.setattr(parallel, "_chunks", counted)
    seen = []
    for jobs in ("1", "2"):
        args = ["replay", "imatinib-hes", str(path), "--format", "jsonl", "--summary"]
        result = CliRunner().invoke(app, [*args, "--jobs", jobs])
        seen.append((result.exit_code, result.stdout, result.stderr))
    assert seen[0] == seen[1]
    assert seen[0][0] == 1
    replayed = re.search(r"^(\d+) patients, ", seen[0][2], re.MULTILINE)
    assert replayed is not None
    assert sum(sent) == int(replayed[1]) > 64


def test_the_stream_gives_the_patients_read_timeline_holds(
    tmp_path: Path, buckets: list[list[str]]
) -> None:
    """Patient by patient: the same rows, in the same order, and the same tally, from a
    shuffled file with bad rows partitioned two patients a bucket, as `read_timeline`
    gives."""
    path = shuffled(cohort(tmp_path, copies=10, bad=True), tmp_path / "shuffled.csv")
    text = path.read_text(encoding="utf-8").splitlines(keepends=True)
    whole = read_timeline(text, "t.csv")
    with stream_timeline(lambda: iter(text), "t.csv", bucket_patients=2) as stream:
        patients = [(p.patient_id, p.rows) for p in stream.patients]
        tally = stream.tally
    assert patients == list(whole.patients.items())
    assert (tally.rows, tally.observations, tally.resorted) == (
        whole.rows,
        whole.observations,
        whole.resorted,
    )
    assert sorted(tally.rejected) == sorted(whole.rejected)


def test_interrupted_or_failed_runs_leave_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buckets: list[list[str]]
) -> None:
    """Ctrl-C in the middle of a replay, or an error, removes the buckets and writes no
    output file."""
    path = shuffled(cohort(tmp_path, copies=10), tmp_path / "shuffled.csv")
    protocol = load_file(ROOT / "protocols" / "imatinib-hes.yaml")
    for problem in (KeyboardInterrupt, RuntimeError):
        monkeypatch.setattr(parallel, "replay_patient", failing_at(5, problem))
        out = tmp_path / "out.jsonl"
        with pytest.raises(problem):
            run_replay(protocol, path, ReplayOptions(output_format="jsonl", output=out))
        assert not out.exists()
        assert os.listdir(tmp_path / "tmp") == []
    assert len(buckets) > 1


def failing_at(call: int, problem: type[BaseException]) -> Any:
    """`replay_patient`, raising `problem` at its `call`-th call."""
    calls: list[int] = []

    def replay_until(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == call:
            raise problem
        return replay_patient(*args, **kwargs)

    return replay_until


def test_a_file_that_changes_between_the_passes_is_refused(tmp_path: Path) -> None:
    """Grouped at the first pass, not at the second (rewritten meanwhile): refused by name
    rather than replaying a patient twice."""
    grouped = (
        "patient_id,date,name,value,unit\nA,2026-01-05,age,50,years\nB,2026-01-05,age,50,years\n"
    )
    passes = [grouped, grouped + "A,2026-01-12,anc,3000,/mm3\n"]
    with (
        pytest.raises(TimelineError, match=r"^t.csv changed while it was read \(patient A\)$"),
        stream_timeline(lambda: iter(passes.pop(0).splitlines(keepends=True)), "t.csv") as stream,
    ):
        list(stream.patients)
