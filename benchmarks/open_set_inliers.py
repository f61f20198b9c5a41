"""Does geometric verification tell unknown products apart better than the probability?

    python benchmarks/open_set_inliers.py      # deep branch, seeds 0 1 2, every 8th test photo
    python benchmarks/open_set_inliers.py --seeds 0 --test-step 50 --stand-in-share 0.02

A prototype for issue #22 ("products not in the catalogue"), on the split of
benchmarks/open_set.py (20 of 81 products held out, fine labels). A photo of a
known packaged product should match one of its product's training photos
keypoint for keypoint, in one perspective layout; a photo of an unknown
product of a known family (another juice) should not. So each test photo is
verified (Lowe's ratio test, then the RANSAC inliers of one homography, as
``ProductIndex`` re-ranks) against every training photo of its ``--top`` most
probable products, and scored by the most inliers against the top-1 product
(``v1``) and against any of them (``vmax``). Printed per seed:

- the AUROC, known against unknown test photos, of the highest probability
  ``p`` (the current ``known_score``), of ``v1`` and of ``vmax``;
- learned combinations: a logistic regression on ``log p``, ``log(1 + v1)``
  and ``log(1 + vmax)``, learned leaving products out on the training photos
  (per group of products, a classifier trained on the other products' photos,
  less a random 20% of them, scores the group's photos as unknown stand-ins
  and those 20% as known ones), and its AUROC on the stand-ins and on test;
- fixed combinations ``log p + w log(1 + v)``, an oracle sweep over ``w`` on
  the test photos: the best any weight could do;
- the same AUROCs on the photos of packaged products only;
- the wall time of verification per test photo.

Keypoints are the re-ranking's (RootSIFT, 500 per photo), read from the cache
of descriptions that benchmarks/search.py fills (``--cache``). Verified pair
counts are kept in ``--pairs`` so that seeds, and runs, share them.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import cv2
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments
from open_set import open_split

from fusionrec import BagOfVisualWords, FusedClassifier
from fusionrec.features.cache import FeatureCache, content_key, folder_name
from fusionrec.fusion.rejection import class_groups
from fusionrec.search.geometry import Keypoints, homography_inliers

RERANK_KEYPOINTS = 500  # as ProductIndex keeps per photo for re-ranking
RATIO = 0.8  # Lowe's ratio test, as in re-ranking
KNOWN_STAND_IN_SHARE = 0.2  # of the kept products' photos, scored as known stand-ins
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)
COLUMNS = ("p", "v1", "vmax")
COMBINATIONS = {"p+v1": [0, 1], "p+vmax": [0, 2], "p+v1+vmax": [0, 1, 2]}


class Verifier:
    """Verified inlier counts of photo pairs, from cached keypoints, remembered by path pair."""

    def __init__(self, cache: Path, pairs: Path | None) -> None:
        describer = BagOfVisualWords("rootsift", max_keypoints=RERANK_KEYPOINTS)
        self.described = FeatureCache(cache, folder_name(describer.description_key()))
        self.pairs_file = pairs
        self.pairs = joblib.load(pairs) if pairs is not None and pairs.is_file() else {}
        self.keypoints: dict[str, Keypoints] = {}
        self.seconds = 0.0

    def photo_keypoints(self, path: str) -> Keypoints:
        if path not in self.keypoints:
            rows = self.described.load(content_key(path))
            if rows is None:
                raise FileNotFoundError(f"no cached RootSIFT description of {path}")
            self.keypoints[path] = Keypoints.from_pair(rows[:, :2], rows[:, 2:])
        return self.keypoints[path]

    def inliers(self, query: str, references: list[str]) -> np.ndarray:
        """Inliers of ``query`` against each reference photo."""
        missing = [path for path in references if (query, path) not in self.pairs]
        if missing:
            started = time.perf_counter()
            self._verify(query, missing)
            self.seconds += time.perf_counter() - started
        return np.array([self.pairs[query, path] for path in references])

    def _verify(self, query: str, references: list[str]) -> None:
        """The ratio test against all references in one matrix product, then RANSAC per pair."""
        wanted = self.photo_keypoints(query)
        candidates = [self.photo_keypoints(path) for path in references]
        distances = squared_distances(
            wanted.descriptors(), np.vstack([one.descriptors() for one in candidates])
        )
        ends = np.cumsum([len(one) for one in candidates])
        for path, candidate, end in zip(references, candidates, ends, strict=True):
            rows = ratio_test_rows(distances[:, end - len(candidate) : end])
            self.pairs[query, path] = int(homography_inliers(wanted, candidate, rows).sum())

    def save(self) -> None:
        joblib.dump(self.pairs, self.pairs_file)


def squared_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``first`` and of ``second``."""
    return (first * first).sum(1)[:, None] + (second * second).sum(1)[None] - 2 * first @ second.T


