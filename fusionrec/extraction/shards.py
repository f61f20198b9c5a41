"""One shard: the features of a run of consecutive photos, written by the worker that made them.

A shard is one ``.npz`` file (uncompressed, no pickle) holding the readable
photos' feature rows and ids, and the ids of the unreadable ones with the
reason each could not be read: its report. It is written atomically, so a
shard that exists is complete; a job that is killed leaves whole shards and,
at worst, a partial ``*.tmp`` file that no reader opens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._storage import write_atomically
from ..files import load
from ..images import ImageReadError, load_image

DROPPED_BY_EXTRACTOR = "read, but the extractor could not describe it"


@dataclass(frozen=True)
class ShardTask:
    """What a worker needs to write one shard: where, with which extractor, of which photos."""

    number: int
    path: str
    extractor_path: str
    photos: list = field(repr=False)
    ids: list[str] = field(repr=False)


@dataclass(frozen=True)
class ShardReport:
    """What a shard holds: its rows, and the photos it could not read, with why.

    Attributes
    ----------
    number : int
        The shard's position among the job's shards.
    path : str
    n_photos : int
        Photos given to the shard.
    n_rows : int
        Feature rows written (the readable photos).
    unreadable : list of (str, str)
        ``(id, reason)`` of each photo left out.
    """

    number: int
    path: str
    n_photos: int
    n_rows: int
    unreadable: list[tuple[str, str]]

    def as_json(self, root: Path) -> dict[str, Any]:
        """The report as the job's manifest lists it, its path relative to ``root``."""
        return {
            "file": Path(self.path).relative_to(root).as_posix(),
            "photos": self.n_photos,
            "rows": self.n_rows,
            "unreadable": [{"id": id_, "reason": reason} for id_, reason in self.unreadable],
        }


def write_shards(tasks: list[ShardTask]) -> list[ShardReport]:
    """Write each task's shard, unless it exists already; return their reports.

    The function a Dask partition runs on a worker: a shard written by an
    earlier run (or by a task that a lost worker finished) is only read back.
    """
    return [read_report(task.path) if Path(task.path).is_file() else _write(task) for task in tasks]


def read_report(path: str | os.PathLike) -> ShardReport:
    """The report of a written shard, read without its feature rows."""
    with np.load(path, allow_pickle=False) as shard:
        ids, unreadable, reasons = shard["ids"], shard["unreadable_ids"], shard["reasons"]
        number = int(shard["number"])
    pairs = list(zip(unreadable.tolist(), reasons.tolist(), strict=True))
    return ShardReport(number, str(path), len(ids) + len(pairs), len(ids), pairs)


def read_rows(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A shard's ``(features, ids)``: float32 rows and their ids as text."""
    with np.load(path, allow_pickle=False) as shard:
        return shard["features"], shard["ids"]


@lru_cache(maxsize=1)
def _extractor(path: str) -> Any:
    """The job's fitted features, opened once per worker process."""
    return load(path)


def _write(task: ShardTask) -> ShardReport:
    features = _extractor(task.extractor_path)
    rows = features.fuse(features.transform_blocks(task.photos, "skip"))
    readable = ~np.isnan(rows).any(axis=1)
    ids = np.asarray(task.ids, dtype=str)
    unreadable = [(task.ids[i], _reason(task.photos[i])) for i in np.flatnonzero(~readable)]
    arrays = {
        "number": np.asarray(task.number),
        "features": rows[readable],
        "ids": ids[readable],
        "unreadable_ids": np.asarray([id_ for id_, _ in unreadable], dtype=str),
        "reasons": np.asarray([reason for _, reason in unreadable], dtype=str),
    }
    write_atomically(Path(task.path), lambda file: np.savez(file, **arrays))
    return ShardReport(task.number, task.path, len(task.photos), int(readable.sum()), unreadable)


def _reason(photo: Any) -> str:
    """Why a photo the extractor dropped could not be read (read once more, to ask)."""
    try:
        load_image(photo)
    except ImageReadError as error:
        return error.reason
    return DROPPED_BY_EXTRACTOR
