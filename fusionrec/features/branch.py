"""Run one branch's extractor over photos, reusing cached per-photo features."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.base import clone

from .cache import (
    FeatureCache,
    cache_location,
    cached_per_photo,
    content_key,
    digest,
    folder_name,
    load_or_none,
    store,
)

_RUN_SETTINGS = ("on_error", "n_jobs", "verbose")
"""Settings that change how a vocabulary is learned or used, never what it is."""

PHOTOS_AT_ONCE = 256
"""Photos whose descriptions a cached branch holds at a time: fit memory stays flat in the
number of photos (a colour description is about 1.5 MB)."""


@runtime_checkable
class DescribesPhotos(Protocol):
    """An extractor with a fit-free first step worth caching on its own.

    The keypoint branch describes each photo (keypoints and descriptors)
    whatever its vocabulary, then learns and encodes with a vocabulary. A
    cache keeps each photo's description, so a refit on overlapping photos
    (a cross-validation fold) describes none of them again.
    """

    def description_key(self) -> str:
        """Names what :meth:`describe` gives a photo."""

    def describe(self, X: Any) -> list:
        """Per photo, its description; ``None`` for a dropped photo."""

    def fit_described(self, described: Any) -> Any:
        """Fit on descriptions; the result transforms photos as if fitted on them."""

    def encode_described(self, described: Any) -> np.ndarray:
        """Encode descriptions, as ``transform`` encodes the photos."""


class Branch:
    """A fitted branch: its extractor and, with ``memory``, a per-photo cache.

    Without a cache the extractor reads the photos itself. With one, an
    extractor that :class:`DescribesPhotos` has each photo's description
    cached and refits only its vocabulary; any other extractor (the deep
    branch) has each photo's output cached under its ``feature_key()``. A
    ``frozen`` extractor is already fitted and is used as it is.

    Parameters
    ----------
    extractor : estimator
        The branch's extractor (``BagOfVisualWords``, ``CNNEmbedder``), fitted
        already when ``frozen``.
    memory : str, path, joblib.Memory or None, default=None
        The cache folder; ``None``: no cache.
    frozen : bool, default=False
        Use ``extractor`` as fitted, never refit it.

    Attributes
    ----------
    fitted_ : estimator
        The fitted extractor, which reads photos as any fitted extractor does.
    vocabulary_key : str or None
        Digest naming a cached (seeded) vocabulary; photos' encodings against
        it are cached too.

    Examples
    --------
    >>> from fusionrec import BagOfVisualWords
    >>> from fusionrec.datasets import load_demo_products
    >>> from fusionrec.features import Branch
    >>> photos = load_demo_products().data[:12]
    >>> branch = Branch(BagOfVisualWords(n_words=8, random_state=0))
    >>> branch.fit_transform(photos).shape
    (12, 8)
    """

    def __init__(self, extractor: Any, memory: Any = None, *, frozen: bool = False) -> None:
        self.extractor = extractor
        self.location = cache_location(memory)
        self.frozen = frozen
        self.vocabulary_key: str | None = None

    def _describes(self) -> bool:
        return self.location is not None and isinstance(self.extractor, DescribesPhotos)

    def fit(self, images: Sequence, y: Any = None) -> Branch:
        """Fit the extractor (``y`` reaches it, for a fine-tuned CNN); a frozen one is kept."""
        if self.frozen:
            self.fitted_ = self.extractor
        elif self._describes():
            self.fitted_ = self._vocabulary(images, [content_key(image) for image in images])
        else:
            self.fitted_ = clone(self.extractor).fit(images, y)
        return self

    def fit_transform(
        self, images: Sequence, y: Any = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Fit the extractor and extract: :meth:`fit`, then :meth:`transform`."""
        return self.fit(images, y).transform(images, out=out)

    def transform(
        self, images: Sequence, on_error: str | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Features of ``images``; ``on_error`` overrides the policy given at fit.

        ``out``: a ``(len(images), n_features_out_)`` float32 array (columns of
        a larger one, say) that receives the features and is returned. A
        cached branch writes it a chunk of photos at a time, so no other array
        of every photo's features is made; without a cache the extractor's
        output is copied into it.
        """
        if on_error is not None:
            self.extractor.set_params(on_error=on_error)
            self.fitted_.set_params(on_error=on_error)
        if self.location is None:
            return _written(self.fitted_.transform(images), out)
        if out is None:
            out = np.empty((len(images), self.fitted_.n_features_out_), np.float32)
        if self._describes():
            self._encode(images, [content_key(image) for image in images], out)
        else:
            self._output(images, out)
        return out

    def _vocabulary(self, images: Sequence, keys: list[str | None]) -> Any:
        """The vocabulary learned from the described photos, from the cache when it is there.

        A seeded vocabulary depends only on its settings and on the photos it
        learns from, in order: cross-validation folds and the grid-search
        candidates that share them learn it once, and only the first reads
        their descriptors. Unseeded ones are not cached.
        """
        if None in keys:  # photos that cannot be keyed are described in memory
            readable = [pair for pair in self._described(images, keys) if pair is not None]
            return clone(self.extractor).fit_described(readable)
        seeded = isinstance(self.extractor.random_state, numbers.Integral)
        if not seeded:
            return clone(self.extractor).fit_described(self._cached_descriptions(images, keys))
        settings = {
            name: value
            for name, value in sorted(self.extractor.get_params().items())
            if name not in _RUN_SETTINGS
        }
        description = self.extractor.description_key()  # a detector's revision too
        self.vocabulary_key = digest(description, repr(settings), *keys)
        path = self.location / "vocabulary" / f"{self.vocabulary_key}.joblib"
        cached = load_or_none(path)
        if cached is not None:
            return cached.set_params(**_run_settings(self.extractor))
        vocabulary = clone(self.extractor).fit_described(self._cached_descriptions(images, keys))
        store(vocabulary, path)
        return vocabulary

    def _description_cache(self) -> FeatureCache:
        """Descriptions (about 1.5 MB a colour photo), memory-mapped: never copied to the heap."""
        folder = folder_name(self.extractor.description_key())
        return FeatureCache(self.location, folder, memory_mapped=True)

    def _cached_descriptions(self, images: Sequence, keys: list[str]) -> CachedDescriptions:
        """Describe the photos the cache lacks, a bounded number at a time; the readable ones.

        Cached descriptions are not read here, and nothing is kept in memory:
        the vocabulary reads each description from the cache as it samples it.
        """
        cache = self._description_cache()
        missing = [i for i, key in enumerate(keys) if not cache.path(key).is_file()]
        for chunk in _chunks(len(missing)):
            chosen = missing[chunk]
            self._described([images[i] for i in chosen], [keys[i] for i in chosen])
        return CachedDescriptions(cache, [key for key in keys if cache.path(key).is_file()])

    def _described(self, images: Sequence, keys: list[str | None] | None = None) -> list:
        packed = cached_per_photo(
            images,
            lambda photos: [_pack(pair) for pair in self.extractor.describe(photos)],
            self._description_cache(),
            keys,
        )
        return [None if rows is None else (rows[:, :2], rows[:, 2:]) for rows in packed]

    def _encode(self, images: Sequence, keys: list[str | None], out: np.ndarray) -> None:
        """Write each photo's encoding into ``out``; against a cached vocabulary, each is
        encoded once.

        Descriptors are read only for the photos whose encoding is not cached,
        and the encodings are written a chunk of photos at a time.
        """
        cache = None
        if self.vocabulary_key is not None:
            cache = FeatureCache(self.location, f"encode-{self.vocabulary_key}")
        photos = list(zip(images, keys, strict=True))
        for chunk in _chunks(len(photos)):
            rows = cached_per_photo(photos[chunk], self._encode_described, cache, keys[chunk])
            out[chunk] = _stacked(rows, out.shape[1])

    def _encode_described(self, photos_and_keys: list) -> list[np.ndarray | None]:
        images = [image for image, _ in photos_and_keys]
        pairs = self._described(images, [key for _, key in photos_and_keys])
        readable = [pair for pair in pairs if pair is not None]
        encoded = iter(self.fitted_.encode_described(readable) if readable else [])
        return [None if pair is None else next(encoded) for pair in pairs]

    def _output(self, images: Sequence, out: np.ndarray) -> None:
        """Write each photo's features from the fitted extractor into ``out``, a chunk of
        photos at a time; each is cached under the extractor's ``feature_key``."""
        extractor = self.fitted_
        cache = FeatureCache(self.location, folder_name(extractor.feature_key()))
        photos = list(images)
        for chunk in _chunks(len(photos)):
            rows = cached_per_photo(
                photos[chunk],
                lambda photos: [_none_if_dropped(row) for row in extractor.transform(photos)],
                cache,
            )
            out[chunk] = _stacked(rows, out.shape[1])


class CachedDescriptions(Sequence):
    """Photos' descriptions in a cache, each read when it is asked for.

    A sequence of ``(positions, descriptors)`` pairs, as
    :meth:`~fusionrec.traditional.BagOfVisualWords.describe` gives them, that
    holds only the cache keys: a vocabulary sampling descriptors from it reads
    them chunk by chunk as its chunks are dispatched, so only the chunks in
    flight are in memory.
    """

    def __init__(self, cache: FeatureCache, keys: Sequence[str]) -> None:
        self.cache = cache
        self.keys = list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.cache.load(self.keys[index])
        if rows is None:
            raise FileNotFoundError(f"the cached description {self.keys[index]} is gone")
        return rows[:, :2], rows[:, 2:]


def _chunks(length: int) -> Iterator[slice]:
    """Consecutive slices of at most :data:`PHOTOS_AT_ONCE` positions, covering ``length``."""
    return (slice(start, start + PHOTOS_AT_ONCE) for start in range(0, length, PHOTOS_AT_ONCE))


def _stacked(rows: list[np.ndarray | None], width: int) -> np.ndarray:
    """One row per photo; a NaN row for each dropped one."""
    return np.stack([np.full(width, np.nan, np.float32) if row is None else row for row in rows])


def _written(features: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``features``, copied into ``out`` when it is given."""
    if out is None:
        return features
    out[...] = features
    return out


def _none_if_dropped(row: np.ndarray) -> np.ndarray | None:
    return None if np.isnan(row).all() else row


def _pack(pair: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    if pair is None:
        return None
    positions, descriptors = pair
    return np.hstack([positions, descriptors]).astype(np.float32)


def _run_settings(extractor: Any) -> dict:
    return {name: getattr(extractor, name) for name in _RUN_SETTINGS}
