"""The ``fusionrec`` console script."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from importlib import metadata

from . import __version__
from .datasets import load_demo_products

_LIBRARIES = ("numpy", "pillow", "opencv-contrib-python-headless", "scikit-learn", "joblib")


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def info(args: argparse.Namespace) -> int:
    """Print the versions this install runs on and what the demo data holds."""
    print(f"fusionrec {__version__}")
    for distribution in _LIBRARIES:
        print(f"  {distribution:32} {_installed_version(distribution)}")
    demo = load_demo_products()
    counts = Counter(demo.target)
    print(f"\nDemo products ({len(demo.data)} photos, bundled, MIT licence):")
    for label, name in enumerate(demo.target_names):
        print(f"  {name:32} {counts[label]} photos")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionrec",
        description="Recognise products in photos with keypoint and CNN features.",
    )
    parser.add_argument("--version", action="version", version=f"fusionrec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("info", help="show versions and the bundled demo data").set_defaults(
        run=info
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the console script; return its exit status."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
