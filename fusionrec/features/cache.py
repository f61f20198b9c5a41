"""A disk cache of per-photo features, keyed by photo content and extractor settings.

Cross-validation refits the same extractors on overlapping subsets of the same
photos. Caching each photo's features on its own (not each call's output) lets
every fold, and every grid-search candidate that shares an extractor, reuse
what any earlier one computed. This module only names, stores and reads
entries; what to cache is decided by :mod:`fusionrec.features.branch` (and,
for fitted classifiers, by :mod:`fusionrec.fusion`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from joblib import Memory
from PIL import Image

from .._storage import write_atomically


def content_key(image: Any) -> str | None:
    """A digest of a photo's content, or ``None`` where it cannot be read as bytes.

    Paths are keyed by their file's bytes (so a renamed copy hits the cache,
    and an edited file misses it), arrays by their pixels, shape and dtype.
    """
    digest = hashlib.sha1()
    if isinstance(image, (str, os.PathLike)):
        try:
            digest.update(Path(image).read_bytes())
        except OSError:
            return None
    elif isinstance(image, (bytes, bytearray, memoryview)):
        digest.update(bytes(image))
    elif isinstance(image, np.ndarray):
        digest.update(f"{image.shape}{image.dtype}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    elif isinstance(image, Image.Image):
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    else:
        return None
    return digest.hexdigest()


def cache_location(memory: Any) -> Path | None:
    """The folder behind ``memory``: a path, a ``joblib.Memory``, or ``None``."""
    if memory is None:
        return None
    if isinstance(memory, Memory):
        return None if memory.location is None else Path(memory.location) / "fusionrec"
    if isinstance(memory, (str, os.PathLike)):
        return Path(memory)
    raise TypeError(f"memory must be None, a path or a joblib.Memory; got {type(memory).__name__}")


class FeatureCache:
    """Per-photo arrays stored as ``<location>/<extractor key>/<content key>.npy``.

    ``memory_mapped`` arrays are read as the pages are used, from the file:
    large entries (a photo's keypoint descriptors) then take no heap of this
    process, and joblib's process workers receive them by file name.
    """

    def __init__(self, location: Path, extractor_key: str, *, memory_mapped: bool = False) -> None:
        self.folder = Path(location) / extractor_key
        self.memory_mapped = memory_mapped

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def load(self, key: str | None) -> np.ndarray | None:
        if key is None:
            return None
        path = self.path(key)
        try:
            return np.load(path, mmap_mode="r" if self.memory_mapped else None, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def save(self, key: str | None, value: np.ndarray) -> None:
        if key is None:
            return
        write_atomically(self.path(key), lambda file: np.save(file, value, allow_pickle=False))


def cached_per_photo(
    images: Sequence,
    compute: Callable[[list], list[np.ndarray | None]],
    cache: FeatureCache | None,
    keys: Sequence[str | None] | None = None,
) -> list[np.ndarray | None]:
    """Per-photo results of ``compute``, computing only the photos the cache lacks.

    ``compute`` takes a list of photos and returns one array per photo, or
    ``None`` for a photo it dropped (which is never cached). ``keys``: the
    photos' :func:`content_key`, where the caller has them already.
    """
    if cache is None:
        return compute(list(images))
    if keys is None:
        keys = [content_key(image) for image in images]
    results = [cache.load(key) for key in keys]
    missing = [i for i, result in enumerate(results) if result is None]
    if missing:
        computed = compute([images[i] for i in missing])
        for i, value in zip(missing, computed, strict=True):
            results[i] = value
            if value is not None:
                cache.save(keys[i], value)
    return results


def load_or_none(path: Path) -> Any:
    """What joblib stored at ``path``; ``None`` if it is missing or unreadable."""
    try:
        return joblib.load(path)
    except (OSError, EOFError, ValueError, pickle.UnpicklingError):
        return None


def store(value: Any, path: Path) -> None:
    """Save ``value`` with joblib so that readers never see half a file."""
    write_atomically(path, lambda file: joblib.dump(value, file))


def digest(*parts: str) -> str:
    """A SHA-1 hex digest of ``parts``, each ended by a NUL so that no two splits collide."""
    hashed = hashlib.sha1()
    for part in parts:
        hashed.update(part.encode())
        hashed.update(b"\0")
    return hashed.hexdigest()


def folder_name(key: str) -> str:
    """A folder name for a key: its readable start and a digest of the whole."""
    return f"{key[:60]}-{hashlib.sha1(key.encode()).hexdigest()[:16]}".replace("/", "_")
