"""BagOfVisualWords: the traditional branch as a scikit-learn transformer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._parallel import Shipped, map_chunks, opencv_threads, runs_elsewhere, single_threaded_blas
from .._validation import RUN_CONSTRAINTS, Integer, Options, validate_params
from ..images import (
    ImageReadError,
    iter_images,
    non_empty_images,
    report_unreadable,
)
from .codebook import ENCODINGS, learn_codebook
from .detectors import DETECTORS, make_detector

PRECOMPUTED = "precomputed"
_CHUNK_SIZE = 8


class BagOfVisualWords(TransformerMixin, BaseEstimator):
    """Encode photos as histograms (or VLAD / Fisher vectors) of local features.

    The traditional branch of the flowchart: detect keypoints, describe them
    (SIFT, RootSIFT, dense SIFT, ORB, AKAZE, BRISK, KAZE, or SURF where the
    OpenCV build has it), learn a visual vocabulary with scikit-learn on a
    bounded random sample of descriptors, and encode each photo as one vector.

    Parameters
    ----------
    detector : str, default="sift"
        One of ``"sift"``, ``"rootsift"``, ``"opponent-rootsift"`` (RootSIFT
        of the intensity and of two opponent-colour channels), ``"dense-sift"``, ``"orb"``,
        ``"akaze"``, ``"brisk"``, ``"kaze"``, ``"surf"`` (see
        :func:`fusionrec.available_detectors`), or ``"precomputed"``: then each
        item of ``X`` is an ``(n_keypoints, n_dims)`` array of descriptors, or
        a ``(positions, descriptors)`` pair as :meth:`describe` returns.
    n_words : int, default=256
        Vocabulary size: k-means clusters, or mixture components for Fisher
        vectors. scikit-learn's ``KMeans`` learns up to 256 words,
        ``MiniBatchKMeans`` more.
    encoding : {"bovw", "vlad", "fisher"}, default="bovw"
        How descriptors become one vector: a histogram of visual words
        (``n_words`` values), VLAD residuals (``n_words`` x descriptor length),
        or an improved Fisher vector (twice that).
    max_side : int or None, default=512
        Photos are shrunk so that their longer side is at most this many
        pixels before detection, which bounds the cost per photo.
    max_keypoints : int, default=1000
        Keep at most this many keypoints per photo, the strongest first
        (not used by ``"dense-sift"``, which describes a fixed grid).
    spatial_pyramid : bool, default=False
        Also encode the four quadrants of each photo (1x1 + 2x2 pyramid).
    tfidf : bool, default=False
        Weight ``"bovw"`` histograms by inverse document frequency, estimated
        from the descriptor sample.
    power_norm : bool, default=True
        Signed square root before L2 normalisation (Hellinger kernel for
        histograms).
    pca_components : int or None, default=None
        Reduce descriptors with PCA before learning the vocabulary.
    max_descriptors : int, default=200_000
        Size bound of the descriptor sample the vocabulary is learned from,
        drawn evenly across photos, so that ``fit`` memory does not grow with
        the number of photos.
    on_error : {"raise", "warn", "skip"}, default="raise"
        What to do with unreadable photos; see :mod:`fusionrec.images.errors`.
        In ``transform`` a dropped photo gives a row of NaN.
    n_jobs : int or None, default=None
        Parallel workers through joblib (``-1``: all cores).
    random_state : int, RandomState or None, default=None
        Seeds the descriptor sample and the clustering.
    verbose : int, default=0
        Show a progress bar when positive.

    Attributes
    ----------
    codebook_ : Codebook
        The learned vocabulary and encoder.
    n_features_out_ : int
        Length of the encoded vectors.
    n_descriptors_ : int
        How many descriptors the vocabulary was learned from.

    See Also
    --------
    fusionrec.CNNEmbedder : the deep branch.

    Notes
    -----
    Binary descriptors (ORB, AKAZE, BRISK) are unpacked to one 0/1 value per
    bit before clustering: the squared Euclidean distance between unpacked
    descriptors is their Hamming distance, so k-means minimises the matching
    metric and its centres are per-bit frequencies.

    ``fit_transform`` detects features twice (once to learn the vocabulary
    from a bounded sample, once to encode), which keeps memory flat.

    A photo with no keypoints encodes to a row of zeros.

    Chunks of eight photos go through :class:`joblib.Parallel`: ``n_jobs``
    workers on this machine, or the workers of the backend the caller
    activates (``joblib.parallel_backend("dask")``, Ray's ``"ray"``). Each
    worker process receives the fitted vocabulary once, and holds OpenCV to
    one thread.

    Examples
    --------
    >>> from fusionrec import BagOfVisualWords
    >>> from fusionrec.datasets import load_demo_products
    >>> photos = load_demo_products().data[:20]
    >>> bovw = BagOfVisualWords(n_words=32, random_state=0).fit(photos)
    >>> bovw.transform(photos[:3]).shape
    (3, 32)
    """

    _parameter_rules: dict = {  # noqa: RUF012
        "detector": (Options((*DETECTORS, PRECOMPUTED)),),
        "n_words": (Integer(2),),
        "encoding": (Options(ENCODINGS),),
        "max_side": (Options((None,)), Integer(16)),
        "max_keypoints": (Integer(1),),
        "spatial_pyramid": (Options((True, False)),),
        "tfidf": (Options((True, False)),),
        "power_norm": (Options((True, False)),),
        "pca_components": (Options((None,)), Integer(1)),
        "max_descriptors": (Integer(1),),
        **RUN_CONSTRAINTS,
    }

    def __init__(
        self,
        detector: str = "sift",
        *,
        n_words: int = 256,
        encoding: str = "bovw",
        max_side: int | None = 512,
        max_keypoints: int = 1000,
        spatial_pyramid: bool = False,
        tfidf: bool = False,
        power_norm: bool = True,
        pca_components: int | None = None,
        max_descriptors: int = 200_000,
        on_error: str = "raise",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.detector = detector
        self.n_words = n_words
        self.encoding = encoding
        self.max_side = max_side
        self.max_keypoints = max_keypoints
        self.spatial_pyramid = spatial_pyramid
        self.tfidf = tfidf
        self.power_norm = power_norm
        self.pca_components = pca_components
        self.max_descriptors = max_descriptors
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _check_params(self) -> None:
        validate_params(self, self._parameter_rules)
        if self.detector != PRECOMPUTED:
            make_detector(self.detector)  # an unavailable detector fails here, not in a worker
        if self.tfidf and self.encoding != "bovw":
            raise ValueError(
                f"tfidf applies to encoding='bovw' only; got encoding={self.encoding!r}"
            )

    def _describer(self, n_dims: int | None = None, *, described: bool = False) -> dict:
        """How chunks read descriptors; ``described``: from ``(positions, descriptors)`` pairs."""
        return {
            "detector": PRECOMPUTED if described else self.detector,
            "max_side": self.max_side,
            "max_keypoints": self.max_keypoints,
            "n_dims": n_dims,
            "single_threaded": runs_elsewhere() or effective_n_jobs(self.n_jobs) > 1,
            "spatial_pyramid": self.spatial_pyramid,
        }

    def _over_chunks(self, function, images, description: str, describer: dict, **kwargs):
        return map_chunks(
            function,
            images,
            chunk_size=_CHUNK_SIZE,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            description=description,
            describer=describer,
            on_error=self.on_error,
            **kwargs,
        )

    def fit(self, X: Any, y: Any = None) -> BagOfVisualWords:
        """Learn the visual vocabulary from a bounded sample of the photos' descriptors.

        Parameters
        ----------
        X : sequence of images
            Photos in any form :func:`fusionrec.images.load_image` reads, or
            descriptor arrays with ``detector="precomputed"``.
        y : ignored

        Returns
        -------
        self : BagOfVisualWords
        """
        return self._fit(X, described=False)

    def fit_described(self, described: Any) -> BagOfVisualWords:
        """Learn the vocabulary from what :meth:`describe` returned, keeping ``detector``.

        The fitted estimator encodes photos as if :meth:`fit` had read them:
        the same vocabulary from the same descriptors. This is how a
        per-photo cache (``memory`` in :class:`fusionrec.FusedClassifier`)
        describes each photo once and refits only the vocabulary.

        Parameters
        ----------
        described : sequence of (positions, descriptors) pairs
            As :meth:`describe` returns them (without its ``None`` entries).

        Returns
        -------
        self : BagOfVisualWords
        """
        return self._fit(described, described=True)

    def _fit(self, X: Any, *, described: bool) -> BagOfVisualWords:
        self._check_params()
        images = non_empty_images(X)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        quota = max(1, math.ceil(self.max_descriptors / len(images)))
        failures: list[ImageReadError] = []
        samples, owners = [], []
        for chunk_samples, chunk_owners, chunk_failures in self._over_chunks(
            _sample_chunk,
            images,
            "sampling descriptors",
            self._describer(described=described),
            quota=quota,
            seed=seed,
        ):
            samples.extend(chunk_samples)
            owners.extend(chunk_owners)
            failures.extend(chunk_failures)
        report_unreadable(failures, self.on_error)
        sample = _stack_sample(samples)
        self._check_sample(sample, len(images) - len(failures))
        self.codebook_ = learn_codebook(
            sample,
            np.concatenate(owners),
            encoding=self.encoding,
            n_words=self.n_words,
            spatial_pyramid=self.spatial_pyramid,
            power_norm=self.power_norm,
            tfidf=self.tfidf,
            pca_components=self.pca_components,
            random_state=rng,
        )
        self.n_descriptors_ = len(sample)
        self.n_descriptor_dims_ = sample.shape[1]
        self.n_features_out_ = self.codebook_.n_features
        return self

    def _check_sample(self, sample: np.ndarray, n_readable: int) -> None:
        needed = max(self.n_words, self.pca_components or 0)
        if len(sample) < needed:
            raise ValueError(
                f"found only {len(sample)} descriptors in {n_readable} readable photo(s), fewer "
                f"than n_words={self.n_words}"
                + (f" or pca_components={self.pca_components}" if self.pca_components else "")
                + "; use fewer words, more photos, or larger photos"
            )

    def transform(self, X: Any) -> np.ndarray:
        """Encode each photo as one vector.

        Parameters
        ----------
        X : sequence of images
            As in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_images, ``n_features_out_``), float32
            One row per photo; all-NaN rows mark photos dropped by ``on_error``.
        """
        return self._transform(X, described=False)

    def encode_described(self, described: Any) -> np.ndarray:
        """Encode what :meth:`describe` returned, as :meth:`transform` encodes photos.

        Parameters
        ----------
        described : sequence of (positions, descriptors) pairs

        Returns
        -------
        ndarray of shape (n_pairs, ``n_features_out_``), float32
        """
        return self._transform(described, described=True)

    def description_key(self) -> str:
        """Names what :meth:`describe` gives a photo: the settings it depends on.

        Two estimators with the same key describe every photo alike, whatever
        their vocabulary, so a cache of descriptions may serve both.
        """
        detector = DETECTORS.get(self.detector)
        revision = f"-r{detector.revision}" if detector is not None and detector.revision else ""
        return f"describe-{self.detector}{revision}-{self.max_side}-{self.max_keypoints}"

    def _transform(self, X: Any, *, described: bool) -> np.ndarray:
        check_is_fitted(self, "codebook_")
        images = non_empty_images(X)
        rows = np.empty((len(images), self.codebook_.n_features), dtype=np.float32)
        failures = []
        describer = self._describer(self.n_descriptor_dims_, described=described)
        filled = 0
        for chunk_rows, chunk_failures in self._over_chunks(
            _encode_chunk, images, "encoding photos", describer, codebook=Shipped(self.codebook_)
        ):
            rows[filled : filled + len(chunk_rows)] = chunk_rows  # no list of chunks to stack
            filled += len(chunk_rows)
            failures.extend(chunk_failures)
        report_unreadable(failures, self.on_error)
        return rows

    def describe(self, X: Any) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Keypoint positions and descriptors of each photo, before any vocabulary.

        Needs no fitting. The pairs can be cached and passed back later to
        :meth:`fit_described` and :meth:`encode_described` (or with
        ``detector="precomputed"``), spatial pyramids included, which is how
        :class:`fusionrec.FusedClassifier` reads each photo only once.

        Returns
        -------
        list
            Per photo, ``(positions, descriptors)``: ``(n, 2)`` keypoint centres as
            fractions of width and height, and ``(n, n_dims)`` float32
            descriptors; ``None`` for photos dropped by ``on_error``.
        """
        self._check_params()
        images = non_empty_images(X)
        pairs, failures = [], []
        for chunk_pairs, chunk_failures in self._over_chunks(
            _describe_chunk, images, "describing photos", self._describer()
        ):
            pairs.extend(chunk_pairs)
            failures.extend(chunk_failures)
        report_unreadable(failures, self.on_error)
        return pairs

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, such as ``bovw_w12`` or ``vlad_q3_w5_d17``."""
        check_is_fitted(self, "codebook_")
        return np.asarray(self.codebook_.feature_names(), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        return tags


def _read_descriptors(images: list, start: int, describer: dict, on_error: str, failures: list):
    """Yield ``(position, positions, descriptors)``; ``None`` arrays for dropped photos."""
    if describer["detector"] == PRECOMPUTED:
        yield from _precomputed(images, start, on_error, failures, describer)
        return
    features = make_detector(describer["detector"], max_keypoints=describer["max_keypoints"])
    with opencv_threads(1 if describer["single_threaded"] else None):
        for position, rgb in iter_images(
            images,
            on_error=on_error,
            max_side=describer["max_side"],
            failures=failures,
            start=start,
        ):
            if rgb is None:
                yield position, None, None
                continue
            yield position, *features.describe(rgb)


def _precomputed(images: list, start: int, on_error: str, failures: list, describer: dict):
    for offset, item in enumerate(images):
        position = start + offset
        positions, descriptors = _split_precomputed(item)
        problem = _descriptor_problem(positions, descriptors, describer)
        if problem is None:
            yield position, positions, descriptors.astype(np.float32, copy=False)
            continue
        error = ImageReadError(f"object of type {type(item).__name__}", problem, position)
        if on_error == "raise":
            raise error
        failures.append(error)
        yield position, None, None


def _split_precomputed(item: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(positions, descriptors)`` from a descriptor array or a pair of arrays."""
    if isinstance(item, tuple) and len(item) == 2:
        positions, descriptors = (np.asarray(part, dtype=np.float32) for part in item)
        return positions, descriptors
    if isinstance(item, (np.ndarray, list)):
        return None, np.asarray(item)
    return None, None


