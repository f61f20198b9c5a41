"""Approximate cosine search with faiss-cpu's inverted-file index (``search="ivf"``).

The catalogue's unit vectors are grouped around ``n_lists`` centroids
(spherical k-means); a query compares itself with the centroids, then only
with the items of its ``n_probes`` nearest lists. Exact search reads every
item per query; this reads about ``n_probes / n_lists`` of them, which is what
keeps a query fast past 10^5 items.

The lists hold each item's vector whole (``compression=None``), in float16
(``"float16"``: faiss's scalar quantizer, half the memory), or as product-quantised
codes (``"pq"``: one byte per ``PQ_DIMENSIONS_PER_BYTE`` features, about 1/32 of the
float32 memory), whose approximate scores only choose candidates: the best
``PQ_CANDIDATES_PER_MATCH * k`` of them are scored again exactly with the index's
vectors.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable

import numpy as np

from .vectors import rescored, top_k

_POINTS_PER_LIST = 39  # faiss warns below this many training points per centroid
_TRAINING_POINTS_PER_LIST = 256  # k-means learns from at most this many per centroid
_MAX_TRAINING_POINTS = 1 << 16  # and from at most this many in all (320 MiB at 1,280 floats)
PQ_CODES = 256
"""Codes per sub-quantizer of ``"pq"`` (8 bits); learned from 256 training rows each."""
_ROWS_AT_ONCE = 8_192  # rows made float32 at once (sampled, filed, residuals): 40 MiB at 1,280

COMPRESSIONS = (None, "float16", "pq")
"""How the lists hold the items: whole float32 vectors, float16, or product-quantised codes."""
PQ_DIMENSIONS_PER_BYTE = 8
"""Features per sub-quantizer of ``"pq"`` (at most: the width must split evenly)."""
PQ_CANDIDATES_PER_MATCH = 10
"""``"pq"`` scores this many candidates exactly per match asked for."""


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

    At most 1,680 lists: 39 for each of the 2^16 training rows k-means is given,
    which bounds the memory learning takes (1,680 lists from 176,400 items on).

    Examples
    --------
    >>> default_n_lists(100_000), default_n_lists(2_640), default_n_lists(10)
    (1264, 67, 1)
    >>> default_n_lists(1_000_000)
    1680
    """
    most = min(n_items, _MAX_TRAINING_POINTS) // _POINTS_PER_LIST
    return max(1, min(int(4 * math.sqrt(n_items)), most))


def training_sample(vectors: np.ndarray, n_lists: int, seed: int) -> np.ndarray:
    """A seeded sample of ``vectors`` to learn ``n_lists`` lists from, as float32 rows.

    At most 256 rows per list and 2^16 in all, in index order; gathered a block
    at a time, so that no copy of the sample in ``vectors``' own dtype is held
    beside it.
    """
    rng = np.random.default_rng(seed)
    size = min(len(vectors), n_lists * _TRAINING_POINTS_PER_LIST, _MAX_TRAINING_POINTS)
    chosen = np.sort(rng.choice(len(vectors), size, replace=False))
    sample = np.empty((size, vectors.shape[1]), dtype=np.float32)
    for start in range(0, size, _ROWS_AT_ONCE):
        sample[start : start + _ROWS_AT_ONCE] = vectors[chosen[start : start + _ROWS_AT_ONCE]]
    return sample


def train_centroids(sample: np.ndarray, n_lists: int, seed: int) -> np.ndarray:
    """Unit-length centroids of ``n_lists`` lists, learned from ``sample`` (spherical k-means)."""
    kmeans = _faiss().Kmeans(sample.shape[1], n_lists, niter=20, seed=seed, spherical=True)
    kmeans.train(sample)
    return kmeans.centroids.copy()


