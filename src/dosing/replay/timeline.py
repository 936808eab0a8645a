"""Patient timelines from CSV: long or wide format, read into rows grouped by patient.

Pure: it takes the text's lines (an iterable of str), not a path. Every data row ends up in
exactly one place: a patient's observation rows, or the rejected rows with the line number,
the column, the value and what was expected. Values are not interpreted here (that needs the
protocol); dates and the shape of each row are. `read_records` gives each data record's result
as it is read (for a file streamed patient by patient); `read_timeline` gathers them all.

Long format (the canonical one): ``patient_id,date,name,value,unit``, one observation per row,
and optionally ``drawn_on``: the day a value reused at this visit was drawn.
Wide format: ``patient_id,date`` and one column per observation, the unit in the header:
``anc [10^9/L]``, ``creatinine (umol/L)``, ``response``.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Literal, NamedTuple

import attrs

from dosing.core.errors import DosingError, TimelineError
from dosing.core.vocabulary import observable
from dosing.engine.patient import FIRST_DATE, LAST_DATE, PLACEHOLDER

Layout = Literal["long", "wide"]
LONG_COLUMNS = ("patient_id", "date", "name", "value", "unit")
DRAWN_ON = "drawn_on"
"""An optional long-format column: the date a value was drawn, when before the visit (a
result reused at a later visit keeps the day it was drawn)."""
START_NAMES = frozenset(
    {"start_state", "therapy_start", "dose_given", "override_reason", "birth_date"}
)
"""Names that are not observations: where a patient starts, the dose actually given and why
it was not the advice, and the birth date ages are counted from."""
_WIDE_HEADER = re.compile(r"^\s*(?P<name>[^\[\(]+?)\s*(?:[\[\(](?P<unit>[^\]\)]*)[\]\)])?\s*$")


class Row(NamedTuple):
    """One observation of one patient on one day, as typed (a tuple: there are millions)."""

    line: int
    day: int
    """The date as a proleptic ordinal (date.toordinal), cheap to sort and subtract."""
    name: str
    text: str
    """Value and unit as typed: '1200 /mm3', 'complete'."""
    column: str
    """The column it came from, for messages."""
    drawn: int | None = None
    """The day the value was drawn (an ordinal), when the drawn_on column gives one."""


class Rejected(NamedTuple):
    """A row that was not used, and why."""

    line: int
    patient_id: str
    column: str
    value: str
    reason: str
    date: str = ""
    """The row's date as written (when the row had one)."""
    name: str = ""
    """The observation's name, when it could be read."""


@attrs.define
class Timeline:
    """The rows of a file by patient (in first-appearance order), and the rows refused."""

    layout: Layout
    delimiter: str
    patients: dict[str, list[Row]] = attrs.Factory(dict)
    rejected: list[Rejected] = attrs.Factory(list)
    rows: int = 0
    """Data rows in the file (a wide row holds several observations)."""
    observations: int = 0
    resorted: list[str] = attrs.Factory(list)
    """Patients whose rows were not in date order (they are sorted)."""


Record = Rejected | tuple[str, tuple[Row, ...]]
"""What one data record of a file gives: a row refused (naming its patient when it could be
read), or a patient's observations (a wide row may hold none: the patient still has a visit
row)."""


@attrs.frozen
class TimelineRecords:
    """A timeline file's header, read, and its data records as they are read (lazily)."""

    layout: Layout
    delimiter: str
    records: Iterator[Record]
    """One per data record (blank lines give none), in file order."""


def read_timeline(lines: Iterable[str], source: str, layout: Layout | None = None) -> Timeline:
    """Read a timeline's text. Raises TimelineError for a file that cannot be read at all."""
    read = read_records(lines, source, layout)
    timeline = Timeline(read.layout, read.delimiter)
    patients = timeline.patients
    for record in read.records:
        timeline.rows += 1
        if isinstance(record, Rejected):
            timeline.rejected.append(record)
            continue
        patient, found = record
        rows = patients.get(patient)
        if rows is None:
            rows = patients[patient] = []
        rows.extend(found)
        timeline.observations += len(found)
    for patient_id, rows in patients.items():
        if sort_by_day(rows):
            timeline.resorted.append(patient_id)
    return timeline


def sort_by_day(rows: list[Row]) -> bool:
    """Sort a patient's rows by date (file order within a date), in place, if they are not in
    date order; whether they had to be."""
    if any(a.day > b.day for a, b in itertools.pairwise(rows)):
        rows.sort(key=lambda row: (row.day, row.line))
        return True
    return False


def read_records(
    lines: Iterable[str], source: str, layout: Layout | None = None
) -> TimelineRecords:
    """The header read (raises TimelineError for a file that cannot be read at all) and each
    data record as a `Record`, when it is read: the row rules of `read_timeline`."""
    header = _read_header(lines, source, layout)
    records = _records(header.records, header.lines, header.lowered.index("patient_id"))
    if header.layout == "long":
        found = _read_long(records, header.lowered, header.delimiter)
    else:
        columns = _wide_columns(header.header, header.lowered, source)
        found = _read_wide(records, header.header, header.lowered, header.delimiter, columns)
    return TimelineRecords(header.layout, header.delimiter, found)


