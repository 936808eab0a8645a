"""Big timelines in and decisions out: Parquet (the `parquet` extra, pyarrow) and JSON lines
compressed with gzip or zstd (zstd: the `parquet` extra's zstandard).

A Parquet timeline has the columns a CSV one has (long: patient_id, date, name, value, unit;
or wide: patient_id, date and a column per observation with its unit in the name). It is read
as the CSV text it stands for, one row per line, so that every rule of the CSV reader (units,
dates, rejected rows and their line numbers: the header is line 1) holds for it unchanged.
Values must stay exact: text, integer and decimal columns are read as written; a column of
floating-point numbers (float32/float64) is refused, because 0.1 stored as a double is not
0.1. Dates are read as dates; a timestamp is refused (a lab's date, not an instant).

Written output replaces its file only when complete, as every other output does.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from dosing.core.errors import DosingError, TimelineError

PARQUET_EXTRA = "pip install 'dosing[parquet]'"
_BATCH_ROWS = 65_536


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        raise DosingError(f"Parquet needs the parquet extra: {PARQUET_EXTRA}") from None
    return pyarrow


def cell_text(value: object) -> str:
    """A Parquet value as the text a CSV would hold."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def parquet_lines(path: Path) -> Iterator[str]:
    """The Parquet file's rows as CSV lines, header first. Raises TimelineError for a file
    that is not Parquet or a column whose values would not be exact."""
    pa = _pyarrow()
    try:
        parquet = pa.parquet.ParquetFile(path)
    except FileNotFoundError:
        raise TimelineError(f"no timeline file {path}") from None
    except (OSError, pa.ArrowException) as error:
        raise TimelineError(f"{path}: not a Parquet file that can be read ({error})") from None
    schema = parquet.schema_arrow
    for field in schema:
        kind = field.type
        if pa.types.is_floating(kind):
            raise TimelineError(
                f"{path}: column {field.name} holds floating-point numbers ({kind}), which are "
                "not exact (0.1 is stored as 0.1000000000000000055...); write its values as "
                "text or decimals"
            )
        if pa.types.is_timestamp(kind) or pa.types.is_time(kind):
            raise TimelineError(
                f"{path}: column {field.name} holds times ({kind}); dates are read as dates "
                "or as text YYYY-MM-DD"
            )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(schema.names)
    yield buffer.getvalue()
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
        columns = [column.to_pylist() for column in batch.columns]
        for row in zip(*columns, strict=True):
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([cell_text(value) for value in row])
            yield buffer.getvalue()


@contextlib.contextmanager
def _atomic_binary(path: Path) -> Iterator[IO[bytes]]:
    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def compression(path: Path | None) -> str | None:
    """'gzip' or 'zstd' for an output named .gz or .zst; None otherwise."""
    if path is None:
        return None
    return {".gz": "gzip", ".zst": "zstd"}.get(path.suffix.lower())


@contextlib.contextmanager
def compressed_text(path: Path, kind: str) -> Iterator[IO[str]]:
    """A text stream written compressed (gzip or zstd) to `path`, atomically."""
    with _atomic_binary(path) as raw:
        if kind == "gzip":
            import gzip

            # mtime 0: the same decisions give the same bytes
            with (
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed,
                io.TextIOWrapper(packed, encoding="utf-8", newline="") as text,
            ):
                yield text
            return
        try:
            import zstandard
        except ImportError:
            raise DosingError(f"zstd needs the parquet extra: {PARQUET_EXTRA}") from None
        with (
            zstandard.ZstdCompressor().stream_writer(raw, closefd=False) as zstd,
            io.TextIOWrapper(zstd, encoding="utf-8", newline="") as text,
        ):
            yield text


class ParquetDecisions:
    """Decision rows (the CSV output's columns, as text) written to a Parquet file in row
    groups, replacing the file only when complete."""

    def __init__(self, path: Path, fields: Iterable[str]) -> None:
        self.pa = _pyarrow()
        self.path = path
        self.fields = list(fields)
        self.schema = self.pa.schema([(name, self.pa.string()) for name in self.fields])
        self.rows: list[list[str]] = []
        self._stack = contextlib.ExitStack()
        stream = self._stack.enter_context(_atomic_binary(path))
        self.writer = self.pa.parquet.ParquetWriter(stream, self.schema)

    def write(self, rows: Iterable[list[str]]) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= _BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            columns = list(zip(*self.rows, strict=True))
            arrays = [self.pa.array(column, type=self.pa.string()) for column in columns]
            self.writer.write_table(self.pa.Table.from_arrays(arrays, schema=self.schema))
            self.rows = []

    def close(self, failed: bool) -> None:
        """Finish the file, or leave nothing when the replay failed."""
        try:
            if not failed:
                self._flush()
            self.writer.close()
        finally:
            if failed:
                self._stack.__exit__(DosingError, DosingError("replay failed"), None)
            else:
                self._stack.close()
