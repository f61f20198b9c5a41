"""``fusionrec index FOLDER -o INDEX``: index a catalogue of product photos for search."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator

from .._choices import SEARCHES
from ..datasets import IMAGE_EXTENSIONS, photos_below
from . import model_file
from .errors import CommandError
from .options import (
    add_allow_pickle_option,
    add_feature_options,
    add_output_options,
    add_run_options,
    add_verbose_option,
    extractors,
)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``index`` to the console script."""
    parser = commands.add_parser(
        "index",
        help="index a folder of catalogue photos for search by photo",
        description="Extract the features of every photo under FOLDER (sub-folders included)"
        " and save a search index that 'fusionrec search' reads. Each photo's id is its path"
        " relative to FOLDER.",
        epilog="examples: fusionrec index catalogue/ -o index.fusionrec --rerank;"
        " fusionrec index catalogue/ -o index.fusionrec --deep-from tuned.fusionrec",
    )
    parser.add_argument("folder", metavar="FOLDER", help="folder of catalogue photos")
    add_output_options(parser, "index.fusionrec", "index")
    parser.add_argument(
        "--branch",
        choices=("deep", "traditional", "fused"),
        default="deep",
        help="features to compare (default: %(default)s)",
    )
    parser.add_argument(
        "--rerank",
        action="store_true",
        help="keep keypoints of every photo, so that searches re-rank their best 20 candidates"
        " by geometrically verified keypoint matches (slower, more exact)",
    )
    parser.add_argument(
        "--search",
        choices=SEARCHES,
        default="exact",
        help="compare a query with every photo (exact), or only with the photos filed near it"
        " (ivf: faiss-cpu, pip install 'fusionrec[ann]'; for catalogues past 100,000 photos)"
        " (default: %(default)s)",
    )
    add_feature_options(parser)
    parser.add_argument(
        "--deep-from",
        metavar="MODEL",
        help="embed with the CNN of a model file that 'fusionrec train' wrote (one trained"
        " with --fine-tune, say) instead of a fresh one",
    )
    add_allow_pickle_option(parser)
    add_run_options(parser)
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def photos_under(folder: str | Path) -> list[Path]:
    """Every photo file below ``folder``, sorted; hidden files and folders are skipped."""
    root = Path(folder)
    if not root.is_dir():
        reason = "is a file" if root.exists() else "does not exist"
        raise CommandError(f"folder {str(root)!r} {reason}")
    photos = [Path(path) for path in photos_below(root)]
    if not photos:
        raise CommandError(f"folder {str(root)!r} holds no photos ({', '.join(IMAGE_EXTENSIONS)})")
    return photos


def trained_network(args: argparse.Namespace) -> FrozenEstimator:
    """The fitted CNN of the model file ``--deep-from`` names, to be used as it is."""
    if args.backbone or args.weights:
        raise CommandError("--deep-from brings its own CNN: leave out --backbone and --weights")
    model, _ = model_file.load(args.deep_from, allow_pickle=args.allow_pickle)
    if "deep" not in model.features_.branches_:
        raise CommandError(
            f"{args.deep_from} classifies by keypoints alone: it has no CNN to search with"
        )
    return FrozenEstimator(model.features_.fitted_extractor("deep"))


def run(args: argparse.Namespace) -> int:
    """Index the folder's photos and save the index."""
    from ..search import ProductIndex  # PyTorch loads when a command needs it, not for --help

    photos = photos_under(args.folder)
    ids = [path.relative_to(args.folder).as_posix() for path in photos]
    features = extractors(args)
    if args.deep_from:
        features["deep"] = trained_network(args)
    index = ProductIndex(
        args.branch,
        **features,
        rerank="ransac" if args.rerank else None,
        search=args.search,
        on_error=args.on_error,
        n_jobs=args.n_jobs,
        random_state=args.seed,
        verbose=int(args.verbose),
    )
    started = time.perf_counter()
    index.fit(np.array([str(path) for path in photos], dtype=object), ids)
    seconds = time.perf_counter() - started
    for position in index.dropped_indices_:
        print(f"left out unreadable photo: {ids[position]}")
    path = model_file.save(index, args.output, kind="index", folder=str(Path(args.folder)))
    print(f"indexed {len(index.ids_)} photos of {args.folder} in {seconds:.1f} s")
    print(f"saved to {path}")
    return 0
