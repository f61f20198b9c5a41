"""Early fusion: the branches' features side by side, each block normalised and weighted."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._choices import BRANCHES
from .._validation import RUN_CONSTRAINTS, InstanceOf, Options, validate_params
from .._vectors import l2_normalise
from ..deep import CNNEmbedder
from ..features import BRANCH_CONSTRAINTS, BRANCH_NAMES, make_branches
from ..images import non_empty_images
from ..traditional import BagOfVisualWords

DEFAULT_BLOCK_WEIGHTS = (0.5, 1.0)
"""Block lengths (traditional, deep) of early fusion, chosen on the Grocery Store val split."""

FUSED_CONSTRAINTS = {
    "branch": (Options(BRANCHES),),
    **BRANCH_CONSTRAINTS,
    "block_weights": (InstanceOf((tuple, list), "a pair of weights"),),
}
"""The feature parameters shared by FusedFeatures, FusedClassifier and ProductIndex."""


def check_block_weights(block_weights: Any) -> None:
    """Raise ``ValueError`` unless ``block_weights`` holds two non-negative numbers."""
    if len(block_weights) != 2 or not all(
        isinstance(weight, numbers.Real) and weight >= 0 for weight in block_weights
    ):
        raise ValueError(f"block_weights must be two non-negative numbers; got {block_weights!r}")


ROWS_AT_ONCE = 256
"""Rows normalised at a time when blocks are fused: the temporaries stay a few MiB."""


def normalise_into(block: np.ndarray, weight: float, out: np.ndarray) -> None:
    """Write ``block``'s rows, L2-normalised and scaled by ``weight``, into ``out``.

    :data:`ROWS_AT_ONCE` rows at a time (each row is normalised on its own,
    so the values are those of normalising the whole block at once);
    ``block`` may be ``out`` itself.
    """
    for first in range(0, len(block), ROWS_AT_ONCE):
        rows = slice(first, first + ROWS_AT_ONCE)
        normalised = l2_normalise(block[rows].astype(np.float32, copy=False))
        np.multiply(normalised, weight, out=out[rows])


def normalise_blocks(blocks: list[np.ndarray], weights: list[float] | tuple) -> np.ndarray:
    """L2-normalise each block's rows, scale block ``i`` by ``weights[i]``, concatenate.

    Every block then has the same length per photo whatever its width or
    scale, so a 1,280-wide embedding cannot drown an 8,192-wide Fisher vector
    or the reverse. All-NaN rows (dropped photos) stay NaN; zero rows stay zero.

    The result, float32, is the only array as large as the blocks that this
    allocates: each block is written into its columns with :func:`normalise_into`.
    """
    blocks = [np.asarray(block) for block in blocks]
    n_rows = {len(block) for block in blocks}
    if len(n_rows) != 1:
        raise ValueError(f"blocks to fuse must have the same number of rows; got {sorted(n_rows)}")
    fused = np.empty((n_rows.pop(), sum(block.shape[1] for block in blocks)), np.float32)
    start = 0
    for block, weight in zip(blocks, weights, strict=True):
        columns = slice(start, start + block.shape[1])
        normalise_into(block, weight, fused[:, columns])
        start = columns.stop
    return fused


class FusedFeatures(TransformerMixin, BaseEstimator):
    """Concatenate traditional and deep features, each block normalised and weighted.

    Early fusion from the flowchart: one vector per photo holding both
    branches' features, ready for any scikit-learn classifier. It is written
    once, here: :class:`fusionrec.FusedClassifier` and
    :class:`fusionrec.ProductIndex` extract and fuse their features with it.

    Parameters
    ----------
    traditional : BagOfVisualWords or None, default=None
        The keypoint branch; ``None``: opponent-colour RootSIFT Fisher vectors
        (64 words on 64 PCA dimensions, learned from 50,000 sampled descriptors).
    deep : CNNEmbedder or None, default=None
        The CNN branch; ``None``: ImageNet EfficientNet-Lite0 with a centre
        crop keeping 0.75 of the shorter side. Either branch may come fitted,
        wrapped in ``sklearn.frozen.FrozenEstimator`` (a fine-tuned
        ``CNNEmbedder``, say): it is then used as it is, never refitted.
    branch : {"fused", "traditional", "deep"}, default="fused"
        Which branches to extract: both, or one (then its block alone,
        L2-normalised).
    block_weights : tuple of two floats, default=(0.5, 1.0)
        Length of each branch's block per photo (traditional, deep) after
        normalisation, with both branches.
    memory : str, path, joblib.Memory or None, default=None
        Cache each photo's keypoints and embeddings on disk, keyed by photo
        content and extractor settings, so refitting on overlapping photos
        (cross-validation, grid search) reads each photo once.
    on_error : {"raise", "warn", "skip"}, default="raise"
        Applied to both branches; a dropped photo gives a row of NaN.
    n_jobs : int or None, default=None
        joblib workers of the default traditional branch.
    random_state : int, RandomState or None, default=None
        Seeds the default traditional branch; ``None``: unseeded.
    verbose : int, default=0

    Attributes
    ----------
    branches_ : dict of str to fusionrec.features.Branch
        The fitted branches, by name.
    n_features_out_ : int

    Examples
    --------
    >>> from fusionrec import BagOfVisualWords, FusedFeatures
    >>> from fusionrec.datasets import load_demo_products
    >>> photos = load_demo_products().data[:20]
    >>> fused = FusedFeatures(BagOfVisualWords(n_words=8, random_state=0))
    >>> fused.fit_transform(photos).shape
    (20, 1288)
    """

    _parameter_rules: dict = {**FUSED_CONSTRAINTS, **RUN_CONSTRAINTS}  # noqa: RUF012

    def __init__(
        self,
        traditional: BagOfVisualWords | None = None,
        *,
        deep: CNNEmbedder | None = None,
        branch: str = "fused",
        block_weights: tuple[float, float] = DEFAULT_BLOCK_WEIGHTS,
        memory: Any = None,
        on_error: str = "raise",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.traditional = traditional
        self.deep = deep
        self.branch = branch
        self.block_weights = block_weights
        self.memory = memory
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> FusedFeatures:
        """Fit the branches on the photos (``y`` reaches a fine-tuned deep branch)."""
        self._fit_branches(X, y)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit the branches and return the fused features of the same photos."""
        return self._fused_rows(self._fit_branches(X, y), None)

    def transform(self, X: Any) -> np.ndarray:
        """Fused features: ``(n_images, n_features_out_)`` float32, NaN rows for dropped photos.

        Each branch writes its block's columns of the result as it extracts
        them (with ``memory``, a chunk of photos at a time), so no block is
        held beside the fused rows.
        """
        check_is_fitted(self, "branches_")
        return self._fused_rows(non_empty_images(X), None)

    def fit_blocks(self, X: Any, y: Any = None) -> dict[str, np.ndarray]:
        """Fit the branches and return each one's features of the photos, before fusion.

        Returns
        -------
        dict of str to ndarray
            Per branch name, ``(n_images, width)`` features as the extractor
            gives them; all-NaN rows for dropped photos.
        """
        images = self._fit_branches(X, y)
        return {name: branch.transform(images) for name, branch in self.branches_.items()}

    def _fit_branches(self, X: Any, y: Any) -> Sequence:
        """Check the parameters, fit the branches on the photos; the photos."""
        validate_params(self, self._parameter_rules)
        check_block_weights(self.block_weights)
        images = non_empty_images(X)
        names = BRANCH_NAMES if self.branch == "fused" else (self.branch,)
        self.branches_ = {
            name: branch.fit(images, y) for name, branch in make_branches(self, names).items()
        }
        self.n_features_out_ = sum(
            branch.fitted_.n_features_out_ for branch in self.branches_.values()
        )
        return images

    def _fused_rows(self, images: Sequence, on_error: str | None) -> np.ndarray:
        """The photos' fused rows, each branch's features written into its block's columns."""
        fused = np.empty((len(images), self.n_features_out_), np.float32)
        weights = self.block_lengths(len(self.branches_))
        for branch, columns, weight in zip(
            self.branches_.values(), self._block_columns(), weights, strict=True
        ):
            block = branch.transform(images, on_error, out=fused[:, columns])
            normalise_into(block, weight, block)
        return fused

    def _block_columns(self) -> list[slice]:
        """Each branch's columns in a fused row, in the order of ``branches_``."""
        widths = [branch.fitted_.n_features_out_ for branch in self.branches_.values()]
        ends = accumulate(widths)
        return [slice(end - width, end) for end, width in zip(ends, widths, strict=True)]

    def dropped_rows(self, fused: np.ndarray) -> np.ndarray:
        """Whether each fused row is of a photo that a branch dropped (its block all NaN).

        Examples
        --------
        >>> from fusionrec import BagOfVisualWords
        >>> from fusionrec.datasets import load_demo_products
        >>> fused = FusedFeatures(BagOfVisualWords(n_words=8, random_state=0))
        >>> rows = fused.fit_transform(load_demo_products().data[:3])
        >>> rows[1, :8] = np.nan
        >>> fused.dropped_rows(rows)
        array([False,  True, False])
        """
        check_is_fitted(self, "branches_")
        dropped = np.zeros(len(fused), bool)
        for first in range(0, len(fused), ROWS_AT_ONCE):
            rows = slice(first, first + ROWS_AT_ONCE)
            for columns in self._block_columns():
                dropped[rows] |= np.isnan(fused[rows, columns]).all(axis=1)
        return dropped

    def transform_blocks(self, X: Any, on_error: str | None = None) -> dict[str, np.ndarray]:
        """Each fitted branch's features of the photos, before fusion.

        ``on_error`` overrides the policy given at fit (an estimator built on
        this one passes its own).
        """
        check_is_fitted(self, "branches_")
        images = non_empty_images(X)
        policy = self.on_error if on_error is None else on_error
        return {name: branch.transform(images, policy) for name, branch in self.branches_.items()}

    def fuse(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """One row per photo: the blocks L2-normalised, weighted by ``block_weights`` if both.

        A single block (one branch, or one of a late fusion's) is only normalised.
        """
        return normalise_blocks(list(blocks.values()), self.block_lengths(len(blocks)))

    def block_lengths(self, n_blocks: int) -> tuple[float, ...]:
        """Length of each block in a row fused from ``n_blocks`` blocks, in their order.

        ``block_weights`` with both branches; 1 for a block on its own. A
        fused row is linear in each L2-normalised block, scaled by this.

        Examples
        --------
        >>> FusedFeatures(block_weights=(0.5, 1.0)).block_lengths(1)
        (1.0,)
        """
        return tuple(self.block_weights) if n_blocks == 2 else (1.0,)

    def fitted_extractor(self, name: str) -> BagOfVisualWords | CNNEmbedder:
        """The fitted extractor of the branch ``name`` (``"traditional"`` or ``"deep"``)."""
        check_is_fitted(self, "branches_")
        if name not in self.branches_:
            raise KeyError(f"no {name!r} branch was fitted; fitted: {sorted(self.branches_)}")
        return self.branches_[name].fitted_

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Column names prefixed by their branch, e.g. ``traditional__fisher_mu_w0_d0``."""
        check_is_fitted(self, "branches_")
        return np.asarray(
            [
                f"{name}__{column}"
                for name, branch in self.branches_.items()
                for column in branch.fitted_.get_feature_names_out()
            ],
            dtype=object,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def features_for(estimator: Any) -> FusedFeatures:
    """An unfitted :class:`FusedFeatures` with the feature parameters of ``estimator``.

    ``estimator`` (a FusedClassifier or ProductIndex) has every parameter of
    FusedFeatures, which then extracts and fuses its features.
    """
    return FusedFeatures(
        **{name: getattr(estimator, name) for name in FusedFeatures._get_param_names()}
    )


def tunes_its_network(features: Any) -> bool:
    """Whether fitting ``features`` fine-tunes its CNN on the labels it is given.

    Such a network learns every training photo, so photos held out of the
    training set afterwards are not new to it. ``features`` without a ``deep``
    parameter (a stand-in extractor) tunes nothing.

    Examples
    --------
    >>> from fusionrec import CNNEmbedder
    >>> from fusionrec.deep import FineTuning
    >>> tunes_its_network(FusedFeatures()), tunes_its_network(
    ...     FusedFeatures(deep=CNNEmbedder(fine_tune=FineTuning()))
    ... )
    (False, True)
    """
    return getattr(getattr(features, "deep", None), "fine_tune", None) is not None


def upgraded_branches(state: dict) -> dict:
    """An estimator's pickled state from before :class:`FusedFeatures` held its branches.

    Estimators pickled by fusionrec 0.1.0.dev0 builds before the features
    layer kept their fitted branches in ``branches_``; they now live in a
    fitted ``features_``.
    """
    if "branches_" not in state:
        return state
    state = dict(state)
    branches = state.pop("branches_")
    features = FusedFeatures(
        **{name: state[name] for name in FusedFeatures._get_param_names() if name in state}
    )
    features.branches_ = branches
    features.n_features_out_ = sum(branch.fitted_.n_features_out_ for branch in branches.values())
    state["features_"] = features
    return state
