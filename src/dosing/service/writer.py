"""The service's writes to the patient store, on a thread of their own.

A card is answered only once it is committed (its feedback must find it), and a commit waits
for the disk (an fsync, milliseconds). On the event loop that wait would stall every call;
here it happens on a writer thread with its own connection, and the cards decided meanwhile
are committed together in one transaction (group commit): 16 calls at once cost one fsync,
not 16. Feedback, rarer, is written on the same thread, one transaction each.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from dosing.clinic.store import Store
from dosing.service.feedback import PendingVisit, save_cards

T = TypeVar("T")


@attrs.frozen
class _Card:
    card_uuid: str
    service: str
    hook_instance: str
    pending: PendingVisit


@attrs.frozen
class _Job:
    work: _Card | Callable[[Store], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class StoreWriter:
    """Runs writes on one thread with its own Store; use as an async context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="dosing-store-writer", daemon=True)
        self.opened = threading.Event()
        self.failure: BaseException | None = None

    async def __aenter__(self) -> StoreWriter:
        self.thread.start()
        await asyncio.get_running_loop().run_in_executor(None, self.opened.wait)
        if self.failure is not None:
            raise self.failure
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.jobs.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self.thread.join)

    async def save_card(
        self, card_uuid: str, service: str, hook_instance: str, pending: PendingVisit
    ) -> None:
        """Keep a card; returns once it is committed (with the others of its batch)."""
        await self._submit(_Card(card_uuid, service, hook_instance, pending))

    async def call(self, work: Callable[[Store], T]) -> T:
        """Run `work` with the writer's store, alone; its result or its exception."""
        result: T = await self._submit(work)
        return result

    async def _submit(self, work: _Card | Callable[[Store], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.jobs.put(_Job(work, loop, future))
        return await future

    def _run(self) -> None:
        try:
            store = Store(self.path)
        except BaseException as error:
            self.failure = error
            self.opened.set()
            return
        self.opened.set()
        with store:
            while True:
                batch = [self.jobs.get()]
                while batch[-1] is not None:
                    try:
                        batch.append(self.jobs.get_nowait())
                    except queue.Empty:
                        break
                jobs = [job for job in batch if job is not None]
                self._cards(store, [job for job in jobs if isinstance(job.work, _Card)])
                for job in jobs:
                    if not isinstance(job.work, _Card):
                        self._alone(store, job)
                if batch[-1] is None:
                    return

    @staticmethod
    def _cards(store: Store, jobs: list[_Job]) -> None:
        if not jobs:
            return
        error: BaseException | None = None
        cards = [job.work for job in jobs if isinstance(job.work, _Card)]
        try:
            save_cards(store, [(c.card_uuid, c.service, c.hook_instance, c.pending) for c in cards])
        except Exception as failure:
            error = failure
        for job in jobs:
            job.loop.call_soon_threadsafe(_settle, job.future, None, error)

    @staticmethod
    def _alone(store: Store, job: _Job) -> None:
        assert not isinstance(job.work, _Card)
        result, error = None, None
        try:
            result = job.work(store)
        except Exception as failure:
            error = failure
        job.loop.call_soon_threadsafe(_settle, job.future, result, error)
