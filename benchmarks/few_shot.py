"""Few-shot recognition on the Grocery Store photos (issue #22): 1, 3 or 5 photos per product.

    python benchmarks/few_shot.py classify     # traditional, deep, fused early and late
    python benchmarks/few_shot.py choose       # the val comparisons behind the few-shot defaults
    python benchmarks/few_shot.py search       # nearest exemplar (ProductIndex), re-ranked or not
    python benchmarks/few_shot.py vocabulary   # Fisher vocabulary: all training photos or the shots
    python benchmarks/few_shot.py classify --classes 10 --seeds 2  # a quick check that it runs
    python benchmarks/few_shot.py classify --fine-tune 10 --seeds 3 --queries 800  # tuned Lite0

Each draw takes ``k`` photos of every fine class from the training split (seeded by the draw's
number); the val split (for choosing) and the test split are the queries. Every line is the
mean and standard deviation over the draws.

The features come from the benchmark cache (``--cache``) that ``benchmarks/fusion.py`` fills,
with the same extractors, so nothing is described or embedded again: the frozen
EfficientNet-Lite0 embedding of every photo, and every photo's opponent-colour RootSIFT Fisher
vector against the vocabulary learned from all 2,640 training photos. Learning that vocabulary
from every training photo is legitimate in the few-shot setting: it uses their keypoints, never
their labels (a shop has plenty of unlabelled shelf photos); ``vocabulary`` compares it with a
vocabulary learned from the ``k`` shots alone. The real ``FusedClassifier`` and
``ProductIndex`` are fitted and queried; only their feature extraction is replaced by a lookup
in these cached features.

``classify --fine-tune EPOCHS`` fine-tunes Lite0 on each draw's shots (the
library's ``CNNEmbedder(fine_tune=FineTuning(epochs=EPOCHS,
validation_fraction=0))``: with one photo of a product none can be held out,
so every epoch runs) and embeds the shots and queries with the tuned network
for the deep and fused models (rows "..., fine-tuned", beside the frozen rows of
the same draws); the Fisher vectors still come from the cache. With the tuned
network it also prints the weight late fusion chose and its accuracy at the
few-shot weight instead.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, load_split

from fusionrec import BagOfVisualWords, FusedClassifier, FusedFeatures, ProductIndex
from fusionrec.deep import FineTuning
from fusionrec.features import Branch, default_deep, default_traditional
from fusionrec.features.cache import FeatureCache, cached_per_photo, folder_name
from fusionrec.fusion import classifier as classifier_module
from fusionrec.fusion import few_shot
from fusionrec.search import index as index_module
from fusionrec.search.geometry import Keypoints
from fusionrec.search.index import RERANK_KEYPOINTS

SHOTS = (1, 3, 5)
MODELS = {
    "traditional": {"branch": "traditional"},
    "deep": {"branch": "deep"},
    "fused, early": {"branch": "fused", "fusion": "early"},
    "fused, late": {"branch": "fused", "fusion": "late"},
}


class CachedBlocks:
    """Every photo's branch features, read once from the benchmark cache, looked up by path."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.splits = {name: load_split(root, name) for name in ("train", "val", "test")}
        train = self.splits["train"][0]
        branches = {
            "traditional": Branch(default_traditional(2, 0), cache),
            "deep": Branch(default_deep(), cache),
        }
        photos = np.concatenate([paths for paths, _ in self.splits.values()])
        self.row = {path: i for i, path in enumerate(photos)}
        self.blocks = {}
        for name, branch in branches.items():
            branch.fit_transform(train)
            self.blocks[name] = branch.transform(photos)

    def with_block(self, name: str, photos, block: np.ndarray) -> CachedBlocks:
        """A copy whose ``name`` features (a branch) of ``photos`` are ``block``'s rows."""
        copy = object.__new__(CachedBlocks)
        copy.__dict__.update(self.__dict__)
        copy.blocks = {**self.blocks, name: self.blocks[name].copy()}
        copy.blocks[name][[self.row[photo] for photo in photos]] = block
        return copy

    def lookup(self, photos, names) -> dict[str, np.ndarray]:
        rows = [self.row[photo] for photo in photos]
        return {name: self.blocks[name][rows] for name in names}


