"""ProductIndex: find the catalogue items most similar to a photo ("search by photo")."""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._choices import SEARCHES
from .._pickling import NewParameterDefaults
from .._validation import RUN_CONSTRAINTS, InstanceOf, Integer, Options, validate_params
from .._vectors import l2_normalise
from ..deep import CNNEmbedder
from ..fusion import (
    DEFAULT_BLOCK_WEIGHTS,
    FUSED_CONSTRAINTS,
    FusedFeatures,
    check_block_weights,
    features_for,
    upgraded_branches,
)
from ..images import non_empty_images
from ..traditional import BagOfVisualWords, check_detector
from .duplicates import (
    MAX_DESCRIPTOR_DISTANCE,
    MIN_INLIER_SHARE,
    MIN_INLIERS,
    MIN_SIMILARITY,
    N_NEIGHBORS,
    DuplicateGroup,
    find_duplicates,
)
from .geometry import Keypoints, verified_matches
from .ids import compact_ids, id_values, joined_ids
from .inverted_file import (
    COMPRESSIONS,
    PQ_CODES,
    InvertedFile,
    default_n_lists,
    require_faiss,
    train_centroids,
    training_sample,
)
from .results import Matches
from .vectors import top_k

RERANKS = (None, "ransac")
RERANK_KEYPOINTS = 500  # strongest keypoints kept per catalogue photo for re-ranking
INLIER_WEIGHT = 0.01  # re-ranking score per verified match, added to the cosine similarity


