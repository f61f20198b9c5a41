"""What ``/classify`` answers: the most probable products, and each branch's share in the decision.

Features are extracted once per photo (``features_.transform_blocks``) and
serve both the probabilities (:meth:`fusionrec.FusedClassifier.predict_proba_from_blocks`)
and the shares (:func:`shares_answer`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..explanations import branch_shares, explain
from ..fusion import FusedClassifier
from ..images import ImageReadError
from .errors import ServiceError
from .photos import noise_photo

DECIMALS = 4


def classify(model: FusedClassifier, photos: Sequence[Any], top: int) -> list[dict | ServiceError]:
    """Per photo, its ``top`` most probable products and the branches' shares.

    Returns
    -------
    list
        Per photo, ``{"products": [{"label", "probability"}, ...], "shares": ...}``
        (see :func:`shares_answer`), or a :class:`ServiceError` for a photo that
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
        shares = shares_answer(model, blocks, row, best[0])
        results.append({"products": products, "shares": shares})
    return results


def warm_up(model: FusedClassifier) -> None:
    """Classify one photo, so that the first client does not wait for what runs once."""
    classify(model, [noise_photo()], 1)


def shares_answer(
    model: FusedClassifier, blocks: Mapping[str, np.ndarray], row: int, label: int
) -> dict | None:
    """How much each branch contributed to the decision on photo ``row``, for JSON.

    The numbers are :func:`fusionrec.explanations.branch_shares`'s, for the
    product at position ``label`` of ``model.classes_``.

    Returns
    -------
    dict or None
        Early fusion (one linear classifier on the fused features):
        ``{"fusion": "early", "decision": s, "parts": {"traditional": t,
        "deep": d, "intercept": b}}``, the product's decision score split by
        block, so that ``t + d + b == s``. Late fusion: ``{"fusion": "late",
        "weights": {...}, "probabilities": {branch: p}, "scores": {branch:
        w * log p}}``, each branch's weight, its probability of the product and
        its weighted log-probability, which add up to the model's score.
        ``None`` for a single branch or a classifier that is not linear.
    """
    if len(blocks) < 2:
        return None
    one_photo = {name: block[row : row + 1] for name, block in blocks.items()}
    try:
        numbers = branch_shares(model, one_photo, label=model.classes_[label])
    except TypeError:  # not a linear classifier: its score does not split by branch
        return None
    if "late_weight" not in numbers:
        parts = numbers["shares"] | {"intercept": numbers["intercept"]}
        return {"fusion": "early", "decision": _rounded(numbers["score"]), "parts": _all(parts)}
    weight = numbers["late_weight"]
    return {
        "fusion": "late",
        "weights": _all({"traditional": weight, "deep": 1 - weight}),
        "probabilities": _all(numbers["branch_probabilities"]),
        "scores": _all(numbers["shares"]),
    }


def _rounded(value: float) -> float:
    return round(float(value), DECIMALS)


def _all(values: Mapping[str, float]) -> dict[str, float]:
    return {name: _rounded(value) for name, value in values.items()}


def explanation_png(model: FusedClassifier, photo: bytes) -> bytes:
    """:func:`fusionrec.explain`'s picture of why ``model`` named the product it did.

    Raises
    ------
    ServiceError
        400 for a photo that cannot be read, 422 for a model whose decision
        does not split (a classifier that is not linear), 501 where captum,
        which heat maps need, is not installed.
    """
    try:
        return explain(model, photo).to_png()
    except ImageReadError:
        raise ServiceError(400, "unreadable_image", "the photo could not be read") from None
    except TypeError as error:
        raise ServiceError(422, "cannot_explain", str(error)) from None
    except ImportError:
        raise ServiceError(
            501,
            "explain_unavailable",
            "heat maps need captum on the server: pip install 'fusionrec[explain]'",
        ) from None
