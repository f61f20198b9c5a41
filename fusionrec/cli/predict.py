"""``fusionrec predict MODEL IMAGE...``: the most probable products of each photo."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from . import model_file
from .options import add_allow_pickle_option, add_verbose_option, at_least, show_progress

NOT_KNOWN = "not a known product"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the console script."""
    parser = commands.add_parser(
        "predict",
        help="name the product in each photo, with its probability",
        description="Print, for each IMAGE, the product MODEL finds most probable and its"
        " probability; with --top K, the K most probable. A model trained with"
        " --false-accept-rate says 'not a known product' for a photo whose best probability is"
        " too low, and names the closest products after it.",
        epilog="example: fusionrec predict model.fusionrec shelf/*.jpg --top 3 --json",
    )
    parser.add_argument("model", metavar="MODEL", help="model file from 'fusionrec train'")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photo files")
    parser.add_argument(
        "--top",
        type=at_least(1),
        default=1,
        metavar="K",
        help="show the K most probable products of each photo (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print JSON instead: [{"image": ..., "known": true or false, "predictions":'
        ' [{"label": ..., "probability": ...}, ...]}, ...]',
    )
    add_allow_pickle_option(parser)
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Predict the photos and print the top products of each."""
    model, _ = model_file.load(args.model, allow_pickle=args.allow_pickle)
    model.set_params(on_error="raise")
    show_progress(model, args.verbose)
    probabilities = model.predict_proba(args.images)
    known = is_known(probabilities, getattr(model, "known_threshold_", None))
    results = [
        {
            "image": image,
            "known": bool(photo_known),
            "predictions": top_products(model.classes_, row, args.top),
        }
        for image, photo_known, row in zip(args.images, known, probabilities, strict=True)
    ]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_results(results))
    return 0


def top_products(classes: np.ndarray, probabilities: np.ndarray, k: int) -> list[dict]:
    """The ``k`` most probable classes, most probable first.

    Examples
    --------
    >>> top_products(np.array(["kiwi", "lemon", "milk"]), np.array([0.2, 0.7, 0.1]), 2)
    [{'label': 'lemon', 'probability': 0.7}, {'label': 'kiwi', 'probability': 0.2}]
    """
    best = np.argsort(-probabilities, kind="stable")[:k]
    return [
        {"label": _plain(classes[i]), "probability": round(float(probabilities[i]), 4)}
        for i in best
    ]


def is_known(probabilities: np.ndarray, known_threshold: float | None) -> np.ndarray:
    """Whether each photo's best probability is above the model's threshold (``None``: all).

    Examples
    --------
    >>> is_known(np.array([[0.9, 0.1], [0.5, 0.5]]), 0.6)
    array([ True, False])
    """
    if known_threshold is None:
        return np.ones(len(probabilities), dtype=bool)
    return probabilities.max(axis=1) > known_threshold


def format_results(results: list[dict]) -> str:
    """One line per photo: its path, then each product with its probability.

    A photo of no known product says so first, then names the closest products;
    a last line counts such photos.
    """
    width = max(len(result["image"]) for result in results)
    lines = [
        f"{result['image']:{width}}  "
        + ("" if result["known"] else f"{NOT_KNOWN}; closest: ")
        + ", ".join(f"{p['label']} {p['probability']:.3f}" for p in result["predictions"])
        for result in results
    ]
    rejected = sum(not result["known"] for result in results)
    if rejected:
        lines.append(f"{rejected} of {len(results)} photos: {NOT_KNOWN}")
    return "\n".join(lines)


def _plain(label: Any) -> Any:
    """A numpy scalar as the Python value JSON can write."""
    return label.item() if isinstance(label, np.generic) else label
