"""Phone-size photos: both branches with and without decoding JPEGs at the size they are used.

    python benchmarks/phone_photos.py -n 60 --repeats 2

Grocery Store test photos (about 348 px on the short side) are enlarged to 4,032 x 3,024
(bicubic) and saved at JPEG quality 90, as a 12-megapixel phone saves them. Real phone photos
carry more detail than enlarged ones, so they cost more to decode: read the ratios, not the
absolute rates. "Full decode" is the same code with the decoder's DCT scaling switched off
(``_Draft.apply`` made a no-op for the run), so the two differ only in how JPEGs are decoded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, best_of, load_split

from fusionrec import CNNEmbedder
from fusionrec.features import default_deep, default_traditional
from fusionrec.images import decode

PHONE_SIZE = (4032, 3024)


def phone_photos(root: Path, n_images: int, folder: Path) -> list[str]:
    """``n_images`` test photos enlarged to phone size and saved at quality 90."""
    paths, _ = load_split(root, "test")
    chosen = paths[np.random.default_rng(0).permutation(len(paths))[:n_images]]
    written = []
    for i, path in enumerate(chosen):
        target = folder / f"phone_{i:04d}.jpg"
        Image.open(path).convert("RGB").resize(PHONE_SIZE, Image.Resampling.BICUBIC).save(
            target, quality=90
        )
        written.append(str(target))
    return written


def full_decode():
    """The decoder asked for every pixel: what fusionrec did before decoding at reduced scale."""
    return mock.patch.object(decode._Draft, "apply", return_value=None)


def rate(repeats: int, function, photos: list[str], reduced: bool) -> tuple[float, np.ndarray]:
    with contextlib.nullcontext() if reduced else full_decode():
        seconds, rows = best_of(repeats, function, photos)
    return len(photos) / seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("-n", "--n-images", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        photos = phone_photos(args.root, args.n_images, Path(folder))
        deep: CNNEmbedder = default_deep().fit(photos[:1])
        deep.transform(photos[:2])  # ONNX export and session, before timing
        keypoints = default_traditional(1, 0)
        branches = {
            "deep branch (default CNNEmbedder)": deep.transform,
            "keypoint branch (default describe)": keypoints.describe,
        }
        print(f"{len(photos)} photos at {PHONE_SIZE[0]} x {PHONE_SIZE[1]}, JPEG quality 90")
        for name, function in branches.items():
            full, full_rows = rate(args.repeats, function, photos, reduced=False)
            reduced, reduced_rows = rate(args.repeats, function, photos, reduced=True)
            print(f"  {name}")
            print(f"    full decode:          {full:6.1f} photos/s")
            print(f"    decoded at used size: {reduced:6.1f} photos/s  ({reduced / full:.2f}x)")
            if name.startswith("deep"):
                cosine = np.sum(full_rows * reduced_rows, axis=1) / (
                    np.linalg.norm(full_rows, axis=1) * np.linalg.norm(reduced_rows, axis=1)
                )
                print(f"    embedding cosine, reduced vs full: min {cosine.min():.4f}")


if __name__ == "__main__":
    main()
