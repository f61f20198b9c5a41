"""``fusionrec search INDEX IMAGE... -k K``: the catalogue photos most like each photo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import model_file
from .errors import CommandError
from .options import add_allow_pickle_option, add_verbose_option, at_least, show_progress


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``search`` to the console script."""
    parser = commands.add_parser(
        "search",
        help="find the catalogue photos most similar to each photo",
        description="Print, for each IMAGE, the K catalogue photos of INDEX whose features are"
        " most similar (cosine similarity; with an index built with --rerank, also the number"
        " of geometrically verified keypoint matches).",
        epilog="example: fusionrec search index.fusionrec shopper.jpg -k 5",
    )
    parser.add_argument("index", metavar="INDEX", help="index file from 'fusionrec index'")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photo files")
    parser.add_argument(
        "-k",
        type=at_least(1),
        default=5,
        metavar="K",
        help="matches per photo (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print JSON instead: [{"image": ..., "ids": [...], "scores": [...]}, ...]',
    )
    add_allow_pickle_option(parser)
    parser.add_argument(
        "--explain",
        metavar="DIR",
        help="also draw each match's verified keypoint matches, side by side, one PNG per photo"
        " and match in DIR (needs an index built with --rerank; catalogue photos are read from"
        " the folder it was built from)",
    )
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Query the index with each photo and print its matches."""
    index, about = model_file.load(args.index, kind="index", allow_pickle=args.allow_pickle)
    if args.explain and index.rerank is None:
        raise CommandError(
            "--explain draws verified keypoint matches: build the index with "
            "'fusionrec index --rerank'"
        )
    index.set_params(on_error="raise")
    show_progress(index, args.verbose)
    found = index.query(args.images, k=args.k)
    results = [
        {"image": image, **matches.to_dict()}
        for image, matches in zip(args.images, found, strict=True)
    ]
    if args.explain:
        pictures = draw_matches(args.images, found, Path(about["folder"]), Path(args.explain))
        for result, drawn in zip(results, pictures, strict=True):
            result["pictures"] = drawn
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    return 0


def draw_matches(images: list[str], found: list, folder: Path, out: Path) -> list[list[str]]:
    """Draw each match with verified keypoint matches into ``out``; the files, per photo.

    A file is named by the photo's position and name and the match's rank,
    e.g. ``01-shopper-2.png`` for the second match of the first photo.
    """
    from ..explanations import explain_match  # PyTorch loads when the command runs

    pictures = []
    for number, (image, matches) in enumerate(zip(images, found, strict=True), start=1):
        drawn = []
        for rank, (item, inliers) in enumerate(zip(matches.ids, matches.inliers, strict=True)):
            if inliers:
                path = out / f"{number:02d}-{Path(image).stem}-{rank + 1}.png"
                explain_match(image, folder / item, matches, rank).save_png(path)
                drawn.append(str(path))
        pictures.append(drawn)
    return pictures


def format_results(results: list[dict]) -> str:
    """Each photo, then one line per match: rank, id, cosine similarity (and inliers).

    Examples
    --------
    >>> print(format_results([{"image": "a.jpg", "ids": ["tea/1.jpg"], "scores": [0.91]}]))
    a.jpg
      1. tea/1.jpg  0.910
    """
    lines = []
    for result in results:
        lines.append(result["image"])
        width = max(len(str(item)) for item in result["ids"])
        inliers = result.get("inliers", [None] * len(result["ids"]))
        for rank, (item, score, verified) in enumerate(
            zip(result["ids"], result["scores"], inliers, strict=True), start=1
        ):
            extra = "" if verified is None else f"  {verified} verified matches"
            lines.append(f"  {rank}. {item!s:{width}}  {score:.3f}{extra}")
        lines.extend(f"  drawn: {picture}" for picture in result.get("pictures", []))
    return "\n".join(lines)
