"""Benchmarks of fusion (FusedClassifier) on the Grocery Store photos.

    python benchmarks/fusion.py accuracy   # traditional, deep, fused early, fused late
    python benchmarks/fusion.py grid       # 5-fold GridSearchCV over 6 settings vs one extraction

Defaults throughout: RootSIFT Fisher vectors (64 words, PCA 64) and frozen
EfficientNet-Lite0, LogisticRegression(C=10) on L2-normalised blocks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_ROOT, load_split

from fusionrec import FusedClassifier
from fusionrec.fusion.features import default_deep, default_traditional

SETTINGS = [("traditional", "early"), ("deep", "early"), ("fused", "early"), ("fused", "late")]


def accuracy(root: Path, cache: Path) -> None:
    train, y_train = load_split(root, "train")
    val, y_val = load_split(root, "val")
    test, y_test = load_split(root, "test")
    print(
        f"fit on {len(train)} training photos, scored on {len(val)} val and {len(test)} test "
        "photos, fine labels"
    )
    for branch, fusion in SETTINGS:
        started = time.perf_counter()
        model = FusedClassifier(branch, fusion, memory=cache, n_jobs=2, random_state=0)
        model.fit(train, y_train)
        val_score = model.score(val, y_val)
        predicted = model.predict(test)
        seconds = time.perf_counter() - started
        score = np.mean(predicted == y_test)
        macro_f1 = f1_score(y_test, predicted, average="macro")
        name = branch if branch != "fused" else f"fused, {fusion}"
        extra = (
            f", late weight {model.late_weight_:.2f}"
            if fusion == "late" and branch == "fused"
            else ""
        )
        print(
            f"  {name:14} val {val_score:.3f}  test accuracy {score:.3f}  macro F1 {macro_f1:.3f}"
            f"  ({seconds:.0f} s{extra})"
        )


def grid(root: Path, n_images: int) -> None:
    train, y_train = load_split(root, "train")
    chosen = np.random.default_rng(0).permutation(len(train))[:n_images]
    photos, labels = train[chosen], y_train[chosen]
    started = time.perf_counter()
    default_traditional(2, 0).describe(photos)
    default_deep().fit(photos).transform(photos)
    one_pass = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as cache:
        search = GridSearchCV(
            FusedClassifier(memory=cache, n_jobs=2, random_state=0),
            {"branch": ["traditional", "deep", "fused"], "fusion": ["early", "late"]},
            cv=5,
        )
        started = time.perf_counter()
        search.fit(photos, labels)
        searching = time.perf_counter() - started
    print(f"{n_images} training photos; one extraction pass (describe + embed): {one_pass:.0f} s")
    print(f"  5-fold GridSearchCV over 6 settings with memory: {searching:.0f} s")
    print(f"  ratio: {searching / one_pass:.2f}x")
    print(f"  best: {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["accuracy", "grid"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "fusionrec-bench"
    )
    parser.add_argument("-n", "--n-images", type=int, default=600)
    args = parser.parse_args()
    if args.part == "accuracy":
        accuracy(args.root, args.cache)
    else:
        grid(args.root, args.n_images)


if __name__ == "__main__":
    main()