def ratio_test_rows(distances: np.ndarray) -> np.ndarray:
    """``(query row, candidate row)`` pairs passing Lowe's ratio test, from squared distances."""
    if distances.shape[1] < 2:
        return np.zeros((0, 2), dtype=np.intp)
    two_nearest = np.partition(distances, 1, axis=1)[:, :2]
    kept = np.flatnonzero(two_nearest[:, 0] < RATIO**2 * two_nearest[:, 1])
    return np.stack([kept, distances.argmin(axis=1)[kept]], axis=1)


def best_inliers(verifier, photos, probabilities, classes, references, labels, top) -> np.ndarray:
    """Most inliers against the reference photos of each of the ``top`` likeliest products."""
    likeliest = classes[np.argsort(-probabilities, axis=1)[:, :top]]
    found = np.zeros((len(photos), top))
    for row, photo in enumerate(photos):
        for rank, product in enumerate(likeliest[row]):
            found[row, rank] = verifier.inliers(photo, list(references[labels == product])).max()
    return found


def score_columns(probabilities: np.ndarray, inliers: np.ndarray) -> np.ndarray:
    """``log p``, ``log(1 + v1)`` and ``log(1 + vmax)`` per photo."""
    return np.column_stack(
        [
            np.log(np.clip(probabilities.max(axis=1), 1e-300, 1.0)),
            np.log1p(inliers[:, 0]),
            np.log1p(inliers.max(axis=1)),
        ]
    )


def deep_model(seed: int, cache: Path) -> FusedClassifier:
    return FusedClassifier("deep", memory=cache, n_jobs=1, random_state=seed)


def stand_in_scores(verifier, train, labels, seed, args) -> tuple[np.ndarray, np.ndarray]:
    """Score columns of training photos scored as unknown (left-out products) or known stand-ins."""
    rng = np.random.default_rng(seed)
    columns, known = [], []
    for group in class_groups(labels, seed):
        left_out = np.isin(labels, group)
        held = ~left_out & (rng.random(len(labels)) < KNOWN_STAND_IN_SHARE)
        fitted = ~left_out & ~held
        scored = (left_out | held) & (rng.random(len(labels)) < args.stand_in_share)
        model = deep_model(seed, args.cache).fit(train[fitted], labels[fitted])
        probabilities = model.predict_proba(train[scored])
        references = (train[fitted], labels[fitted])
        inliers = best_inliers(
            verifier, train[scored], probabilities, model.classes_, *references, args.top
        )
        columns.append(score_columns(probabilities, inliers))
        known.append(held[scored])
    return np.vstack(columns), np.concatenate(known)


def packaged_products(root: Path) -> np.ndarray:
    """Fine labels of the packaged products (juices, milks, yoghurts...)."""
    with open(root / "classes.csv", newline="") as file:
        rows = list(csv.reader(file))[1:]
    return np.array([int(row[1]) for row in rows if "/Packages/" in row[4]])


def report_seed(verifier: Verifier, seed: int, args: argparse.Namespace) -> None:
    data = open_split(args.root, args.unknown, seed, None)
    train, labels = data["train"]
    chosen = np.arange(0, len(data["known"]), args.test_step)
    photos, truth = data["test"][0][chosen], data["test"][1][chosen]
    known = data["known"][chosen]
    model = deep_model(seed, args.cache).fit(train, labels)
    probabilities = model.predict_proba(photos)
    inliers = best_inliers(verifier, photos, probabilities, model.classes_, train, labels, args.top)
    test = score_columns(probabilities, inliers)
    auroc = {name: roc_auc_score(known, test[:, column]) for column, name in enumerate(COLUMNS)}
    print(
        f"seed {seed}: {len(photos)} test photos, {known.sum()} known; AUROC "
        + "  ".join(f"{name} {value:.3f}" for name, value in auroc.items())
    )
    print_timing(verifier, photos[: args.timed], probabilities, model.classes_, train, labels, args)
    right = model.classes_[probabilities.argmax(axis=1)] == truth
    print(
        "  median v1: known and named right"
        f" {np.median(inliers[known & right, 0]):.0f}, known and named wrong"
        f" {np.median(inliers[known & ~right, 0]):.0f}, unknown {np.median(inliers[~known, 0]):.0f}"
    )
    stand_ins, stand_in_known = stand_in_scores(verifier, train, labels, seed, args)
    print_learned(stand_ins, stand_in_known, test, known)
    print_sweep(test, known)
    print_packaged(test, known, right, np.isin(truth, packaged_products(args.root)))
    verifier.save()


