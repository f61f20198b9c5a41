"""``fusionrec demo``: train and compare every branch and fusion on the bundled photos."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import load_demo_products
from ..evaluation import EvaluationReport, evaluate
from .options import add_feature_options, add_run_options, at_least, build_classifier, number
from .train import model_name

MODELS = (("traditional", "early"), ("deep", "early"), ("fused", "early"), ("fused", "late"))
# A smaller vocabulary from a smaller descriptor sample than 'train' uses: the demo learns
# three vocabularies, and this keeps each to seconds on two cores.
DEMO_FEATURES = {"n_words": 32, "max_descriptors": 10_000}
WIDTH = 88  # of the explanation below the table


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the console script."""
    parser = commands.add_parser(
        "demo",
        help="train and compare all branches on the bundled demo photos (offline)",
        description="Split the 150 bundled demo photos (10 look-alike products) into stratified"
        " training and test sets, train the traditional, deep, fused-early and fused-late"
        " classifiers, and print one table of their test accuracy, macro precision, recall and"
        " F1 and their fit and predict times, and below it what the table shows: how many test"
        " photos each branch missed, how many both did, and whether fusing them missed fewer."
        " Each photo's features are extracted once and reused by all four. Reports (JSON and a"
        " confusion-matrix PNG) go to one folder per classifier. To"
        " stay quick, the demo learns smaller vocabularies than 'train' does: --n-words 32"
        " --max-descriptors 10000 unless given.",
    )
    parser.add_argument(
        "-o",
        "--output",
        default="fusionrec-demo",
        metavar="DIR",
        help="folder for the reports (default: %(default)s)",
    )
    parser.add_argument(
        "--test-size",
        type=number(float, lambda value: 0 < value < 1, "a fraction between 0 and 1"),
        default=0.3,
        metavar="FRACTION",
        help="share of each product's photos held out for testing (default: %(default)s)",
    )
    parser.add_argument(
        "--per-product",
        type=at_least(2),
        metavar="N",
        help="use only N of each product's 15 photos, for a quicker run (default: all)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print no progress, only the table and what it shows",
    )
    add_feature_options(parser)
    add_run_options(parser)
    parser.set_defaults(run=run, **DEMO_FEATURES)


@dataclass
class Result:
    """One classifier's test scores and timings."""

    name: str
    report: EvaluationReport
    fit_seconds: float
    predict_seconds: float
    missed: frozenset[int]
    """Positions, in the test set, of the photos this classifier named wrongly."""


def demo_split(test_size: float, seed: int, per_product: int | None = None) -> list:
    """Training and test photos and labels of the demo products, stratified and repeatable.

    ``per_product`` keeps only the first photos of each product.

    Returns
    -------
    list
        ``[train_photos, test_photos, train_labels, test_labels]``, labels as product names.
    """
    from sklearn.model_selection import train_test_split

    demo = load_demo_products()
    labels = np.asarray(demo.target_names, dtype=object)[demo.target]
    kept = np.concatenate(
        [np.flatnonzero(demo.target == product)[:per_product] for product in np.unique(demo.target)]
    )
    return train_test_split(
        demo.data[kept],
        labels[kept],
        test_size=test_size,
        stratify=labels[kept],
        random_state=seed,
    )


def run(args: argparse.Namespace) -> int:
    """Train the four classifiers, print the comparison, write the reports."""
    split = demo_split(args.test_size, args.seed, args.per_product)
    say = _progress(args.quiet)
    say(
        f"{len(split[0])} training and {len(split[1])} test photos of"
        f" {len(set(split[2]))} products; each photo's features are extracted once"
    )
    output = Path(args.output)
    with tempfile.TemporaryDirectory(prefix="fusionrec-demo-") as cache:
        results = []
        for step, (branch, fusion) in enumerate(MODELS, start=1):
            say(f"[{step}/{len(MODELS)}] {model_name(branch, fusion)}")
            model = build_classifier(
                args,
                branch=branch,
                fusion=fusion,
                memory=cache,
                verbose=int(not args.quiet),
            )
            results.append(_train_and_test(model, model_name(branch, fusion), split, output))
    print(format_table(results))
    print(f"\n{explain_table(results, n_train=len(split[0]), n_test=len(split[1]))}")
    _write_summary(results, output / "comparison.json")
    print(f"\nreports (report.json, confusion_matrix.png) in {output}/<classifier>/")
    return 0


