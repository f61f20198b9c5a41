"""The ``fusionrec`` console script: one module per command, registered here.

Each command module offers ``register(commands)``, which adds its sub-parser
to ``commands`` and sets ``run``, the function that carries it out and returns
the exit status. Adding a command is one new module and one entry in
``COMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from .._allocator import keep_freed_memory
from . import (
    convert,
    demo,
    duplicates,
    evaluate,
    explain,
    extract,
    index,
    info,
    predict,
    search,
    serve,
    train,
)
from .errors import report_error

COMMANDS = (
    info,
    demo,
    train,
    evaluate,
    predict,
    explain,
    index,
    extract,
    search,
    duplicates,
    serve,
    convert,
)

_EPILOG = """\
quick start:
  fusionrec demo                                    compare branches on the bundled photos
  fusionrec train photos/ -o model.fusionrec        one sub-folder of photos per product
  fusionrec evaluate model.fusionrec test-photos/ --report report/
  fusionrec predict model.fusionrec new.jpg --top 3
  fusionrec explain model.fusionrec new.jpg -o why.png  why that product, drawn
  fusionrec index catalogue/ -o index.fusionrec     every photo under catalogue/, for search
  fusionrec extract catalogue/ --out features/      features of millions of photos, in shards
  fusionrec search index.fusionrec shopper.jpg -k 5
  fusionrec duplicates index.fusionrec --out dup/   one photo under two ids (index --rerank)
  fusionrec serve index.fusionrec                   search by photo over HTTP, page at /
  fusionrec convert model.joblib model.fusionrec    a pickle of an earlier fusionrec, rewritten

Run 'fusionrec COMMAND --help' for a command's options."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, each registered by its module."""
    parser = argparse.ArgumentParser(
        prog="fusionrec",
        description="Recognise products in photos with keypoint and CNN features.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fusionrec {__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on an error, show Python's full traceback instead of one line (for bug reports)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; return its exit status.

    Errors end the command with one line on stderr and status 1 (``--traceback``
    re-raises them instead); usage errors end it with status 2, as argparse does.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"fusionrec {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.traceback:
            raise
        return report_error(args.command, error)


def console() -> None:
    """The ``fusionrec`` program: :func:`main`, in a process whose allocator keeps freed memory.

    The allocator settings (``fusionrec._allocator``) speed up describing
    photos; they are applied here, where fusionrec owns the process, and not
    by ``main``, which tests and other programs call inside their own.
    """
    keep_freed_memory()
    sys.exit(main())


if __name__ == "__main__":
    console()
