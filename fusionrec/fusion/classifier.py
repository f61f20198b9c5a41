"""FusedClassifier: recognise products from the traditional, the deep, or both branches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._choices import FUSIONS
from .._parallel import single_threaded_blas
from .._pickling import NewParameterDefaults
from .._validation import RUN_CONSTRAINTS, Options, validate_params
from ..deep import CNNEmbedder
from ..features import cache_location
from ..images import non_empty_images
from ..traditional import BagOfVisualWords
from .features import (
    FUSED_CONSTRAINTS,
    ROWS_AT_ONCE,
    check_block_weights,
    features_for,
    tunes_its_network,
    upgraded_branches,
)
from .few_shot import (
    FEW_SHOT_LATE_WEIGHT,
    block_weights_for,
    late_weight_choice,
    photos_of_rarest,
)
from .fitting import fit_cached
from .rejection import REJECTION_CONSTRAINTS, RejectsUnknown
from .row_space import fit_in_row_space

_LATE_WEIGHT_GRID = np.linspace(0.0, 1.0, 21)


def default_classifier(random_state: Any = None) -> LogisticRegression:
    """Logistic regression; ``C=10`` suits L2-normalised feature blocks.

    newton-cg rather than scikit-learn's lbfgs: on the 2,640 Grocery Store
    training photos' fused rows its workspace is 43 MiB against lbfgs's ten
    correction pairs' 199 MiB, and it reaches a lower loss (lbfgs stops at
    its gradient tolerance first), in 16.6 s against 12.9 s.
    """
    return LogisticRegression(C=10.0, solver="newton-cg", max_iter=3000, random_state=random_state)


class FusedClassifier(RejectsUnknown, NewParameterDefaults, ClassifierMixin, BaseEstimator):
    """Classify product photos with keypoint features, CNN features, or both fused.

    The flowchart's decision: ``branch`` picks the traditional branch, the deep
    branch, or both; with both, ``fusion="early"`` trains one classifier on the
    concatenated, block-normalised features, and ``fusion="late"`` trains one
    classifier per branch and combines their probabilities with a weight
    chosen on held-out folds of the training photos. Because ``branch`` and
    ``fusion`` are parameters, ``GridSearchCV`` can compare them.

    Parameters
    ----------
    branch : {"traditional", "deep", "fused"}, default="fused"
    fusion : {"early", "late"}, default="early"
        Ignored unless ``branch="fused"``.
    traditional : BagOfVisualWords or None, default=None
        ``None``: opponent-colour RootSIFT Fisher vectors (64 words on 64 PCA
        dimensions, learned from 50,000 sampled descriptors).
    deep : CNNEmbedder or None, default=None
        ``None``: ImageNet EfficientNet-Lite0 (weights bundled), centre crop
        keeping 0.75 of the shorter side. Either branch may come fitted,
        wrapped in ``sklearn.frozen.FrozenEstimator``: it is then used as it
        is, never refitted (a network fine-tuned once serves every fold of a
        grid search).
    classifier : scikit-learn classifier or None, default=None
        Cloned for each use; ``None``: ``LogisticRegression(C=10, solver="newton-cg")``. Late
        fusion calibrates one without ``predict_proba``.
    block_weights : "auto" or tuple of two floats, default="auto"
        Early fusion: length of each block per photo (traditional, deep)
        after normalisation, as in ``FusedFeatures``. ``"auto"``: (0.5, 1.0)
        when every product has at least 15 photos in ``fit``, else (1.0, 1.0):
        with 1 to 10 photos per product, giving the keypoints as much length
        as the embedding classified 2.5 to 5.5 points more of the Grocery
        Store val photos (see ``block_weights_``).
    memory : str, path, joblib.Memory or None, default=None
        Cache each photo's keypoints and embeddings on disk, keyed by photo
        content and extractor settings, so a grid search reads each photo
        once; with an integer ``random_state``, also each fitted classifier,
        so candidates that train the same classifier on the same features
        (a single branch ignores ``fusion``) train it once.
    on_error : {"raise", "warn", "skip"}, default="raise"
        Unreadable photos are dropped from ``fit`` together with their labels
        (see ``dropped_indices_``); in ``predict_proba`` they get NaN rows and
        in ``predict`` the label ``None``.
    n_jobs : int or None, default=None
        joblib workers of the default traditional branch and of the
        late-fusion cross-validation.
    random_state : int, RandomState or None, default=None
        Seeds the default traditional branch, the default classifier, the
        late-fusion folds and the products left out to calibrate
        ``false_accept_rate``; ``None``: unseeded.
    verbose : int, default=0
    false_accept_rate : float in (0, 1] or None, default=None
        The reject option. ``None``: every photo gets a product. A rate:
        ``predict`` answers ``unknown_label_`` for a photo whose
        ``known_score`` is at most ``known_threshold_``, learned in ``fit``
        so that about this fraction of photos of products *not* in the
        training photos would still be given a product. ``fit`` learns it by
        leaving groups of products out in turn (see
        :class:`fusionrec.fusion.RejectsUnknown`), which needs at least
        three products and trains up to five more classifiers. With a CNN
        fine-tuned on the same labels, that threshold lets most unknown
        photos through, and ``fit`` warns.
    unknown_label : str or int, default="auto"
        What ``predict`` answers for a rejected photo; ``"auto"``: ``-1``
        when the labels are integers, else ``"unknown"``.

    Attributes
    ----------
    classes_ : ndarray
        The labels seen in ``fit``, sorted.
    features_ : FusedFeatures
        The fitted branches and their fusion (``features_.fitted_extractor("deep")``
        is the fitted CNN, say).
    classifiers_ : dict
        The fitted classifiers: ``{"fused": ...}`` for early fusion, else one per branch.
    block_weights_ : tuple of two floats
        The block lengths used, ``block_weights`` or what ``"auto"`` chose.
    late_weight_ : float
        Weight of the traditional branch's log-probabilities (late fusion only).
    late_weight_choice_ : {"held-out", "few-shot", "fine-tuned"}
        How ``late_weight_`` was set (late fusion only): chosen on held-out
        folds of the training photos when every product has at least
        ``fusionrec.fusion.few_shot.HELD_OUT_PHOTOS`` (5) photos; otherwise
        (``"few-shot"``) the weight measured best for products known from 1
        to 4 photos (``FEW_SHOT_LATE_WEIGHT``, 0.7), since folds cannot hold
        out the only photo of a product and are noisy with a few. The same
        weight (``"fine-tuned"``) when ``deep`` fine-tunes its network in
        ``fit`` and some product has fewer than ``FEW_PHOTOS`` (15) photos:
        the network has learned the held-out folds' photos, and a weight
        chosen on them undervalued the keypoints there.
    dropped_indices_ : ndarray
        Positions of training photos dropped by ``on_error``.
    known_threshold_ : float or None
        Photos whose known score is at most this are rejected; ``None``
        without ``false_accept_rate``.
    unknown_label_ : str, int or None
        The label of rejected photos; ``None`` without ``false_accept_rate``.

    Examples
    --------
    >>> from fusionrec import FusedClassifier
    >>> from fusionrec.datasets import load_demo_products
    >>> demo = load_demo_products()
    >>> model = FusedClassifier(branch="deep").fit(demo.data[::3], demo.target[::3])
    >>> model.predict(demo.data[1:3])
    array([0, 0])
    """

    _renamed: ClassVar[dict] = {"weights": "block_weights"}
    _added_parameters: ClassVar[dict] = {"false_accept_rate": None, "unknown_label": "auto"}
    _parameter_rules: dict = {  # noqa: RUF012
        "fusion": (Options(FUSIONS),),
        **FUSED_CONSTRAINTS,
        "block_weights": (Options(("auto",)), *FUSED_CONSTRAINTS["block_weights"]),
        **RUN_CONSTRAINTS,
        **REJECTION_CONSTRAINTS,
    }

    def __init__(
        self,
        branch: str = "fused",
        *,
        fusion: str = "early",
        traditional: BagOfVisualWords | None = None,
        deep: CNNEmbedder | None = None,
        classifier: Any = None,
        block_weights: str | tuple[float, float] = "auto",
        memory: Any = None,
        on_error: str = "raise",
        n_jobs: int | None = None,
        random_state: Any = None,
        verbose: int = 0,
        false_accept_rate: float | None = None,
        unknown_label: str | int = "auto",
    ) -> None:
        self.branch = branch
        self.fusion = fusion
        self.traditional = traditional
        self.deep = deep
        self.classifier = classifier
        self.block_weights = block_weights
        self.memory = memory
        self.on_error = on_error
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.false_accept_rate = false_accept_rate
        self.unknown_label = unknown_label

    def _upgraded(self, state: dict) -> dict:
        """Before 0.1.0 (unreleased), the fitted branches were kept in ``branches_``."""
        return upgraded_branches(state)

    def _is_late(self) -> bool:
        return self.branch == "fused" and self.fusion == "late"

    def fit(self, X: Any, y: Any) -> FusedClassifier:
        """Extract the chosen branches' features and train the classifier(s).

        Parameters
        ----------
        X : sequence of images
        y : array-like of shape (n_images,)
            Product labels, strings or integers.

        Returns
        -------
        self : FusedClassifier
        """
        validate_params(self, self._parameter_rules)
        if self.block_weights != "auto":
            check_block_weights(self.block_weights)
        images = non_empty_images(X)
        labels = column_or_1d(np.asarray(y, dtype=object if _has_strings(y) else None))
        if len(labels) != len(images):
            raise ValueError(f"X holds {len(images)} images but y holds {len(labels)} labels")
        self.block_weights_ = (
            block_weights_for(photos_of_rarest(labels))
            if self.block_weights == "auto"
            else tuple(self.block_weights)
        )
        self.features_ = features_for(self).set_params(block_weights=self.block_weights_)
        inputs, dropped = self._training_inputs(images, labels)
        self.dropped_indices_ = np.flatnonzero(dropped)
        self._encoder = LabelEncoder().fit(labels[~dropped])
        self.classes_ = self._encoder.classes_
        target = self._encoder.transform(labels[~dropped])
        if len(self.classes_) < 2:
            raise ValueError(f"need photos of at least two products; got {list(self.classes_)}")
        with single_threaded_blas():
            if self._is_late():
                self._fit_late(inputs, target)
            else:
                self.classifiers_ = self._fitted_classifiers(inputs, target)
            self._fit_rejection(inputs, target)
        return self

    def _training_inputs(self, images: list, labels: np.ndarray) -> tuple[dict, np.ndarray]:
        """Fit the branches; what the classifiers train on, and the photos dropped.

        The features are fused once, here: every classifier the fit trains
        (late fusion's folds and the reject option's too) trains on rows of
        these inputs. Early fusion's branches write their features straight
        into the fused rows, so no block is held beside them.
        """
        if self._is_late():
            blocks = self.features_.fit_blocks(images, labels)
            dropped = _dropped_rows(blocks)
            return self._classifier_inputs(_kept_rows(blocks, dropped)), dropped
        fused = self.features_.fit_transform(images, labels)
        dropped = self.features_.dropped_rows(fused)
        return {"fused": _without_rows(fused, dropped)}, dropped

    def _classifier_inputs(self, blocks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each classifier's input rows: the fused blocks, or each block alone in late fusion.

        Fusion normalises each row on its own, so the inputs of some photos
        are those rows of the inputs of all of them.
        """
        if self._is_late():
            return {name: self.features_.fuse({name: block}) for name, block in blocks.items()}
        return {"fused": self.features_.fuse(blocks)}

    def _new_classifier(self, probabilities: bool = False):
        if self.classifier is None:
            classifier = default_classifier(self.random_state)
        else:
            classifier = clone(self.classifier)
        if probabilities and not hasattr(classifier, "predict_proba"):
            classifier = CalibratedClassifierCV(classifier, cv=3)
        return classifier

    def _fit_classifier(self, classifier, features: np.ndarray, target: np.ndarray):
        """Fit ``classifier``, or reuse the same fit from ``memory``."""
        return fit_cached(classifier, features, target, cache_location(self.memory))

    def _fitted_classifiers(self, inputs: Mapping[str, np.ndarray], target: np.ndarray) -> dict:
        """Classifiers as ``classifiers_`` holds them, trained on these photos' inputs.

        ``inputs`` are rows of what :meth:`_classifier_inputs` returns.
        """
        late = self._is_late()
        return {
            name: self._fit_classifier(self._new_classifier(probabilities=late), rows, target)
            for name, rows in inputs.items()
        }

    def _fit_late(self, inputs: Mapping[str, np.ndarray], target: np.ndarray) -> None:
        """One classifier per branch; the weight of their log-probabilities from held-out folds.

        With fewer than ``HELD_OUT_PHOTOS`` photos of some product, too few to
        hold any out reliably, or with fewer than ``FEW_PHOTOS`` and a CNN
        fine-tuned on these photos, which has seen the folds, the weight is
        ``FEW_SHOT_LATE_WEIGHT`` instead.
        """
        smallest = int(np.bincount(target).min())
        self.late_weight_choice_ = late_weight_choice(
            smallest, fine_tuned=tunes_its_network(self.features_)
        )
        self.classifiers_ = self._fitted_classifiers(inputs, target)
        if self.late_weight_choice_ != "held-out":
            self.late_weight_ = FEW_SHOT_LATE_WEIGHT
            return
        folds = StratifiedKFold(
            n_splits=max(2, min(5, smallest)), shuffle=True, random_state=self.random_state
        )
        held_out = {
            name: _held_out_probabilities(
                self._new_classifier(probabilities=True), rows, target, folds, self.n_jobs
            )
            for name, rows in inputs.items()
        }
        self.late_weight_ = _best_weight(held_out["traditional"], held_out["deep"], target)

    def _log_probabilities(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "classifiers_")
        return self._log_probabilities_of(self.features_.transform_blocks(X, self.on_error))

    def _log_probabilities_of(
        self, blocks: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        dropped = _dropped_rows(blocks)
        width = len(self.classes_)
        log_probabilities = np.full((len(dropped), width), np.nan)
        if dropped.all():
            return log_probabilities, dropped
        inputs = self._classifier_inputs(_kept_rows(blocks, dropped))
        with single_threaded_blas():
            log_probabilities[~dropped] = self._combined_log_probabilities(inputs)
        return log_probabilities, dropped

    def _combined_log_probabilities(
        self, inputs: Mapping[str, np.ndarray], classifiers: dict | None = None
    ) -> np.ndarray:
        """Normalised log-probabilities of photos from their classifier inputs."""
        classifiers = self.classifiers_ if classifiers is None else classifiers
        parts = [_log_proba(classifiers[name], rows) for name, rows in inputs.items()]
        if self._is_late():
            combined = self.late_weight_ * parts[0] + (1 - self.late_weight_) * parts[1]
        else:
            combined = parts[0]
        return combined - _log_sum_exp(combined)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each product in ``classes_``; NaN rows for dropped photos."""
        log_probabilities, _ = self._log_probabilities(X)
        return np.exp(log_probabilities)

    def predict_proba_from_blocks(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """``predict_proba`` of photos whose branch features are already extracted.

        For a caller that needs the features as well as the probabilities (to
        explain a decision, say): it extracts once, with
        ``model.features_.transform_blocks(X)``, and passes the result here.

        Parameters
        ----------
        blocks : dict of str to ndarray
            As :meth:`fusionrec.FusedFeatures.transform_blocks` returns them
            (all-NaN rows for dropped photos).

        Returns
        -------
        ndarray of shape (n_images, n_classes)
            As :meth:`predict_proba`: NaN rows for dropped photos.
        """
        check_is_fitted(self, "classifiers_")
        log_probabilities, _ = self._log_probabilities_of(blocks)
        return np.exp(log_probabilities)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable product of each photo.

        ``unknown_label_`` for photos rejected as of no known product (with
        ``false_accept_rate``), ``None`` for photos dropped by ``on_error``.
        """
        log_probabilities, dropped = self._log_probabilities(X)
        labels = np.zeros(len(dropped), dtype=int)
        labels[~dropped] = np.argmax(log_probabilities[~dropped], axis=1)
        predicted = self._rejected_as_unknown(self.classes_[labels], log_probabilities)
        if dropped.any():
            predicted = predicted.astype(object)
            predicted[dropped] = None
        return predicted

    def _early_has_decision_function(self) -> bool:
        return not self._is_late() and hasattr(self._new_classifier(), "decision_function")

    @available_if(_early_has_decision_function)
    def decision_function(self, X: Any) -> np.ndarray:
        """The early-fusion classifier's decision function (not offered for late fusion)."""
        check_is_fitted(self, "classifiers_")
        features = self.features_.fuse(self.features_.transform_blocks(X, self.on_error))
        with single_threaded_blas():
            return self.classifiers_["fused"].decision_function(features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def _has_strings(y: Any) -> bool:
    return any(isinstance(label, str) for label in np.asarray(y, dtype=object).ravel()[:1000])


def _dropped_rows(blocks: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.any([np.isnan(block).all(axis=1) for block in blocks.values()], axis=0)


def _kept_rows(blocks: Mapping[str, np.ndarray], dropped: np.ndarray) -> Mapping[str, np.ndarray]:
    """The blocks without the ``dropped`` rows; the blocks themselves, uncopied, if none is."""
    if not dropped.any():
        return blocks
    return {name: block[~dropped] for name, block in blocks.items()}


def _without_rows(rows: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """``rows`` without the ``dropped`` ones, moved up in place: no copy of ``rows`` is made.

    Examples
    --------
    >>> _without_rows(np.arange(8.0).reshape(4, 2), np.array([True, False, True, False]))
    array([[2., 3.],
           [6., 7.]])
    """
    kept = np.flatnonzero(~dropped)
    for first in range(0, len(kept), ROWS_AT_ONCE):
        moved = kept[first : first + ROWS_AT_ONCE]
        rows[first : first + len(moved)] = rows[moved]
    return rows[: len(kept)]


def _held_out_probabilities(
    classifier, features: np.ndarray, target: np.ndarray, folds, n_jobs: int | None
) -> np.ndarray:
    """Each photo's class probabilities from ``classifier`` trained on the other folds."""
    splits = list(folds.split(features, target))
    fitted = Parallel(n_jobs=n_jobs)(
        delayed(fit_in_row_space)(clone(classifier), features[train], target[train])
        for train, _ in splits
    )
    held_out = np.zeros((len(target), int(target.max()) + 1))
    for (_, test), model in zip(splits, fitted, strict=True):
        held_out[np.ix_(test, model.classes_)] = model.predict_proba(features[test])
    return held_out


def _log_proba(classifier, features: np.ndarray) -> np.ndarray:
    return np.log(np.clip(classifier.predict_proba(features), 1e-12, 1.0))


def _log_sum_exp(values: np.ndarray) -> np.ndarray:
    peak = values.max(axis=1, keepdims=True)
    return peak + np.log(np.exp(values - peak).sum(axis=1, keepdims=True))


def _best_weight(traditional: np.ndarray, deep: np.ndarray, target: np.ndarray) -> float:
    """The weight of the traditional log-probabilities that classifies held-out photos best.

    Ties in accuracy go to the higher held-out log-likelihood.
    """
    log_t = np.log(np.clip(traditional, 1e-12, 1))
    log_d = np.log(np.clip(deep, 1e-12, 1))
    scores = []
    for weight in _LATE_WEIGHT_GRID:
        combined = weight * log_t + (1 - weight) * log_d
        combined -= _log_sum_exp(combined)
        accuracy = np.mean(combined.argmax(axis=1) == target)
        likelihood = combined[np.arange(len(target)), target].mean()
        scores.append((accuracy, likelihood))
    return float(_LATE_WEIGHT_GRID[max(range(len(scores)), key=scores.__getitem__)])