class ProductIndex(NewParameterDefaults, BaseEstimator):
    """Search a catalogue of product photos by photo, optionally re-ranked by geometry.

    ``fit`` extracts each catalogue photo's features with the chosen branch
    (the same extractors as :class:`fusionrec.FusedClassifier`) and keeps them;
    ``query`` returns, per query photo, the ``k`` items with the most similar
    features (exact cosine similarity). With ``rerank="ransac"``, the best
    ``rerank_depth`` candidates are then re-ordered by how many keypoint
    matches one homography explains, which separates the very product from
    look-alikes; catalogue keypoints are computed once, in ``fit`` and ``add``.

    Parameters
    ----------
    branch : {"deep", "traditional", "fused"}, default="deep"
        Which features to compare.
    traditional : BagOfVisualWords or None, default=None
        ``None``: opponent-colour RootSIFT Fisher vectors (64 words on 64 PCA dimensions),
        fitted on the catalogue photos given to ``fit``.
    deep : CNNEmbedder or None, default=None
        ``None``: ImageNet EfficientNet-Lite0 (weights bundled), centre crop
        keeping 0.75 of the shorter side. Either branch may come fitted,
        wrapped in ``sklearn.frozen.FrozenEstimator``: a ``CNNEmbedder``
        fine-tuned on labelled product photos, say. It is then used as it is.
    block_weights : tuple of two floats, default=(0.5, 1.0)
        Lengths of the traditional and deep blocks (``branch="fused"`` only),
        as in :class:`fusionrec.FusedFeatures`.
    search : {"exact", "ivf"}, default="exact"
        ``"exact"`` compares each query with every item (numpy). ``"ivf"``
        (needs ``pip install 'fusionrec[ann]'``: faiss-cpu) files the items
        under about ``4 * sqrt(n)`` centroids learned in ``fit`` and compares
        a query only with the items of its ``n_probes`` nearest lists: for
        catalogues past 10^5 items, at the price of sometimes missing a match.
    n_probes : int, default=32
        Lists searched per query with ``search="ivf"``.
    compression : {None, "float16", "pq"}, default=None
        How the items' features are held. ``None``: float32. ``"float16"``:
        ``vectors_`` in float16, half the memory (exact search scores them in
        float32; an inverted file holds float16 too). ``"pq"`` (needs
        ``search="ivf"``): ``vectors_`` in float16, and the inverted file holds
        product-quantised codes, one byte per 8 features: a query's best
        ``10 * k`` candidates by those codes are scored again exactly with
        ``vectors_``, so the scores returned are exact. For 10^6 items and
        more, where float32 vectors and an inverted file of them would not fit
        in memory (``python benchmarks/search.py million`` measures them).
    rerank : {None, "ransac"}, default=None
        Re-rank the best candidates by geometrically verified keypoint matches.
    rerank_depth : int, default=20
        How many candidates per query are re-ranked.
    rerank_detector : str, default="rootsift"
        Keypoints used for re-ranking (a detector of
        :func:`fusionrec.available_detectors`).
    memory : str, path, joblib.Memory or None, default=None
        Cache each photo's features on disk (see :class:`fusionrec.FusedClassifier`).
    on_error : {"raise", "warn", "skip"}, default="raise"
        Unreadable catalogue photos are left out of the index (their
        positions are in ``dropped_indices_``); an unreadable query gets
        ``None`` instead of matches.
    n_jobs : int or None, default=None
        joblib workers for keypoint extraction.
    random_state : int, RandomState or None, default=None
        Seeds the default traditional branch's vocabulary and the inverted
        file's centroids; ``None``: unseeded.
    verbose : int, default=0
        Show progress bars when positive.

    Attributes
    ----------
    ids_ : ndarray of shape (n_items,)
        The ids of the indexed items, in index order: fixed-width strings
        (``<U``) when every id is a string, ``int64`` when every id is an
        integer (so that a saved index opens them memory-mapped), else Python
        objects. ``ids_.tolist()`` gives them back as given; ``query``'s
        :class:`Matches` hold Python values.
    vectors_ : ndarray of shape (n_items, n_features), float32 or float16
        Their L2-normalised features (float16 with ``compression``).
    keypoints_ : list of Keypoints or None
        Their keypoints for re-ranking (``None`` without ``rerank``).
    features_ : FusedFeatures
        The fitted feature extractors and their fusion.
    dropped_indices_ : ndarray
        Positions, among the photos given to the last ``fit`` or ``add``, of
        those that could not be read (and were not indexed).
    centroids_ : ndarray or None
        With ``search="ivf"``: the lists' centroids, learned in ``fit``
        (seeded by ``random_state``). Items added later are filed under them;
        refit to learn new ones when the catalogue has changed a lot.

    See Also
    --------
    fusionrec.search.Matches : what ``query`` returns per photo.

    Notes
    -----
    Exact search reads every item's features once per query block: about 5 MiB
    per 1,000 items with the default 1,280-wide embeddings, which stays fast
    to about 10^5 items (docs/benchmarks.md has the measured latencies).

    Examples
    --------
    >>> from fusionrec import ProductIndex
    >>> from fusionrec.datasets import load_demo_products
    >>> demo = load_demo_products()
    >>> index = ProductIndex().fit(demo.data[1:], ids=demo.data[1:])
    >>> [matches] = index.query(demo.data[:1], k=3)
    >>> len(matches), bool(matches.scores[0] >= matches.scores[-1])
    (3, True)
    """

    _added_parameters: ClassVar[dict] = {"search": "exact", "n_probes": 32, "compression": None}
    _renamed: ClassVar[dict] = {"weights": "block_weights"}
    _parameter_rules: dict = {  # noqa: RUF012
        **FUSED_CONSTRAINTS,
        "rerank": (Options(RERANKS),),
        "rerank_depth": (Integer(1),),
        "rerank_detector": (InstanceOf((str,), "a detector name"),),
        "search": (Options(SEARCHES),),
        "n_probes": (Integer(1),),
        "compression": (Options(COMPRESSIONS),),
        **RUN_CONSTRAINTS,
    }

    def __init__(
        self,
        branch: str = "deep",
        *,
        traditional: BagOfVisualWords | None = None,
        deep: CNNEmbedder | None = None,
        block_weights: tuple[float, float] = DEFAULT_BLOCK_WEIGHTS,
        rerank: str | None = None,
        rerank_depth: int = 20,
        rerank_detector: str = "rootsift",
        search: str = "exact",
        n_probes: int = 32,
        compression: str | None = None,
        memory: Any = None,
        on_error: str = "raise",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.branch = branch
        self.traditional = traditional
        self.deep = deep
        self.block_weights = block_weights
        self.rerank = rerank
        self.rerank_depth = rerank_depth
        self.rerank_detector = rerank_detector
        self.search = search
        self.n_probes = n_probes
        self.compression = compression
        self.memory = memory
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: Any, ids: Any = None) -> ProductIndex:
        """Index the catalogue photos ``X`` under ``ids``.

        Parameters
        ----------
        X : sequence of images
        ids : sequence of hashable, or None
            One unique id per photo (a SKU, a path, ...); ``None``: ``0..n-1``.

        Returns
        -------
        self : ProductIndex
        """
        self._check_parameters()
        images = non_empty_images(X)
        ids = _new_ids(np.arange(len(images)) if ids is None else ids, len(images), ())
        self.features_ = features_for(self)
        self._index_first(images, ids, l2_normalise(self.features_.fit_transform(images)))
        return self

    def fit_extracted(self, features: FusedFeatures, vectors: Any, ids: Any) -> ProductIndex:
        """Index feature rows that ``features`` extracted earlier, without their photos.

        What :func:`fusionrec.extraction.index_from_features` calls on the rows
        of an extraction job: the index equals one fitted on the photos
        themselves with the same extractors.

        Parameters
        ----------
        features : FusedFeatures
            The fitted features that extracted the rows; the index extracts
            its queries' features with it (it becomes ``features_``). Its
            ``branch`` and ``block_weights`` must be the index's.
        vectors : array-like of shape (n_items, n_features)
            ``features.transform`` of the catalogue photos; rows of NaN
            (unreadable photos) are left out, as in ``fit``.
        ids : sequence of hashable
            One unique id per row.

        Returns
        -------
        self : ProductIndex

        Raises
        ------
        ValueError
            With ``rerank`` (re-ranking needs the photos' keypoints), or rows
            that ``features`` cannot have made.
        """
        self._check_parameters()
        if self.rerank:
            raise ValueError("rerank='ransac' keeps keypoints of the photos: fit on the photos")
        check_is_fitted(features, "branches_")
        if (features.branch, tuple(features.block_weights)) != (
            self.branch,
            tuple(self.block_weights),
        ):
            raise ValueError(
                f"features extract branch={features.branch!r} with block_weights="
                f"{features.block_weights}; the index has {self.branch!r}, {self.block_weights}"
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != features.n_features_out_:
            raise ValueError(
                f"vectors must be (n_items, {features.n_features_out_}) rows of these features;"
                f" got shape {vectors.shape}"
            )
        ids = _new_ids(ids, len(vectors), ())
        self.features_ = features
        self._index_first([], ids, l2_normalise(vectors))
        return self

    def add(self, X: Any, ids: Any) -> ProductIndex:
        """Add photos under new ids, with the extractors fitted in ``fit``.

        Raises
        ------
        ValueError
            If an id is repeated or already in the index.
        """
        check_is_fitted(self, "vectors_")
        images = non_empty_images(X)
        ids = _new_ids(ids, len(images), self.ids_)
        self._append(images, ids, self._features(images))
        return self

    def remove(self, ids: Any) -> ProductIndex:
        """Remove the items with these ids.

        Raises
        ------
        KeyError
            Naming every id that is not in the index; nothing is removed then.
        """
        check_is_fitted(self, "vectors_")
        doomed = set(_as_id_array(ids).tolist())
        unknown = sorted(doomed - set(self.ids_.tolist()), key=str)
        if unknown:
            raise KeyError(f"not in the index: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
        keep = np.array([item not in doomed for item in self.ids_.tolist()], dtype=bool)
        self.ids_, self.vectors_ = self.ids_[keep], self.vectors_[keep]
        if getattr(self, "_inverted_file", None) is not None:
            self._inverted_file.remove(np.flatnonzero(~keep))
        if self.keypoints_ is not None:
            self.keypoints_ = [self.keypoints_[i] for i in np.flatnonzero(keep)]
        return self

    def query(self, X: Any, k: int = 10, *, min_score: float | None = None) -> list[Matches | None]:
        """The ``k`` best matches of each query photo.

        Parameters
        ----------
        X : sequence of images
        k : int, default=10
            Matches per query; clipped to the number of items in the index.
        min_score : float or None, default=None
            Keep only matches whose cosine similarity is at least this, so
            that a photo of a product not in the catalogue can get no match
            (an empty ``Matches``). ``fusionrec.fusion.threshold_for`` learns
            one for a false-accept rate (docs/fusion.md, "Not in the catalogue").

        Returns
        -------
        list of Matches or None
            One entry per query photo, in order; ``None`` for a photo that
            ``on_error`` dropped.
        """
        check_is_fitted(self, "vectors_")
        if not Integer(1)(k):
            raise ValueError(f"k must be a positive int; got {k!r}")
        if len(self.ids_) == 0:
            raise ValueError("the index is empty: add photos before querying it")
        if self.rerank and self.keypoints_ is None:
            raise ValueError("rerank='ransac' needs keypoints kept at fit: refit with it set")
        images = non_empty_images(X)
        vectors = self._features(images)
        readable = np.flatnonzero(~np.isnan(vectors).any(axis=1))
        k = min(k, len(self.ids_))
        depth = min(max(k, self.rerank_depth), len(self.ids_)) if self.rerank else k
        indices, scores = self._nearest(vectors[readable], depth)
        results: list[Matches | None] = [None] * len(images)
        if self.rerank:
            described = self._keypoints([images[i] for i in readable])
            for row, (position, keypoints) in enumerate(zip(readable, described, strict=True)):
                results[position] = self._reranked(keypoints, indices[row], scores[row], k)
        else:
            for row, position in enumerate(readable):
                results[position] = Matches(id_values(self.ids_[indices[row]]), scores[row])
        if min_score is not None:
            results = [None if found is None else found.at_least(min_score) for found in results]
        return results

    def duplicates(
        self,
        *,
        n_neighbors: int = N_NEIGHBORS,
        min_similarity: float = MIN_SIMILARITY,
        min_inliers: int = MIN_INLIERS,
        min_inlier_share: float = MIN_INLIER_SHARE,
        max_descriptor_distance: float | None = MAX_DESCRIPTOR_DISTANCE,
    ) -> list[DuplicateGroup]:
        """Groups of items that show the same product photo, verified by keypoints.

        Each item's ``n_neighbors`` most similar items are candidates; a
        candidate pair is a duplicate when one homography explains at least
        ``min_inliers`` of their keypoint matches and ``min_inlier_share`` of
        them, and the matched descriptors differ by at most
        ``max_descriptor_distance``; groups are the connected components of
        duplicate pairs (``fusionrec/search/duplicates.py`` explains why). Needs an
        index fitted with ``rerank="ransac"`` (its keypoints).

        Parameters
        ----------
        n_neighbors : int, default=10
            Nearest items per item checked.
        min_similarity : float, default=0.6
            Lowest cosine similarity of a candidate pair.
        min_inliers : int, default=20
            Fewest keypoint matches one homography must explain (at least 4).
        min_inlier_share : float, default=0.85
            Smallest share of the keypoint matches (Lowe's ratio test) that the
            homography explains: a copy keeps nearly all of its matches in place.
        max_descriptor_distance : float or None, default=0.15
            Largest median distance between the matched keypoints' unit-length
            descriptors. Copies of a photo (re-encoded, cropped, resized) stay
            near 0.1; two shots of one package mostly differ by 0.2 or more.
            ``None`` also groups distinct photos of one package.

        Returns
        -------
        list of DuplicateGroup
            Largest group first; items without a duplicate are in none.

        Raises
        ------
        ValueError
            If the index keeps no keypoints, or an option is out of range.
        """
        check_is_fitted(self, "vectors_")
        if self.keypoints_ is None:
            raise ValueError(
                "duplicates are verified by keypoint matches: fit the index with "
                "rerank='ransac' to keep them"
            )
        return find_duplicates(
            self,
            n_neighbors=n_neighbors,
            min_similarity=min_similarity,
            min_inliers=min_inliers,
            min_inlier_share=min_inlier_share,
            max_descriptor_distance=max_descriptor_distance,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags

    def _check_parameters(self) -> None:
        validate_params(self, self._parameter_rules)
        check_block_weights(self.block_weights)
        if self.search == "ivf":
            require_faiss()
        if self.compression == "pq" and self.search != "ivf":
            raise ValueError(
                "compression='pq' holds product-quantised codes in the inverted file: it needs "
                f"search='ivf'; got search={self.search!r}"
            )
        if self.rerank:
            check_detector(self.rerank_detector)

    def _index_first(self, images: Sequence, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Start the index with these items (the photos are needed only for ``rerank``)."""
        self.ids_ = np.empty(0, dtype=object)
        self.vectors_ = np.empty((0, vectors.shape[1]), dtype=self._vector_dtype())
        self.keypoints_ = [] if self.rerank else None
        self._inverted_file = None
        self._append(images, ids, vectors)
        readable = len(self.vectors_) > 0
        self.centroids_ = self._centroids() if self.search == "ivf" and readable else None

    def _upgraded(self, state: dict) -> dict:
        """Before 0.1.0 (unreleased): ``branches_`` and ``skipped_ids_`` (now positions).

        Ids held as Python objects (older pickles and files) become a compact array.
        """
        state = upgraded_branches(state)
        if "skipped_ids_" in state:
            state.pop("skipped_ids_")
            state["dropped_indices_"] = np.empty(0, dtype=np.intp)
        if isinstance(state.get("ids_"), np.ndarray) and state["ids_"].dtype.hasobject:
            state["ids_"] = compact_ids(state["ids_"].tolist())
        return state

    def __getstate__(self) -> dict:
        """Pickle without the faiss lists, which are refiled from ``vectors_`` after loading."""
        state = super().__getstate__()
        state.pop("_inverted_file", None)
        return state

    def _nearest(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.search == "exact":
            return top_k(queries, self.vectors_, k)
        return self._filed().search(queries, k, self.n_probes, self.vectors_)

    def _filed(self) -> InvertedFile:
        """The inverted file, every item filed (learned and filled now if not yet)."""
        if getattr(self, "centroids_", None) is None:  # switched to "ivf" after fit
            self.centroids_ = self._centroids()
        if getattr(self, "_inverted_file", None) is None:
            pq = self.compression == "pq"
            sample = training_sample(self.vectors_, PQ_CODES, self._seed()) if pq else None
            inverted = InvertedFile(self.centroids_, self.compression, sample, copy=False)
            del sample  # its residuals, made in place to learn the codes: freed before filing
            self._inverted_file = inverted
            self._inverted_file.add(self.vectors_)
        return self._inverted_file

    def _centroids(self) -> np.ndarray:
        n_lists, seed = default_n_lists(len(self.vectors_)), self._seed()
        return train_centroids(training_sample(self.vectors_, n_lists, seed), n_lists, seed)

    def _seed(self) -> int:
        """``random_state`` as one int, which faiss and numpy both take."""
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _vector_dtype(self) -> type:
        return np.float16 if self.compression else np.float32

    def _features(self, images: Sequence) -> np.ndarray:
        blocks = self.features_.transform_blocks(images, self.on_error)
        return l2_normalise(self.features_.fuse(blocks))

    def _append(self, images: Sequence, ids: np.ndarray, vectors: np.ndarray) -> None:
        readable = ~np.isnan(vectors).any(axis=1)
        self.dropped_indices_ = np.flatnonzero(~readable)
        self.ids_ = joined_ids(self.ids_, ids[readable])
        self.vectors_ = np.vstack([self.vectors_, vectors[readable].astype(self.vectors_.dtype)])
        if getattr(self, "_inverted_file", None) is not None:
            self._inverted_file.add(vectors[readable])
        if self.keypoints_ is not None:
            self.keypoints_ += self._keypoints([images[i] for i in np.flatnonzero(readable)])

    def _keypoints(self, images: list) -> list[Keypoints]:
        describer = BagOfVisualWords(
            self.rerank_detector,
            max_keypoints=RERANK_KEYPOINTS,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
        )
        return [Keypoints.from_pair(*pair) for pair in describer.describe(images)]

    def _reranked(
        self, keypoints: Keypoints, candidates: np.ndarray, scores: np.ndarray, k: int
    ) -> Matches:
        """Re-order the best ``rerank_depth`` candidates by verified matches; keep ``k``.

        Each of them scores its cosine similarity plus ``INLIER_WEIGHT`` per
        inlier; candidates beyond the depth keep their cosine order after them.
        """
        head = min(self.rerank_depth, len(candidates))
        descriptors = keypoints.descriptors()
        positions = [
            verified_matches(keypoints, self.keypoints_[item], query_descriptors=descriptors)
            for item in candidates[:head]
        ]
        positions += [np.zeros((0, 4), np.float32)] * (len(candidates) - head)
        inliers = np.array([len(pairs) for pairs in positions], dtype=np.int64)
        verified = scores[:head] + INLIER_WEIGHT * inliers[:head]
        order = np.r_[np.argsort(-verified, kind="stable"), np.arange(head, len(candidates))][:k]
        return Matches(
            id_values(self.ids_[candidates[order]]),
            scores[order],
            inliers[order],
            tuple(positions[i] for i in order),
        )


def _as_id_array(ids: Any) -> np.ndarray:
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise TypeError(f"ids must be a sequence of ids; got {type(ids).__name__}")
    array = np.empty(len(ids), dtype=object)
    array[:] = list(ids.tolist() if isinstance(ids, np.ndarray) else ids)
    return array


def _new_ids(ids: Any, n_images: int, existing: np.ndarray | tuple) -> np.ndarray:
    """Check ids for new photos: one per photo, unique, hashable, none already indexed."""
    array = _as_id_array(ids)
    if len(array) != n_images:
        raise ValueError(f"got {len(array)} ids for {n_images} photos; need one id per photo")
    try:
        counts = Counter(array.tolist())
    except TypeError as error:
        raise TypeError(f"ids must be hashable (str, int, ...): {error}") from None
    repeated = [item for item, count in counts.items() if count > 1]
    if repeated:
        raise ValueError(f"ids must be unique; repeated: {repeated[:10]}")
    clashing = sorted(set(counts) & set(np.asarray(existing, dtype=object).tolist()), key=str)
    if clashing:
        raise ValueError(f"ids already in the index: {clashing[:10]}; remove them first")
    return compact_ids(array.tolist())
