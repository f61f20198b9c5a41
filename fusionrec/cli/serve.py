"""``fusionrec serve INDEX``: search by photo over HTTP, an API for programs, a page for people."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import model_file
from .errors import CommandError
from .options import at_least, number

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the console script."""
    parser = commands.add_parser(
        "serve",
        help="serve search by photo over HTTP: a JSON API and a web page",
        description="Answer searches by photo (POST /search), classifications (POST /classify,"
        " with --model) and catalogue changes (POST /items, DELETE /items/ID) over HTTP, with a"
        " page at / and the API's description at /docs. Changes are kept in a log beside the"
        " index and folded into the index file at the next start. Needs"
        " pip install 'fusionrec[serve]'.",
        epilog="examples: fusionrec serve index.joblib;"
        " fusionrec serve index.joblib --model model.joblib --token-file token.txt;"
        " docs/serve.md explains every endpoint, sizing and running behind a reverse proxy",
    )
    parser.add_argument("index", metavar="INDEX", help="index file from 'fusionrec index'")
    parser.add_argument(
        "--model", metavar="MODEL", help="model file from 'fusionrec train': adds POST /classify"
    )
    network = parser.add_argument_group("network")
    network.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: every"
        " network)",
    )
    network.add_argument(
        "--port",
        type=number(int, lambda port: 1 <= port <= 65535, "a port number from 1 to 65535"),
        default=8000,
        help="port to listen on (default: %(default)s)",
    )
    network.add_argument(
        "--root-path",
        default="",
        metavar="PREFIX",
        help="the path prefix a reverse proxy serves this under, such as /search-by-photo",
    )
    network.add_argument(
        "--token-file",
        metavar="FILE",
        help="file holding the token that POST /items and DELETE /items/ID need"
        " ('Authorization: Bearer TOKEN'); without it, anyone who reaches the server may change"
        " the catalogue",
    )
    network.add_argument(
        "--no-access-log", action="store_true", help="do not log each request on stdout"
    )
    work = parser.add_argument_group("work")
    work.add_argument(
        "--workers",
        type=at_least(1),
        default=1,
        metavar="N",
        help="batches worked on at the same time, each in a thread of this one process"
        " (default: %(default)s; docs/serve.md: sizing)",
    )
    work.add_argument(
        "--batch-window-ms",
        type=number(float, lambda ms: 0 <= ms <= 1000, "milliseconds from 0 to 1000"),
        default=5.0,
        metavar="MS",
        help="how long a batch waits for more photos after its first (default: %(default)s)",
    )
    work.add_argument(
        "--max-batch",
        type=at_least(1),
        default=32,
        metavar="N",
        help="most photos embedded in one call (default: %(default)s)",
    )
    work.add_argument(
        "--max-pending",
        type=at_least(1),
        default=64,
        metavar="N",
        help="photos that may wait for a batch; more get 503 (default: %(default)s)",
    )
    work.add_argument(
        "--max-upload-mb",
        type=number(float, lambda mb: 0 < mb <= 1024, "megabytes from 0 to 1024"),
        default=10.0,
        metavar="MB",
        help="largest photo accepted (default: %(default)s)",
    )
    work.add_argument(
        "--max-k",
        type=at_least(1),
        default=100,
        metavar="K",
        help="most matches or products one request may ask for (default: %(default)s)",
    )
    files = parser.add_argument_group("files")
    files.add_argument(
        "--photos",
        metavar="FOLDER",
        help="folder of the catalogue photos, for the page's thumbnails (default: the folder"
        " the index was built from, where it still exists)",
    )
    files.add_argument(
        "--state",
        metavar="FOLDER",
        help="where catalogue changes are kept (default: INDEX.serve beside the index file)",
    )
    parser.set_defaults(run=run)


def open_file(path: str | Path, kind: str) -> tuple[Any, dict]:
    """The fitted object in a fusionrec file, and what the file says about it.

    The one place ``fusionrec serve`` opens an index or a model file: the
    service itself only ever sees fitted objects.
    """
    return model_file.load(path, kind=kind)


def index_writer(path: str | Path, about: dict):
    """A function that replaces the index file by an index, atomically (for compaction)."""
    from ..serve import replace_durably

    def write(index: Any) -> None:
        replace_durably(path, lambda partial: model_file.save(index, partial, "index", **about))

    return write


def read_token(path: str | None) -> str | None:
    """The token in the file ``path`` (surrounding white space ignored)."""
    if path is None:
        return None
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"cannot read the token file {path!r}: {error}") from None


def run(args: argparse.Namespace) -> int:
    """Open the files, then serve until interrupted."""
    try:
        import uvicorn

        from ..serve import ServeSettings, create_app
    except ImportError as error:
        raise CommandError(
            f"'fusionrec serve' needs the serve extra ({error.name} is missing):"
            " pip install 'fusionrec[serve]'"
        ) from None
    settings = ServeSettings(
        state_folder=args.state or f"{args.index}.serve",
        token=read_token(args.token_file),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_k=args.max_k,
        batch_window=args.batch_window_ms / 1000,
        max_batch=args.max_batch,
        max_pending=args.max_pending,
        workers=args.workers,
    )
    index, about = open_file(args.index, "index")
    model = open_file(args.model, "model")[0] if args.model else None
    settings = replace(settings, photo_folder=photo_folder(args.photos, about))
    app = create_app(
        index, model=model, settings=settings, save_index=index_writer(args.index, about)
    )
    if args.host not in LOOPBACK:
        print(
            f"fusionrec serve: listening on {args.host}, beyond this machine"
            + ("" if settings.token else "; without --token-file anyone may change the catalogue"),
            file=sys.stderr,
        )
    print(f"fusionrec serve: {args.index} on http://{args.host}:{args.port}{args.root_path}/")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        root_path=args.root_path,
        access_log=not args.no_access_log,
        log_level="info",
    )
    return 0


def photo_folder(given: str | None, about: dict) -> str | None:
    """``--photos``, or the folder the index was built from if it is still there."""
    if given is not None:
        if not Path(given).is_dir():
            raise CommandError(f"--photos {given!r} is not a folder")
        return given
    built_from = about.get("folder")
    return built_from if built_from and Path(built_from).is_dir() else None
