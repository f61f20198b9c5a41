"""Products not in the catalogue (issue #22): how well FusedClassifier tells them apart.

    python benchmarks/open_set.py                   # frozen backbone: deep, fused early, fused late
    python benchmarks/open_set.py --fine-tune 10    # the CNN fine-tuned on the known products
    python benchmarks/open_set.py --per-class 4 --unknown 3 --seeds 0 --settings deep  # quick check

Official split, fine labels. Per seed, 20 of the 81 products are held out of
training: the classifier (``false_accept_rate=0.05``) is trained on the
training photos of the other 61 and scores every test photo. Reported:

- AUROC of ``known_score`` for known against unknown test photos;
- accuracy on known test photos (a rejected photo counts as wrong) when the
  threshold lets exactly 5% of the unknown test photos through (an oracle
  threshold: it measures the score, not the calibration), and closed-set
  accuracy (no rejection) for reference;
- the threshold learned in ``fit`` (leave-classes-out): the false-accept rate
  it gives on the unknown test photos, and the known accuracy at it.

Features come from the per-photo cache that benchmarks/fusion.py fills (the
frozen embeddings and the keypoint descriptions); the vocabulary of the
traditional branch is learned again from the known products' photos.
``--fine-tune`` fine-tunes Lite0 as benchmarks/fine_tune.py does, on the known
products' training photos (their val photos pick the epoch), once per seed;
the tuned network, at its val-chosen crop of 0.8, then serves every setting.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_ROOT, load_split
from fine_tune import train as fine_tune_on

from fusionrec import CNNEmbedder, FusedClassifier
from fusionrec.deep import FineTuning, build_backbone
from fusionrec.fusion import threshold_for

SETTINGS = {
    "deep": ("deep", "early"),
    "fused-early": ("fused", "early"),
    "fused-late": ("fused", "late"),
}
N_PRODUCTS = 81
TUNED_CROP = 0.8  # chosen on val for the tuned network (docs/benchmarks.md, fine-tuned Lite0)


def first_per_class(paths: np.ndarray, labels: np.ndarray, count: int | None):
    """The first ``count`` photos of each product (all of them for ``None``)."""
    if count is None:
        return paths, labels
    kept = np.concatenate([np.flatnonzero(labels == label)[:count] for label in np.unique(labels)])
    return paths[kept], labels[kept]


def open_split(root: Path, n_unknown: int, seed: int, per_class: int | None) -> dict:
    """Training and val photos of the known products; every test photo, and which are known."""
    unknown = np.random.default_rng(seed).choice(N_PRODUCTS, n_unknown, replace=False)
    data = {}
    for split in ("train", "val"):
        photos, labels = first_per_class(*load_split(root, split), per_class)
        known = ~np.isin(labels, unknown)
        data[split] = (photos[known], labels[known])
    test, y_test = first_per_class(*load_split(root, "test"), per_class)
    return {**data, "test": (test, y_test), "known": ~np.isin(y_test, unknown)}


def measure(model: FusedClassifier, data: dict, rate: float) -> dict:
    """The open-set scores of a fitted model on the test photos."""
    photos, truth = data["test"]
    known = data["known"]
    probabilities = model.predict_proba(photos)
    scores = probabilities.max(axis=1)
    right = model.classes_[probabilities.argmax(axis=1)] == truth
    oracle = threshold_for(scores[~known], rate)
    learned = model.known_threshold_
    return {
        "auroc": roc_auc_score(known, scores),
        "closed": np.mean(right[known]),
        "oracle": np.mean((right & (scores > oracle))[known]),
        "learned_far": np.mean(scores[~known] > learned),
        "learned": np.mean((right & (scores > learned))[known]),
    }


def tuned_deep(data: dict, epochs: int) -> FrozenEstimator:
    """Lite0 fine-tuned as benchmarks/fine_tune.py does, on the known products only, frozen."""
    backbone = build_backbone("efficientnet_lite0")
    tuned = fine_tune_on(backbone, data, FineTuning(epochs=epochs), n_threads=2)
    embedder = CNNEmbedder(
        tuned.network, preprocessing=backbone.preprocessing, crop_fraction=TUNED_CROP
    )
    return FrozenEstimator(embedder.fit(data["train"][0][:1]))


def run(args: argparse.Namespace) -> None:
    backbone = f"fine-tuned ({args.fine_tune} epochs at most)" if args.fine_tune else "frozen"
    print(
        f"{args.unknown} of {N_PRODUCTS} products held out of training, fine labels, {backbone}"
        f" backbone, false_accept_rate={args.rate}; per seed: AUROC, known accuracy"
        " (closed set / at the oracle threshold / at the learned threshold), learned FAR"
    )
    results = {name: [] for name in args.settings}
    for seed in args.seeds:
        data = open_split(args.root, args.unknown, seed, args.per_class)
        n_known = int(data["known"].sum())
        print(
            f"seed {seed}: {len(data['train'][0])} training photos; test {n_known} known,"
            f" {len(data['known']) - n_known} unknown"
        )
        deep = tuned_deep(data, args.fine_tune) if args.fine_tune else None
        for name in args.settings:
            branch, fusion = SETTINGS[name]
            started = time.perf_counter()
            model = FusedClassifier(
                branch,
                fusion=fusion,
                deep=deep,
                false_accept_rate=args.rate,
                memory=args.cache,
                n_jobs=2,
                random_state=seed,
            ).fit(*data["train"])
            scores = measure(model, data, args.rate)
            results[name].append(scores)
            print(f"  {name:12} {_row(scores)}  ({time.perf_counter() - started:.0f} s)")
    print("mean over seeds:")
    for name, rows in results.items():
        print(f"  {name:12} {_row({key: np.mean([row[key] for row in rows]) for key in rows[0]})}")


def _row(scores: dict) -> str:
    return (
        f"AUROC {scores['auroc']:.3f}  known accuracy {scores['closed']:.3f} /"
        f" {scores['oracle']:.3f} / {scores['learned']:.3f}"
        f"  learned FAR {scores['learned_far']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "fusionrec-bench"
    )
    parser.add_argument("--unknown", type=int, default=20, help="products held out of training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rate", type=float, default=0.05, help="target false-accept rate")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--fine-tune", type=int, default=0, metavar="EPOCHS")
    parser.add_argument("--per-class", type=int, default=None, help="photos per product and split")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
