"""Fine-tuning the deep branch on the Grocery Store photos (issue #8).

    python benchmarks/fine_tune.py                          # the full measurement
    python benchmarks/fine_tune.py --per-class 3 --epochs 1 # a quick check that it runs
    python benchmarks/fine_tune.py --fused                  # also fused with the traditional branch
    python benchmarks/fine_tune.py --save tuned.joblib      # keep the tuned CNNEmbedder (search.py)
    python benchmarks/fine_tune.py --load tuned.joblib --choose  # val: crop, fusion weight, C
    python benchmarks/fine_tune.py --load tuned.joblib --fused --crop-fraction 0.8  # test
    python benchmarks/fine_tune.py --small-images           # the small CNN from scratch, 28x28 gray

Official split, fine labels: EfficientNet-Lite0 (bundled ImageNet weights; ``--backbone``) is
fine-tuned on the train split, with the val split picking the best epoch and
stopping early; the test split is scored with the network's own head and with
a LogisticRegression on the tuned embeddings (and, with ``--fused``, by
``FusedClassifier`` with the tuned network as its deep branch). Training time
is wall time on this machine; say how loaded it was when you quote it.

``--small-images`` measures training from scratch instead: the photos of the
ten largest coarse classes, shrunk to 28 x 28 gray, learnt by ``small_cnn``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import torch
from PIL import Image
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, load_split

from fusionrec import CNNEmbedder, FusedClassifier
from fusionrec._parallel import single_threaded_blas
from fusionrec.deep import FineTuning, build_backbone
from fusionrec.deep.augmentation import Augmentation
from fusionrec.deep.training import fine_tune
from fusionrec.fusion.features import normalise_blocks
from fusionrec.fusion.few_shot import FEW_SHOT_LATE_WEIGHT
from fusionrec.images import load_image

SMALL_CLASSES = 10


def per_class(paths: np.ndarray, labels: np.ndarray, count: int | None):
    """The first ``count`` photos of each class (all of them for ``None``)."""
    if count is None:
        return paths, labels
    kept = np.concatenate([np.flatnonzero(labels == label)[:count] for label in np.unique(labels)])
    return paths[kept], labels[kept]


def splits(root: Path, count: int | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: per_class(*load_split(root, name), count) for name in ("train", "val", "test")}


def train(backbone, data: dict, settings: FineTuning, n_threads: int):
    """Fine-tune ``backbone`` on the train split, val picking the epoch; print the course."""
    started = time.perf_counter()
    tuned = fine_tune(
        backbone.network,
        backbone.preprocessing,
        *data["train"],
        settings=settings,
        validation=data["val"],
        device="auto",
        random_state=0,
        n_threads=n_threads,
        verbose=1,
    )
    print(f"training time: {time.perf_counter() - started:.0f} s")
    report_history(tuned)
    return tuned


def report_history(tuned) -> None:
    history = tuned.history
    print(f"trained: head + {', '.join(history.trainable)}")
    for record in history.epochs:
        print(
            f"  epoch {record.epoch + 1:2}  loss {record.train_loss:.3f}  "
            f"val accuracy {record.val_accuracy:.3f}  lr {record.learning_rate:.1e}  "
            f"{record.seconds:.0f} s"
        )
    stopped = ", stopped early" if history.stopped_early else ""
    print(f"  kept epoch {history.best_epoch + 1}{stopped}")


def score_tuned(tuned, preprocessing, data: dict) -> CNNEmbedder:
    """Score the tuned network on test; return it as a fitted CNNEmbedder."""
    embedder = CNNEmbedder(tuned.network, preprocessing=preprocessing, device="cpu")
    embedder.fit(data["train"][0][:1])
    train_rows = embedder.transform(data["train"][0])
    test_rows = embedder.transform(data["test"][0])
    y_test = data["test"][1]
    with torch.inference_mode():
        logits = tuned.head.eval()(torch.from_numpy(test_rows))
    head_accuracy = np.mean(logits.argmax(1).numpy() == y_test)
    with single_threaded_blas():
        classifier = LogisticRegression(C=1.0, max_iter=3000).fit(train_rows, data["train"][1])
        logistic_accuracy = classifier.score(test_rows, y_test)
    print(f"test accuracy, own head: {head_accuracy:.3f}")
    print(
        f"test accuracy, LogisticRegression(C=1) on the tuned embeddings: {logistic_accuracy:.3f}"
    )
    return embedder


def with_crop(tuned: CNNEmbedder, crop_fraction: float | None, photo) -> CNNEmbedder:
    """The tuned network as a fitted CNNEmbedder whose centre crop keeps ``crop_fraction``."""
    return CNNEmbedder(
        tuned.network_, preprocessing=tuned.preprocessing_, crop_fraction=crop_fraction
    ).fit([photo])


def score_fused(tuned: CNNEmbedder, data: dict, crop_fraction: float | None, cache: Path) -> None:
    """Test accuracy of the frozen tuned network alone, fused early and fused late.

    Late fusion is scored with the weight it chose on held-out folds of the
    training photos (which the network was tuned on) and at the few-shot
    weight, on val and test.
    """
    deep = FrozenEstimator(with_crop(tuned, crop_fraction, data["train"][0][0]))
    for branch, fusion in (("deep", "early"), ("fused", "early"), ("fused", "late")):
        started = time.perf_counter()
        model = FusedClassifier(
            branch, fusion=fusion, deep=deep, memory=cache, n_jobs=2, random_state=0
        ).fit(*data["train"])
        print(
            f"test accuracy, FusedClassifier({branch!r}, {fusion!r}) with the tuned network at"
            f" crop {crop_fraction}: {model.score(*data['test']):.3f}"
            f" ({time.perf_counter() - started:.0f} s)"
        )
    for weight in (model.late_weight_, FEW_SHOT_LATE_WEIGHT):
        model.late_weight_ = weight
        print(
            f"  late weight {weight:.2f}: val {model.score(*data['val']):.3f},"
            f" test {model.score(*data['test']):.3f}"
        )


def choose(tuned: CNNEmbedder, data: dict, cache: Path) -> None:
    """Val accuracy of the tuned network alone and fused, per crop, block weight and C."""
    (train, y_train), (val, y_val) = data["train"], data["val"]
    keypoints = FusedClassifier("traditional", memory=cache, n_jobs=2, random_state=0)
    fisher = keypoints.fit(train, y_train).features_.branches_["traditional"]
    traditional = fisher.transform(train), fisher.transform(val)
    for crop_fraction in (None, 0.8, 0.75):
        embedder = with_crop(tuned, crop_fraction, train[0])
        deep = embedder.transform(train), embedder.transform(val)
        for weight, c in itertools.product((0, 0.25, 0.5, 0.75), (1.0, 10.0)):
            blocks = [traditional, deep] if weight else [deep]
            weights = [weight, 1.0] if weight else [1.0]
            fit_rows = normalise_blocks([block[0] for block in blocks], weights)
            val_rows = normalise_blocks([block[1] for block in blocks], weights)
            with single_threaded_blas():
                classifier = LogisticRegression(C=c, max_iter=3000).fit(fit_rows, y_train)
                accuracy = classifier.score(val_rows, y_val)
            name = f"fused, traditional weight {weight}" if weight else "tuned network alone"
            print(f"  val, crop {crop_fraction}, {name}, C={c:g}: {accuracy:.3f}", flush=True)


def gray_thumbnails(paths: np.ndarray) -> np.ndarray:
    """The photos as (n, 28, 28, 1) uint8 gray images."""
    return np.stack(
        [
            np.asarray(
                Image.fromarray(load_image(path, max_side=112)).convert("L").resize((28, 28))
            )
            for path in paths
        ]
    )[..., None]


def small_image_data(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The ten largest coarse classes of each split, relabelled 0-9, as gray thumbnails."""
    _, coarse = load_split(root, "train", labels="coarse")
    largest = np.argsort(np.bincount(coarse))[::-1][:SMALL_CLASSES]
    data = {}
    for name in ("train", "val", "test"):
        paths, labels = load_split(root, name, labels="coarse")
        kept = np.isin(labels, largest)
        relabel = {int(label): index for index, label in enumerate(largest)}
        data[name] = (
            gray_thumbnails(paths[kept]),
            np.array([relabel[int(label)] for label in labels[kept]]),
        )
    return data


