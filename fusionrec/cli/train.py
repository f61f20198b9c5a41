"""``fusionrec train FOLDER -o MODEL``: train a classifier on a folder of labelled photos."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .._choices import BRANCHES, FUSIONS
from ..datasets import load_image_folder
from . import model_file
from .errors import CommandError
from .options import (
    add_feature_options,
    add_output_options,
    add_run_options,
    add_verbose_option,
    at_least,
    build_classifier,
    number,
    show_progress,
)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``train`` to the console script."""
    parser = commands.add_parser(
        "train",
        help="train a classifier on a folder of photos, one sub-folder per product",
        description="Train a classifier on FOLDER, which holds one sub-folder of photos per"
        " product (the sub-folder's name is the product's label), and save it to a model file"
        " that 'fusionrec evaluate' and 'fusionrec predict' read.",
        epilog="examples: fusionrec train photos/ -o model.fusionrec --branch fused --fusion late;"
        " fusionrec train photos/ -o tuned.fusionrec --branch deep --fine-tune 10",
    )
    parser.add_argument("folder", metavar="FOLDER", help="folder of product sub-folders")
    add_output_options(parser, "model.fusionrec", "model")
    parser.add_argument(
        "--branch",
        choices=BRANCHES,
        default="fused",
        help="features to classify by: keypoints, CNN embeddings, or both (default: %(default)s)",
    )
    parser.add_argument(
        "--fusion",
        choices=FUSIONS,
        default="early",
        help="with --branch fused: one classifier on both feature blocks (early) or one per"
        " branch with their probabilities combined (late) (default: %(default)s)",
    )
    add_feature_options(parser)
    parser.add_argument(
        "--fine-tune",
        type=at_least(1),
        metavar="EPOCHS",
        help="first train the CNN's last 3 units and a head on the photos' labels, for at most"
        " EPOCHS passes (a tenth of the photos held out to stop early); takes minutes per"
        " thousand photos on a CPU",
    )
    parser.add_argument(
        "--false-accept-rate",
        type=number(float, lambda value: 0 < value <= 1, "a rate in (0, 1]"),
        metavar="RATE",
        help="let the model answer 'not a known product': about this fraction of photos of"
        " products not in FOLDER would still get a product (0.05, say; learnt by leaving"
        " groups of products out in turn); default: never reject",
    )
    add_run_options(parser)
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def model_name(branch: str, fusion: str) -> str:
    """``"traditional"``, ``"deep"``, ``"fused early"`` or ``"fused late"``."""
    return f"fused {fusion}" if branch == "fused" else branch


def run(args: argparse.Namespace) -> int:
    """Train, save the model, and say what was trained on what."""
    if args.fine_tune and args.branch == "traditional":
        raise CommandError("--fine-tune trains the CNN: use it with --branch deep or fused")
    photos = load_image_folder(args.folder)
    labels = np.asarray(photos.target_names, dtype=object)[photos.target]
    model = build_classifier(
        args,
        branch=args.branch,
        fusion=args.fusion,
        on_error=args.on_error,
        verbose=int(args.verbose),
        false_accept_rate=args.false_accept_rate,
    )
    if args.fine_tune:
        from ..deep import FineTuning  # PyTorch loads when a command needs it, not for --help

        model.deep.set_params(fine_tune=FineTuning(epochs=args.fine_tune))
    started = time.perf_counter()
    model.fit(photos.data, labels)
    seconds = time.perf_counter() - started
    for position in model.dropped_indices_:
        print(f"left out unreadable photo: {photos.data[position]}")
    n_photos = len(photos.data) - len(model.dropped_indices_)
    show_progress(model, verbose=False)  # quiet unless asked
    path = model_file.save(
        model,
        args.output,
        folder=str(Path(args.folder).resolve()),
        photos=n_photos,
        products=list(model.classes_),
    )
    print(
        f"trained a {model_name(args.branch, args.fusion)} classifier on {n_photos} photos of"
        f" {len(model.classes_)} products in {seconds:.1f} s"
    )
    if model.known_threshold_ is not None:
        print(
            f"photos whose best product has a probability of {model.known_threshold_:.3f} or"
            f" less are answered {model.unknown_label_!r} (not a known product)"
        )
    print(f"saved to {path}")
    return 0