def record_patients(
    lines: Iterable[str], source: str, layout: Layout | None = None
) -> Iterator[str]:
    """The patient each data record names ('' for none), in file order: the patient a
    `Record` of the same record would name, read with the same csv parsing but none of the
    row rules (a cheap pass over the patient_id column)."""
    header = _read_header(lines, source, layout)
    i_pid = header.lowered.index("patient_id")
    if header.layout == "wide":
        _wide_columns(header.header, header.lowered, source)
    for record in _records(header.records, header.lines, i_pid):
        if isinstance(record, Rejected):
            yield record.patient_id
            continue
        cells = record[1]
        if cells and (len(cells) > 1 or cells[0].strip()):
            yield cells[i_pid].strip() if len(cells) > i_pid else ""


@attrs.frozen
class _Header:
    layout: Layout
    delimiter: str
    header: list[str]
    lowered: list[str]
    lines: _Lines
    records: Iterator[list[str]]


def _read_header(lines: Iterable[str], source: str, layout: Layout | None) -> _Header:
    iterator = iter(lines)
    first = next(iterator, None)
    while first is not None and not first.strip():
        first = next(iterator, None)
    if first is None:
        raise TimelineError(
            f"{source} is empty: expected a header line, patient_id,date,name,value,unit "
            "(long) or patient_id,date and one column per observation (wide)"
        )
    first = first.removeprefix("\ufeff")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    text = _Lines(_chain(first, iterator))
    records = csv.reader(text, delimiter=delimiter)
    try:
        header = [cell.strip() for cell in next(records)]
    except csv.Error as error:
        raise TimelineError(f"{source}:1: the header is {_csv_problem(error)}") from None
    lowered = [cell.lower() for cell in header]
    detected = _detect(lowered, source)
    chosen = layout or detected
    if chosen != detected and chosen == "long":
        raise TimelineError(
            f"{source}:1: --format-in long needs the columns {','.join(LONG_COLUMNS)}; "
            f"the header is {','.join(header)}"
        )
    return _Header(chosen, delimiter, header, lowered, text, records)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _detect(lowered: list[str], source: str) -> Layout:
    if set(LONG_COLUMNS[:4]) <= set(lowered):
        return "long"
    if {"patient_id", "date"} <= set(lowered):
        return "wide"
    raise TimelineError(
        f"{source}:1: the header needs patient_id,date,name,value,unit (long format) or "
        f"patient_id,date and one column per observation (wide format); found {','.join(lowered)}"
    )


_date_cache: dict[str, int | None] = {}
_FIRST_DAY, _LAST_DAY = FIRST_DATE.toordinal(), LAST_DATE.toordinal()


def _read_day(text: str) -> int | None:
    value = text.strip()
    if not value.isascii():
        return None  # fromisoformat reads digits of other scripts
    try:
        if len(value) > 10:
            return dt.datetime.fromisoformat(value).date().toordinal()
        return dt.date.fromisoformat(value).toordinal()
    except ValueError:
        return None


def parse_day(text: str) -> int | None:
    """An ISO date or datetime as a day ordinal, or None if it is not one or is a placeholder
    (cached: dates repeat)."""
    known = _date_cache.get(text)
    if known is not None or text in _date_cache:
        return known
    day = _read_day(text)
    if day is not None and not _FIRST_DAY <= day <= _LAST_DAY:
        day = None
    if len(_date_cache) < 100_000:
        _date_cache[text] = day
    return day


def date_problem(text: str) -> str:
    """Why `text` is not a visit date (parse_day gave None)."""
    if _read_day(text) is not None:
        return PLACEHOLDER
    return "expected an ISO date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM)"


