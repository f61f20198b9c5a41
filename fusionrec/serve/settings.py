"""How the service runs: upload limits, batching, the backlog, persistence and access."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{16,512}")
"""A token: 16 to 512 printable ASCII characters without spaces (it travels in a header)."""


@dataclass(frozen=True)
class ServeSettings:
    """Settings of :func:`fusionrec.serve.create_app`.

    Parameters
    ----------
    state_folder : str, path or None, default=None
        Where catalogue changes are kept: the append-only change log and the
        photos added through the API. ``fusionrec serve`` uses ``INDEX.serve``
        beside the index file. ``None``: changes live in memory and end with
        the process.
    photo_folder : str, path or None, default=None
        The folder of the catalogue photos, whose paths relative to it are the
        ids (as ``fusionrec index`` makes them): ``GET /items/{id}/photo``
        serves thumbnails of them. ``None``: only photos added through the API
        have one.
    token : str or None, default=None
        The bearer token that ``POST /items`` and ``DELETE /items/{id}`` need;
        ``None``: anyone who can reach the server may change the catalogue.
    max_upload_bytes : int, default=10 MiB
        Largest photo accepted; a larger upload gets 413.
    max_k : int, default=100
        Largest ``k`` (matches) and ``top`` (products) a request may ask for.
    batch_window : float, default=0.005
        Seconds a batch waits for more photos after its first one arrives;
        photos that arrive together are embedded in one call. 0: no waiting
        (a batch still takes every photo already queued).
    max_batch : int, default=32
        Most photos in one batch.
    max_pending : int, default=64
        Photos that may wait for a batch; beyond that, requests get 503 with
        ``Retry-After`` instead of piling up.
    workers : int, default=1
        Batches run at the same time, each in its own thread (one process,
        one copy of the index). Searches and classifications run side by side;
        changes to the catalogue run alone.
    thumbnail_side : int, default=320
        Longer side, in pixels, of the photos ``GET /items/{id}/photo`` serves.

    Examples
    --------
    >>> ServeSettings(max_k=20).max_k
    20
    >>> ServeSettings(workers=0)
    Traceback (most recent call last):
    ...
    ValueError: workers must be a whole number from 1 up; got 0
    """

    state_folder: str | Path | None = None
    photo_folder: str | Path | None = None
    token: str | None = None
    max_upload_bytes: int = 10 * 2**20
    max_k: int = 100
    batch_window: float = 0.005
    max_batch: int = 32
    max_pending: int = 64
    workers: int = 1
    thumbnail_side: int = 320

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_k", "max_batch", "max_pending", "workers"):
            _check_whole(name, getattr(self, name), smallest=1)
        _check_whole("thumbnail_side", self.thumbnail_side, smallest=16)
        if not isinstance(self.batch_window, (int, float)) or not 0 <= self.batch_window <= 60:
            raise ValueError(f"batch_window must be seconds in [0, 60]; got {self.batch_window!r}")
        if self.token is not None and not TOKEN_PATTERN.fullmatch(self.token):
            raise ValueError(
                "token must be 16 to 512 printable ASCII characters without spaces "
                f"(it has {len(self.token)} characters)"
            )


def _check_whole(name: str, value: object, smallest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise ValueError(f"{name} must be a whole number from {smallest} up; got {value!r}")
