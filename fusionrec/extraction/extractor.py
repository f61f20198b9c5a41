"""Which features a job writes: any fitted model, as the fitted FusedFeatures inside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

from ..deep import CNNEmbedder
from ..features import default_deep
from ..fusion import FusedClassifier, FusedFeatures
from ..search import ProductIndex
from ..traditional import BagOfVisualWords


def fitted_features(model: Any = None, photos: Sequence = ()) -> FusedFeatures:
    """The fitted :class:`fusionrec.FusedFeatures` whose rows a job writes for ``model``.

    Parameters
    ----------
    model : FusedFeatures, FusedClassifier, ProductIndex, CNNEmbedder, BagOfVisualWords or None
        A fitted ``FusedFeatures`` is used as it is; a fitted classifier or
        index gives its ``features_``, so the rows written are those it
        extracts itself (an index built from them equals one fitted on the
        photos). A fitted extractor of one branch becomes that branch alone.
        ``None``: the deep branch's default ``CNNEmbedder``, which learns
        nothing from photos.
    photos : sequence of images
        A photo or two to fit on, where ``model`` needs it (``None``, or an
        unfitted ``CNNEmbedder`` without fine-tuning). Fitting a frozen branch
        only checks that the photos are images.

    Returns
    -------
    FusedFeatures

    Raises
    ------
    TypeError
        If ``model`` is of another kind.

    Examples
    --------
    >>> from fusionrec.datasets import load_demo_products
    >>> features = fitted_features(None, load_demo_products().data[:1])
    >>> features.branch, features.n_features_out_
    ('deep', 1280)
    """
    if isinstance(model, FusedFeatures):
        check_is_fitted(model, "branches_")
        return model
    if isinstance(model, (FusedClassifier, ProductIndex)):
        check_is_fitted(model, "features_")
        return model.features_
    if model is None:
        model = default_deep()
    if isinstance(model, CNNEmbedder):
        deep = model if _is_fitted(model) else clone(model).fit(photos[:1])
        return _one_branch(branch="deep", deep=FrozenEstimator(deep)).fit(photos[:1])
    if isinstance(model, BagOfVisualWords):
        check_is_fitted(model)
        return _one_branch(FrozenEstimator(model), branch="traditional").fit(photos[:1])
    raise TypeError(
        "model must be a fitted FusedFeatures, FusedClassifier, ProductIndex, CNNEmbedder or "
        f"BagOfVisualWords, or None; got {type(model).__name__}"
    )


def _is_fitted(model: Any) -> bool:
    return hasattr(model, "network_")


def _one_branch(*args: Any, **params: Any) -> FusedFeatures:
    """One frozen branch, to be fitted on photos that may be unreadable (they only pass through)."""
    return FusedFeatures(*args, on_error="skip", **params)
