"""``fusionrec info``: versions, detectors, default features, and the bundled demo data."""

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
        " build offers, the default feature extractors, and the bundled demo photos.",
    )
    parser.set_defaults(run=run)


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def run(args: argparse.Namespace) -> int:
    """Print the versions, the detectors, the default features and what the demo data holds."""
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
