"""A timeline file given patient by patient, in bounded memory (`dosing replay` on big files).

A patient's replay needs all the patient's rows, sorted by date, and the line of the first row
refused for them (the replay stops there). Reading the whole file first holds every row: about
200 MB per million. Here a patient is given as soon as the patient's rows are complete:

- A first, cheap pass reads only the patient_id column, with the same csv parsing (a refused
  record counts with the patient it names; one that names none belongs to no patient), and
  says whether each patient's records are contiguous: a file grouped by patient.
- A grouped file is read again with the row rules of `read_timeline`, and each patient is
  given when a record names the next one.
- Any other file is partitioned by patient into files on disk first (`partition`), then read
  back a bucket of consecutive patients at a time.

Either way the patients come in the order of `read_timeline` (the order of each one's first
accepted row), each with the same rows in the same order and the same stop line, and once they
have all been given the tally (rows, observations, refused rows, patients whose rows were
sorted) is the `Timeline` that `read_timeline` gives, without its patients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import attrs

from dosing.core.errors import TimelineError
from dosing.replay.timeline import (
    Layout,
    Record,
    Rejected,
    Row,
    Timeline,
    read_records,
    record_patients,
    sort_by_day,
)

ROWS_PER_BUCKET = 65_536
"""About how many rows a bucket of an unsorted file holds (read back whole: ~13 MB)."""


class PatientRows(NamedTuple):
    """One patient's rows, complete and sorted by date, ready to replay."""

    patient_id: str
    rows: list[Row]
    stop_line: int | None
    """The line of the first row refused for this patient: the replay stops there."""


@attrs.frozen
class Survey:
    """What the cheap first pass found."""

    rows: int
    """Data records (blank lines not counted)."""
    patients: int
    """Patients named by a record (accepted or refused)."""
    grouped: bool
    """Whether each patient's records are contiguous (records naming no patient aside)."""


def survey(patient_ids: Iterable[str]) -> Survey:
    """The first pass over the patient each record names ('' for none), in file order."""
    seen: set[str] = set()
    current = ""
    rows = 0
    grouped = True
    for patient in patient_ids:
        rows += 1
        if patient == current or not patient:
            continue
        if patient in seen:
            grouped = False
        seen.add(patient)
        current = patient
    return Survey(rows, len(seen), grouped)


@attrs.define
class StreamedTimeline:
    """A timeline file being streamed: the first pass's survey, the patients as they come,
    and the tally, complete once every patient has been taken."""

    survey: Survey
    patients: Iterator[PatientRows]
    tally: Timeline
    """Rows read so far, observations, refused rows, patients resorted (`patients` empty)."""


@contextlib.contextmanager
def stream_timeline(
    lines: Callable[[], Iterable[str]],
    source: str,
    layout: Layout | None = None,
    bucket_patients: int | None = None,
) -> Iterator[StreamedTimeline]:
    """Stream the timeline whose lines `lines()` gives (called once per pass). Raises
    TimelineError, before any patient is given, for a file `read_timeline` would refuse.
    An unsorted file is partitioned in a private temporary folder, removed on leaving (also on
    an error or Ctrl-C); `bucket_patients` sets how many patients a bucket holds (default:
    about ROWS_PER_BUCKET rows' worth, from the survey)."""
    found = survey(record_patients(lines(), source, layout))
    text = lines()
    try:
        read = read_records(text, source, layout)
        tally = Timeline(read.layout, read.delimiter)
        if found.grouped:
            yield StreamedTimeline(found, grouped_patients(read.records, tally, source), tally)
            return
        from dosing.replay.partition import partitioned_patients, private_folder

        size = bucket_patients or max(1, ROWS_PER_BUCKET * found.patients // max(1, found.rows))
        with private_folder() as folder:
            patients = partitioned_patients(read.records, tally, folder, size)
            try:
                yield StreamedTimeline(found, patients, tally)
            finally:
                patients.close()  # its open bucket file, before the folder goes
    finally:
        close = getattr(text, "close", None)
        if close is not None:
            close()  # the file, now rather than when collected


def grouped_patients(
    records: Iterable[Record], tally: Timeline, source: str
) -> Iterator[PatientRows]:
    """Each patient of a file grouped by patient, as soon as a record names another one."""
    done: set[str] = set()
    patient = ""
    rows: list[Row] | None = None
    stop: int | None = None
    for record in records:
        tally.rows += 1
        found: tuple[Row, ...] | None = None
        if isinstance(record, Rejected):
            tally.rejected.append(record)
            named, bad = record.patient_id, record.line
            if not named:
                continue
        else:
            (named, found), bad = record, None
        if named != patient:
            if rows is not None:
                yield complete(patient, rows, stop, tally)
            done.add(patient)
            if named in done:
                raise TimelineError(f"{source} changed while it was read (patient {named})")
            patient, rows, stop = named, None, None
        if bad is not None and (stop is None or bad < stop):
            stop = bad
        if found is not None:
            if rows is None:
                rows = []
            rows.extend(found)
            tally.observations += len(found)
    if rows is not None:
        yield complete(patient, rows, stop, tally)


def complete(patient: str, rows: list[Row], stop: int | None, tally: Timeline) -> PatientRows:
    """A patient whose rows are all read: sorted by date if they were not (and said)."""
    if sort_by_day(rows):
        tally.resorted.append(patient)
    return PatientRows(patient, rows, stop)
