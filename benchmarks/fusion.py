"""Benchmarks of fusion (FusedClassifier) on the Grocery Store photos.

    python benchmarks/fusion.py accuracy   # traditional, deep, fused early, fused late
    python benchmarks/fusion.py accuracy --precision int8  # the same with an int8 CNN
    python benchmarks/fusion.py accuracy --solver sag  # the same with a leaner, slower solver
    python benchmarks/fusion.py grid       # 5-fold GridSearchCV over 6 settings vs one extraction
    python benchmarks/fusion.py grid -n 300 --profile  # the same, and where its time goes
    python benchmarks/fusion.py choose     # the val-split comparisons behind the defaults
    python benchmarks/fusion.py memory     # peak RSS of a cached fit on 600 and 2,640 photos
    python benchmarks/fusion.py memory --solver lbfgs  # the same with scikit-learn's solver
    python benchmarks/fusion.py fit-memory -n 600 --first-fit  # one of those fits
    python benchmarks/fusion.py fit-memory -n 2640 --stages  # and the RSS around its solver

Defaults throughout: RootSIFT Fisher vectors (64 words, PCA 64) and frozen
EfficientNet-Lite0 with crop_fraction=0.75, LogisticRegression(C=10) on
L2-normalised blocks, the traditional block weighted 0.5 in early fusion.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, child_command, current_rss_mib, load_split, peak_rss_mib

from fusionrec import CNNEmbedder, FusedClassifier
from fusionrec._parallel import single_threaded_blas
from fusionrec.features import Branch, default_deep, default_traditional
from fusionrec.fusion import classifier as classifier_module
from fusionrec.fusion.classifier import default_classifier
from fusionrec.fusion.features import normalise_blocks

SETTINGS = [("traditional", "early"), ("deep", "early"), ("fused", "early"), ("fused", "late")]


def accuracy(
    root: Path, cache: Path, precision: str = "float32", solver: str = "newton-cg"
) -> None:
    train, y_train = load_split(root, "train")
    val, y_val = load_split(root, "val")
    test, y_test = load_split(root, "test")
    print(
        f"fit on {len(train)} training photos, scored on {len(val)} val and {len(test)} test "
        f"photos, fine labels, {solver}"
    )
    for branch, fusion in SETTINGS:
        started = time.perf_counter()
        model = FusedClassifier(
            branch,
            fusion=fusion,
            deep=default_deep().set_params(precision=precision),
            classifier=default_classifier(random_state=0).set_params(solver=solver),
            memory=cache,
            n_jobs=2,
            random_state=0,
        )
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
        print(f"  {'':14} test by group: {by_group(root, test, predicted == y_test)}")


def memory(root: Path, cache: Path, solver: str) -> None:
    print(
        f"FusedClassifier(memory=cache, n_jobs=2) fit on training photos, {solver}, "
        "peak RSS of the process"
    )
    for first_fit in (False, True):
        for size in (600, 2640):
            more = ["--cache", cache, "--solver", solver] + (["--first-fit"] if first_fit else [])
            subprocess.run(child_command(__file__, "fit-memory", root, size, *more), check=True)


def report_rss_around_classifiers() -> None:
    """Print the process's RSS and peak RSS before and after each classifier is trained."""
    train = classifier_module.fit_cached

    def reporting(classifier, features, target, location):
        print(f"    {len(features)} rows: before the classifier {rss_now_and_peak()}")
        fitted = train(classifier, features, target, location)
        print(f"    {len(features)} rows: after the classifier  {rss_now_and_peak()}")
        return fitted

    classifier_module.fit_cached = reporting


def rss_now_and_peak() -> str:
    return f"RSS {current_rss_mib():7.1f} MiB, peak {peak_rss_mib():7.1f} MiB"


def fit_peak_memory(
    root: Path, n_images: int, cache: Path, first_fit: bool, solver: str, stages: bool = False
) -> None:
    """One cached fit, its descriptions and embeddings read from ``cache``.

    Its classifier is always trained: an unseeded one is never cached (its
    solver draws nothing at random, so it is the default fit). ``first_fit``: the
    keypoint vocabulary is learned and the photos encoded from their cached
    descriptions (unseeded, so neither is cached), as on a first fit on these
    photos; otherwise both come from the cache, as on a refit. ``stages``: print
    the RSS before the fit and around each classifier's training too.
    """
    if stages:
        report_rss_around_classifiers()
        print(f"    before the fit: {rss_now_and_peak()}")
    train, y_train = load_split(root, "train")
    chosen = np.random.default_rng(0).permutation(len(train))[:n_images]
    model = FusedClassifier(
        traditional=default_traditional(2, None) if first_fit else None,
        classifier=default_classifier().set_params(solver=solver),
        memory=cache,
        n_jobs=2,
        random_state=0,
    )
    started = time.perf_counter()
    model.fit(train[chosen], y_train[chosen])
    seconds = time.perf_counter() - started
    rows = n_images * model.features_.n_features_out_ * np.dtype(np.float32).itemsize / 2**20
    print(
        f"  {n_images:5d} photos, {'first fit' if first_fit else 'refit    '}: "
        f"peak RSS {peak_rss_mib():7.1f} MiB ({seconds:.0f} s; fused training rows {rows:.0f} MiB)"
    )


def by_group(root: Path, photos: np.ndarray, correct: np.ndarray) -> str:
    """Accuracy per top-level folder of the dataset (Fruit, Packages, Vegetables)."""
    groups = np.array([Path(photo).relative_to(root).parts[1] for photo in photos])
    return ", ".join(
        f"{group} {np.mean(correct[groups == group]):.3f}" for group in sorted(set(groups))
    )