def small_images(root: Path, epochs: int, n_threads: int) -> None:
    started = time.perf_counter()
    data = small_image_data(root)
    sizes = ", ".join(f"{len(labels)} {name}" for name, (_, labels) in data.items())
    print(f"{sizes} gray 28x28 images, 10 coarse classes ({time.perf_counter() - started:.0f} s)")
    backbone = build_backbone("small_cnn", weights=None, seed=0)
    settings = FineTuning(
        epochs=epochs,
        trainable_blocks="all",
        learning_rate=3e-3,
        batch_size=64,
        patience=5,
        augmentation=Augmentation(scale=(0.7, 1.0)),
    )
    tuned = train(backbone, data, settings, n_threads)
    prepared = np.stack([backbone.preprocessing(load_image(image)) for image in data["test"][0]])
    with torch.inference_mode():
        logits = tuned.head.eval()(tuned.network(torch.from_numpy(prepared)))
    print(f"test accuracy: {np.mean(logits.argmax(1).numpy() == data['test'][1]):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser, cache=True)
    parser.add_argument("--per-class", type=int, default=None, help="photos per class and split")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="e.g. efficientnet_lite2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--blocks", default="3", help="trainable_blocks: a number or 'all'")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--n-threads", type=int, default=2, help="decoding threads")
    parser.add_argument("--fused", action="store_true")
    parser.add_argument("--small-images", action="store_true")
    parser.add_argument(
        "--save", type=Path, default=None, help="joblib file for the tuned CNNEmbedder"
    )
    parser.add_argument("--load", type=Path, default=None, help="a saved tuned CNNEmbedder")
    parser.add_argument("--choose", action="store_true", help="compare crops and fusion on val")
    parser.add_argument("--crop-fraction", type=float, default=None, help="crop for --fused")
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    if arguments.small_images:
        small_images(arguments.root, arguments.epochs, arguments.n_threads)
        return
    settings = FineTuning(
        epochs=arguments.epochs,
        trainable_blocks=arguments.blocks if arguments.blocks == "all" else int(arguments.blocks),
        learning_rate=arguments.learning_rate,
        batch_size=arguments.batch_size,
        patience=arguments.patience,
    )
    data = splits(arguments.root, arguments.per_class)
    sizes = ", ".join(f"{len(labels)} {name}" for name, (_, labels) in data.items())
    print(f"Grocery Store, fine labels: {sizes} photos; {settings}")
    if arguments.load:
        embedder = joblib.load(arguments.load)
        print(f"loaded the tuned CNNEmbedder from {arguments.load}")
    else:
        backbone = build_backbone(arguments.backbone)
        tuned = train(backbone, data, settings, arguments.n_threads)
        embedder = score_tuned(tuned, backbone.preprocessing, data)
    if arguments.save:
        joblib.dump(embedder, arguments.save)
        print(f"saved the tuned CNNEmbedder to {arguments.save}")
    if arguments.choose:
        choose(embedder, data, arguments.cache)
    if arguments.fused:
        score_fused(embedder, data, arguments.crop_fraction, arguments.cache)


if __name__ == "__main__":
    main()
