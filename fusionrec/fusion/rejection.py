"""The reject option: answer "not a product I know" instead of the nearest known product.

A shop's customers photograph products the shop does not sell; a classifier
trained on the catalogue would still name the nearest catalogue product.
:class:`FusedClassifier` (through :class:`RejectsUnknown`) scores how much a
photo looks like a known product, its **known score**: the probability of its
most probable product, after fusion. Photos scoring at or below
``known_threshold_`` get ``unknown_label_`` from ``predict``.

How the threshold is learned (leave-classes-out calibration)
------------------------------------------------------------
The false-accept rate, the fraction of photos of *unknown* products that still
get a product, cannot be measured on training photos, which only show known
products. So the products are split into groups (up to five); for each group,
the classifier is trained again on the photos of the other products, and the
photos of the group's products are scored as stand-ins for unknown products.
The threshold is the known score that at most ``false_accept_rate`` of these
stand-ins exceed. A classifier trained on four fifths of the products tends to
be at least as sure of an unknown photo as one trained on all of them, so the
threshold errs on the side of rejecting.

The stand-ins must be new to the features too. A CNN fine-tuned on the
training photos' labels (``CNNEmbedder(fine_tune=...)``) has learned every
product, the stand-ins included, so they score like known products and the
threshold lets far more unknown photos through than asked (measured: 81-83%
for a rate of 5%, docs/benchmarks.md); ``fit`` warns then. A network tuned
beforehand on the same products has the same flaw, which ``fit`` cannot see.

Rejecting a fraction of held-out *known* photos instead would fix the rate of
known photos turned away, not the rate asked for; that rate is what the
benchmark (``benchmarks/open_set.py``) reports as the price.

References
----------
.. [1] D. Hendrycks and K. Gimpel, "A Baseline for Detecting Misclassified and
   Out-of-Distribution Examples in Neural Networks", ICLR 2017 (the highest
   probability as the known score).
.. [2] W. J. Scheirer et al., "Toward Open Set Recognition", IEEE TPAMI 35(7),
   2013 (open-set recognition and its evaluation).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.utils import check_random_state

from .._validation import IS_NONE, InstanceOf, Real
from .features import tunes_its_network

TUNED_ON_STAND_INS = (
    "false_accept_rate with a CNN fine-tuned on these labels: the products left out to stand in"
    " for unknown ones were learned by the network, so known_threshold_ will let far more"
    " unknown photos through than asked (measured: about 80% for a rate of 0.05). Fine-tune the"
    " network on other products, or use the frozen one, to reject unknown products."
)
MAX_CLASS_GROUPS = 5
"""Groups of products left out in turn to stand in for unknown products."""

REJECTION_CONSTRAINTS = {
    "false_accept_rate": (IS_NONE, Real(0.0, 1.0)),
    "unknown_label": (InstanceOf((str, numbers.Integral), "a str or an int"),),
}
"""The parameter rules of the reject option."""


class RejectsUnknown:
    """Mixin of :class:`fusionrec.FusedClassifier`: the reject option.

    ``known_score`` is a photo's highest fused probability. With
    ``false_accept_rate``, ``fit`` learns ``known_threshold_`` by leaving
    products out: split at random into up to five groups, each group's
    photos are scored by classifiers trained on the other products' photos,
    standing in for photos of unknown products; the threshold is the score
    that at most ``false_accept_rate`` of them exceed. ``predict`` answers
    ``unknown_label_`` for photos at or below it.

    The host classifier provides ``false_accept_rate``, ``unknown_label``,
    ``n_jobs`` and ``random_state``; ``_log_probabilities(X)`` (normalised
    log-probabilities and the dropped rows); ``_fitted_classifiers(blocks,
    target)``, training its classifiers afresh on some photos; and
    ``_combined_log_probabilities(blocks, classifiers)``, their fused
    log-probabilities.

    Examples
    --------
    >>> from fusionrec import FusedClassifier
    >>> from fusionrec.datasets import load_demo_products
    >>> demo = load_demo_products()
    >>> model = FusedClassifier("deep", false_accept_rate=0.05, random_state=0)
    >>> model = model.fit(demo.data[::3], demo.target[::3])
    >>> model.unknown_label_, bool(0 < model.known_threshold_ < 1)
    (-1, True)
    >>> predicted = model.predict(demo.data[1:3])
    >>> predicted.dtype.kind, set(predicted) <= {-1, *model.classes_}
    ('i', True)
    """

    def known_score(self, X: Any) -> np.ndarray:
        """How much each photo looks like a product seen in ``fit``: its highest probability.

        Higher is more known. With ``false_accept_rate`` set, ``predict``
        rejects the photos whose score is at most ``known_threshold_``. Use it
        as the score of a ROC curve of known against unknown photos.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_images,)
            In (0, 1]; NaN for photos dropped by ``on_error``.
        """
        log_probabilities, _ = self._log_probabilities(X)
        return known_scores(log_probabilities)

    def _fit_rejection(self, blocks: Mapping[str, np.ndarray], target: np.ndarray) -> None:
        """Learn ``known_threshold_`` and ``unknown_label_`` (``fit``'s last step)."""
        if self.false_accept_rate is None:
            self.known_threshold_ = self.unknown_label_ = None
            return
        self.unknown_label_ = resolved_unknown_label(self.unknown_label, self.classes_)
        if tunes_its_network(getattr(self, "features_", None)):
            warnings.warn(TUNED_ON_STAND_INS, UserWarning, stacklevel=3)
        stand_ins = self._stand_in_unknown_scores(blocks, target)
        self.known_threshold_ = threshold_for(stand_ins, self.false_accept_rate)

    def _stand_in_unknown_scores(
        self, blocks: Mapping[str, np.ndarray], target: np.ndarray
    ) -> np.ndarray:
        """Each training photo's known score from classifiers that never saw its product."""
        groups = class_groups(target, self.random_state)
        left_out = [np.isin(target, group) for group in groups]
        scores = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(self._scores_without)(blocks, target, rows) for rows in left_out
        )
        stand_ins = np.empty(len(target))
        for rows, score in zip(left_out, scores, strict=True):
            stand_ins[rows] = score
        return stand_ins

    def _scores_without(
        self, blocks: Mapping[str, np.ndarray], target: np.ndarray, left_out: np.ndarray
    ) -> np.ndarray:
        trained = {name: block[~left_out] for name, block in blocks.items()}
        classifiers = self._fitted_classifiers(trained, target[~left_out])
        scored = {name: block[left_out] for name, block in blocks.items()}
        return known_scores(self._combined_log_probabilities(scored, classifiers))

    def _rejected_as_unknown(
        self, predicted: np.ndarray, log_probabilities: np.ndarray
    ) -> np.ndarray:
        """``predicted`` with ``unknown_label_`` for photos whose known score is too low."""
        threshold = getattr(self, "known_threshold_", None)
        if threshold is None:
            return predicted
        with np.errstate(invalid="ignore"):
            rejected = ~(known_scores(log_probabilities) > threshold)
        return with_unknown(predicted, rejected, self.unknown_label_)


