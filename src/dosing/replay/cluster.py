"""Replay on a Dask cluster (`dosing replay --engine dask`, the `cluster` extra): for
timelines of a hundred million rows and more, or data that already lives on a cluster.

The timeline (CSV, or Parquet of the same columns) is read in partitions with every value as
text, each row numbered with its line in the file; the rows are shuffled so that each patient's
rows meet in one partition; each partition is replayed by the same per-patient replay as
`dosing replay` (the timeline reader, then the engine), with the file's line numbers put back
on every row, so a decision, a warning or a rejected row says what it would say on one
machine. Each partition's decisions are written as a JSON lines file in the output folder,
its patients in the order they appear in the file.

Without a scheduler address a LocalCluster is started on this machine. The workers load the
protocol themselves, by shipped id or by path (a path must be readable by every worker).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from dosing.core.errors import DosingError, TimelineError
from dosing.protocol import catalog
from dosing.protocol.model import Protocol
from dosing.replay.replay import StartPoint, replay
from dosing.replay.timeline import Rejected, Timeline, read_timeline
from dosing.replay.writers import jsonl_line

CLUSTER_EXTRA = "pip install 'dosing[cluster]'"
BLOCKSIZE = "64MB"
"""The size of the CSV partitions read."""
LINE = "_dosing_line"
"""The column that carries each row's line in the file through the shuffle."""


@attrs.frozen
class ClusterResult:
    """What a cluster replay wrote."""

    parts: int
    patients: int
    decisions: int
    rejected: list[Rejected]
    """Every row not replayed, with its line in the file and why (as `dosing replay`)."""


def _dask() -> tuple[Any, Any]:
    try:
        import dask.dataframe
        import distributed
    except ImportError:
        raise DosingError(f"--engine dask needs the cluster extra: {CLUSTER_EXTRA}") from None
    return dask.dataframe, distributed


@functools.cache
def _protocol(reference: str) -> Protocol:
    """The protocol, loaded once per worker process."""
    return catalog.load(reference)


def _read(dd: Any, source: Path) -> Any:
    """The timeline as a dask DataFrame of text columns, each row with its line number."""
    if source.suffix.lower() == ".parquet":
        from dosing.replay.big_files import parquet_lines

        next(parquet_lines(source))  # refuses a float or time column by name, as replay does
        frame = dd.read_parquet(source)
        frame = frame.map_partitions(_as_text, meta=dict.fromkeys(frame.columns, "object"))
    else:
        with source.open(encoding="utf-8-sig") as stream:
            header = stream.readline()
        delimiter = ";" if header.count(";") > header.count(",") else ","
        frame = dd.read_csv(
            source, dtype=str, keep_default_na=False, na_filter=False, sep=delimiter,
            encoding="utf-8-sig", blocksize=BLOCKSIZE,
        )  # fmt: skip
    lengths = frame.map_partitions(len).compute()
    starts = [2]
    for length in lengths[:-1]:
        starts.append(starts[-1] + int(length))
    meta = {**dict.fromkeys(frame.columns, "object"), LINE: "int64"}
    return frame.map_partitions(_number, starts, meta=meta)


def _as_text(part: Any) -> Any:
    """Every column as the text a CSV would hold (dates as YYYY-MM-DD, decimals as written)."""
    from dosing.replay.big_files import cell_text

    return part.apply(lambda column: column.map(cell_text)).astype(object)


def _number(part: Any, starts: list[int], partition_info: dict[str, Any] | None = None) -> Any:
    index = partition_info["number"] if partition_info else 0
    part = part.copy()
    part[LINE] = range(starts[index], starts[index] + len(part))
    return part