def _descriptor_problem(
    positions: np.ndarray | None, descriptors: np.ndarray | None, describer: dict
) -> str | None:
    if descriptors is None or descriptors.ndim != 2:
        shape = None if descriptors is None else descriptors.shape
        return (
            "expected an (n_keypoints, n_dims) descriptor array or a (positions, descriptors) "
            f"pair; got shape {shape}"
        )
    n_dims = describer["n_dims"]
    if n_dims is not None and descriptors.shape[1] != n_dims:
        return (
            f"descriptors have {descriptors.shape[1]} dimensions; "
            f"the vocabulary was fitted on {n_dims}"
        )
    if not np.issubdtype(descriptors.dtype, np.number) or not np.isfinite(descriptors).all():
        return "descriptors must be finite numbers"
    if positions is None:
        return (
            "spatial_pyramid needs (positions, descriptors) pairs"
            if describer["spatial_pyramid"]
            else None
        )
    if positions.shape != (len(descriptors), 2) or not ((positions >= 0) & (positions <= 1)).all():
        return "positions must be an (n_keypoints, 2) array of (x, y) fractions in [0, 1]"
    return None


def _stack_sample(samples: list[np.ndarray]) -> np.ndarray:
    dims = sorted({sample.shape[1] for sample in samples})
    if len(dims) > 1:
        raise ValueError(f"descriptors of different lengths {dims} cannot share one vocabulary")
    return np.concatenate(samples) if samples else np.zeros((0, 0), np.float32)


