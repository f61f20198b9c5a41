"""Run one branch's extractor over photos, reusing cached per-photo features."""

from __future__ import annotations

import copy
import hashlib
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from ..deep import CNNEmbedder
from ..deep.runtime import fingerprint
from ..traditional import BagOfVisualWords
from .cache import FeatureCache, cache_location, cached_per_photo, content_key, load_or_none, store

_RUN_SETTINGS = ("on_error", "n_jobs", "verbose")
"""Settings that change how a vocabulary is learned or used, never what it is."""


class Branch:
    """A fitted branch: its extractor and, with ``memory``, a per-photo cache.

    Without a cache the extractor reads the photos itself. With one, the
    traditional branch caches each photo's keypoints and descriptors (the
    costly, vocabulary-free part) and refits only the vocabulary; the deep
    branch caches each photo's embedding. A ``frozen`` extractor is already
    fitted and is used as it is.
    """

    vocabulary_key: str | None = None
    """Digest naming a cached (seeded) vocabulary; photos' encodings against it are cached too."""

    def __init__(
        self, extractor: BagOfVisualWords | CNNEmbedder, memory: Any = None, *, frozen: bool = False
    ) -> None:
        self.extractor = extractor
        self.location = cache_location(memory)
        self.frozen = frozen

    def fit_transform(self, images: Sequence, y: Any = None) -> np.ndarray:
        """Fit the extractor (``y`` reaches it, for a fine-tuned CNN) and extract."""
        if self.frozen:
            self.fitted_ = self._as_fitted()
            return self.transform(images)
        if self.location is None:
            self.fitted_ = clone(self.extractor)
            return self.fitted_.fit(images, y).transform(images)
        if isinstance(self.extractor, BagOfVisualWords):
            keys = [content_key(image) for image in images]
            self.fitted_ = self._vocabulary(images, keys)
            return self._encode(images, keys)
        self.fitted_ = clone(self.extractor).fit(images, y)
        return self._embedded(images)

    def _vocabulary(self, images: Sequence, keys: list[str | None]) -> BagOfVisualWords:
        """The vocabulary learned from the described photos, from the cache when it is there.

        A seeded vocabulary depends only on its settings and on the photos it
        learns from, in order: cross-validation folds and the grid-search
        candidates that share them learn it once, and only the first reads
        their descriptors. Unseeded ones are not cached.
        """
        vocabulary = clone(self.extractor).set_params(detector="precomputed")
        seeded = isinstance(self.extractor.random_state, numbers.Integral)
        if not seeded or None in keys:
            return vocabulary.fit(self._readable(images, keys))
        settings = {
            name: value
            for name, value in sorted(self.extractor.get_params().items())
            if name not in _RUN_SETTINGS
        }
        self.vocabulary_key = _digest(repr(settings), *keys)
        path = self.location / "vocabulary" / f"{self.vocabulary_key}.joblib"
        cached = load_or_none(path)
        if cached is not None:
            return cached.set_params(**_run_settings(self.extractor))
        vocabulary.fit(self._readable(images, keys))
        store(vocabulary, path)
        return vocabulary

    def _readable(self, images: Sequence, keys: list[str | None]) -> list:
        """The ``(positions, descriptors)`` pairs of the photos that could be described."""
        return [pair for pair in self._described(images, keys) if pair is not None]

    def _as_fitted(self) -> BagOfVisualWords | CNNEmbedder:
        """The frozen extractor, reading cached descriptors when keypoints are cached."""
        if self.location is not None and isinstance(self.extractor, BagOfVisualWords):
            return copy.deepcopy(self.extractor).set_params(detector="precomputed")
        return self.extractor

    def transform(self, images: Sequence, on_error: str | None = None) -> np.ndarray:
        """Features of ``images``; ``on_error`` overrides the policy given at fit."""
        if on_error is not None:
            self.extractor.set_params(on_error=on_error)
            self.fitted_.set_params(on_error=on_error)
        if self.location is None:
            return self.fitted_.transform(images)
        if isinstance(self.extractor, BagOfVisualWords):
            return self._encode(images, [content_key(image) for image in images])
        return self._embedded(images)

    def _described(self, images: Sequence, keys: list[str | None] | None = None) -> list:
        settings = self.extractor.get_params()
        key = _safe("describe-{detector}-{max_side}-{max_keypoints}".format(**settings))
        packed = cached_per_photo(
            images,
            lambda photos: [_pack(pair) for pair in self.extractor.describe(photos)],
            FeatureCache(self.location, key),
            keys,
        )
        return [None if rows is None else (rows[:, :2], rows[:, 2:]) for rows in packed]

    def _encode(self, images: Sequence, keys: list[str | None]) -> np.ndarray:
        """Each photo's encoding; against a cached vocabulary, each is encoded once.

        Descriptors are read only for the photos whose encoding is not cached.
        """
        cache = None
        if self.vocabulary_key is not None:
            cache = FeatureCache(self.location, f"encode-{self.vocabulary_key}")
        photos = list(zip(images, keys, strict=True))
        rows = cached_per_photo(photos, self._encode_described, cache, keys)
        return _stacked(rows, self.fitted_.n_features_out_)

    def _encode_described(self, photos_and_keys: list) -> list[np.ndarray | None]:
        images = [image for image, _ in photos_and_keys]
        pairs = self._described(images, [key for _, key in photos_and_keys])
        readable = [pair for pair in pairs if pair is not None]
        encoded = iter(self.fitted_.transform(readable) if readable else [])
        return [None if pair is None else next(encoded) for pair in pairs]

    def _embedded(self, images: Sequence) -> np.ndarray:
        embedder = self.fitted_
        key = "embed-" + fingerprint(embedder.network_, embedder.preprocessing_.crop)
        key += f"-{embedder.layer}-{embedder.normalize}-{embedder.preprocessing_}"
        rows = cached_per_photo(
            images,
            lambda photos: [_none_if_dropped(row) for row in embedder.transform(photos)],
            FeatureCache(self.location, _safe(key)),
        )
        return _stacked(rows, embedder.n_features_out_)


def _stacked(rows: list[np.ndarray | None], width: int) -> np.ndarray:
    """One row per photo; a NaN row for each dropped one."""
    return np.stack([np.full(width, np.nan, np.float32) if row is None else row for row in rows])


def _none_if_dropped(row: np.ndarray) -> np.ndarray | None:
    return None if np.isnan(row).all() else row


def _pack(pair: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    if pair is None:
        return None
    positions, descriptors = pair
    return np.hstack([positions, descriptors]).astype(np.float32)


def _run_settings(extractor: BagOfVisualWords) -> dict:
    return {name: getattr(extractor, name) for name in _RUN_SETTINGS}


def _digest(*parts: str) -> str:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _safe(key: str) -> str:
    """A folder name from a key: its readable start and a digest of the whole."""
    return f"{key[:60]}-{hashlib.sha1(key.encode()).hexdigest()[:16]}".replace("/", "_")
