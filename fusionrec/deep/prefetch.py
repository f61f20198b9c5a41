"""Prepare batches in background threads, a few ahead of the network that consumes them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import TypeVar

Result = TypeVar("Result")


def prefetched(
    pool: Executor, tasks: Iterable[Callable[[], Result]], ahead: int
) -> Iterator[Result]:
    """Yield each task's result in order, running up to ``ahead`` later tasks meanwhile.

    Embedding and fine-tuning both decode and prepare photos this way: while
    the network works on one batch, ``pool`` prepares the next ones, and at
    most ``ahead + 1`` prepared batches are held at once.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(2) as pool:
    ...     list(prefetched(pool, [lambda i=i: i * i for i in range(5)], ahead=2))
    [0, 1, 4, 9, 16]
    """
    pending: deque = deque()
    for task in tasks:
        pending.append(pool.submit(task))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