def _sample_chunk(
    images: list, *, start: int, describer: dict, on_error: str, quota: int, seed: int
):
    samples, owners, failures = [], [], []
    for position, _, descriptors in _read_descriptors(images, start, describer, on_error, failures):
        if descriptors is None or len(descriptors) == 0:
            continue
        if len(descriptors) > quota:
            rng = np.random.default_rng([seed, position])
            descriptors = descriptors[np.sort(rng.choice(len(descriptors), quota, replace=False))]
        samples.append(descriptors)
        owners.append(np.full(len(descriptors), position))
    return samples, owners, failures


def _describe_chunk(images: list, *, start: int, describer: dict, on_error: str):
    failures: list[ImageReadError] = []
    pairs = [
        None if descriptors is None else (positions, descriptors)
        for _, positions, descriptors in _read_descriptors(
            images, start, describer, on_error, failures
        )
    ]
    return pairs, failures


def _encode_chunk(images: list, *, start: int, describer: dict, on_error: str, codebook: Shipped):
    """Encode a chunk of photos with the :class:`Codebook` shipped; NaN rows for dropped ones.

    BLAS is held to one thread: the per-photo products are tiny, and idle
    OpenBLAS threads spinning beside OpenCV halve throughput on two cores.
    """
    codebook = codebook.get()
    rows = np.full((len(images), codebook.n_features), np.nan, dtype=np.float32)
    failures: list[ImageReadError] = []
    with single_threaded_blas():
        for position, positions, descriptors in _read_descriptors(
            images, start, describer, on_error, failures
        ):
            if descriptors is not None:
                rows[position - start] = codebook.encode(positions, descriptors)
    return rows, failures
