"""Batching: requests that arrive together are worked on in one call, off the event loop.

A request submits a job of some kind (``"search"``, ``"add"``, ...) and awaits
its result. One collector takes the first waiting job, then every job that
arrives within ``window`` seconds (up to ``max_batch``), and hands each kind's
jobs to a worker thread as one batch: 16 photos are embedded by one network
call, not 16. The event loop only parses requests and writes answers, so it
stays responsive while the cores embed. A bounded backlog refuses work
(:class:`Overloaded`, answered 503 with ``Retry-After``) instead of letting
latency grow without bound.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

RunBatch = Callable[[Hashable, list[Any]], Sequence[Any]]
"""``run(kind, payloads)``: one result per payload, in order; an exception fails its job alone."""


class Overloaded(Exception):
    """The backlog is full; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Job:
    kind: Hashable
    payload: Any
    result: asyncio.Future = field(repr=False)


class Batcher:
    """Collect jobs into batches and run them in worker threads.

    Parameters
    ----------
    run : callable
        ``run(kind, payloads) -> results``, called in a worker thread with
        the payloads of one batch of one kind. A result that is an exception
        is raised to that job's caller; an exception raised by ``run`` fails
        the whole batch.
    exclusive : callable
        ``exclusive(kind)``: whether batches of this kind change shared state
        and so must run alone; the others run side by side.
    window : float
        Seconds to wait for more jobs after the first of a batch.
    max_batch : int
        Most jobs in one batch.
    max_pending : int
        Most jobs waiting for a batch; :meth:`submit` raises
        :class:`Overloaded` beyond.
    workers : int
        Batches run at the same time.
    on_batch : callable or None
        ``on_batch(kind, size, seconds)`` after each batch (for metrics).

    Examples
    --------
    >>> import asyncio
    >>> async def demo():
    ...     batcher = Batcher(lambda kind, xs: [x * x for x in xs], exclusive=lambda kind: False)
    ...     async with batcher.running():
    ...         return await asyncio.gather(*(batcher.submit("square", x) for x in range(4)))
    >>> asyncio.run(demo())
    [0, 1, 4, 9]
    """

    def __init__(
        self,
        run: RunBatch,
        *,
        exclusive: Callable[[Hashable], bool],
        window: float = 0.005,
        max_batch: int = 32,
        max_pending: int = 64,
        workers: int = 1,
        on_batch: Callable[[Hashable, int, float], None] | None = None,
    ) -> None:
        self.run = run
        self.exclusive = exclusive
        self.window = window
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.workers = workers
        self.on_batch = on_batch
        self._recent_seconds = 0.0

    @property
    def pending(self) -> int:
        """Jobs waiting for a batch."""
        return self._queue.qsize() if hasattr(self, "_queue") else 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Batcher]:
        """Start the collector and the worker threads; on exit, finish what was taken."""
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=self.max_pending)
        self._free_workers = asyncio.Semaphore(self.workers)
        self._access = _ReadWriteLock()
        self._tasks: set[asyncio.Task] = set()
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix="fusionrec-batch")
        self._executor = executor
        collector = asyncio.create_task(self._collect())
        try:
            yield self
        finally:
            collector.cancel()
            await asyncio.gather(collector, *self._tasks, return_exceptions=True)
            executor.shutdown(wait=True)

    async def submit(self, kind: Hashable, payload: Any) -> Any:
        """Queue one job and wait for its result.

        Raises
        ------
        Overloaded
            If ``max_pending`` jobs are already waiting.
        """
        job = _Job(kind, payload, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(self._retry_after()) from None
        return await job.result

    def _retry_after(self) -> int:
        """Whole seconds until the backlog has probably been worked through."""
        batches_ahead = math.ceil(self.max_pending / (self.max_batch * self.workers))
        return max(1, math.ceil(batches_ahead * self._recent_seconds))

    async def _collect(self) -> None:
        while True:
            await self._free_workers.acquire()
            jobs = await self._next_batch()
            task = asyncio.create_task(self._run_batches(jobs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _next_batch(self) -> list[_Job]:
        """The first waiting job and those that come within the window, up to ``max_batch``."""
        jobs = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while len(jobs) < self.max_batch:
            if not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return jobs

    async def _run_batches(self, jobs: list[_Job]) -> None:
        try:
            for kind, same_kind in _by_kind(jobs).items():
                lock = self._access.writing() if self.exclusive(kind) else self._access.reading()
                async with lock:
                    await self._run_batch(kind, same_kind)
        finally:
            self._free_workers.release()

    async def _run_batch(self, kind: Hashable, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            results = await loop.run_in_executor(
                self._executor, self.run, kind, [job.payload for job in jobs]
            )
        except Exception as error:
            results = [error] * len(jobs)
        self._recent_seconds = loop.time() - started
        if self.on_batch is not None:
            self.on_batch(kind, len(jobs), self._recent_seconds)
        for job, result in zip(jobs, results, strict=True):
            if job.result.done():  # the client went away
                continue
            if isinstance(result, BaseException):
                job.result.set_exception(result)
            else:
                job.result.set_result(result)


def _by_kind(jobs: list[_Job]) -> dict[Hashable, list[_Job]]:
    """The jobs grouped by kind, kinds in the order of their first job."""
    groups: dict[Hashable, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.kind, []).append(job)
    return groups


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer goes before new readers."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            async with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        async with self._changed:
            self._writers_waiting += 1
            await self._changed.wait_for(lambda: not self._writing and self._readers == 0)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            async with self._changed:
                self._writing = False
                self._changed.notify_all()