def known_scores(log_probabilities: np.ndarray) -> np.ndarray:
    """The highest probability of each row of normalised log-probabilities (NaN rows stay NaN).

    Examples
    --------
    >>> known_scores(np.log([[0.7, 0.3], [0.5, 0.5]]))
    array([0.7, 0.5])
    """
    if log_probabilities.shape[0] == 0:
        return np.empty(0)
    return np.exp(np.max(log_probabilities, axis=1))


def class_groups(target: np.ndarray, random_state: Any = None) -> list[np.ndarray]:
    """The products (codes in ``target``) split at random into up to five groups to leave out.

    Each group leaves at least two products to train on.

    Raises
    ------
    ValueError
        With fewer than three products: leaving one out would leave one.

    Examples
    --------
    >>> [len(group) for group in class_groups(np.repeat(np.arange(12), 3), random_state=0)]
    [3, 3, 2, 2, 2]
    """
    classes = np.unique(target)
    if len(classes) < 3:
        raise ValueError(
            "false_accept_rate needs photos of at least three products, to stand some in for "
            f"unknown products while training on the others; got {len(classes)}"
        )
    shuffled = check_random_state(random_state).permutation(classes)
    return np.array_split(shuffled, min(MAX_CLASS_GROUPS, len(classes)))


def threshold_for(unknown_scores: np.ndarray, false_accept_rate: float) -> float:
    """The known score that at most ``false_accept_rate`` of ``unknown_scores`` exceed.

    Photos scoring above it are accepted, so a fraction of at most
    ``false_accept_rate`` of photos like these (of products not known) would
    be given a product.

    Examples
    --------
    >>> threshold_for(np.array([0.2, 0.9, 0.4, 0.6, 0.3]), 0.2)
    0.6
    >>> threshold_for(np.array([0.2, 0.9]), 1.0)
    -inf
    """
    descending = np.sort(np.asarray(unknown_scores, dtype=float))[::-1]
    allowed = int(np.floor(false_accept_rate * len(descending) + 1e-9))
    return float(descending[allowed]) if allowed < len(descending) else -np.inf


def resolved_unknown_label(unknown_label: Any, classes: np.ndarray) -> Any:
    """The label of rejected photos: ``"auto"`` is ``-1`` for integer products, else ``"unknown"``.

    Raises
    ------
    ValueError
        If it is also the label of a product.

    Examples
    --------
    >>> resolved_unknown_label("auto", np.array([3, 7]))
    -1
    >>> resolved_unknown_label("auto", np.array(["kiwi", "milk"], dtype=object))
    'unknown'
    """
    if unknown_label == "auto":
        unknown_label = -1 if np.asarray(classes).dtype.kind in "iu" else "unknown"
    if any(label == unknown_label for label in np.asarray(classes).tolist()):
        raise ValueError(
            f"unknown_label {unknown_label!r} is also the label of a product; choose another"
        )
    return unknown_label


def with_unknown(predicted: np.ndarray, rejected: np.ndarray, unknown_label: Any) -> np.ndarray:
    """``predicted`` with ``unknown_label`` where ``rejected``.

    Integer labels stay integers when the unknown label is one; otherwise the
    result holds objects, so that no label is turned into a string.

    Examples
    --------
    >>> with_unknown(np.array([4, 5]), np.array([False, True]), -1)
    array([ 4, -1])
    >>> with_unknown(np.array([4, 5]), np.array([True, False]), "unknown")
    array(['unknown', 5], dtype=object)
    """
    both_integers = predicted.dtype.kind in "iu" and isinstance(unknown_label, numbers.Integral)
    labelled = predicted.copy() if both_integers else predicted.astype(object)
    labelled[rejected] = unknown_label
    return labelled
