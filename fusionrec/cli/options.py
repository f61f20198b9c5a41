"""Options several commands share: how features are extracted, and how runs report progress."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .._choices import PRECISIONS
from ..traditional import DETECTORS, ENCODINGS

# Feature options and the extractor parameter each one sets.
TRADITIONAL_OPTIONS = {
    "detector": "detector",
    "encoding": "encoding",
    "n_words": "n_words",
    "pca": "pca_components",
    "max_descriptors": "max_descriptors",
}
DEEP_OPTIONS = {"backbone": "backbone", "weights": "weights", "precision": "precision"}
_MEANS_NONE = {"pca_components": 0, "weights": "none"}


def add_feature_options(parser: argparse.ArgumentParser) -> None:
    """Options that change the feature extractors; unset ones keep FusedClassifier's defaults."""
    group = parser.add_argument_group(
        "features",
        "Options left out keep FusedClassifier's default extractors, which 'fusionrec info'"
        " prints.",
    )
    group.add_argument(
        "--detector",
        choices=sorted(DETECTORS),
        help="keypoint detector and descriptor of the traditional branch ('fusionrec info'"
        " lists what this OpenCV build has)",
    )
    group.add_argument(
        "--encoding", choices=ENCODINGS, help="how a photo's keypoints become one vector"
    )
    group.add_argument(
        "--n-words", type=at_least(2), metavar="N", help="visual words in the vocabulary"
    )
    group.add_argument(
        "--pca",
        type=at_least(0),
        metavar="N",
        help="reduce descriptors to N dimensions before learning the vocabulary; 0: no PCA",
    )
    group.add_argument(
        "--max-descriptors",
        type=at_least(1),
        metavar="N",
        help="learn the vocabulary from at most N descriptors, drawn evenly from the photos",
    )
    group.add_argument(
        "--backbone",
        metavar="NAME",
        help="CNN of the deep branch: efficientnet_lite0 (weights bundled, offline), or any"
        " torchvision classification model such as resnet50",
    )
    group.add_argument(
        "--weights",
        metavar="WEIGHTS",
        help="the CNN's weights: 'default' (bundled, or torchvision's, downloaded once), 'none'"
        " (random), a torchvision weight name, or a local state-dict file",
    )
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="how the CNN runs on a CPU: float32 (default), or int8, quantised on 64 of the"
        " training photos: 1.7x faster end to end (Grocery Store: test accuracy unchanged, val"
        " 1 point lower), for about 35 s more of training on 2 cores",
    )


def add_output_options(parser: argparse.ArgumentParser, default: str, what: str) -> None:
    """``-o/--output`` (the file to write) and ``--on-error`` (what to do with bad photos)."""
    parser.add_argument(
        "-o",
        "--output",
        default=default,
        metavar=what.upper(),
        help=f"{what} file to write (default: %(default)s): a fusionrec file, which opens without"
        " running any code from it",
    )
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="an unreadable photo stops the run (raise) or is left out and named (skip)"
        " (default: %(default)s)",
    )


def add_allow_pickle_option(parser: argparse.ArgumentParser) -> None:
    """``--allow-pickle``: also open a pickled file from an earlier fusionrec, naming the risk."""
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also open a .joblib file from an earlier fusionrec. It is a pickle, and opening it"
        " runs any code it holds: only for files you trust. Better: convert it once with"
        " 'fusionrec convert'",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--n-jobs`` and ``--seed``."""
    group = parser.add_argument_group("run")
    group.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        metavar="N",
        help="parallel workers for keypoint extraction (-1: all cores; default: one)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="random seed, so that a run repeats exactly (default: %(default)s)",
    )


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose``: progress bars while features are extracted."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show progress bars while photos are read and features extracted",
    )


def extractors(args: argparse.Namespace) -> dict[str, Any]:
    """FusedClassifier's default extractors, changed as the feature options say."""
    from ..features import default_deep, default_traditional

    traditional = default_traditional(args.n_jobs, args.seed)
    deep = default_deep().set_params(random_state=args.seed)
    return {
        "traditional": traditional.set_params(**_given(args, TRADITIONAL_OPTIONS)),
        "deep": deep.set_params(**_given(args, DEEP_OPTIONS)),
    }


def _given(args: argparse.Namespace, options: dict[str, str]) -> dict[str, Any]:
    """Parameters of the options given; ``--pca 0`` and ``--weights none`` mean None."""
    given = {
        parameter: getattr(args, option)
        for option, parameter in options.items()
        if getattr(args, option) is not None
    }
    for parameter, meaning_none in _MEANS_NONE.items():
        if given.get(parameter) == meaning_none:
            given[parameter] = None
    return given


def build_classifier(args: argparse.Namespace, **params: Any) -> Any:
    """A ``FusedClassifier`` with the extractors, workers and seed the options give.

    ``params`` sets the rest (``branch``, ``fusion``, ``memory``, ``on_error``, ``verbose``).
    """
    from .. import FusedClassifier

    return FusedClassifier(**extractors(args), n_jobs=args.n_jobs, random_state=args.seed, **params)


def show_progress(model: Any, verbose: bool) -> None:
    """Turn a fitted model's progress bars on or off (each branch keeps its own setting)."""
    for branch in model.features_.branches_.values():
        for extractor in (branch.extractor, branch.fitted_):
            extractor.set_params(verbose=int(verbose))


def number(kind: type, accept: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse ``type``: text read as ``kind``, kept only if ``accept`` says so.

    Examples
    --------
    >>> number(float, lambda value: 0 < value < 1, "a fraction between 0 and 1")("0.3")
    0.3
    """

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}; got {value}")
        return value

    return parse


def at_least(smallest: int) -> Callable[[str], int]:
    """An argparse ``type`` that accepts whole numbers from ``smallest`` up."""
    return number(int, lambda value: value >= smallest, f"a whole number from {smallest} up")
