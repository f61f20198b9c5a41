"""Approximate cosine search with faiss-cpu's inverted-file index (``search="ivf"``).

The catalogue's unit vectors are grouped around ``n_lists`` centroids
(spherical k-means); a query compares itself with the centroids, then only
with the items of its ``n_probes`` nearest lists. Exact search reads every
item per query; this reads about ``n_probes / n_lists`` of them, which is what
keeps a query fast past 10^5 items.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable

import numpy as np

from .vectors import top_k

_POINTS_PER_LIST = 39  # faiss warns below this many training points per centroid
_TRAINING_POINTS_PER_LIST = 256  # k-means learns from at most this many per centroid


def faiss_available() -> bool:
    """Whether the optional ``faiss-cpu`` package is installed."""
    return importlib.util.find_spec("faiss") is not None


def require_faiss() -> None:
    """Raise ``ImportError``, saying how to install it, unless faiss-cpu is installed."""
    if not faiss_available():
        raise ImportError("search='ivf' needs faiss-cpu: pip install 'fusionrec[ann]'")


def _faiss():
    require_faiss()
    import faiss

    return faiss


def default_n_lists(n_items: int) -> int:
    """About ``4 * sqrt(n_items)`` lists, and at least 39 items to learn each from.

    Examples
    --------
    >>> default_n_lists(100_000), default_n_lists(2_640), default_n_lists(10)
    (1264, 67, 1)
    """
    return max(1, min(int(4 * math.sqrt(n_items)), n_items // _POINTS_PER_LIST))


def train_centroids(vectors: np.ndarray, n_lists: int, seed: int) -> np.ndarray:
    """Unit-length centroids of ``n_lists`` lists, learned from a seeded sample of ``vectors``."""
    faiss = _faiss()
    rng = np.random.default_rng(seed)
    sample_size = min(len(vectors), n_lists * _TRAINING_POINTS_PER_LIST)
    sample = vectors[np.sort(rng.choice(len(vectors), sample_size, replace=False))]
    kmeans = faiss.Kmeans(vectors.shape[1], n_lists, niter=20, seed=seed, spherical=True)
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    return kmeans.centroids.copy()


class InvertedFile:
    """Items filed under their nearest centroid, searched list by list.

    Parameters
    ----------
    centroids : ndarray of shape (n_lists, n_features)
    """

    def __init__(self, centroids: np.ndarray) -> None:
        faiss = _faiss()
        n_lists, width = centroids.shape
        self.quantizer = faiss.IndexFlatIP(width)  # kept: the index does not own it
        self.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        self.index = faiss.IndexIVFFlat(self.quantizer, width, n_lists, faiss.METRIC_INNER_PRODUCT)

    @classmethod
    def from_bytes(cls, data: np.ndarray | bytes | memoryview) -> InvertedFile:
        """The inverted file that :meth:`to_bytes` wrote, read by faiss's own reader.

        Raises
        ------
        ValueError
            If ``data`` is not an inner-product inverted file.
        """
        faiss = _faiss()
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as error:
            raise ValueError(f"faiss cannot read this inverted file: {error}") from None
        if (
            not isinstance(index, faiss.IndexIVFFlat)
            or index.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            raise ValueError(
                f"expected a faiss IndexIVFFlat (inner product); got {type(index).__name__}"
            )
        inverted = cls.__new__(cls)
        inverted.index = index
        inverted.quantizer = index.quantizer
        return inverted

    def to_bytes(self) -> np.ndarray:
        """The centroids and every list, written by faiss's own writer, as ``uint8``."""
        return _faiss().serialize_index(self.index)

    def __len__(self) -> int:
        """How many items are filed."""
        return self.index.ntotal

    def add(self, vectors: np.ndarray) -> None:
        """File new items after the ones already held (their positions continue)."""
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(
        self, queries: np.ndarray, k: int, n_probes: int, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per query in its ``n_probes`` nearest lists, as ``top_k`` does.

        A query whose probed lists hold fewer than ``k`` items is answered by
        exact search over ``items`` (the rows filed, in order) instead, so
        every row has ``k`` real items.
        """
        self.index.nprobe = min(n_probes, self.index.nlist)
        scores, indices = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        short = np.flatnonzero((indices < 0).any(axis=1))
        if len(short):
            indices[short], scores[short] = top_k(queries[short], items, k)
        return indices.astype(np.intp), scores


class DeferredInvertedFile:
    """An inverted file that is read from its stored bytes when first searched or added to.

    Opening a saved index then reads no list: an index that is never queried
    with ``search="ivf"`` never pays for them.

    Parameters
    ----------
    stored : callable
        Returns the bytes :meth:`InvertedFile.to_bytes` wrote.
    """

    def __init__(self, stored: Callable[[], np.ndarray | bytes | memoryview]) -> None:
        self.stored = stored
        self.loaded: InvertedFile | None = None

    def _inverted_file(self) -> InvertedFile:
        if self.loaded is None:
            self.loaded = InvertedFile.from_bytes(self.stored())
        return self.loaded

    def to_bytes(self) -> np.ndarray | bytes | memoryview:
        """The stored bytes, or the lists as they are now once read."""
        return self.stored() if self.loaded is None else self.loaded.to_bytes()

    def __len__(self) -> int:
        """How many items are filed."""
        return len(self._inverted_file())

    def add(self, vectors: np.ndarray) -> None:
        """As :meth:`InvertedFile.add`."""
        self._inverted_file().add(vectors)

    def search(
        self, queries: np.ndarray, k: int, n_probes: int, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`InvertedFile.search`."""
        return self._inverted_file().search(queries, k, n_probes, items)
