"""Rebuild the demo subset bundled in ``fusionrec/datasets/data/demo_products``.

The subset is drawn from the Grocery Store dataset (Klasson, Zhang and Kjellstrom,
WACV 2019; MIT licence): 15 photos from the official training split for each of
ten visually distinct products, downscaled so the shorter side is 256 pixels.

Run from the repository root with the dataset beside it::

    python tools/make_demo_products.py ../shared/data/grocery_store
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

from PIL import Image, ImageOps

CLASSES = (
    "Banana",
    "Granny-Smith",
    "Lemon",
    "Kiwi",
    "Red-Bell-Pepper",
    "Carrots",
    "Cucumber",
    "Oatly-Oat-Milk",
    "Arla-Standard-Milk",
    "Tropicana-Apple-Juice",
)
PHOTOS_PER_CLASS = 15
SHORT_SIDE = 256
DEST = Path(__file__).resolve().parents[1] / "fusionrec" / "datasets" / "data" / "demo_products"


def training_photos(root: Path) -> dict[str, list[Path]]:
    """Group the official training split's photos by fine class name."""
    by_class: dict[str, list[Path]] = {}
    for line in (root / "train.txt").read_text().splitlines():
        if line.strip():
            relative = line.split(",")[0].strip()
            by_class.setdefault(Path(relative).parent.name, []).append(root / relative)
    return by_class


def save_downscaled(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        scale = SHORT_SIDE / min(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        image.resize(size, Image.Resampling.LANCZOS).save(target, quality=88, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the grocery_store folder")
    root = parser.parse_args().root
    by_class = training_photos(root)
    shutil.rmtree(DEST, ignore_errors=True)
    rng = random.Random(0)
    for name in CLASSES:
        (DEST / name).mkdir(parents=True)
        for source in sorted(rng.sample(sorted(by_class[name]), PHOTOS_PER_CLASS)):
            save_downscaled(source, DEST / name / source.name)
    shutil.copy(root / "LICENSE", DEST / "LICENSE")


if __name__ == "__main__":
    main()
