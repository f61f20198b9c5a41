"""Rebuild the demo subset bundled in ``fusionrec/datasets/data/demo_products``.

The subset is drawn from the Grocery Store dataset (Klasson, Zhang and Kjellstrom,
WACV 2019; MIT licence): 15 photos from the official training split for each of
ten products, downscaled so the shorter side is 256 pixels. The products come in
look-alike pairs and triples (one brand's packages, varieties of one fruit), so
that the keypoint and CNN branches make different mistakes and fusing them shows.
Each product's photos are drawn with a seed of their own: the same product gets
the same photos whatever the other products are.

Run from the repository root with the dataset beside it::

    python tools/make_demo_products.py ../shared/data/grocery_store

``--dest`` and ``--products`` build another set the same way, e.g. candidates to compare.
"""

from __future__ import annotations

import argparse
import random
import shutil
import textwrap
from pathlib import Path

from PIL import Image, ImageOps

PRODUCTS = (
    "Tropicana-Apple-Juice",
    "Tropicana-Golden-Grapefruit",
    "Tropicana-Juice-Smooth",
    "Tropicana-Mandarin-Morning",
    "Arla-Ecological-Medium-Fat-Milk",
    "Arla-Lactose-Medium-Fat-Milk",
    "Arla-Medium-Fat-Milk",
    "Arla-Standard-Milk",
    "Golden-Delicious",
    "Granny-Smith",
)
PHOTOS_PER_PRODUCT = 15
SHORT_SIDE = 256
JPEG_QUALITY = 88
DEST = Path(__file__).resolve().parents[1] / "fusionrec" / "datasets" / "data" / "demo_products"
CREDIT = """\
# Demo products

{photos} photos of {count} products ({per_product} each) from the Grocery Store dataset by Marcus
Klasson, Cheng Zhang and Hedvig Kjellström, "A Hierarchical Grocery Store Image Dataset with
Visual and Semantic Labels", IEEE WACV 2019. Drawn from the dataset's official training split
and downscaled to {short_side} pixels on the shorter side by `tools/make_demo_products.py`.

{products}

Licence: MIT, as the original dataset; see `LICENSE` in this folder.
"""


def training_photos(root: Path) -> dict[str, list[Path]]:
    """Group the official training split's photos by fine class name."""
    by_product: dict[str, list[Path]] = {}
    for line in (root / "train.txt").read_text().splitlines():
        if line.strip():
            relative = line.split(",")[0].strip()
            by_product.setdefault(Path(relative).parent.name, []).append(root / relative)
    return by_product


def chosen_photos(photos: list[Path], product: str) -> list[Path]:
    """``PHOTOS_PER_PRODUCT`` of a product's photos, drawn with the product's own seed."""
    return sorted(random.Random(product).sample(sorted(photos), PHOTOS_PER_PRODUCT))


def save_downscaled(source: Path, target: Path) -> None:
    """Write ``source`` as a JPEG whose shorter side is ``SHORT_SIDE`` pixels."""
    with Image.open(source) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        scale = SHORT_SIDE / min(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        resized = image.resize(size, Image.Resampling.LANCZOS)
        resized.save(target, quality=JPEG_QUALITY, optimize=True)


def write_credit(root: Path, dest: Path, products: list[str]) -> None:
    """The dataset's licence and a README naming its authors, beside the photos."""
    shutil.copy(root / "LICENSE", dest / "LICENSE")
    credit = CREDIT.format(
        photos=len(products) * PHOTOS_PER_PRODUCT,
        count=len(products),
        per_product=PHOTOS_PER_PRODUCT,
        short_side=SHORT_SIDE,
        products=textwrap.fill(
            "The products are look-alikes, chosen so that the demo's keypoint and CNN branches"
            f" err on different photos: {', '.join(sorted(products))}.",
            width=92,
            break_on_hyphens=False,
        ),
    )
    (dest / "README.md").write_text(credit, encoding="utf-8")


def build(root: Path, dest: Path, products: list[str]) -> None:
    """Replace ``dest`` with the chosen photos of ``products`` and the credit."""
    by_product = training_photos(root)
    unknown = sorted(set(products) - set(by_product))
    if unknown:
        raise SystemExit(f"not fine classes of the training split: {', '.join(unknown)}")
    shutil.rmtree(dest, ignore_errors=True)
    for product in products:
        (dest / product).mkdir(parents=True)
        for source in chosen_photos(by_product[product], product):
            save_downscaled(source, dest / product / source.name)
    write_credit(root, dest, products)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the grocery_store folder")
    parser.add_argument(
        "--dest", type=Path, default=DEST, help="folder to (re)create (default: the bundle)"
    )
    parser.add_argument(
        "--products",
        nargs="+",
        default=list(PRODUCTS),
        metavar="NAME",
        help="fine class names (default: the bundled ten)",
    )
    args = parser.parse_args()
    build(args.root, args.dest, args.products)


if __name__ == "__main__":
    main()
