"""``fusionrec explain MODEL PHOTO -o why.png``: why the model named that product, as a picture."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import model_file
from .errors import CommandError
from .options import add_allow_pickle_option, add_verbose_option, show_progress


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``explain`` to the console script."""
    parser = commands.add_parser(
        "explain",
        help="draw why a model named the product in a photo",
        description="Explain MODEL's prediction for PHOTO: print each branch's share of the"
        " product's score, and draw one picture of where the CNN looked (a Grad-CAM heat map),"
        " the keypoints that weigh most for the product, and the shares.",
        epilog="example: fusionrec explain model.joblib shelf.jpg -o why.png --label Kiwi",
    )
    parser.add_argument("model", metavar="MODEL", help="model file from 'fusionrec train'")
    parser.add_argument("photo", metavar="PHOTO", help="photo file")
    parser.add_argument(
        "-o",
        "--output",
        default="why.png",
        metavar="PNG",
        help="picture to write (default: %(default)s)",
    )
    parser.add_argument(
        "--label",
        metavar="PRODUCT",
        help="explain this product's score instead of the prediction's (why not PRODUCT?)",
    )
    parser.add_argument(
        "--layer",
        metavar="MODULE",
        help="the CNN module whose feature maps the heat map weighs (default: its last"
        " convolutional stage)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the numbers as JSON instead",
    )
    add_verbose_option(parser)
    add_allow_pickle_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Explain the photo's prediction, print the numbers and write the picture."""
    from ..explanations import explain  # PyTorch loads when the command runs, not for --help

    model, _ = model_file.load(args.model, allow_pickle=args.allow_pickle)
    show_progress(model, args.verbose)
    label = None if args.label is None else class_named(model.classes_, args.label)
    explanation = explain(model, args.photo, label=label, layer=args.layer)
    path = explanation.save_png(args.output)
    if args.json:
        print(json.dumps({"image": args.photo, **explanation.to_dict(), "picture": str(path)}))
    else:
        print(format_explanation(args.photo, explanation.to_dict()))
        print(f"picture: {path}")
    return 0


def class_named(classes: Any, name: str) -> Any:
    """The class of ``classes`` whose text is ``name`` (labels may be numbers).

    Examples
    --------
    >>> import numpy as np
    >>> class_named(np.array([3, 7]), "7")
    np.int64(7)
    """
    for label in classes:
        if str(label) == name:
            return label
    raise CommandError(f"the model knows no product {name!r}; it knows {[str(c) for c in classes]}")


def format_explanation(photo: str, numbers: dict) -> str:
    """The product, its probability, and the score as the sum of its shares.

    Examples
    --------
    >>> numbers = {"label": "Kiwi", "predicted": "Kiwi", "probability": 0.91, "fusion": "early",
    ...            "score": 3.1, "shares": {"traditional": 0.6, "deep": 2.3}, "intercept": 0.2}
    >>> print(format_explanation("kiwi.jpg", numbers))
    kiwi.jpg: Kiwi, probability 0.910
      score 3.100 = traditional 0.600 + deep 2.300 + intercept 0.200
    """
    head = f"{photo}: {numbers['label']}, probability {numbers['probability']:.3f}"
    if numbers["predicted"] != numbers["label"]:
        head += f" (predicted: {numbers['predicted']})"
    parts = [f"{name} {value:.3f}" for name, value in numbers["shares"].items()]
    if numbers["fusion"] == "early":
        parts.append(f"intercept {numbers['intercept']:.3f}")
        return f"{head}\n  score {numbers['score']:.3f} = " + " + ".join(parts)
    branch = ", ".join(
        f"{name} p={probability:.3f}"
        for name, probability in numbers["branch_probabilities"].items()
    )
    return (
        f"{head}\n  weighted log-probabilities {numbers['score']:.3f} = "
        + " + ".join(parts)
        + f"\n  branches: {branch}; traditional weight {numbers['late_weight']:.2f}"
    )
