"""Benchmark of ProductIndex.duplicates on a catalogue with planted duplicates.

    python benchmarks/duplicates.py                # the Grocery Store training split, 5% copied
    python benchmarks/duplicates.py -n 300         # a quick run on the first 300 photos

Copies of 5% of the training photos (each cropped to 80-90% of each side at a
random place, resized by 0.6-1.4 and re-encoded as a JPEG of quality 30-75) join
the catalogue under new ids. A found pair is right when it joins a photo and its
copy; a found group is right when it is exactly a photo and its copy. Groups that
are wrong are split into those whose photos all show one product (fine label:
distinct shots of one package or shelf, near-identical) and those that mix products.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, load_split

from fusionrec import ProductIndex
from fusionrec.search.duplicates import (
    MAX_DESCRIPTOR_DISTANCE,
    MIN_INLIER_SHARE,
    MIN_INLIERS,
    MIN_SIMILARITY,
    N_NEIGHBORS,
    candidate_pairs,
    duplicate_groups,
    is_duplicate,
    verify_pairs,
)

SETTINGS = {  # name: (min_inliers, min_inlier_share, max_descriptor_distance)
    "defaults": (MIN_INLIERS, MIN_INLIER_SHARE, MAX_DESCRIPTOR_DISTANCE),
    "descriptor distance 0.12": (MIN_INLIERS, MIN_INLIER_SHARE, 0.12),
    "descriptor distance 0.18": (MIN_INLIERS, MIN_INLIER_SHARE, 0.18),
    "descriptor distance 0.22": (MIN_INLIERS, MIN_INLIER_SHARE, 0.22),
    "no inlier share": (MIN_INLIERS, 0.0, MAX_DESCRIPTOR_DISTANCE),
    "50 inliers": (50, MIN_INLIER_SHARE, MAX_DESCRIPTOR_DISTANCE),
    "inliers only (same package)": (MIN_INLIERS, 0.0, None),
}


def planted_copy(photo: str, destination: Path, rng: np.random.Generator) -> str:
    """A cropped, resized, re-encoded copy of ``photo`` written to ``destination``."""
    image = Image.open(photo).convert("RGB")
    width, height = image.size
    crop_width, crop_height = (np.array([width, height]) * rng.uniform(0.8, 0.9, 2)).astype(int)
    left = int(rng.integers(0, width - crop_width + 1))
    top = int(rng.integers(0, height - crop_height + 1))
    image = image.crop((left, top, left + crop_width, top + crop_height))
    scale = rng.uniform(0.6, 1.4)
    image = image.resize((max(1, int(crop_width * scale)), max(1, int(crop_height * scale))))
    image.save(destination, format="JPEG", quality=int(rng.integers(30, 76)))
    return str(destination)


def planted_catalogue(paths: np.ndarray, share: float, folder: Path, seed: int):
    """The photos and copies of ``share`` of them; the copied photos' positions."""
    rng = np.random.default_rng(seed)
    originals = np.sort(rng.choice(len(paths), max(1, round(share * len(paths))), replace=False))
    folder.mkdir(parents=True, exist_ok=True)
    copies = [
        planted_copy(paths[original], folder / f"copy-{original:05d}.jpg", rng)
        for original in originals
    ]
    return np.concatenate([paths, np.array(copies, dtype=object)]), originals


def scores(found: int, right: int, truth: int) -> str:
    precision = right / found if found else float("nan")
    return f"precision {precision:.3f} ({right}/{found}), recall {right / truth:.3f}"


def evaluate(groups: list, planted: set, labels: np.ndarray) -> dict[str, str]:
    """Pair and group precision and recall, and what the wrong groups hold."""
    edges = {frozenset(pair) for group in groups for pair in group.pairs.tolist()}
    exact = [frozenset(group.ids.tolist()) in planted for group in groups]
    wrong = [group for group, right in zip(groups, exact, strict=True) if not right]
    one_product = sum(len(set(labels[group.ids.astype(int)])) == 1 for group in wrong)
    sizes = [len(group) for group in wrong]
    return {
        "pairs": scores(len(edges), len(edges & planted), len(planted)),
        "groups": scores(len(groups), sum(exact), len(planted)),
        "wrong groups": f"{len(wrong)}: {one_product} of one product, "
        f"{len(wrong) - one_product} mixing products; sizes {np.bincount(sizes)[2:].tolist()}"
        " (2, 3, ... photos)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, cache=True)
    parser.add_argument("-n", "--n-photos", type=int, default=None, help="first N photos only")
    parser.add_argument("--share", type=float, default=0.05, help="share of photos copied")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    paths, labels = load_split(args.root, "train", "fine")
    paths, labels = paths[: args.n_photos], labels[: args.n_photos]
    folder = args.cache / f"planted-duplicates-{args.seed}-{args.share}"
    photos, originals = planted_catalogue(paths, args.share, folder, args.seed)
    labels = np.concatenate([labels, labels[originals]])
    copies = np.arange(len(paths), len(photos))
    planted = {frozenset(pair) for pair in zip(originals.tolist(), copies.tolist(), strict=True)}
    print(
        f"catalogue: {len(paths)} training photos (fine labels) and {len(copies)} planted copies"
        f" (cropped to 80-90%, resized by 0.6-1.4, JPEG quality 30-75); seed {args.seed}"
    )

    started = time.perf_counter()
    index = ProductIndex(rerank="ransac", memory=args.cache, n_jobs=args.n_jobs).fit(photos)
    print(f"indexed with keypoints in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    candidates = candidate_pairs(index, N_NEIGHBORS, MIN_SIMILARITY)
    found = {frozenset(pair) for pair in candidates.positions.tolist()}
    print(
        f"candidates ({N_NEIGHBORS} neighbours, similarity >= {MIN_SIMILARITY}):"
        f" {len(candidates)} pairs in {time.perf_counter() - started:.1f} s, holding"
        f" {len(found & planted)} of the {len(planted)} planted pairs"
    )
    started = time.perf_counter()
    measured = verify_pairs(index.keypoints_, candidates, n_jobs=args.n_jobs)
    print(f"verified by keypoints in {time.perf_counter() - started:.1f} s")
    for name, thresholds in SETTINGS.items():
        groups = duplicate_groups(index.ids_, measured, is_duplicate(measured, *thresholds))
        inliers, share, distance = thresholds
        print(f"{name} (inliers >= {inliers}, share >= {share}, distance <= {distance}):")
        for what, result in evaluate(groups, planted, labels).items():
            print(f"  {what:13} {result}")


if __name__ == "__main__":
    main()
