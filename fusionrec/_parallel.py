"""Run work over chunks of images with joblib, in order, with an optional progress bar.

Whatever joblib backend the caller activates (``joblib.parallel_backend("dask")``,
Ray's ``"ray"``) runs the chunks. Fitted state that every chunk needs travels
as :class:`Shipped`: pickled once on the driver, rebuilt once per worker
process.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from itertools import islice
from typing import Any

import cv2
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import BACKENDS, get_active_backend
from threadpoolctl import ThreadpoolController
from tqdm.auto import tqdm

_LOCAL_BACKENDS = tuple(
    BACKENDS[name] for name in ("loky", "multiprocessing", "threading", "sequential")
)
"""joblib's own backends, which run on this machine; Ray's subclasses one of them."""

WAVES_PER_WORKER = 2
"""Chunks per worker in each wave, where a backend cannot stream results back."""

RECEIVED_AT_ONCE = 4
"""Shipped values a worker process keeps rebuilt: the latest few, never every one it saw."""

_received: OrderedDict[str, Any] = OrderedDict()
_NOT_YET = object()


@cache
def _thread_pools() -> ThreadpoolController:
    """One controller per process: building one scans the loaded libraries (about 3 ms)."""
    return ThreadpoolController()


def single_threaded_blas() -> AbstractContextManager:
    """Hold BLAS to one thread for many small products.

    On two cores, idle OpenBLAS threads spinning beside other busy threads
    (OpenCV, ONNX Runtime, another process) slowed SIFT by half and a small
    logistic regression thirtyfold in measurement; one thread avoids both.
    """
    return _thread_pools().limit(limits=1, user_api="blas")


@contextmanager
def opencv_threads(n_threads: int | None) -> Iterator[None]:
    """Hold OpenCV to ``n_threads`` (``None``: leave it as it is) while workers use the cores."""
    if n_threads is None:
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(n_threads)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


@contextmanager
def single_threaded_native() -> Iterator[None]:
    """Hold BLAS, OpenMP and OpenCV to one thread, as a task on a cluster's worker does.

    A worker runs as many tasks at once as it has threads, so each task
    keeps to one; a branch caps its own other libraries (torch, ONNX
    Runtime) as well.
    """
    with _thread_pools().limit(limits=1), opencv_threads(1):
        yield


def runs_elsewhere() -> bool:
    """Whether the active joblib backend sends tasks to a cluster's workers.

    True inside ``joblib.parallel_backend("dask")``, Ray's ``"ray"`` or any
    other backend registered with joblib; false for joblib's own backends
    (``"loky"``, the default, ``"multiprocessing"``, ``"threading"``,
    ``"sequential"``), which stay on this machine. Work that is fastest in
    one process (a CNN fed by decoding threads) goes to joblib's workers
    only when this is true. ``joblib.parallel.get_active_backend`` tells
    which backend ``joblib.parallel_config`` activated (its nested backend
    inside a worker's task).
    """
    backend, _ = get_active_backend()
    return type(backend) not in _LOCAL_BACKENDS


class Shipped:
    """A value that every chunk needs, sent to each worker process once.

    The value is pickled at most once on the driver, however many tasks
    carry it; a worker process unpickles it once and keeps it (the latest
    :data:`RECEIVED_AT_ONCE` of them) for the later tasks that carry the same
    bytes. Within one process no pickling happens at all. Its size is that
    of its bytes, so joblib's Dask backend sends it to the cluster once
    (``client.scatter``) rather than with each task.

    Examples
    --------
    >>> import pickle
    >>> shipped = Shipped({"words": [1, 2, 3]})
    >>> pickle.loads(pickle.dumps(shipped)).get()
    {'words': [1, 2, 3]}
    """

    def __init__(self, value: Any) -> None:
        self._value = value
        self._payload: bytes | None = None
        self._key: str | None = None

    def get(self) -> Any:
        """The value, rebuilt from its bytes on the first call in a worker process."""
        if self._value is _NOT_YET:
            self._value = _received.pop(self._key, _NOT_YET)
            if self._value is _NOT_YET:
                self._value = pickle.loads(self._payload)
            _received[self._key] = self._value
            while len(_received) > RECEIVED_AT_ONCE:
                _received.popitem(last=False)
        return self._value

    def _pickled(self) -> tuple[str, bytes]:
        if self._payload is None:
            self._payload = pickle.dumps(self._value, protocol=pickle.HIGHEST_PROTOCOL)
            self._key = hashlib.sha1(self._payload).hexdigest()
        return self._key, self._payload

    def __getstate__(self) -> dict:
        key, payload = self._pickled()
        return {"key": key, "payload": payload}

    def __setstate__(self, state: dict) -> None:
        self._value = _NOT_YET
        self._key, self._payload = state["key"], state["payload"]

    def __sizeof__(self) -> int:
        return sys.getsizeof(self._pickled()[1])


def chunk_size_for_workers(n_items: int, unit: int, max_units: int) -> int:
    """Items per task: whole units, at most ``max_units`` of them, and a task for each worker.

    The workers are those of the active joblib backend, so that a few
    photos on a cluster still keep all its workers busy.

    Examples
    --------
    >>> from joblib import parallel_config
    >>> chunk_size_for_workers(1000, unit=32, max_units=4)
    128
    >>> with parallel_config(n_jobs=4):
    ...     chunk_size_for_workers(100, unit=32, max_units=4)
    32
    """
    units = math.ceil(n_items / unit)
    per_worker = math.ceil(units / effective_n_jobs(None))
    return unit * min(max_units, max(1, per_worker))


def map_chunks(
    function: Callable[..., Any],
    images: Sequence,
    *,
    chunk_size: int,
    n_jobs: int | None,
    verbose: int = 0,
    description: str = "",
    **kwargs: Any,
) -> Iterator[Any]:
    """Yield ``function(chunk, start=..., **kwargs)`` for consecutive chunks of ``images``.

    Chunks go through :class:`joblib.Parallel`, so ``n_jobs`` and any joblib
    backend the caller activates (``joblib.parallel_backend("dask")``, say)
    apply. Results come back in input order whatever the number of workers,
    which keeps outputs identical for any ``n_jobs``. A backend that streams
    results (joblib's, Dask's) holds only the chunks in flight; one that
    cannot (Ray's) runs the chunks in waves of :data:`WAVES_PER_WORKER` per
    worker, in one pool, so that memory stays bounded there too.
    """
    starts = range(0, len(images), chunk_size)
    tasks = (
        delayed(function)(
            [images[i] for i in range(start, min(start + chunk_size, len(images)))],
            start=start,
            **kwargs,
        )
        for start in starts
    )
    streams = get_active_backend()[0].supports_return_generator
    with (
        Parallel(n_jobs=n_jobs, return_as="generator" if streams else "list") as parallel,
        tqdm(total=len(images), desc=description, unit="img", disable=not verbose) as bar,
    ):
        results = parallel(tasks) if streams else _in_waves(parallel, tasks, n_jobs)
        for start, result in zip(starts, results, strict=True):
            bar.update(min(chunk_size, len(images) - start))
            yield result


def _in_waves(parallel: Parallel, tasks: Iterator, n_jobs: int | None) -> Iterator[Any]:
    """Each task's result in order, a bounded wave of tasks at a time, in one worker pool."""
    wave = WAVES_PER_WORKER * effective_n_jobs(n_jobs)
    while chunk := list(islice(tasks, wave)):
        yield from parallel(chunk)
