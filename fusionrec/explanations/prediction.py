"""``explain(model, photo)``: the numbers and maps behind one FusedClassifier prediction.

The photo is read and its features extracted once, as the model's own
``predict`` does (PyTorch runs the deep branch, whatever its ``runtime``);
from them come the model's scores, each branch's share, the deep branch's
Grad-CAM heat map and the traditional branch's keypoint weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..deep import CNNEmbedder
from ..fusion import FusedClassifier
from ..images import ImageReadError, load_image
from ..traditional import BagOfVisualWords
from .heat_map import (
    DeepScore,
    forward,
    grad_cam,
    last_convolutional_stage,
    on_photo,
    prepared_batch,
)
from .keypoints import keypoint_weights
from .result import Explanation
from .shares import BlockTerm, block_terms, late_terms, softmax

DISPLAY_SIDE = 512
"""Longest side of the photo an explanation of a model without a deep branch shows."""


def explain(
    model: FusedClassifier, photo: Any, *, label: Any = None, layer: str | None = None
) -> Explanation:
    """Explain a fitted classifier's score of one photo for one product.

    Parameters
    ----------
    model : FusedClassifier
        Fitted, with a linear classifier (the default ``LogisticRegression``).
    photo : path, bytes, ndarray or PIL image
        One photo, in any form the model reads.
    label : object or None
        The product to explain, one of ``model.classes_``; ``None``: the
        product the model predicts (to ask, of a wrong prediction, why not
        the right product, give the right one).
    layer : str or None
        The network module (a name from ``network_.named_modules()``) whose
        feature maps the heat map weighs; ``None``: the last convolutional
        stage before the embedding. Name one for a network of your own whose
        stages cannot be found.

    Returns
    -------
    Explanation

    Raises
    ------
    TypeError
        If the classifier is not linear.
    ValueError
        If ``label`` is not a class of the model, or no convolutional stage
        is found and ``layer`` is not given.
    ImportError
        With a deep branch, if captum is not installed
        (``pip install 'fusionrec[explain]'``).

    Examples
    --------
    >>> from fusionrec import BagOfVisualWords, FusedClassifier, explain
    >>> from fusionrec.datasets import load_demo_products
    >>> demo = load_demo_products()
    >>> keypoints = BagOfVisualWords(n_words=16, max_side=160, random_state=0)
    >>> model = FusedClassifier("traditional", traditional=keypoints, random_state=0)
    >>> model = model.fit(demo.data[::3], demo.target[::3])
    >>> why = explain(model, demo.data[1])
    >>> bool(why.predicted == model.predict(demo.data[1:2])[0]), sorted(why.shares)
    (True, ['traditional'])
    """
    check_is_fitted(model, "classifiers_")
    features = model.features_
    deep = features.fitted_extractor("deep") if "deep" in features.branches_ else None
    traditional = (
        features.fitted_extractor("traditional") if "traditional" in features.branches_ else None
    )
    image = _read(photo, deep)
    blocks = {}
    if deep is not None:
        batch = prepared_batch(deep, image)
        blocks["deep"], finished = forward(deep, batch)
    if traditional is not None:
        described = _described(traditional, photo)
        blocks["traditional"] = traditional.encode_described([described])
    blocks = {name: blocks[name] for name in features.branches_}  # in the order they are fused
    late = _is_late(model)
    numbers, terms = (_late if late else _early)(model, blocks, label)
    maps = {}
    if deep is not None:
        layer = layer or last_convolutional_stage(finished, deep)
        maps |= _heat_map(deep, batch, image.shape[:2], terms["deep"], layer)
    if traditional is not None:
        maps |= _keypoints(traditional, described, image.shape[:2], terms["traditional"])
    return Explanation(image=image, fusion="late" if late else "early", **numbers, **maps)


def branch_shares(model: FusedClassifier, blocks: dict[str, np.ndarray], label: Any = None) -> dict:
    """The numbers of :func:`fusionrec.explain` without its pictures, from extracted features.

    For a caller that has extracted the features already (a service answering
    with probabilities and shares): no heat map, no keypoints, no second
    extraction.

    Parameters
    ----------
    model : FusedClassifier
        Fitted, with a linear classifier.
    blocks : dict of str to ndarray of shape (1, width)
        One photo's features per branch, as ``model.features_.transform_blocks``
        gives them.
    label : object or None
        The product to explain; ``None``: the predicted one.

    Returns
    -------
    dict
        ``predicted``, ``label``, ``probability``, ``score``, ``shares`` (each
        branch's term of ``score``) and, for early fusion, ``intercept`` (so
        that the shares and the intercept add up to ``score``); for late
        fusion, ``branch_probabilities`` and ``late_weight``.

    Examples
    --------
    >>> from fusionrec import BagOfVisualWords, FusedClassifier
    >>> from fusionrec.datasets import load_demo_products
    >>> from fusionrec.explanations import branch_shares
    >>> demo = load_demo_products()
    >>> keypoints = BagOfVisualWords(n_words=16, max_side=160, random_state=0)
    >>> model = FusedClassifier("traditional", traditional=keypoints, random_state=0)
    >>> model = model.fit(demo.data[::3], demo.target[::3])
    >>> numbers = branch_shares(model, model.features_.transform_blocks(demo.data[1:2]))
    >>> bool(abs(numbers["shares"]["traditional"] + numbers["intercept"] - numbers["score"]) < 1e-9)
    True
    """
    check_is_fitted(model, "classifiers_")
    blocks = {name: blocks[name] for name in model.features_.branches_}
    numbers, _ = (_late if _is_late(model) else _early)(model, blocks, label)
    return numbers


def _is_late(model: FusedClassifier) -> bool:
    return model.branch == "fused" and model.fusion == "late"


def _read(photo: Any, deep: CNNEmbedder | None) -> np.ndarray:
    """The photo as the deep branch reads it, or at a size to show."""
    if deep is not None:
        return load_image(photo, min_side=deep.preprocessing_.resize)
    return load_image(photo, max_side=DISPLAY_SIDE)


def _described(traditional: BagOfVisualWords, photo: Any) -> tuple[np.ndarray, np.ndarray]:
    """The photo's keypoints and descriptors, as the traditional branch reads them."""
    [described] = traditional.describe([photo])
    if described is None:  # the branch's on_error skipped it
        raise ImageReadError("the photo", "the keypoint branch could not read it")
    return described


