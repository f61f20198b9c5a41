"""Each branch's share of a FusedClassifier's decision for one product.

Early fusion scores a product with one linear function of the fused row,
which is the branches' blocks side by side: the score is exactly the sum of
one term per block, plus the intercept. Late fusion adds the branches'
log-probabilities, weighted by the learned ``late_weight_``: the score is
exactly the sum of the two weighted terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PROBABILITY_FLOOR = 1e-12
"""Late fusion takes logarithms of probabilities clipped to at least this (as the model does)."""


@dataclass(frozen=True)
class BlockTerm:
    """One branch's block in a linear classifier's input row, and its term of a class's score.

    Attributes
    ----------
    coefficients : ndarray of shape (width,)
        The classifier's coefficients of the class, for the block's columns.
    values : ndarray of shape (width,)
        The block's values in the row (normalised and scaled to ``length``).
    length : float
        The block's length in the row (its ``block_weights`` entry, or 1).
    """

    coefficients: np.ndarray
    values: np.ndarray
    length: float

    @property
    def column_scores(self) -> np.ndarray:
        """Each column's part of the score: coefficient times value."""
        return self.coefficients * self.values

    @property
    def score(self) -> float:
        """The block's term of the class's score."""
        return float(self.column_scores.sum())


def block_terms(
    classifier: Any,
    row: np.ndarray,
    widths: dict[str, int],
    lengths: tuple[float, ...],
    class_index: int,
) -> tuple[dict[str, BlockTerm], float]:
    """Each block's term of a linear classifier's score of class ``class_index``, and the intercept.

    The terms and the intercept add up to the classifier's decision score
    of that class for ``row``.

    Parameters
    ----------
    classifier : fitted linear classifier
    row : ndarray of shape (n_features,)
        The classifier's input: blocks side by side, in the order of ``widths``.
    widths : dict of str to int
        Each block's name and width.
    lengths : tuple of float
        Each block's length in the row, in the same order.
    class_index : int
    """
    coefficients, intercept = class_coefficients(classifier, class_index)
    edges = np.cumsum([0, *widths.values()])
    values = np.asarray(row, dtype=np.float64)
    terms = {
        name: BlockTerm(coefficients[start:stop], values[start:stop], length)
        for name, start, stop, length in zip(widths, edges[:-1], edges[1:], lengths, strict=True)
    }
    return terms, intercept


def class_coefficients(classifier: Any, class_index: int) -> tuple[np.ndarray, float]:
    """The coefficients and intercept of class ``class_index``'s decision score.

    A binary classifier keeps one row of coefficients, the score of its
    second class; the first class's score is its negative.

    Raises
    ------
    TypeError
        If ``classifier`` has no ``coef_`` and ``intercept_`` (a kernel SVM,
        say): its score does not split by block.
    """
    if not hasattr(classifier, "coef_") or not hasattr(classifier, "intercept_"):
        raise TypeError(
            "explaining needs a linear classifier (one with coef_ and intercept_, as the "
            f"default LogisticRegression); got {type(classifier).__name__}"
        )
    coefficients = np.asarray(classifier.coef_, dtype=np.float64)
    intercepts = np.ravel(classifier.intercept_).astype(np.float64)
    if len(coefficients) > 1:
        return coefficients[class_index], float(intercepts[class_index])
    sign = 1.0 if class_index == 1 else -1.0
    return sign * coefficients[0], sign * float(intercepts[0])


def late_terms(branch_probabilities: dict[str, np.ndarray], late_weight: float) -> dict:
    """Per branch, its weighted log-probability of each class, as late fusion adds them.

    ``late_weight`` weighs the traditional branch, ``1 - late_weight`` the
    deep one; the terms' sum, normalised with a softmax, is the model's
    ``predict_proba``.
    """
    weights = {"traditional": late_weight, "deep": 1.0 - late_weight}
    return {
        name: weights[name] * np.log(np.clip(probabilities, PROBABILITY_FLOOR, 1.0))
        for name, probabilities in branch_probabilities.items()
    }


def softmax(scores: np.ndarray) -> np.ndarray:
    """Probabilities from log-scores (shifted by their largest value first)."""
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()
