"""``fusionrec duplicates INDEX``: groups of catalogue photos that show one product photo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import model_file
from .errors import CommandError
from .options import add_allow_pickle_option, add_verbose_option, at_least, number
from .serve import photo_folder

THRESHOLDS = {
    "neighbors": "n_neighbors",
    "min_similarity": "min_similarity",
    "min_inliers": "min_inliers",
    "min_inlier_share": "min_inlier_share",
    "max_descriptor_distance": "max_descriptor_distance",
}
"""Each threshold option and the parameter of ``ProductIndex.duplicates`` it sets."""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``duplicates`` to the console script."""
    parser = commands.add_parser(
        "duplicates",
        help="find catalogue photos that show one product photo under two ids",
        description="Print the groups of INDEX's photos that are copies of one photo"
        " (re-encoded, cropped, resized): near neighbours by features whose keypoints one"
        " homography maps onto each other, nearly unchanged. Draws one contact sheet per group"
        " into --out. Needs an index built with 'fusionrec index --rerank' (its keypoints).",
        epilog="example: fusionrec duplicates index.fusionrec --out duplicates/",
    )
    parser.add_argument("index", metavar="INDEX", help="index file from 'fusionrec index --rerank'")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default="duplicates",
        help="folder for the contact sheets, group-001.png, ... (default: %(default)s)",
    )
    parser.add_argument(
        "--photos",
        metavar="FOLDER",
        help="folder of the catalogue photos (default: the folder the index was built from)",
    )
    parser.add_argument(
        "--no-sheets", action="store_true", help="print the groups only, drawing no sheets"
    )
    parser.add_argument("--json", action="store_true", help="print the groups as JSON")
    thresholds = parser.add_argument_group(
        "thresholds", "Those left out keep the defaults of ProductIndex.duplicates (docs/cli.md)."
    )
    thresholds.add_argument(
        "--neighbors",
        type=at_least(1),
        metavar="K",
        help="nearest photos checked per photo",
    )
    thresholds.add_argument(
        "--min-similarity",
        type=number(float, lambda value: -1 < value <= 1, "a number in (-1, 1]"),
        metavar="S",
        help="lowest cosine similarity of a candidate pair",
    )
    thresholds.add_argument(
        "--min-inliers",
        type=at_least(4),
        metavar="N",
        help="fewest keypoint matches one homography must explain",
    )
    thresholds.add_argument(
        "--min-inlier-share",
        type=number(float, lambda value: 0 <= value <= 1, "a number in [0, 1]"),
        metavar="F",
        help="smallest share of the keypoint matches it must explain",
    )
    thresholds.add_argument(
        "--max-descriptor-distance",
        type=number(float, lambda value: 0 < value <= 2, "a number in (0, 2]"),
        metavar="D",
        help="largest median distance between matched descriptors",
    )
    thresholds.add_argument(
        "--same-package",
        action="store_true",
        help="also group distinct photos of one package (ignore --max-descriptor-distance)",
    )
    add_allow_pickle_option(parser)
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Find the index's duplicate groups, print them and draw their contact sheets."""
    index, about = model_file.load(args.index, kind="index", allow_pickle=args.allow_pickle)
    if index.keypoints_ is None:
        raise CommandError(
            f"{args.index} keeps no keypoints to verify duplicates with: build it with "
            "'fusionrec index --rerank'"
        )
    folder = None if args.no_sheets else catalogue_folder(args.photos, about)
    index.set_params(verbose=int(args.verbose))
    groups = index.duplicates(**thresholds(args))
    results = [group.to_dict() for group in groups]
    if folder is not None:
        sheets = draw_sheets(groups, folder, Path(args.out))
        for result, sheet in zip(results, sheets, strict=True):
            result["sheet"] = sheet
    print(json.dumps(results, indent=2) if args.json else format_groups(results, len(index.ids_)))
    return 0


def thresholds(args: argparse.Namespace) -> dict[str, Any]:
    """The thresholds given on the command line, as ``ProductIndex.duplicates`` names them.

    Examples
    --------
    >>> thresholds(argparse.Namespace(neighbors=5, min_similarity=None, min_inliers=None,
    ...     min_inlier_share=None, max_descriptor_distance=None, same_package=True))
    {'n_neighbors': 5, 'max_descriptor_distance': None}
    """
    given = {
        parameter: getattr(args, option)
        for option, parameter in THRESHOLDS.items()
        if getattr(args, option) is not None
    }
    if args.same_package:
        given["max_descriptor_distance"] = None
    return given


def catalogue_folder(given: str | None, about: dict) -> Path:
    """Where the catalogue photos are: ``--photos``, or the folder the index was built from."""
    folder = photo_folder(given, about)
    if folder is None:
        raise CommandError(
            f"the folder the index was built from ({about.get('folder', 'unknown')!r}) is gone:"
            " pass --photos FOLDER for the contact sheets, or --no-sheets"
        )
    return Path(folder)


def draw_sheets(groups: list, folder: Path, out: Path) -> list[str]:
    """One contact sheet per group in ``out`` (``group-001.png``, ...); their paths."""
    from ..explanations import duplicate_sheet  # Matplotlib loads when the command runs

    sheets = []
    for number_, group in enumerate(groups, start=1):
        photos = [folder / str(item) for item in group.ids]
        missing = [str(photo) for photo in photos if not photo.is_file()]
        if missing:
            raise CommandError(f"catalogue photos not found: {missing[:3]}; pass --photos FOLDER")
        path = out / f"group-{number_:03d}.png"
        duplicate_sheet(group, photos).save_png(path)
        sheets.append(str(path))
    return sheets


def format_groups(results: list[dict], n_items: int) -> str:
    """A summary line, then each group: its ids, then its verified pairs.

    Examples
    --------
    >>> group = {"ids": ["a.jpg", "b.jpg"], "pairs": [
    ...     {"ids": ["a.jpg", "b.jpg"], "similarity": 0.93, "inliers": 212}]}
    >>> print(format_groups([group], 10))
    1 group of duplicates (2 of 10 photos)
    group 1: a.jpg, b.jpg
      a.jpg = b.jpg  similarity 0.930, 212 verified matches
    """
    grouped = sum(len(result["ids"]) for result in results)
    plural = "" if len(results) == 1 else "s"
    lines = [f"{len(results)} group{plural} of duplicates ({grouped} of {n_items} photos)"]
    for number_, result in enumerate(results, start=1):
        lines.append(f"group {number_}: {', '.join(str(item) for item in result['ids'])}")
        for pair in result["pairs"]:
            first, second = pair["ids"]
            lines.append(
                f"  {first} = {second}  similarity {pair['similarity']:.3f},"
                f" {pair['inliers']} verified matches"
            )
        if "sheet" in result:
            lines.append(f"  drawn: {result['sheet']}")
    return "\n".join(lines)
