"""`dosing replay` at the CLI edge: read the file, replay, write what was asked, report rows.

Output goes to stdout or, with --output, to a file written atomically. Rejected rows are
reported on stderr with their line numbers (and to --rejects as CSV). With --strict the first
bad row ends the run with exit code 2 and nothing is written.

A CSV or Parquet file is streamed: each patient is replayed and written as soon as the
patient's rows are read (`streaming`), so memory stays flat however long the file; standard
input and FHIR Bundles are read whole. Both write the same bytes; a streamed file's note on
rows sorted by date comes after the decisions (it is known only once every patient is read).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import sys
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import attrs
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dosing.core.errors import TimelineError
from dosing.core.files import (
    NotAFile,
    check_folder,
    check_writable,
    open_text,
    write_failed,
)
from dosing.protocol.model import Protocol
from dosing.render.output import console, error_console
from dosing.render.tables import for_terminal, plain
from dosing.replay.parallel import replay_in_processes, replay_streamed
from dosing.replay.replay import PatientReplay, StartPoint, Summary
from dosing.replay.streaming import stream_timeline
from dosing.replay.writers import (
    CSV_FIELDS,
    atomic_text,
    csv_row,
    jsonl_line,
    patient_table,
    rejected_message,
    summary_view,
    write_rejects,
)

if TYPE_CHECKING:
    from dosing.replay.plots import Format
from dosing.replay.timeline import Rejected, Timeline, read_timeline

PROGRESS_FROM_ROWS = 20_000
_Write = Callable[[PatientReplay], None]
_Advance = Callable[[int], None]
REPORTED_REJECTS = 20


@attrs.frozen
class ReplayOptions:
    """What `dosing replay` was asked to do."""

    output_format: Literal["table", "jsonl", "csv", "parquet"] = "table"
    output: Path | None = None
    summary: bool = False
    plot: Path | None = None
    pdf: bool = False
    rejects: Path | None = None
    strict: bool = False
    format_in: Literal["long", "wide"] | None = None
    accept_implausible: bool = False
    start_state: str | None = None
    therapy_start: dt.date | None = None
    memory: dict[str, Fraction | str] = attrs.Factory(dict)
    jobs: int = 1
    """Processes to replay on (patients are never split; the output is the same)."""


def load_timeline(path: Path, layout: Literal["long", "wide"] | None) -> Timeline:
    """Read a timeline file (UTF-8, with or without a byte-order mark): CSV, or a FHIR Bundle
    when the name ends in .json; '-' reads standard input (a FHIR Bundle if it starts with
    '{')."""
    if str(path) == "-":
        text = sys.stdin.read()
        if text.lstrip("\ufeff \t\r\n").startswith("{"):
            from dosing.core.strict_json import read_json
            from dosing.fhir.bundle import read_document
            from dosing.replay.fhir_input import fhir_timeline

            return fhir_timeline(read_document(read_json(text, "standard input")))
        return read_timeline(text.splitlines(keepends=True), "standard input", layout)
    if path.suffix.lower() == ".parquet":
        from dosing.replay.big_files import parquet_lines

        return read_timeline(parquet_lines(path), str(path), layout)
    if path.suffix.lower() == ".json":
        from dosing.replay.fhir_input import fhir_timeline, read_fhir_file

        return fhir_timeline(read_fhir_file(path, str(path)))
    return read_timeline(timeline_text(path), str(path), layout)


def timeline_text(path: Path) -> Iterator[str]:
    """The lines of a CSV timeline file (UTF-8, with or without a byte-order mark), as they
    are read; a file that cannot be read raises TimelineError."""
    try:
        with open_text(path, "utf-8-sig") as stream:
            yield from stream
    except FileNotFoundError:
        raise TimelineError(f"no timeline file {path}") from None
    except NotAFile as error:
        raise TimelineError(f"{path}: {error}; a timeline is read from a CSV file") from None
    except UnicodeDecodeError as error:
        raise TimelineError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise TimelineError(f"cannot read {path}: {error.strerror}") from None


def _streams(path: Path, options: ReplayOptions) -> bool:
    """Whether the file is replayed as it is read: a CSV or Parquet file, unless --strict
    must fail before anything reaches stdout or a plot (a file is written atomically)."""
    if str(path) == "-" or path.suffix.lower() == ".json":
        return False
    return not options.strict or (options.output is not None and options.plot is None)


def _lines(path: Path) -> Callable[[], Iterator[str]]:
    """What reads the file's lines afresh, for each pass over a streamed file."""
    if path.suffix.lower() == ".parquet":
        from dosing.replay.big_files import parquet_lines

        return lambda: parquet_lines(path)
    return lambda: timeline_text(path)


