"""Run work over chunks of images with joblib, in order, with an optional progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from functools import cache
from typing import Any

from joblib import Parallel, delayed
from threadpoolctl import ThreadpoolController
from tqdm.auto import tqdm


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
    which keeps outputs identical for any ``n_jobs``.
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
    results = Parallel(n_jobs=n_jobs, return_as="generator")(tasks)
    with tqdm(total=len(images), desc=description, unit="img", disable=not verbose) as bar:
        for start, result in zip(starts, results, strict=True):
            bar.update(min(chunk_size, len(images) - start))
            yield result