def pq_shape(width: int, n_training: int) -> tuple[int, int]:
    """Sub-quantizers and bits per code of ``"pq"`` for vectors of ``width`` features.

    As many sub-quantizers as split the width evenly into parts of at most
    ``PQ_DIMENSIONS_PER_BYTE`` features; 8 bits each (256 codes), fewer when the
    training sample is too small to learn 256 codes from (39 points per code).

    Examples
    --------
    >>> pq_shape(1280, 100_000), pq_shape(1280, 1_000), pq_shape(30, 100_000)
    ((160, 8), (160, 4), (5, 8))
    """
    n_parts = next(
        parts
        for parts in range(-(-width // PQ_DIMENSIONS_PER_BYTE), width + 1)
        if width % parts == 0
    )
    n_bits = int(np.clip(np.log2(max(n_training, 1) / _POINTS_PER_LIST), 1, 8))
    return n_parts, n_bits


def _learn_codes(index, rows: np.ndarray) -> None:
    """Train ``index``'s product quantizer as ``index.train(rows)`` does, making ``rows`` residuals.

    ``faiss.IndexIVFPQ.train`` leaves the coarse quantizer as it is (filled with
    the centroids already) and learns the codes from each row less its nearest
    centroid, which it makes in a second array as large as ``rows``. Here that
    subtraction is done in ``rows`` itself, block by block: the same codes without
    the copy. More rows than faiss learns from (256 per code) go to faiss, which
    picks that many at random.
    """
    if len(rows) > index.train_encoder_num_vectors():
        index.train(rows)
        return
    faiss = _faiss()
    centroids = index.quantizer.reconstruct_n(0, index.nlist)
    nearest = index.quantizer.assign(rows, 1).ravel()
    for start in range(0, len(rows), _ROWS_AT_ONCE):
        block = slice(start, start + _ROWS_AT_ONCE)
        rows[block] -= centroids[nearest[block]]
    index.train_encoder(len(rows), faiss.swig_ptr(rows), faiss.swig_ptr(nearest))
    index.is_trained = True


class InvertedFile:
    """Items filed under their nearest centroid, searched list by list.

    Parameters
    ----------
    centroids : ndarray of shape (n_lists, n_features)
    compression : {None, "float16", "pq"}, default=None
        How the lists hold the items (see the module's description).
    sample : ndarray of shape (n_samples, n_features), optional
        Rows to learn the product quantizer from (``"pq"`` only).
    copy : bool, default=True
        ``False`` lets ``"pq"`` overwrite a float32, C-ordered ``sample`` with its
        residuals (the rows less their centroids, which the codes are learned
        from) instead of making them in a copy: 320 MiB less at a peak for
        2^16 rows of 1,280 features. Any other ``sample`` is copied anyway.
    """

    def __init__(
        self,
        centroids: np.ndarray,
        compression: str | None = None,
        sample: np.ndarray | None = None,
        *,
        copy: bool = True,
    ) -> None:
        faiss = _faiss()
        n_lists, width = centroids.shape
        self.quantizer = faiss.IndexFlatIP(width)  # kept: the index does not own it
        self.quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        inner_product = faiss.METRIC_INNER_PRODUCT
        if compression is None:
            self.index = faiss.IndexIVFFlat(self.quantizer, width, n_lists, inner_product)
        elif compression == "float16":
            self.index = faiss.IndexIVFScalarQuantizer(
                self.quantizer, width, n_lists, faiss.ScalarQuantizer.QT_fp16, inner_product, False
            )
            self.index.train(np.ascontiguousarray(centroids, dtype=np.float32))  # nothing learned
        elif compression == "pq":
            if sample is None:
                raise ValueError("compression='pq' learns its codes from a sample: none given")
            n_parts, n_bits = pq_shape(width, len(sample))  # sample: ``PQ_CODES`` lists' worth
            self.index = faiss.IndexIVFPQ(
                self.quantizer, width, n_lists, n_parts, n_bits, inner_product
            )
            residuals = np.array(sample, dtype=np.float32, order="C", copy=True if copy else None)
            _learn_codes(self.index, residuals)
        else:
            raise ValueError(f"compression must be one of {COMPRESSIONS}; got {compression!r}")

    @property
    def compression(self) -> str | None:
        """How the lists hold the items: ``None``, ``"float16"`` or ``"pq"``."""
        return _COMPRESSION_OF.get(type(self.index).__name__)

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
            type(index).__name__ not in _COMPRESSION_OF
            or index.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            raise ValueError(
                f"expected a faiss {' or '.join(_COMPRESSION_OF)} (inner product); got "
                f"{type(index).__name__}"
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
        for start in range(0, len(vectors), _ROWS_AT_ONCE):
            block = vectors[start : start + _ROWS_AT_ONCE]
            self.index.add(np.ascontiguousarray(block, dtype=np.float32))

    def remove(self, positions: np.ndarray) -> None:
        """Take out the items at these positions; those after them move up, as in the index."""
        faiss = _faiss()
        removed = np.unique(np.asarray(positions, dtype=np.int64))
        if not len(removed):
            return
        self.index.remove_ids(faiss.IDSelectorBatch(len(removed), faiss.swig_ptr(removed)))
        lists = self.index.invlists
        for list_number in range(self.index.nlist):
            size = lists.list_size(list_number)
            if size:
                filed = faiss.rev_swig_ptr(lists.get_ids(list_number), size)
                filed -= np.searchsorted(removed, filed)  # a view: renumbered where faiss keeps it

    def search(
        self, queries: np.ndarray, k: int, n_probes: int, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per query in its ``n_probes`` nearest lists, as ``top_k`` does.

        With ``"pq"`` codes, the best ``PQ_CANDIDATES_PER_MATCH * k`` candidates
        are scored again with ``items`` (the rows filed, in order), and the
        scores are those exact ones. A query whose probed lists hold fewer than
        ``k`` items is answered by exact search over ``items`` instead, so every
        row has ``k`` real items.
        """
        self.index.nprobe = min(n_probes, self.index.nlist)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.compression == "pq":
            depth = min(PQ_CANDIDATES_PER_MATCH * k, self.index.ntotal)
            indices = self.index.search(queries, depth)[1]
            indices, scores = rescored(queries, items, indices, k)
        else:
            scores, indices = self.index.search(queries, k)
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

    @property
    def compression(self) -> str | None:
        """As :attr:`InvertedFile.compression`."""
        return self._inverted_file().compression

    def add(self, vectors: np.ndarray) -> None:
        """As :meth:`InvertedFile.add`."""
        self._inverted_file().add(vectors)

    def remove(self, positions: np.ndarray) -> None:
        """As :meth:`InvertedFile.remove`."""
        self._inverted_file().remove(positions)

    def search(
        self, queries: np.ndarray, k: int, n_probes: int, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`InvertedFile.search`."""
        return self._inverted_file().search(queries, k, n_probes, items)


_COMPRESSION_OF = {"IndexIVFFlat": None, "IndexIVFScalarQuantizer": "float16", "IndexIVFPQ": "pq"}
"""The faiss index classes an inverted file may be, and the compression each means."""