PROFILED = (
    r"mixture/_base.py:\d+\(fit\)|linear_model/_logistic.py:\d+\(fit\)"
    r"|bag_of_words.py:\d+\(transform\)|cache.py:\d+\(load\)|backbones.py:\d+\(build_backbone\)"
)


def grid(root: Path, n_images: int, profile: bool) -> None:
    train, y_train = load_split(root, "train")
    chosen = np.random.default_rng(0).permutation(len(train))[:n_images]
    photos, labels = train[chosen], y_train[chosen]
    started = time.perf_counter()
    default_traditional(2, 0).describe(photos)
    default_deep().fit(photos).transform(photos)
    one_pass = time.perf_counter() - started
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as cache:
        search = GridSearchCV(
            FusedClassifier(memory=cache, n_jobs=2, random_state=0),
            {"branch": ["traditional", "deep", "fused"], "fusion": ["early", "late"]},
            cv=5,
        )
        started = time.perf_counter()
        with profiler if profile else contextlib.nullcontext():
            search.fit(photos, labels)
        searching = time.perf_counter() - started
    print(f"{n_images} training photos; one extraction pass (describe + embed): {one_pass:.0f} s")
    print(f"  5-fold GridSearchCV over 6 settings with memory: {searching:.0f} s")
    print(f"  ratio: {searching / one_pass:.2f}x")
    print(f"  best: {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")
    if profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(PROFILED)


LAYERS = ["blocks.5", "blocks.6", "global_pool"]
CROP_FRACTIONS = (None, 0.8, 0.75, 0.7, 0.65)
# Early fusion candidates: (label, deep embedder, traditional weight, C).
FUSED_CANDIDATES = [
    *(
        (f"Lite0 0.75, weight {weight}", CNNEmbedder(crop_fraction=0.75), weight, 10.0)
        for weight in (0.25, 0.35, 0.5, 0.75, 1.0)
    ),
    *(
        (f"Lite0 0.75, weight {weight}, C={c:g}", CNNEmbedder(crop_fraction=0.75), weight, c)
        for weight, c in ((0.35, 30.0), (0.5, 30.0), (0.75, 30.0), (0.5, 100.0))
    ),
    (
        "Lite0 0.75 + blocks.5, .6, weight 0.5",
        CNNEmbedder(layer=LAYERS, crop_fraction=0.75),
        0.5,
        10,
    ),
    ("Lite2 0.75, weight 0.5", CNNEmbedder("efficientnet_lite2", crop_fraction=0.75), 0.5, 10.0),
]


def val_accuracy(blocks: list, weights: list, c: float, y_train, y_val) -> float:
    """Early fusion as FusedClassifier does it: fit on the training blocks, score on val."""
    with single_threaded_blas():
        train = normalise_blocks([fit for fit, _ in blocks], weights)
        classifier = LogisticRegression(C=c, max_iter=3000).fit(train, y_train)
        return classifier.score(normalise_blocks([val for _, val in blocks], weights), y_val)


def features(extractor, train, val, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """One branch fitted on the training photos: its features of train and val."""
    branch = Branch(extractor, cache)
    return branch.fit_transform(train), branch.transform(val)


def choose(root: Path, cache: Path) -> None:
    train, y_train = load_split(root, "train")
    val, y_val = load_split(root, "val")
    print(f"fit on {len(train)} training photos, scored on {len(val)} val photos, fine labels")
    print("deep branch alone (Lite0), LogisticRegression(C=10):")
    for fraction in CROP_FRACTIONS:
        deep = features(CNNEmbedder(crop_fraction=fraction), train, val, cache)
        score = val_accuracy([deep], [1.0], 10.0, y_train, y_val)
        print(f"  crop_fraction={fraction}: val {score:.3f}")
    fisher = features(default_traditional(2, 0), train, val, cache)
    print("fused early, LogisticRegression(C):")
    for label, embedder, weight, c in FUSED_CANDIDATES:
        deep = features(embedder, train, val, cache)
        score = val_accuracy([fisher, deep], [weight, 1.0], c, y_train, y_val)
        print(f"  {label:40} val {score:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["accuracy", "grid", "choose", "memory", "fit-memory"])
    add_data_arguments(parser, cache=True)
    parser.add_argument("-n", "--n-images", type=int, default=600)
    parser.add_argument(
        "--precision", choices=["float32", "int8"], default="float32", help="accuracy: the CNN's"
    )
    parser.add_argument("--profile", action="store_true", help="grid: where the time goes")
    parser.add_argument(
        "--first-fit", action="store_true", help="fit-memory: learn the vocabulary and encode"
    )
    parser.add_argument(
        "--stages", action="store_true", help="fit-memory: RSS around each classifier's training"
    )
    parser.add_argument(
        "--solver",
        choices=["newton-cg", "lbfgs", "sag"],
        default="newton-cg",
        help="accuracy, memory, fit-memory: the logistic regression's (newton-cg is the default's)",
    )
    args = parser.parse_args()
    if args.part == "accuracy":
        accuracy(args.root, args.cache, args.precision, args.solver)
    elif args.part == "choose":
        choose(args.root, args.cache)
    elif args.part == "memory":
        memory(args.root, args.cache, args.solver)
    elif args.part == "fit-memory":
        fit_peak_memory(
            args.root, args.n_images, args.cache, args.first_fit, args.solver, args.stages
        )
    else:
        grid(args.root, args.n_images, args.profile)


if __name__ == "__main__":
    main()
