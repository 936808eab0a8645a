"""Course tables (a replay per patient, a stored history) that read at any terminal width.

On a terminal a table fits the width without breaking a word: dates and other short cells
never wrap, empty columns are left out, long rule ids are replaced by a short code explained
under the table, and when even that does not fit, each row is stacked over two lines. Long
texts (warnings, labs, an override's reason) go under the table or under their row, wrapped
between words. Without a terminal (a pipe, a file) a table is plain text, one row per line,
the same whatever the width.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import attrs
from rich.cells import cell_len
from rich.console import Group
from rich.text import Text

GAP = "  "
"""Between two columns."""

_ACTION_STYLE = {
    "start": "green",
    "continue": "green",
    "increase": "yellow",
    "decrease": "yellow",
    "resume": "green",
    "hold": "bold red",
    "discontinue": "bold red",
    "ineligible": "bold red",
    "refer": "magenta",
}


def rule_cell(rule_ids: Sequence[str], state: str, action: str) -> str:
    """The rules of a decision for a table: '-' when none fired and the patient stays (the
    record's 'dose_400:continue' repeats the state and action columns)."""
    return ", ".join("-" if rule == f"{state}:{action}" else rule for rule in rule_ids)


@attrs.frozen
class Row:
    """One row: its short cells, and longer texts that go under it or under the table."""

    cells: tuple[str, ...]
    details: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Named lists shown under the row on a terminal ('labs: anc 1.2 x10^9/L, ...'), in
    columns of their own when plain."""
    notes: tuple[str, ...] = ()
    """Warnings: numbered footnotes under the table on a terminal."""


@attrs.frozen
class CourseTable:
    """A titled table whose columns are short values, one row per visit."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[Row, ...]
    coded: str | None = None
    """The column whose long values may be replaced by a code and a legend (the rule)."""
    detail_headers: tuple[str, ...] = ()
    """The names of the rows' details, in the order of the plain form's columns."""
    notes_header: str = "warnings"


def plain(table: CourseTable) -> str:
    """One line per row, columns aligned, empty ones left out; details and notes as the
    last columns. No colour, no wrapping: the same at any width."""
    headers = [*table.headers, *table.detail_headers, table.notes_header]
    rows = []
    for row in table.rows:
        details = dict(row.details)
        extra = [", ".join(details.get(name, ())) for name in table.detail_headers]
        rows.append([*row.cells, *extra, " | ".join(row.notes)])
    headers, rows = _without_empty(headers, rows)
    lines = [table.title, *_aligned(headers, rows)]
    return "\n".join(line.rstrip() for line in lines) + "\n\n"


def for_terminal(table: CourseTable, width: int) -> Group:
    """The table drawn within `width` columns, words whole (see the module's docstring)."""
    headers, cells = _without_empty(list(table.headers), [list(r.cells) for r in table.rows])
    numbers = _footnotes(table.rows)
    if any(numbers.values()):
        headers.append("!")
        for row, line in zip(table.rows, cells, strict=True):
            line.append(",".join(str(numbers[note]) for note in row.notes))
    legend: list[tuple[str, str]] = []
    if _width(headers, cells) > width and table.coded in headers:
        coded, legend = _coded(headers, cells, headers.index(table.coded), width)
        if _width(headers, coded) <= width:
            cells = coded
        else:
            legend = []  # stacked: every value in full
    out: list[Text] = [Text(table.title, style="bold")] if table.title else []
    if _width(headers, cells) <= width:
        out += _table_lines(headers, cells, table.rows, width)
    else:
        out += _stacked(headers, cells, table.rows, width)
    if legend:
        items = [f"{code} {full}" for code, full in legend]
        out += [Text(line, style="dim") for line in wrap_items(f"{table.coded}s: ", items, width)]
    for note, number in numbers.items():
        out += [Text(line, style="yellow") for line in _hanging(f"{number:>2}. ", note, width)]
    return Group(*out)


def wrap_items(prefix: str, items: Sequence[str], width: int, separator: str = " · ") -> list[str]:
    """Items on lines of at most `width`, broken only between items (an item wider than a
    line is wrapped between its words); lines after the first are indented under the first
    item."""
    indent = " " * cell_len(prefix)
    lines: list[str] = []
    current, empty = prefix, True
    trailing = cell_len(separator.rstrip(" ·"))  # a comma left at the end of a broken line
    for item in items:
        candidate = current + ("" if empty else separator) + item
        if empty or cell_len(candidate) + trailing <= width:
            current, empty = candidate, False
        else:  # a comma stays at the end of the line it follows; a dot is dropped
            lines.append((current + separator.rstrip(" ·")).rstrip())
            current = indent + item
    lines.append(current.rstrip())
    out: list[str] = []
    for line in lines:
        if cell_len(line) <= width:
            out.append(line)
        else:  # one item wider than the line: between its words
            out += textwrap.wrap(
                line, width, subsequent_indent=indent, break_long_words=False,
                break_on_hyphens=False,
            )  # fmt: skip
    return out


def _hanging(prefix: str, text: str, width: int) -> list[str]:
    return textwrap.wrap(
        prefix + text, width, subsequent_indent=" " * len(prefix), break_long_words=False,
        break_on_hyphens=False,
    ) or [prefix]  # fmt: skip


def _without_empty(headers: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    keep = [i for i in range(len(headers)) if any(row[i].strip() for row in rows)] if rows else []
    if not rows:
        keep = list(range(len(headers)))
    return [headers[i] for i in keep], [[row[i] for i in keep] for row in rows]


def _widths(headers: list[str], rows: list[list[str]]) -> list[int]:
    return [
        max([cell_len(header), *(cell_len(row[i]) for row in rows)])
        for i, header in enumerate(headers)
    ]


def _width(headers: list[str], rows: list[list[str]]) -> int:
    widths = _widths(headers, rows)
    return sum(widths) + len(GAP) * (len(widths) - 1)


def _aligned(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = _widths(headers, rows)
    return [
        GAP.join(
            cell + " " * (width - cell_len(cell)) for cell, width in zip(line, widths, strict=True)
        )
        for line in [headers, *rows]
    ]


def _footnotes(rows: Sequence[Row]) -> dict[str, int]:
    """Each distinct warning once, numbered in the order it first appears."""
    numbers: dict[str, int] = {}
    for row in rows:
        for note in row.notes:
            numbers.setdefault(note, len(numbers) + 1)
    return numbers


def _coded(
    headers: list[str], rows: list[list[str]], column: int, width: int
) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """Values of `column` longer than the room left replaced by R1, R2, ... (first seen,
    first numbered); returns the rows and the legend."""
    others = [w for i, w in enumerate(_widths(headers, rows)) if i != column]
    room = max(width - sum(others) - len(GAP) * (len(headers) - 1), cell_len(headers[column]), 3)
    codes: dict[str, str] = {}
    coded = []
    for row in rows:
        value = row[column]
        if cell_len(value) > room:
            value = codes.setdefault(value, f"R{len(codes) + 1}")
        coded.append([*row[:column], value, *row[column + 1 :]])
    return coded, [(code, full) for full, code in codes.items()]


def _styled(header: str, cell: str) -> Text:
    return Text(cell, style=_ACTION_STYLE.get(cell, "") if header == "action" else "")


def _table_lines(
    headers: list[str], cells: list[list[str]], rows: Sequence[Row], width: int
) -> list[Text]:
    widths = _widths(headers, cells)
    out = [Text(GAP.join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
                style="bold")]  # fmt: skip
    out.append(Text(GAP.join("─" * w for w in widths), style="dim"))
    indent = " " * (widths[0] + len(GAP))
    for row, line in zip(rows, cells, strict=True):
        text = Text()
        for i, (header, cell) in enumerate(zip(headers, line, strict=True)):
            if i:
                text.append(GAP)
            text.append_text(_styled(header, cell))
            text.append(" " * (widths[i] - cell_len(cell)))
        text.rstrip()
        out.append(text)
        out += _details(indent, row, width)
    return out


def _details(indent: str, row: Row, width: int) -> list[Text]:
    """'labs: anc 1.2 x10^9/L, platelets 180 x10^9/L' wrapped between its items."""
    return [
        Text(line, style="dim")
        for label, items in row.details
        for line in wrap_items(f"{indent}{label}: ", items, width, separator=", ")
    ]


def _stacked(
    headers: list[str], cells: list[list[str]], rows: Sequence[Row], width: int
) -> list[Text]:
    """Each row over two lines: the first cell (the date), action and dose; then the other
    cells by name."""
    first = [headers[0]]
    first += [h for h in ("action", "dose", "dose advised", "next due") if h in headers[1:]]
    out: list[Text] = []
    for row, line in zip(rows, cells, strict=True):
        values = dict(zip(headers, line, strict=True))
        head = Text()
        for i, header in enumerate(first):
            if values[header]:
                head.append(GAP if i else "")
                head.append("next due " if header == "next due" else "")
                head.append_text(_styled(header, values[header]))
        out.append(head)
        rest = [
            f"{'warnings' if h == '!' else h} {values[h]}"
            for h in headers
            if h not in first and values[h]
        ]
        out += [Text(piece) for piece in wrap_items("  ", rest, width)]
        out += _details("  ", row, width)
    return out
