"""Replaying a timeline on several processes (`dosing replay --jobs N`).

The patients are cut, in the order they first appear, into chunks of consecutive patients;
worker processes replay whole chunks (a patient is never split), and the chunks come back in
order, so the output is the same, byte for byte, as with one process. The workers are forked
from the process that read the timeline and loaded the protocol, so neither is sent to them:
each receives a chunk's number and returns its patients' replays.

A streamed timeline (`replay_streamed`) is not held by the parent: its chunks are sent to the
workers as they are read, a bounded number at a time, so that memory does not grow with the
file.

One process is used when it is asked for, when the timeline has too few patients for the
start-up of the workers to pay (`MIN_PATIENTS`), or where processes cannot be forked
(Windows).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from multiprocessing.pool import AsyncResult

import attrs

from dosing.protocol.model import Protocol
from dosing.replay.replay import (
    PatientReplay,
    StartPoint,
    first_bad_lines,
    replay,
    replay_patient,
)
from dosing.replay.streaming import PatientRows
from dosing.replay.timeline import Timeline

MIN_PATIENTS = 64
"""Below this many patients a timeline is replayed in one process."""
CHUNK_PATIENTS = 16
"""Patients per chunk: small enough to keep every worker busy to the end, large enough that
sending the results back costs little."""
IN_FLIGHT = 2
"""Chunks of a streamed timeline sent ahead per worker: enough to keep each one busy while
the parent reads the next, few enough to keep memory flat."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@attrs.frozen
class _Work:
    protocol: Protocol
    timeline: Timeline
    start: StartPoint
    accept_implausible: bool
    keep_values: bool
    chunks: list[list[str]]
    first_bad: dict[str, int]


_work: _Work | None = None
"""Set in the parent just before the workers are forked; each worker inherits it."""


def _replay_chunk(index: int) -> list[PatientReplay]:
    work = _work
    assert work is not None
    return [
        replay_patient(
            work.protocol,
            patient_id,
            work.timeline.patients[patient_id],
            work.start,
            work.accept_implausible,
            work.first_bad.get(patient_id),
            work.keep_values,
        )
        for patient_id in work.chunks[index]
    ]


def replay_in_processes(
    protocol: Protocol,
    timeline: Timeline,
    start: StartPoint,
    accept_implausible: bool,
    keep_values: bool,
    jobs: int,
) -> Iterator[PatientReplay]:
    """Every patient's replay, in the order of `replay`, on up to `jobs` processes."""
    ids = list(timeline.patients)
    if (
        jobs <= 1
        or len(ids) < MIN_PATIENTS
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        yield from replay(protocol, timeline, start, accept_implausible, keep_values)
        return
    global _work
    chunks = [ids[i : i + CHUNK_PATIENTS] for i in range(0, len(ids), CHUNK_PATIENTS)]
    _work = _Work(protocol, timeline, start, accept_implausible, keep_values, chunks,
                  first_bad_lines(timeline))  # fmt: skip
    try:
        with multiprocessing.get_context("fork").Pool(min(jobs, len(chunks))) as pool:
            for patients in pool.imap(_replay_chunk, range(len(chunks))):
                yield from patients
    finally:
        _work = None


@attrs.frozen
class _Settings:
    protocol: Protocol
    start: StartPoint
    accept_implausible: bool
    keep_values: bool


_settings: _Settings | None = None
"""Set in the parent just before the workers of a streamed replay are forked."""


def _replay_rows(chunk: list[PatientRows]) -> list[PatientReplay]:
    settings = _settings
    assert settings is not None
    return [
        replay_patient(settings.protocol, patient.patient_id, patient.rows, settings.start,
                       settings.accept_implausible, patient.stop_line, settings.keep_values)
        for patient in chunk
    ]  # fmt: skip


def replay_streamed(
    protocol: Protocol,
    patients: Iterable[PatientRows],
    start: StartPoint,
    accept_implausible: bool,
    keep_values: bool,
    jobs: int,
    expected: int,
) -> Generator[PatientReplay, None, None]:
    """Each streamed patient's replay, in the order given, on up to `jobs` processes; one
    process below `expected` = MIN_PATIENTS patients. The parent reads; at most IN_FLIGHT
    chunks per worker wait to be replayed or written. (Pool.imap would read its input to the
    end ahead of the workers, on a thread of its own: the whole file in memory again.)"""
    if (
        jobs <= 1
        or expected < MIN_PATIENTS
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        yield from replay_here(protocol, patients, start, accept_implausible, keep_values)
        return
    global _settings
    _settings = _Settings(protocol, start, accept_implausible, keep_values)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            waiting: deque[AsyncResult[list[PatientReplay]]] = deque()
            for chunk in _chunks(patients, CHUNK_PATIENTS):
                waiting.append(pool.apply_async(_replay_rows, (chunk,)))
                if len(waiting) >= IN_FLIGHT * jobs:
                    yield from waiting.popleft().get()
            while waiting:
                yield from waiting.popleft().get()
    finally:
        _settings = None


def _chunks(patients: Iterable[PatientRows], size: int) -> Iterator[list[PatientRows]]:
    remaining = iter(patients)
    while chunk := list(itertools.islice(remaining, size)):
        yield chunk


def replay_here(
    protocol: Protocol,
    patients: Iterable[PatientRows],
    start: StartPoint,
    accept_implausible: bool,
    keep_values: bool,
) -> Iterator[PatientReplay]:
    """Each streamed patient's replay in this process."""
    for patient in patients:
        yield replay_patient(
            protocol, patient.patient_id, patient.rows, start, accept_implausible,
            patient.stop_line, keep_values,
        )  # fmt: skip
