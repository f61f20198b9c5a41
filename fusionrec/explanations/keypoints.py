"""Which keypoints weigh for a product: the traditional branch's score split among them.

A photo's traditional block is its keypoints' encoding (a sum of one term
per keypoint, :meth:`fusionrec.traditional.Codebook.keypoint_parts`), power-
and L2-normalised. The classifier's term for the block is a sum over its
columns; each column's part of the score is divided among the keypoints in
proportion to what each added to that column before normalisation (the
normalisation keeps every column's sign, so the proportions are those of the
sum). A keypoint's weight is the total of its parts: the weights add up to
the block's term exactly, and a keypoint whose visual words the product's
coefficients favour weighs most. This is layer-wise relevance propagation's
basic rule (Bach et al., "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation", PLoS ONE 2015)
applied through one normalisation.
"""

from __future__ import annotations

import numpy as np

from ..traditional import Codebook


def keypoint_weights(
    codebook: Codebook,
    positions: np.ndarray,
    descriptors: np.ndarray,
    column_scores: np.ndarray,
) -> np.ndarray:
    """Each keypoint's part of the score the traditional block earns.

    Parameters
    ----------
    codebook : Codebook
        The fitted vocabulary that encoded the photo.
    positions, descriptors : ndarray
        The photo's keypoints, as ``BagOfVisualWords.describe`` gives them.
    column_scores : ndarray of shape (n_features,)
        Each column's part of the score: its coefficient times its value in
        the fused row.

    Returns
    -------
    ndarray of shape (n_keypoints,), float64
        They add up to ``column_scores.sum()``.
    """
    parts = codebook.keypoint_parts(positions, descriptors).astype(np.float64)
    totals = parts.sum(axis=0)
    used = totals != 0  # an empty column has value 0 after normalisation, so no score
    per_unit = np.zeros_like(totals)
    per_unit[used] = column_scores[used] / totals[used]
    return parts @ per_unit


def strongest(weights: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest positive weights, largest first."""
    order = np.argsort(-weights, kind="stable")[:n]
    return order[weights[order] > 0]
