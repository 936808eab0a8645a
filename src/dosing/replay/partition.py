"""An unsorted timeline partitioned by patient into files on disk, then given patient by patient.

Each accepted row goes to the bucket of its patient: the patient's rank in the order of first
accepted rows (the order `read_timeline` gives patients in), divided by the bucket size, so a
bucket holds consecutive patients of the replay's order. Rows wait in memory up to
`WAITING_ROWS`, then each bucket's batch is appended to its file, one file open at a time.
Refused rows stay in memory (they are all reported at the end anyway), with the first refused
line of each patient. Then the buckets are read back in order, one at a time, each removed once
read: a bucket's patients in the order they first came, each with its rows in file order, as
`read_timeline` holds them.

A batch is marshal data (length-prefixed) of str, int and None only: the rows were already
read by the row rules, and marshal reads them back about ten times faster than CSV or JSON
would. marshal, like pickle, must never read what another user could write: these files live
in a folder only this user can open (mode 0700, `tempfile.mkdtemp`), made for this run and
removed at its end, also on an error or Ctrl-C. The folder is in the system's temporary
folder; set TMPDIR to put it on a disk with room (about as much as the CSV file takes).
"""

from __future__ import annotations

import contextlib
import marshal
import shutil
import tempfile
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path

from dosing.replay.streaming import PatientRows, complete
from dosing.replay.timeline import Record, Rejected, Row, Timeline

WAITING_ROWS = 32_768
"""Rows held in memory before they are appended to their buckets' files (~7 MB)."""

_Batch = dict[str, list[tuple[object, ...]]]
"""Rows as stored: each patient's (a patient may have none: a wide row with no value still
makes a visit row, and so a patient), the patients in the order they came."""


@contextlib.contextmanager
def private_folder() -> Iterator[Path]:
    """A new temporary folder only this user can open, removed on leaving."""
    folder = Path(tempfile.mkdtemp(prefix="dosing-replay-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Buckets:
    """Bucket files in a folder: rows appended in batches, read back once each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.waiting: dict[int, dict[str, list[Row]]] = {}
        self.count = 0

    def add(self, bucket: int, patient: str, rows: tuple[Row, ...]) -> None:
        waiting = self.waiting.get(bucket)
        if waiting is None:
            waiting = self.waiting[bucket] = {}
        kept = waiting.get(patient)
        if kept is None:
            kept = waiting[patient] = []
        kept.extend(rows)
        self.count += len(rows) or 1
        if self.count >= WAITING_ROWS:
            self.write()

    def write(self) -> None:
        for bucket, waiting in self.waiting.items():
            batch: _Batch = {
                patient: [tuple(row) for row in rows] for patient, rows in waiting.items()
            }
            data = marshal.dumps(batch)
            with (self.folder / f"{bucket}.marshal").open("ab") as stream:
                stream.write(len(data).to_bytes(8, "little"))
                stream.write(data)
        self.waiting.clear()
        self.count = 0

    def read(self, bucket: int) -> Iterator[_Batch]:
        path = self.folder / f"{bucket}.marshal"
        with path.open("rb") as stream:
            while size := stream.read(8):
                batch: _Batch = marshal.loads(stream.read(int.from_bytes(size, "little")))
                yield batch
        path.unlink()


def partitioned_patients(
    records: Iterable[Record], tally: Timeline, folder: Path, bucket_patients: int
) -> Generator[PatientRows, None, None]:
    """Each patient of a timeline in any order, in the order of `read_timeline`, with the
    rows partitioned into `folder` on the way (`bucket_patients` patients a bucket)."""
    buckets = _Buckets(folder)
    rank: dict[str, int] = {}
    first_bad: dict[str, int] = {}
    for record in records:
        tally.rows += 1
        if isinstance(record, Rejected):
            tally.rejected.append(record)
            patient, line = record.patient_id, record.line
            if patient and line < first_bad.get(patient, line + 1):
                first_bad[patient] = line
            continue
        patient, rows = record
        number = rank.get(patient)
        if number is None:
            number = rank[patient] = len(rank)
        tally.observations += len(rows)
        buckets.add(number // bucket_patients, patient, rows)
    buckets.write()
    count = -(-len(rank) // bucket_patients)
    del rank
    for bucket in range(count):
        patients: dict[str, list[Row]] = {}
        for batch in buckets.read(bucket):
            for patient, stored in batch.items():
                known = patients.get(patient)
                if known is None:
                    known = patients[patient] = []
                known.extend(map(Row._make, stored))
        for patient in list(patients):
            yield complete(patient, patients.pop(patient), first_bad.get(patient), tally)
