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

    def add(self, vectors: np.ndarray) -> None:
        """File new items after the ones already held (their positions continue)."""
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(
        self, queries: np.ndarray, k: int, n_probes: int, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per query in its ``n_probes`` nearest lists, as :func:`top_k` does.

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