class LookedUpFeatures(FusedFeatures):
    """``FusedFeatures`` whose branches' features are looked up in :class:`CachedBlocks`."""

    table: CachedBlocks

    def _names(self) -> tuple[str, ...]:
        return ("traditional", "deep") if self.branch == "fused" else (self.branch,)

    def fit_blocks(self, X, y=None) -> dict[str, np.ndarray]:
        self.branches_ = {}
        blocks = self.table.lookup(X, self._names())
        self.n_features_out_ = sum(block.shape[1] for block in blocks.values())
        return blocks

    def transform_blocks(self, X, on_error=None) -> dict[str, np.ndarray]:
        return self.table.lookup(X, self._names())


@contextlib.contextmanager
def features_from(table: CachedBlocks) -> Iterator[None]:
    """Within it, ``FusedClassifier`` and ``ProductIndex`` read their features from ``table``."""

    def looked_up(estimator) -> LookedUpFeatures:
        names = FusedFeatures._get_param_names()
        features = LookedUpFeatures(**{name: getattr(estimator, name) for name in names})
        features.table = table
        return features

    with (
        mock.patch.object(classifier_module, "features_for", looked_up),
        mock.patch.object(index_module, "features_for", looked_up),
    ):
        yield


class CachedKeypoints:
    """The re-ranking keypoints ``ProductIndex`` takes of each photo, described once and cached.

    The same describer as ``ProductIndex._keypoints`` (RootSIFT, the strongest
    ``RERANK_KEYPOINTS``), its output kept in the benchmark cache.
    """

    def __init__(self, cache: Path) -> None:
        self.describer = BagOfVisualWords("rootsift", max_keypoints=RERANK_KEYPOINTS, n_jobs=1)
        self.cache = FeatureCache(cache, folder_name(self.describer.description_key()))

    def __call__(self, photos) -> list[Keypoints]:
        rows = cached_per_photo(list(photos), self._described, self.cache)
        return [Keypoints.from_pair(row[:, :2], row[:, 2:]) for row in rows]

    def _described(self, photos: list) -> list[np.ndarray]:
        return [np.hstack(pair).astype(np.float32) for pair in self.describer.describe(photos)]