@contextlib.contextmanager
def _destination(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    from dosing.replay.big_files import compressed_text, compression

    packed = compression(path)
    try:
        with compressed_text(path, packed) if packed else atomic_text(path) as stream:
            yield stream
    except OSError as error:
        raise write_failed("--output", path, error) from None


@contextlib.contextmanager
def _output(options: ReplayOptions) -> Iterator[_Write]:
    """Where the decisions go, as a function that writes one patient's."""
    if options.output_format != "parquet":
        with _destination(options.output) as stream:
            yield _writer(options.output_format, stream, options.output is None)
        return
    from dosing.replay.big_files import ParquetDecisions

    assert options.output is not None  # the command asks for --output with parquet
    try:
        sink = ParquetDecisions(options.output, CSV_FIELDS)
    except OSError as error:
        raise write_failed("--output", options.output, error) from None
    failed = True
    try:
        yield lambda patient: sink.write(csv_row(d) for d in patient.decisions)
        failed = False
    finally:
        sink.close(failed)


def run_replay(protocol: Protocol, path: Path, options: ReplayOptions) -> bool:
    """The whole replay command. Raises DosingError (exit 2) on a file that cannot be used.
    Returns whether every row was accounted for as used, superseded or carried: False when a
    row was rejected or a patient's replay stopped at a bad row (the command exits 1)."""
    for option, target in (("--output", options.output), ("--rejects", options.rejects)):
        if target is not None:
            check_writable(target, option)
    if options.plot is not None:
        check_folder(options.plot, "--plot")
    source = str(path)
    start = StartPoint(options.start_state, options.therapy_start, options.memory)
    keep_values = options.plot is not None
    if _streams(path, options):
        lines = _lines(path)
        with stream_timeline(lines, source, options.format_in) as stream:
            if stream.survey.rows == 0:
                _no_rows(source)
            rows = stream.survey.rows
            replayed = replay_streamed(
                protocol, stream.patients, start, options.accept_implausible, keep_values,
                options.jobs, stream.survey.patients,
            )  # fmt: skip
            with contextlib.closing(replayed):  # its workers end here
                replays = _Replays(replayed, stream.tally, rows, rows, streamed=True)
                return _write_replays(protocol, replays, options, source)
    timeline = load_timeline(path, options.format_in)
    _resorted(timeline)
    if timeline.rows == 0:
        _no_rows(source)
    patients = replay_in_processes(
        protocol, timeline, start, options.accept_implausible, keep_values, options.jobs
    )
    if options.strict:
        patients = iter(_strict(list(patients), timeline, source))
    replays = _Replays(patients, timeline, timeline.rows, len(timeline.patients), streamed=False)
    return _write_replays(protocol, replays, options, source)


@attrs.frozen
class _Replays:
    """The patients' replays as they come, and the timeline's tally: complete from the start
    when the file was read whole, once the last patient is replayed when it is streamed."""

    patients: Iterable[PatientReplay]
    timeline: Timeline
    rows: int
    """The file's data rows."""
    total: int
    """For the progress bar: rows when streamed (it counts rows read), else patients."""
    streamed: bool


def _write_replays(
    protocol: Protocol, replays: _Replays, options: ReplayOptions, source: str
) -> bool:
    """Write each patient's decisions as they come, then the summary and the rejected rows;
    whether every row was accounted for (see run_replay)."""
    summary = Summary()
    rejected: list[Rejected] = []
    timeline = replays.timeline
    with _output(options) as write:
        with _progress(replays.rows, replays.total) as advance:
            for patient in replays.patients:
                summary.add(patient)
                rejected.extend(patient.rejected)
                write(patient)
                if options.plot is not None:
                    _plot(protocol, patient, options.plot, options.pdf)
                advance(timeline.rows if replays.streamed else summary.patients)
        if replays.streamed:
            _resorted(timeline)
            if options.strict:
                _refuse_bad([*timeline.rejected, *rejected], source)  # the output is dropped
    rejected[:0] = timeline.rejected
    if options.summary:
        view = summary_view(summary, timeline)
        to_stdout = options.output is not None or options.output_format == "table"
        (console if to_stdout else error_console).print(view)
    if options.rejects is not None:
        try:
            write_rejects(options.rejects, rejected)
        except OSError as error:
            raise write_failed("--rejects", options.rejects, error) from None
    report_rejects(rejected, source, options.rejects)
    return not rejected and not summary.stopped


def _resorted(timeline: Timeline) -> None:
    if timeline.resorted:
        shown = ", ".join(timeline.resorted[:5]) + (" ..." if len(timeline.resorted) > 5 else "")
        error_console.print(
            f"note: rows were not in date order for {len(timeline.resorted)} patients "
            f"({shown}); they were sorted by date",
            highlight=False,
            markup=False,
        )


def _no_rows(source: str) -> None:
    error_console.print(
        f"note: {source} has a header but no data rows", highlight=False, markup=False
    )


def _plot(protocol: Protocol, patient: PatientReplay, folder: Path, pdf: bool) -> None:
    """PATIENT.png and PATIENT.svg; with --pdf, PATIENT.pdf: the plot, the table under it."""
    from dosing.replay.plots import plot_course

    table = plain(patient_table(patient)) if pdf else None
    formats: tuple[Format, ...] = ("png", "svg", "pdf") if pdf else ("png", "svg")
    try:
        plot_course(protocol, patient.patient_id, patient.decisions, patient.values, folder,
                    formats, table)  # fmt: skip
    except OSError as error:
        raise write_failed("--plot", folder, error) from None


def _strict(patients: list[PatientReplay], timeline: Timeline, source: str) -> list[PatientReplay]:
    _refuse_bad([*timeline.rejected, *(row for p in patients for row in p.rejected)], source)
    return patients


def _refuse_bad(rejected: list[Rejected], source: str) -> None:
    """--strict: the first bad row (by line) ends the run, before anything is kept."""
    bad = [row for row in rejected if not row.reason.startswith("not replayed:")]
    if bad:
        first = min(bad)
        raise TimelineError(f"{rejected_message(first, source)} (--strict: nothing was written)")


def _writer(kind: str, stream: IO[str], terminal: bool) -> _Write:
    if kind == "jsonl":

        def write_jsonl(patient: PatientReplay) -> None:
            stream.writelines(jsonl_line(decision) for decision in patient.decisions)

        return write_jsonl
    if kind == "csv":
        rows = csv.writer(stream)
        rows.writerow(CSV_FIELDS)
        return lambda patient: rows.writerows(csv_row(d) for d in patient.decisions)
    if terminal and console.is_terminal:
        return lambda patient: console.print(for_terminal(patient_table(patient), console.width))

    def write_plain(patient: PatientReplay) -> None:
        stream.write(plain(patient_table(patient)))

    return write_plain


@contextlib.contextmanager
def _progress(rows: int, total: int) -> Iterator[_Advance]:
    """A bar on a terminal for a long file, moved to what has been done (out of `total`)."""
    if rows < PROGRESS_FROM_ROWS or not error_console.is_terminal:
        yield lambda done: None
        return
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=error_console, transient=True) as progress:
        task = progress.add_task("replay", total=total)
        yield lambda done: progress.update(task, completed=done)


def counted(number: int, noun: str) -> str:
    """'1 row', '2 rows'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def report_rejects(rejected: list[Rejected], source: str, saved: Path | None) -> None:
    """On stderr: how many rows were rejected or not replayed, and the first of them."""
    if not rejected:
        return
    refused = sorted(row for row in rejected if not row.reason.startswith("not replayed:"))
    skipped = len(rejected) - len(refused)
    said = f"{counted(len(refused), 'row')} rejected"
    if skipped:
        said += f", {counted(skipped, 'row')} not replayed after a bad row"
    kept = f"written to {saved}" if saved is not None else "use --rejects FILE to save them"
    error_console.print(f"{said} ({kept}):", highlight=False, markup=False, soft_wrap=True)
    for row in refused[:REPORTED_REJECTS]:
        error_console.print(
            f"  {rejected_message(row, source)}", highlight=False, soft_wrap=True, markup=False
        )
    if len(refused) > REPORTED_REJECTS:
        error_console.print(f"  ... and {len(refused) - REPORTED_REJECTS} more", highlight=False)