def _replay_part(part: Any, reference: str, start: StartPoint, accept_implausible: bool) -> Any:
    """A partition's patients replayed: (patient_id, first line, JSON line, "") per decision,
    and (patient_id, line, "", the rejected row as JSON) per row not replayed."""
    import pandas

    columns = [c for c in part.columns if c != LINE]
    part = part.sort_values(LINE, kind="stable")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    lines_of = [1]
    for line, *cells in zip(part[LINE], *(part[c] for c in columns), strict=True):
        writer.writerow(cells)
        lines_of.append(int(line))
    text = buffer.getvalue().splitlines(keepends=True)
    timeline = _renumbered(read_timeline(text, "timeline"), lines_of)
    out: list[tuple[str, int, str, str]] = []
    for patient in replay(_protocol(reference), timeline, start, accept_implausible):
        first = min((row.line for row in timeline.patients.get(patient.patient_id, [])), default=0)
        out.extend((patient.patient_id, first, jsonl_line(d), "") for d in patient.decisions)
        out.extend((patient.patient_id, first, "", _said(row)) for row in patient.rejected)
    out.extend((row.patient_id, row.line, "", _said(row)) for row in timeline.rejected)
    return pandas.DataFrame(out, columns=["patient_id", "first_line", "record", "rejected"])


def _said(row: Rejected) -> str:
    return json.dumps(list(row), ensure_ascii=False)


def _renumbered(timeline: Timeline, lines_of: list[int]) -> Timeline:
    """The partition's timeline with each row's line in the whole file."""
    for patient_id, rows in timeline.patients.items():
        timeline.patients[patient_id] = [row._replace(line=lines_of[row.line - 1]) for row in rows]
    timeline.rejected = [r._replace(line=lines_of[r.line - 1]) for r in timeline.rejected]
    return timeline


def _write_part(part: Any, folder: Path, number: int) -> tuple[int, int, list[Rejected]]:
    """PART.jsonl: the partition's decisions, patients in file order; the counts, and the
    rows not replayed (few: they come back to the client for --rejects and the report)."""
    part = part.sort_values("first_line", kind="stable")
    records = [record for record in part["record"] if record]
    (folder / f"part-{number:05d}.jsonl").write_text("".join(records), encoding="utf-8")
    patients = part.loc[part["record"] != "", "patient_id"].nunique()
    rejected = [Rejected(*json.loads(said)) for said in part["rejected"] if said]
    return int(patients), len(records), rejected


def replay_on_dask(
    reference: str,
    source: Path,
    folder: Path,
    scheduler: str | None,
    workers: int,
    start: StartPoint,
    accept_implausible: bool = False,
) -> ClusterResult:
    """Replay `source` under the protocol `reference` on a Dask cluster into `folder`."""
    dd, distributed = _dask()
    import dask
    import pandas

    tasks: Any = dask  # delayed and compute, untyped

    _protocol(reference)  # a protocol that cannot be loaded fails here, not on every worker
    if not source.is_file():
        raise TimelineError(f"no timeline file {source}")
    folder.mkdir(parents=True, exist_ok=True)
    cluster = None
    for name in ("distributed", "distributed.shuffle"):  # task names, never values; still quiet
        logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler is None:
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None,
            silence_logs=logging.ERROR,
        )  # fmt: skip
    try:
        with distributed.Client(scheduler or cluster):
            frame = _read(dd, source)
            if "patient_id" not in frame.columns:
                raise TimelineError(f"{source}:1: the header needs patient_id")
            shuffled = frame.shuffle(on="patient_id")
            meta = pandas.DataFrame(
                {"patient_id": pandas.Series(dtype=object),
                 "first_line": pandas.Series(dtype="int64"),
                 "record": pandas.Series(dtype=object),
                 "rejected": pandas.Series(dtype=object)}
            )  # fmt: skip
            replayed = shuffled.map_partitions(
                _replay_part, reference, start, accept_implausible, meta=meta
            )
            writes = [
                tasks.delayed(_write_part)(part, folder, number)
                for number, part in enumerate(replayed.to_delayed())
            ]
            counts = tasks.compute(*writes)
    finally:
        if cluster is not None:
            cluster.close()
    return ClusterResult(
        parts=len(counts),
        patients=sum(c[0] for c in counts),
        decisions=sum(c[1] for c in counts),
        rejected=sorted(row for c in counts for row in c[2]),
    )


def read_parts(folder: Path) -> Iterator[dict[str, Any]]:
    """Every decision record the parts hold, part by part."""
    for path in sorted(folder.glob("part-*.jsonl")):
        with path.open(encoding="utf-8") as stream:
            yield from (json.loads(line) for line in stream)