def draw(labels: np.ndarray, k: int, seed: int, n_classes: int | None) -> np.ndarray:
    """Positions of ``k`` photos of each class (the first ``n_classes`` classes), seeded."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)[:n_classes]
    return np.concatenate(
        [rng.choice(np.flatnonzero(labels == label), k, replace=False) for label in classes]
    )


def queries(table: CachedBlocks, split: str, n_classes: int | None) -> tuple[np.ndarray, ...]:
    photos, labels = table.splits[split]
    kept = np.isin(labels, np.unique(table.splits["train"][1])[:n_classes])
    return photos[kept], labels[kept]


def spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def over_draws(
    table: CachedBlocks, args, score: Callable[[np.ndarray, np.ndarray, dict], dict[str, float]]
) -> dict[tuple, list[float]]:
    """``score(photos, labels, queries)`` for every k and draw; per (k, name, split) the scores.

    ``queries`` maps each split in ``args.splits`` to its photos and labels.
    """
    train, y_train = table.splits["train"]
    asked = {split: queries(table, split, args.classes) for split in args.splits}
    scores: dict[tuple, list[float]] = {}
    for k in args.shots:
        for seed in range(args.seeds):
            chosen = draw(y_train, k, seed, args.classes)
            for (name, split), value in score(train[chosen], y_train[chosen], asked).items():
                scores.setdefault((k, name, split), []).append(value)
    return scores


def report(scores: dict[tuple, list[float]], args) -> None:
    """A Markdown table: one row per model, a column per split (and chosen weight) and k."""
    names = list(dict.fromkeys(name for _, name, _ in scores))
    columns = list(dict.fromkeys(column for _, _, column in scores))
    header = " | ".join(f"{column} k={k}" for column in columns for k in args.shots)
    print(f"| model | {header} |")
    print("| --- |" + " --- |" * (len(columns) * len(args.shots)))
    for name in names:
        cells = " | ".join(
            spread(scores[(k, name, column)]) if (k, name, column) in scores else "n/a"
            for column in columns
            for k in args.shots
        )
        print(f"| {name} | {cells} |")


def accuracy(model, asked: dict) -> dict[str, float]:
    """The model's accuracy on each split's queries."""
    return {
        split: float(np.mean(model.predict(photos) == labels))
        for split, (photos, labels) in asked.items()
    }


def classify(table: CachedBlocks, args) -> None:
    def score(photos, labels, asked):
        results = {}
        for name, settings in MODELS.items():
            model = FusedClassifier(**settings, random_state=0).fit(photos, labels)
            for split, value in accuracy(model, asked).items():
                results[(name, split)] = value
        return results

    def tuned_score(photos, labels, asked):
        asked = sampled(asked, args.queries)
        results = score(photos, labels, asked)
        with features_from(tuned_on_shots(table, photos, labels, asked, args.fine_tune)):
            tuned = score(photos, labels, asked) | late_at_few_shot_weight(photos, labels, asked)
        return results | {
            (f"{name}, fine-tuned", split): value
            for (name, split), value in tuned.items()
            if name != "traditional"
        }

    def frozen_score(photos, labels, asked):
        return score(photos, labels, sampled(asked, args.queries))

    report(over_draws(table, args, tuned_score if args.fine_tune else frozen_score), args)


def late_at_few_shot_weight(photos, labels, asked: dict) -> dict:
    """Late fusion's chosen weight, and its accuracy at the few-shot weight instead."""
    model = FusedClassifier(fusion="late", random_state=0).fit(photos, labels)
    results = {("fused, late", "chosen weight"): model.late_weight_}
    model.late_weight_ = few_shot.FEW_SHOT_LATE_WEIGHT
    return results | {
        (f"fused, late at weight {model.late_weight_}", split): value
        for split, value in accuracy(model, asked).items()
    }


def sampled(asked: dict, count: int | None) -> dict:
    """The same seeded sample of ``count`` queries of each split (all of them for ``None``)."""
    return {
        split: (photos[chosen], labels[chosen])
        for split, (photos, labels) in asked.items()
        for chosen in [np.random.default_rng(0).permutation(len(photos))[:count]]
    }


def tuned_on_shots(table: CachedBlocks, photos, labels, asked: dict, epochs: int) -> CachedBlocks:
    """A copy whose deep features of the shots and queries come from Lite0 tuned on the shots.

    The library's own fine-tuning (``CNNEmbedder(fine_tune=...)``, at the deep
    branch's default crop), for ``epochs`` epochs on the shots alone: no photo
    is held out to pick the epoch (a product may have one photo), so every
    epoch runs.
    """
    started = time.perf_counter()
    settings = FineTuning(epochs=epochs, validation_fraction=0.0)
    embedder = default_deep().set_params(fine_tune=settings, n_threads=2, random_state=0)
    embedder.fit(photos, labels)
    tuned = time.perf_counter() - started
    every = np.concatenate([photos, *(split_photos for split_photos, _ in asked.values())])
    table = table.with_block("deep", every, embedder.transform(every))
    losses = " ".join(f"{epoch.train_loss:.2f}" for epoch in embedder.fine_tuning_history_.epochs)
    print(
        f"  {len(photos)} shots: tuned in {tuned:.0f} s, {len(every)} photos embedded in"
        f" {time.perf_counter() - started - tuned:.0f} s; training loss by epoch {losses}",
        flush=True,
    )
    return table


SEARCHES = {
    "deep, cosine": {"branch": "deep"},
    "deep, re-ranked": {"branch": "deep", "rerank": "ransac"},
    "fused, cosine": {"branch": "fused"},
    "fused, re-ranked": {"branch": "fused", "rerank": "ransac"},
}


