"""What ``/classify`` answers: the most probable products, and each branch's share in the decision.

Features are extracted once per photo (``features_.transform_blocks``) and
serve both the probabilities (:meth:`fusionrec.FusedClassifier.predict_proba_from_blocks`)
and the shares (:func:`branch_shares`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..fusion import FusedClassifier
from .errors import ServiceError
from .photos import noise_photo

DECIMALS = 4


def classify(model: FusedClassifier, photos: Sequence[Any], top: int) -> list[dict | ServiceError]:
    """Per photo, its ``top`` most probable products and the branches' shares.

    Returns
    -------
    list
        Per photo, ``{"products": [{"label", "probability"}, ...], "shares": ...}``
        (see :func:`branch_shares`), or a :class:`ServiceError` for a photo that
        could not be read.
    """
    blocks = model.features_.transform_blocks(list(photos), "skip")
    probabilities = model.predict_proba_from_blocks(blocks)
    labels = model.classes_.tolist()
    results: list[dict | ServiceError] = []
    for row, row_probabilities in enumerate(probabilities):
        if np.isnan(row_probabilities).any():
            results.append(ServiceError(400, "unreadable_image", "the photo could not be read"))
            continue
        best = np.argsort(-row_probabilities, kind="stable")[:top].tolist()
        products = [
            {"label": labels[i], "probability": round(float(row_probabilities[i]), DECIMALS)}
            for i in best
        ]
        results.append({"products": products, "shares": branch_shares(model, blocks, row, best)})
    return results


def warm_up(model: FusedClassifier) -> None:
    """Classify one photo, so that the first client does not wait for what runs once."""
    classify(model, [noise_photo()], 1)


def branch_shares(
    model: FusedClassifier, blocks: Mapping[str, np.ndarray], row: int, classes: Sequence[int]
) -> dict | None:
    """How much each branch contributed to the decision on photo ``row``.

    Parameters
    ----------
    model : FusedClassifier
        Fitted.
    blocks : dict of str to ndarray
        The photos' features, as ``model.features_.transform_blocks`` gives them.
    row : int
        The photo.
    classes : sequence of int
        Positions in ``model.classes_``, the predicted one first.

    Returns
    -------
    dict or None
        Early fusion (one linear classifier on the fused features):
        ``{"fusion": "early", "decision": s, "parts": {"traditional": t,
        "deep": d, "intercept": b}}``, the predicted class's decision score
        split by block (each branch's slice of the coefficients times its
        features), so that ``t + d + b == s``. Late fusion: ``{"fusion":
        "late", "weights": {...}, "probabilities": {branch: [...]}}``, the
        weight of each branch's log-probabilities and its probability of each
        of ``classes``. ``None`` for a single branch or a classifier without
        ``coef_``.
    """
    if len(blocks) < 2:
        return None
    one_photo = {name: block[row : row + 1] for name, block in blocks.items()}
    if "fused" in model.classifiers_:
        return _decision_parts(model, one_photo, classes[0])
    weight = model.late_weight_
    return {
        "fusion": "late",
        "weights": {"traditional": round(weight, DECIMALS), "deep": round(1 - weight, DECIMALS)},
        "probabilities": {
            name: _rounded(
                model.classifiers_[name].predict_proba(model.features_.fuse({name: block}))[
                    0, list(classes)
                ]
            )
            for name, block in one_photo.items()
        },
    }


def _decision_parts(
    model: FusedClassifier, one_photo: Mapping[str, np.ndarray], label: int
) -> dict | None:
    classifier = model.classifiers_["fused"]
    if not hasattr(classifier, "coef_"):
        return None
    features = model.features_.fuse(one_photo)[0].astype(np.float64)
    coefficients, intercept = _class_weights(classifier, label)
    parts: dict[str, Any] = {}
    start = 0
    for name, block in one_photo.items():
        end = start + block.shape[1]
        parts[name] = float(coefficients[start:end] @ features[start:end])
        start = end
    parts["intercept"] = intercept
    return {
        "fusion": "early",
        "decision": round(sum(parts.values()), DECIMALS),
        "parts": {name: round(value, DECIMALS) for name, value in parts.items()},
    }


def _class_weights(classifier: Any, label: int) -> tuple[np.ndarray, float]:
    """Coefficients and intercept of one class's decision score.

    A two-class linear model keeps one row, for the second class; the first
    class's score is its negative.
    """
    coefficients = np.asarray(classifier.coef_, dtype=np.float64)
    intercepts = np.broadcast_to(
        np.asarray(classifier.intercept_, dtype=np.float64), (len(coefficients),)
    )
    if len(coefficients) == 1:
        sign = 1.0 if label == 1 else -1.0
        return sign * coefficients[0], sign * float(intercepts[0])
    return coefficients[label], float(intercepts[label])


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(value), DECIMALS) for value in values]
