"""``fusionrec convert OLD NEW``: rewrite a pickled model or index in fusionrec's own format."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``convert`` to the console script."""
    parser = commands.add_parser(
        "convert",
        help="rewrite a .joblib model or index from an earlier fusionrec in the safe format",
        description="Rewrite OLD, a model or index file that an earlier fusionrec wrote (a"
        " pickle, usually *.joblib), as NEW in the format fusionrec writes now, which opens"
        " without running any code from the file. Reading OLD unpickles it, which runs any code"
        " it holds: convert only files you made or trust. OLD is left as it is.",
        epilog="example: fusionrec convert model.joblib model.fusionrec",
    )
    parser.add_argument("old", metavar="OLD", help="the pickled file (.joblib)")
    parser.add_argument("new", metavar="NEW", help="the file to write (.fusionrec)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Unpickle OLD once and save what it holds as NEW."""
    from .. import files  # PyTorch loads when a command needs it, not for --help

    path = files.convert(args.old, args.new)
    holds = files.describe_file(path).class_name.rsplit(".", 1)[-1]
    print(f"converted {args.old} (a pickle) to {path}: a {holds}, which opens without pickle")
    return 0
