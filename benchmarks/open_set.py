"""Products not in the catalogue (issue #22): how well FusedClassifier tells them apart.

    python benchmarks/open_set.py                   # frozen backbone: deep, fused early, fused late
    python benchmarks/open_set.py --fine-tune 10    # the CNN fine-tuned on the known products
    python benchmarks/open_set.py --per-class 4 --unknown 3 --seeds 0 --settings deep  # quick check
    python benchmarks/open_set.py --by-family --settings deep  # unknowns with relatives or not
    python benchmarks/open_set.py --holdout coarse --settings deep fused-early  # whole families out

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

The Grocery Store groups its fine products into coarse classes (five apples,
ten juices, six cow's milks...), so a held-out product usually has a relative
among the known ones. ``--by-family`` splits the unknown test photos in two:
those of held-out products with another product of their coarse class among
the known ones, and those without, and scores the known photos against each
group on its own (the oracle threshold and the learned FAR per group).
``--holdout coarse`` holds out whole coarse classes instead: they are drawn in
a seeded random order, each taken if it keeps the count at most ``--unknown``,
until that many products are held out, so no unknown product has a relative
among the known ones.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, load_split
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


def coarse_classes(root: Path) -> tuple[np.ndarray, dict[int, str], dict[int, str]]:
    """Each fine product's coarse class (indexed by fine label); fine and coarse names."""
    with open(root / "classes.csv", newline="") as file:
        rows = list(csv.reader(file))[1:]
    coarse = np.empty(len(rows), dtype=int)
    for row in rows:
        coarse[int(row[1])] = int(row[3])
    return coarse, {int(row[1]): row[0] for row in rows}, {int(row[3]): row[2] for row in rows}


def whole_families(coarse: np.ndarray, n_unknown: int, seed: int) -> np.ndarray:
    """Products of whole coarse classes, drawn in a seeded order while they fit in ``n_unknown``."""
    held: list[int] = []
    for family in np.random.default_rng(seed).permutation(np.unique(coarse)):
        members = np.flatnonzero(coarse == family)
        if len(held) + len(members) <= n_unknown:
            held.extend(members)
        if len(held) == n_unknown:
            break
    return np.sort(held)


def open_split(
    root: Path,
    n_unknown: int,
    seed: int,
    per_class: int | None,
    holdout: str = "products",
) -> dict:
    """Training and val photos of the known products; every test photo, and which are known.

    ``holdout``: ``"products"`` draws the unknown products at random,
    ``"coarse"`` draws whole coarse classes (:func:`whole_families`).
    """
    if holdout == "coarse":
        unknown = whole_families(coarse_classes(root)[0], n_unknown, seed)
    else:
        unknown = np.random.default_rng(seed).choice(N_PRODUCTS, n_unknown, replace=False)
    data = {"unknown": unknown}
    for split in ("train", "val"):
        photos, labels = first_per_class(*load_split(root, split), per_class)
        known = ~np.isin(labels, unknown)
        data[split] = (photos[known], labels[known])
    test, y_test = first_per_class(*load_split(root, "test"), per_class)
    return {**data, "test": (test, y_test), "known": ~np.isin(y_test, unknown)}


def family_groups(data: dict, coarse: np.ndarray) -> dict[str, np.ndarray]:
    """The unknown products with another product of their coarse class known, and without."""
    unknown = data["unknown"]
    known_families = coarse[np.setdiff1d(np.arange(len(coarse)), unknown)]
    related = np.isin(coarse[unknown], known_families)
    groups = {"with a relative": unknown[related], "no relative": unknown[~related]}
    return {name: products for name, products in groups.items() if len(products)}


def measure(
    model: FusedClassifier, data: dict, rate: float, groups: dict[str, np.ndarray] | None = None
) -> dict:
    """The open-set scores of a fitted model on the test photos.

    With ``groups`` (name: unknown products), also per group: the same scores
    with only that group's photos as the unknown ones, under ``"groups"``; and
    per unknown product, under ``"products"``: the AUROC of the known photos
    against its photos, the known product its photos are most often named
    and the share of its photos named so.
    """
    photos, truth = data["test"]
    known = data["known"]
    probabilities = model.predict_proba(photos)
    scores = probabilities.max(axis=1)
    right = model.classes_[probabilities.argmax(axis=1)] == truth
    learned = model.known_threshold_
    result = open_scores(scores, right, known, ~known, learned, rate)
    if groups is not None:
        result["groups"] = {
            name: open_scores(scores, right, known, np.isin(truth, products), learned, rate)
            for name, products in groups.items()
        }
        named = model.classes_[probabilities.argmax(axis=1)]
        result["products"] = {
            product: product_scores(scores, known, truth == product, named)
            for products in groups.values()
            for product in products
        }
    return result


