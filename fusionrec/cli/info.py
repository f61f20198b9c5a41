"""``fusionrec info [FILE]``: versions, detectors, defaults and demo data; or what a file holds."""

from __future__ import annotations

import argparse
from collections import Counter
from importlib import metadata

from .. import __version__
from ..datasets import load_demo_products
from ..traditional import available_detectors

_LIBRARIES = ("numpy", "pillow", "opencv-contrib-python-headless", "scikit-learn", "joblib")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``info`` to the console script."""
    parser = commands.add_parser(
        "info",
        help="show versions, detectors, default features and the bundled demo data",
        description="Show the versions this install runs on, the keypoint detectors its OpenCV"
        " build offers, the default feature extractors, and the bundled demo photos. With FILE,"
        " show instead what a model or index file holds, read from its manifest (nothing in the"
        " file runs, and no estimator is built).",
        epilog="examples: fusionrec info; fusionrec info model.fusionrec",
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="a model or index file to describe")
    parser.set_defaults(run=run)


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def run(args: argparse.Namespace) -> int:
    """Print the versions, the detectors, the default features and what the demo data holds."""
    if args.file is not None:
        print(describe(args.file))
        return 0
    from ..features import default_deep, default_traditional

    print(f"fusionrec {__version__}")
    for distribution in _LIBRARIES:
        print(f"  {distribution:32} {_installed_version(distribution)}")
    print(f"\nKeypoint detectors: {', '.join(available_detectors())}")
    print("\nDefault features (the feature options of 'train' and 'demo' change them):")
    print(f"  traditional: {default_traditional(None, None)!r}")
    print(f"  deep:        {default_deep()!r}")
    demo = load_demo_products()
    counts = Counter(demo.target)
    print(f"\nDemo products ({len(demo.data)} photos, bundled, MIT licence):")
    for label, name in enumerate(demo.target_names):
        print(f"  {name:32} {counts[label]} photos")
    return 0


def describe(path: str) -> str:
    """What the file at ``path`` holds, who wrote it, and the facts kept with it."""
    from .. import files  # PyTorch loads when a command needs it, not for --help

    described = files.describe_file(path)
    written_with = ", ".join(
        f"{name} {version}" for name, version in described.libraries.items() if version
    )
    size = sum(described.parts.values())
    lines = [
        f"{path}: a {described.class_name.rsplit('.', 1)[-1]} ({described.kind}), fusionrec"
        f" file format {described.format_version}",
        f"  written by fusionrec {described.fusionrec_version} with {written_with}",
        f"  {len(described.parts)} parts, {size / 2**20:.1f} MiB",
        *(f"  {name}: {_shown(value)}" for name, value in described.about.items()),
    ]
    return "\n".join(lines)


def _shown(value: object) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