def _early(model: FusedClassifier, blocks: dict, label: Any) -> tuple[dict, dict]:
    """The numbers of one classifier over the fused row, and each block's term."""
    fused = model.features_.fuse(blocks)[0]
    classifier = model.classifiers_["fused"]
    probabilities = classifier.predict_proba(fused[np.newaxis])[0]
    class_index = _class_index(model, probabilities, label)
    widths = {name: block.shape[1] for name, block in blocks.items()}
    lengths = model.features_.block_lengths(len(blocks))
    terms, intercept = block_terms(classifier, fused, widths, lengths, class_index)
    shares = {name: term.score for name, term in terms.items()}
    numbers = _labels(model, probabilities, class_index) | {
        "score": sum(shares.values()) + intercept,
        "shares": shares,
        "intercept": intercept,
    }
    return numbers, terms


def _late(model: FusedClassifier, blocks: dict, label: Any) -> tuple[dict, dict]:
    """The numbers of per-branch classifiers combined by weight, and each branch's term."""
    rows = {name: model.features_.fuse({name: block})[0] for name, block in blocks.items()}
    branch_probabilities = {
        name: model.classifiers_[name].predict_proba(row[np.newaxis])[0]
        for name, row in rows.items()
    }
    weighted = late_terms(branch_probabilities, model.late_weight_)
    probabilities = softmax(sum(weighted.values()))
    class_index = _class_index(model, probabilities, label)
    terms = {
        name: block_terms(model.classifiers_[name], row, {name: len(row)}, (1.0,), class_index)[0][
            name
        ]
        for name, row in rows.items()
    }
    shares = {name: float(values[class_index]) for name, values in weighted.items()}
    numbers = _labels(model, probabilities, class_index) | {
        "score": sum(shares.values()),
        "shares": shares,
        "branch_probabilities": {
            name: float(values[class_index]) for name, values in branch_probabilities.items()
        },
        "late_weight": float(model.late_weight_),
    }
    return numbers, terms


def _class_index(model: FusedClassifier, probabilities: np.ndarray, label: Any) -> int:
    if label is None:
        return int(np.argmax(probabilities))
    found = np.flatnonzero(model.classes_ == label)
    if len(found) != 1:
        raise ValueError(f"label {label!r} is not a class of the model: {list(model.classes_)}")
    return int(found[0])


def _labels(model: FusedClassifier, probabilities: np.ndarray, class_index: int) -> dict:
    return {
        "label": model.classes_[class_index],
        "predicted": model.classes_[int(np.argmax(probabilities))],
        "probability": float(probabilities[class_index]),
    }


def _heat_map(
    deep: CNNEmbedder, batch, shape: tuple[int, int], term: BlockTerm, layer: str
) -> dict:
    """Grad-CAM of the deep block's term at ``layer``, over the photo."""
    cam = grad_cam(DeepScore(deep.embedding_module(), term.coefficients, term.length), batch, layer)
    box = deep.preprocessing_.crop_box(shape[1], shape[0])
    return {"heat_map": on_photo(cam, box, shape), "heat_map_layer": layer}


def _keypoints(
    traditional: BagOfVisualWords, described: tuple, shape: tuple[int, int], term: BlockTerm
) -> dict:
    """The keypoints in pixels of the photo, and each one's part of the traditional term."""
    positions, descriptors = described
    height, width = shape
    return {
        "keypoints": (positions * np.array([width, height], np.float32)).astype(np.float32),
        "keypoint_weights": keypoint_weights(
            traditional.codebook_, positions, descriptors, term.column_scores
        ),
    }