def product_scores(scores: np.ndarray, known: np.ndarray, own: np.ndarray, named: np.ndarray):
    """AUROC of the known photos against one unknown product's; its photos' commonest name."""
    both = known | own
    names, counts = np.unique(named[own], return_counts=True)
    auroc = roc_auc_score(known[both], scores[both])
    return auroc, names[counts.argmax()], counts.max() / own.sum()


def open_scores(
    scores: np.ndarray,
    right: np.ndarray,
    known: np.ndarray,
    unknown: np.ndarray,
    learned: float,
    rate: float,
) -> dict:
    """AUROC and known accuracies of the known photos against the ``unknown`` ones."""
    oracle = threshold_for(scores[unknown], rate)
    return {
        "auroc": roc_auc_score(known[known | unknown], scores[known | unknown]),
        "closed": np.mean(right[known]),
        "oracle": np.mean((right & (scores > oracle))[known]),
        "learned_far": np.mean(scores[unknown] > learned),
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
    whole = " (whole coarse classes)" if args.holdout == "coarse" else ""
    print(
        f"{args.unknown} of {N_PRODUCTS} products held out of training{whole}, fine labels,"
        f" {backbone} backbone, false_accept_rate={args.rate}; per seed: AUROC, known accuracy"
        " (closed set / at the oracle threshold / at the learned threshold), learned FAR"
    )
    coarse, product_names, family_names = coarse_classes(args.root)
    results = {name: [] for name in args.settings}
    for seed in args.seeds:
        data = open_split(args.root, args.unknown, seed, args.per_class, args.holdout)
        n_known = int(data["known"].sum())
        print(
            f"seed {seed}: {len(data['train'][0])} training photos; test {n_known} known,"
            f" {len(data['known']) - n_known} unknown"
        )
        if args.holdout == "coarse":
            held = [family_names[family] for family in np.unique(coarse[data["unknown"]])]
            print(f"  held out: {len(held)} coarse classes ({', '.join(held)})")
        groups = family_groups(data, coarse) if args.by_family else None
        if groups is not None:
            _print_groups(groups, data["test"][1])
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
            scores = measure(model, data, args.rate, groups)
            results[name].append(scores)
            print(f"  {name:12} {_row(scores)}  ({time.perf_counter() - started:.0f} s)")
            for group, group_scores in scores.get("groups", {}).items():
                print(f"    {group:15} {_row(group_scores)}")
                for product in groups[group]:
                    auroc, named, share = scores["products"][product]
                    print(
                        f"      {product_names[product]:38} AUROC {auroc:.3f}, named"
                        f" {product_names[named]} ({share:.0%})"
                    )
    print("mean over seeds:")
    for name, rows in results.items():
        print(f"  {name:12} {_row(_mean(rows))}")
        for group in rows[0].get("groups", {}):
            in_every = [row["groups"][group] for row in rows if group in row["groups"]]
            if len(in_every) == len(rows):
                print(f"    {group:15} {_row(_mean(in_every))}")


def _print_groups(groups: dict[str, np.ndarray], y_test: np.ndarray) -> None:
    for name, products in groups.items():
        photos = int(np.isin(y_test, products).sum())
        print(f"  unknown, {name}: {len(products)} products, {photos} test photos")


def _mean(rows: list[dict]) -> dict:
    return {key: np.mean([row[key] for row in rows]) for key in rows[0] if key in _ROW_KEYS}


_ROW_KEYS = ("auroc", "closed", "oracle", "learned_far", "learned")


def _row(scores: dict) -> str:
    return (
        f"AUROC {scores['auroc']:.3f}  known accuracy {scores['closed']:.3f} /"
        f" {scores['oracle']:.3f} / {scores['learned']:.3f}"
        f"  learned FAR {scores['learned_far']:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, cache=True)
    parser.add_argument("--unknown", type=int, default=20, help="products held out of training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rate", type=float, default=0.05, help="target false-accept rate")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--fine-tune", type=int, default=0, metavar="EPOCHS")
    parser.add_argument("--per-class", type=int, default=None, help="photos per product and split")
    parser.add_argument(
        "--holdout",
        choices=["products", "coarse"],
        default="products",
        help="hold out random products, or whole coarse classes",
    )
    parser.add_argument(
        "--by-family",
        action="store_true",
        help="also score the unknown products with and without a known relative apart",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