def _train_and_test(model, name: str, split: list, output: Path) -> Result:
    train, test, y_train, y_test = split
    started = time.perf_counter()
    model.fit(train, y_train)
    fitted = time.perf_counter()
    predicted = model.predict(test)
    done = time.perf_counter()
    report = evaluate(y_test, predicted, output_dir=output / name.replace(" ", "-"))
    missed = frozenset(np.flatnonzero(np.asarray(predicted, dtype=object) != y_test).tolist())
    return Result(name, report, fitted - started, done - fitted, missed)


def format_table(results: list[Result]) -> str:
    """One row per classifier, scores on the test photos and times in seconds."""
    lines = [
        f"{'classifier':12} {'accuracy':>8} {'precision':>9} {'recall':>6} {'F1':>5}"
        f" {'fit s':>6} {'predict s':>9}"
    ]
    for result in results:
        report = result.report
        lines.append(
            f"{result.name:12} {report.accuracy:8.3f} {report.macro_precision:9.3f}"
            f" {report.macro_recall:6.3f} {report.macro_f1:5.3f}"
            f" {result.fit_seconds:6.1f} {result.predict_seconds:9.1f}"
        )
    lines.append(
        "\nprecision, recall, F1: macro averages over the products. Each photo's features are"
        "\nextracted once and cached: later rows fit and predict from the cache."
    )
    return "\n".join(lines)


def explain_table(results: list[Result], n_train: int, n_test: int) -> str:
    """What the table's rows are, what they were scored on, and what their differences mean.

    ``results`` are the four rows of ``MODELS``, in its order.
    """
    traditional, deep, *fused = results
    best = min(fused, key=lambda result: len(result.missed))
    better_branch = min(len(traditional.missed), len(deep.missed))
    both = len(traditional.missed & deep.missed)
    rows = (
        f"The photos were split once, the same on every run (--seed): {n_train} to train on,"
        f" {n_test} held out to test. Every score is on the {n_test} test photos, so one photo"
        f" is worth {1 / n_test:.3f} of accuracy. traditional classifies by keypoint features"
        " alone, deep by the CNN's embedding alone; fused early trains one classifier on both,"
        " fused late one per branch and weighs their probabilities. The demo's products are"
        " look-alikes (one brand's juices, one brand's milks, two apple varieties), which each"
        " branch tells apart in its own way."
    )
    branches = (
        f"The traditional branch missed {_photos(len(traditional.missed))} and the deep branch"
        f" {len(deep.missed)}, {both} of them the same."
    )
    if len(best.missed) < better_branch:
        verdict = (
            "fewer than either branch alone. Fusion pays when the branches err on different photos."
        )
    elif len(best.missed) == better_branch:
        verdict = (
            "as many as the better branch alone: on this split fusion neither helped nor hurt."
        )
    else:
        verdict = "more than the better branch alone: on this split fusion did not pay."
    fusion = f"The better fusion, {best.name}, missed {len(best.missed)}: {verdict}"
    return "\n\n".join(textwrap.fill(text, width=WIDTH) for text in (rows, f"{branches} {fusion}"))


def _photos(count: int) -> str:
    return f"{count} test photo{'' if count == 1 else 's'}"


def _write_summary(results: list[Result], path: Path) -> None:
    rows = {
        result.name: {
            "accuracy": result.report.accuracy,
            "macro_precision": result.report.macro_precision,
            "macro_recall": result.report.macro_recall,
            "macro_f1": result.report.macro_f1,
            "fit_seconds": round(result.fit_seconds, 2),
            "predict_seconds": round(result.predict_seconds, 2),
        }
        for result in results
    }
    path.write_text(json.dumps(rows, indent=2))


def _progress(quiet: bool):
    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr, flush=True)

    return say