def print_timing(verifier, photos, probabilities, classes, train, labels, args) -> None:
    """Wall time per photo of describing it and of verifying it afresh (no remembered pairs)."""
    describer = BagOfVisualWords("rootsift", max_keypoints=RERANK_KEYPOINTS)
    started = time.perf_counter()
    describer.describe(list(photos))
    describing = (time.perf_counter() - started) / len(photos)
    fresh = Verifier(args.cache, None)
    fresh.keypoints = verifier.keypoints
    best_inliers(fresh, photos, probabilities, classes, train, labels, args.top)
    print(
        f"  time per photo ({len(photos)} photos): {describing:.3f} s to describe it,"
        f" {fresh.seconds / len(photos):.3f} s to verify it ({len(fresh.pairs) / len(photos):.0f}"
        f" training photos of its {args.top} likeliest products)"
    )


def print_learned(stand_ins, stand_in_known, test, known) -> None:
    """Logistic combinations learned on the stand-ins: their AUROC there and on test."""
    print(f"  AUROC of p on the stand-ins: {roc_auc_score(stand_in_known, stand_ins[:, 0]):.3f}")
    for name, columns in COMBINATIONS.items():
        learned = LogisticRegression().fit(stand_ins[:, columns], stand_in_known)
        on_stand_ins = roc_auc_score(
            stand_in_known, learned.decision_function(stand_ins[:, columns])
        )
        on_test = roc_auc_score(known, learned.decision_function(test[:, columns]))
        print(
            f"  learned {name:10} coefficients {np.round(learned.coef_[0], 2)};"
            f" AUROC on stand-ins {on_stand_ins:.3f}, on test {on_test:.3f}"
        )


def print_sweep(test, known) -> None:
    """Test AUROC of ``log p + w log(1 + v)`` for each fixed ``w`` (an oracle choice of ``w``)."""
    sweep = "  ".join(
        f"{weight}: {roc_auc_score(known, test[:, 0] + weight * test[:, 1]):.3f}/"
        f"{roc_auc_score(known, test[:, 0] + weight * test[:, 2]):.3f}"
        for weight in WEIGHTS
    )
    print(f"  log p + w log(1 + v1 / vmax), test AUROC by w: {sweep}")


def print_packaged(test, known, right, packaged) -> None:
    """The AUROCs on photos of packaged products, and their median ``v1``."""
    aurocs = "  ".join(
        f"{name} {roc_auc_score(known[packaged], test[packaged, column]):.3f}"
        for column, name in enumerate(COLUMNS)
    )
    v1 = np.expm1(test[:, 1])
    print(
        f"  packaged products only ({packaged.sum()} photos, {(packaged & known).sum()} known):"
        f" AUROC {aurocs}; median v1 known and named right {np.median(v1[packaged & right]):.0f},"
        f" unknown {np.median(v1[packaged & ~known]):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, cache=True)
    parser.add_argument(
        "--pairs",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fusionrec-open-set-pairs.joblib",
    )
    parser.add_argument("--timed", type=int, default=20, help="test photos timed per seed")
    parser.add_argument("--unknown", type=int, default=20, help="products held out of training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--top", type=int, default=3, help="likeliest products verified against")
    parser.add_argument("--test-step", type=int, default=8, help="every n-th test photo")
    parser.add_argument(
        "--stand-in-share", type=float, default=0.25, help="share of stand-in photos scored"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    verifier = Verifier(args.cache, args.pairs)
    print(
        f"{args.unknown} of 81 products held out; deep branch (frozen Lite0); every"
        f" {args.test_step}th test photo verified against the training photos of its"
        f" {args.top} likeliest products"
    )
    for seed in args.seeds:
        report_seed(verifier, seed, args)


if __name__ == "__main__":
    main()