class _Lines:
    """The file's lines as the csv module reads them, keeping the current record's raw lines
    so that a record csv cannot read (a field over its limit) can still be named."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.record: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.record.append(line)
        return line


def _records(
    records: Iterator[list[str]], lines: _Lines, i_pid: int
) -> Iterator[tuple[int, list[str]] | Rejected]:
    """(line, cells) of each record; a record csv refuses is a rejected row, attributed to
    the patient its first line names, and reading goes on at the next line."""
    while True:
        lines.record.clear()
        try:
            cells = next(records)
        except StopIteration:
            return
        except csv.Error as error:
            raw = "".join(lines.record)
            first = next(csv.reader([raw[:4096].splitlines()[0] if raw else ""]), [])
            patient = first[i_pid].strip() if len(first) > i_pid else ""
            line = records.line_num - len(lines.record) + 1  # type: ignore[attr-defined]
            yield Rejected(line, patient, "(row)", raw.rstrip("\r\n"), _csv_problem(error))
            continue
        yield records.line_num, cells  # type: ignore[attr-defined]


def _csv_problem(error: csv.Error) -> str:
    if "field larger than field limit" in str(error):
        return f"a field longer than {csv.field_size_limit()} characters (an unclosed quote?)"
    return f"not a CSV row: {error}"


def _read_long(
    records: Iterator[tuple[int, list[str]] | Rejected], lowered: list[str], delimiter: str
) -> Iterator[Record]:
    where = {column: lowered.index(column) for column in LONG_COLUMNS if column in lowered}
    width = len(lowered)
    i_pid, i_date, i_name, i_value = (where[c] for c in LONG_COLUMNS[:4])
    i_unit = where.get("unit")
    i_drawn = lowered.index(DRAWN_ON) if DRAWN_ON in lowered else None
    known_names: dict[str, str | None] = {}
    for record in records:
        if isinstance(record, Rejected):
            yield record
            continue
        line, cells = record
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if len(cells) != width:
            patient = cells[i_pid].strip() if len(cells) > i_pid else ""
            reason = f"{len(cells)} fields, expected {width} ({','.join(lowered)})"
            yield Rejected(line, patient, "(row)", delimiter.join(cells), reason)
            continue
        patient = cells[i_pid].strip()
        raw_date = cells[i_date]
        day = parse_day(raw_date)
        if not patient:
            yield Rejected(line, "", "patient_id", "", "a patient_id is required")
            continue
        if day is None:
            yield Rejected(line, patient, "date", raw_date, date_problem(raw_date),
                           raw_date.strip(), cells[i_name].strip())  # fmt: skip
            continue
        raw_name = cells[i_name].strip()
        name = known_names.get(raw_name, "")
        if name == "":
            name = known_names[raw_name] = _name(raw_name)
        if name is None:
            yield Rejected(line, patient, "name", raw_name, _unknown_name(raw_name),
                           raw_date.strip(), raw_name)  # fmt: skip
            continue
        value = cells[i_value].strip()
        unit = cells[i_unit].strip() if i_unit is not None else ""
        drawn = None
        raw_drawn = cells[i_drawn].strip() if i_drawn is not None else ""
        if raw_drawn:
            drawn = parse_day(raw_drawn)
            problem = date_problem(raw_drawn) if drawn is None else None
            if drawn is not None and drawn > day:
                problem = f"drawn after the visit date ({dt.date.fromordinal(day)})"
            if problem is not None:
                yield Rejected(line, patient, DRAWN_ON, raw_drawn, problem)
                continue
        text = f"{value} {unit}" if unit else value
        yield patient, (Row(line, day, name, text, "value", None if drawn == day else drawn),)


def _wide_columns(
    header: list[str], lowered: list[str], source: str
) -> list[tuple[int, str, str, str]]:
    """The observation columns of a wide header: (index, name, unit, title) each."""
    i_pid, i_date = lowered.index("patient_id"), lowered.index("date")
    columns: list[tuple[int, str, str, str]] = []
    for index, title in enumerate(header):
        if index in (i_pid, i_date) or not title:
            continue
        match = _WIDE_HEADER.match(title)
        name = _name(match["name"]) if match else None
        if name is None:
            raise TimelineError(
                f"{source}:1: column '{title}' is not a known observation; {_unknown_name(title)}"
            )
        unit = (match["unit"] or "").strip() if match else ""
        columns.append((index, name, unit, title))
    return columns


def _read_wide(
    records: Iterator[tuple[int, list[str]] | Rejected],
    header: list[str],
    lowered: list[str],
    delimiter: str,
    columns: list[tuple[int, str, str, str]],
) -> Iterator[Record]:
    i_pid, i_date = lowered.index("patient_id"), lowered.index("date")
    width = len(header)
    for record in records:
        if isinstance(record, Rejected):
            yield record
            continue
        line, cells = record
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        patient = cells[i_pid].strip() if len(cells) > i_pid else ""
        if len(cells) != width:
            reason = f"{len(cells)} fields, expected {width} ({','.join(header)})"
            yield Rejected(line, patient, "(row)", delimiter.join(cells), reason)
            continue
        day = parse_day(cells[i_date])
        if not patient or day is None:
            column, value = ("patient_id", "") if not patient else ("date", cells[i_date])
            reason = "a patient_id is required" if not patient else date_problem(cells[i_date])
            yield Rejected(line, patient, column, value, reason, cells[i_date].strip())
            continue
        found = []
        for index, name, unit, title in columns:
            value = cells[index].strip()
            if value:
                found.append(Row(line, day, name, f"{value} {unit}" if unit else value, title))
        yield patient, tuple(found)


def _name(raw: str) -> str | None:
    if raw in START_NAMES:
        return raw
    try:
        return observable(raw).name
    except DosingError:
        return None


def _unknown_name(raw: str) -> str:
    try:
        observable(raw)
    except DosingError as error:
        return str(error).replace(f"unknown observation '{raw}'", "not a known observation", 1)
    return "not a known observation"