def search(table: CachedBlocks, args) -> None:
    """Nearest exemplar: each query takes the product of its best match in a ProductIndex."""
    keypoints = CachedKeypoints(args.cache)

    def score(photos, labels, asked):
        results = {}
        for name, settings in SEARCHES.items():
            index = ProductIndex(**settings, random_state=0).fit(photos)
            for split, (queries, truth) in asked.items():
                chosen = np.random.default_rng(0).permutation(len(queries))[: args.queries]
                best = [matches.ids[0] for matches in index.query(queries[chosen], k=1)]
                results[(name, split)] = float(np.mean(labels[best] == truth[chosen]))
        return results

    with mock.patch.object(ProductIndex, "_keypoints", lambda index, photos: keypoints(photos)):
        report(over_draws(table, args, score), args)


def vocabulary(table: CachedBlocks, args) -> None:
    """The Fisher vocabulary learned from every training photo, or from the k shots only."""

    def score(photos, labels, asked):
        branch = Branch(default_traditional(2, 0), args.cache)
        own = table.with_block("traditional", photos, branch.fit_transform(photos))
        for split_photos, _ in asked.values():
            own = own.with_block("traditional", split_photos, branch.transform(split_photos))
        results = {}
        for source, features in (("all training photos", table), ("the shots", own)):
            with features_from(features):
                for name in ("traditional", "fused, early", "fused, late"):
                    model = FusedClassifier(**MODELS[name], random_state=0).fit(photos, labels)
                    for split, value in accuracy(model, asked).items():
                        results[(f"{name}, vocabulary from {source}", split)] = value
        return results

    report(over_draws(table, args, score), args)


LATE_WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BLOCK_WEIGHTS = ((0.5, 1.0), (0.75, 1.0), (1.0, 1.0), (1.5, 1.0))


def choose(table: CachedBlocks, args) -> None:
    """Late fusion: fixed weights against held-out folds; early fusion: block weights and C."""

    def score(photos, labels, asked):
        results = {}
        for weights in BLOCK_WEIGHTS:
            for c in (10.0, 100.0):
                model = FusedClassifier(
                    block_weights=weights,
                    classifier=LogisticRegression(C=c, max_iter=3000),
                    random_state=0,
                ).fit(photos, labels)
                for split, value in accuracy(model, asked).items():
                    results[(f"early, block weights {weights}, C={c:g}", split)] = value
        if min(np.unique(labels, return_counts=True)[1]) >= 2:
            with mock.patch.object(few_shot, "HELD_OUT_PHOTOS", 2):
                model = FusedClassifier(fusion="late", random_state=0).fit(photos, labels)
            for split, value in accuracy(model, asked).items():
                results[("late, weight from held-out folds", split)] = value
            results[("late, weight from held-out folds", "chosen weight")] = model.late_weight_
        model = FusedClassifier(fusion="late", random_state=0).fit(photos, labels)
        for weight in LATE_WEIGHTS:
            model.late_weight_ = weight
            for split, value in accuracy(model, asked).items():
                results[(f"late, weight {weight}", split)] = value
        return results

    report(over_draws(table, args, score), args)


PARTS = {"classify": classify, "choose": choose, "search": search, "vocabulary": vocabulary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=list(PARTS))
    add_data_arguments(parser, cache=True)
    parser.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    parser.add_argument("--seeds", type=int, default=5, help="draws per k")
    parser.add_argument("--classes", type=int, default=None, help="only the first N classes")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument(
        "--queries", type=int, default=None, help="search, classify: N queries per split (seeded)"
    )
    parser.add_argument(
        "--fine-tune",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="classify: tune Lite0 on each draw's shots for EPOCHS epochs (deep and fused only)",
    )
    args = parser.parse_args()
    # one photo per product is the point here, not a regression target in disguise
    warnings.filterwarnings("ignore", "The number of unique classes is greater than 50%")
    started = time.perf_counter()
    table = CachedBlocks(args.root, args.cache)
    print(f"features read in {time.perf_counter() - started:.0f} s")
    with features_from(table):
        {"classify": classify, "choose": choose, "search": search, "vocabulary": vocabulary}[
            args.part
        ](table, args)
    print(f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
