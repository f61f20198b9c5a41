"""Run work over chunks of images with joblib, in order, with an optional progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from joblib import Parallel, delayed
from tqdm.auto import tqdm


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
