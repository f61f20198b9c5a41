"""``fusionrec extract PHOTOS --out FEATURES``: features of many photos, in shards, on Dask."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import model_file
from .errors import CommandError
from .index import photos_under
from .options import add_allow_pickle_option, add_verbose_option, at_least

UNREADABLE_SHOWN = 20  # unreadable photos named on the terminal; manifest.json lists them all


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``extract`` to the console script."""
    parser = commands.add_parser(
        "extract",
        help="extract the features of many photos into a folder of shards, resumably, on Dask",
        description="Extract the features of every photo of PHOTOS into FEATURES, one shard"
        " file per run of photos, each written by the Dask worker that computed it. Running"
        " the same command again computes only the shards that are missing (after a crash"
        " or a killed worker). Each photo's id is its path relative to the folder, or its"
        " line in the list. Python's fusionrec.extraction.index_from_features builds a"
        " search index from FEATURES without the photos.",
        epilog="examples: fusionrec extract catalogue/ --out features/;"
        " fusionrec extract photos.txt --out /shared/features/ --model index.fusionrec"
        " --scheduler tcp://scheduler:8786",
    )
    parser.add_argument(
        "photos",
        metavar="PHOTOS",
        help="a folder of photos (sub-folders included), or a text file of photo paths, one a"
        " line (relative ones are read from the list's folder)",
    )
    parser.add_argument(
        "--out", required=True, metavar="FEATURES", help="folder to write the shards to"
    )
    parser.add_argument(
        "--model",
        metavar="FILE",
        help="a fusionrec file (an index, a model, fused features or a CNN) whose features to"
        " extract (default: the deep branch's default CNN)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="a Dask scheduler to run on (tcp://host:8786); default: this process, shard by"
        " shard. Its workers must read the photos and write FEATURES at the same paths",
    )
    parser.add_argument(
        "--photos-per-shard",
        type=at_least(1),
        default=1000,
        metavar="N",
        help="photos per shard, and per task (default: %(default)s)",
    )
    parser.add_argument(
        "--index",
        metavar="INDEX",
        help="then build a search index of the extracted rows (without reading the photos"
        " again) and save it to INDEX, for 'fusionrec search' and 'fusionrec serve'",
    )
    add_allow_pickle_option(parser)
    add_verbose_option(parser)
    parser.set_defaults(run=run)


def photo_list(photos: str) -> tuple[list[str], list[str]]:
    """The photos' absolute paths and their ids, from a folder or from a list file."""
    source = Path(photos)
    if source.is_dir():
        paths = photos_under(source)
        return [str(path.resolve()) for path in paths], [
            path.relative_to(source).as_posix() for path in paths
        ]
    if not source.is_file():
        raise CommandError(f"PHOTOS {photos!r} does not exist")
    ids = [line.strip() for line in source.read_text().splitlines() if line.strip()]
    if not ids:
        raise CommandError(f"the photo list {photos!r} names no photo")
    return [str((source.parent / line).resolve()) for line in ids], ids


def run(args: argparse.Namespace) -> int:
    """Extract the photos' features into the folder; report what was written."""
    from ..extraction import extract_features, index_from_features

    photos, ids = photo_list(args.photos)
    model = _model(args.model, args.allow_pickle) if args.model else None
    client = _client(args.scheduler) if args.scheduler else None
    try:
        extracted = extract_features(
            photos,
            args.out,
            model,
            ids=ids,
            photos_per_shard=args.photos_per_shard,
            scheduler=client or "synchronous",
            progress=args.verbose,
        )
    finally:
        if client is not None:
            client.close()
    manifest = extracted.manifest
    unreadable = extracted.unreadable()
    for id_, reason in unreadable[:UNREADABLE_SHOWN]:
        print(f"left out unreadable photo: {id_} ({reason})")
    if len(unreadable) > UNREADABLE_SHOWN:
        print(f"... and {len(unreadable) - UNREADABLE_SHOWN} more (all in manifest.json)")
    shards = len(manifest["shards"])
    print(
        f"{manifest['rows']} of {manifest['photos']} photos extracted in {shards} shards"
        f" ({manifest['written_now']} written now, {shards - manifest['written_now']} found"
        f" written) to {args.out}"
    )
    if args.index:
        index = index_from_features(args.out)
        path = model_file.save(index, args.index, kind="index", features=str(Path(args.out)))
        print(f"indexed {len(index.ids_)} photos; saved to {path}")
    return 0


def _model(path: str, allow_pickle: bool) -> Any:
    from .. import files

    if not Path(path).is_file():
        raise CommandError(f"model file {path!r} does not exist")
    return files.load(path, allow_pickle=allow_pickle)


def _client(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError as error:
        raise CommandError(
            "--scheduler needs Dask's distributed: pip install 'fusionrec[cluster]'"
        ) from error
    return Client(address)
