"""Benchmarks of the traditional branch (BagOfVisualWords) on the Grocery Store photos.

    python benchmarks/traditional.py throughput   # vs a plain cv2 loop; n_jobs=1 vs 2
    python benchmarks/traditional.py memory       # peak RSS of fit on 660 and 2,640 photos
    python benchmarks/traditional.py accuracy     # test accuracy of each encoding
    python benchmarks/traditional.py colour       # describing cost: RootSIFT vs opponent colour
    python benchmarks/traditional.py allocator    # glibc's defaults vs the fusionrec program's

Every ratio is measured side by side in one run. The dataset is expected at
../shared/data/grocery_store (``--root`` to change).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    add_data_arguments,
    best_of,
    child_command,
    load_split,
    peak_memory_in_children,
    peak_rss_mib,
)

from fusionrec import BagOfVisualWords
from fusionrec._allocator import KEEP_FREED_MEMORY as PROGRAM_ALLOCATOR
from fusionrec.images import load_image
from fusionrec.traditional.detectors import make_detector

MAX_SIDE = 512


def plain_cv2_loop(paths, max_side: int = MAX_SIDE) -> int:
    """What a user would write by hand: imread, shrink, gray, SIFT."""
    sift = cv2.SIFT_create(nfeatures=1000)
    total = 0
    for path in paths:
        bgr = cv2.imread(path)
        scale = max_side / max(bgr.shape[:2])
        if scale < 1:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        keypoints, _ = sift.detectAndCompute(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), None)
        total += len(keypoints)
    return total


def single_threaded_loop(paths) -> int:
    cv2.setNumThreads(1)
    return plain_cv2_loop(paths)


def plain_loop_in_two_processes(paths) -> int:
    """The plain loop, single-threaded, over each half of the photos in its own process."""
    halves = (paths[: len(paths) // 2], paths[len(paths) // 2 :])
    return sum(Parallel(n_jobs=2)(delayed(single_threaded_loop)(half) for half in halves))


def throughput(root: Path, n_images: int, repeats: int) -> None:
    paths, _ = load_split(root, "train")
    paths = paths[np.random.default_rng(0).permutation(len(paths))[:n_images]]
    bovw = BagOfVisualWords("sift", n_words=256, max_side=MAX_SIDE, random_state=0)
    bovw.fit(paths[:50])
    two_jobs = BagOfVisualWords(**{**bovw.get_params(), "n_jobs": 2})
    two_jobs.codebook_, two_jobs.n_descriptor_dims_ = bovw.codebook_, bovw.n_descriptor_dims_
    two_jobs.transform(paths[:8])  # start the worker processes before timing
    plain, _ = best_of(repeats, plain_cv2_loop, paths)
    one, _ = best_of(repeats, bovw.transform, paths)
    two, _ = best_of(repeats, two_jobs.transform, paths)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    plain_single, _ = best_of(repeats, plain_cv2_loop, paths)
    cv2.setNumThreads(threads)
    plain_loop_in_two_processes(paths[:8])  # start the worker processes before timing
    plain_two, _ = best_of(repeats, plain_loop_in_two_processes, paths)
    print(f"{n_images} photos, SIFT, max_side={MAX_SIDE}, best of {repeats}")
    print(f"  plain cv2 loop, OpenCV's default {threads} threads:  {n_images / plain:6.1f} img/s")
    print(f"  plain cv2 loop, cv2.setNumThreads(1):        {n_images / plain_single:6.1f} img/s")
    print(f"  plain loop, 1 thread, in 2 processes:        {n_images / plain_two:6.1f} img/s")
    print(f"  BagOfVisualWords.transform, n_jobs=1:        {n_images / one:6.1f} img/s")
    print(f"  BagOfVisualWords.transform, n_jobs=2:        {n_images / two:6.1f} img/s")
    print(f"  ratio n_jobs=1 / plain loop (default threads):  {plain / one:.2f}x")
    print(f"  ratio n_jobs=2 / n_jobs=1:                      {one / two:.2f}x")
    print(f"  ratio n_jobs=2 / single-threaded plain loop:    {plain_single / two:.2f}x")
    print(f"  ratio plain loop: 2 processes / default threads: {plain / plain_two:.2f}x")


def colour_cost(root: Path, n_images: int, repeats: int) -> None:
    """Photos described per second with RootSIFT and with opponent-colour RootSIFT, one worker.

    ``BagOfVisualWords.describe`` is timed three ways: whole passes over the
    photos (the two taking turns at each repeat, best pass kept), the same in
    a child process whose glibc keeps freed memory (:data:`KEEP_FREED_MEMORY`),
    and batch by batch, the two describing the same :data:`TURN_BATCH` photos
    in turn. A whole pass keeps every photo's descriptors, so glibc hands the
    freed scale space back to the system after each photo and faults it in
    again for the next; on a shared machine whose speed drifts over seconds,
    only the batches weigh on both alike. The detectors alone are timed photo
    by photo in turn as well.
    """
    paths = colour_photos(root, n_images)
    print(f"{n_images} photos, {repeats} repeats, OpenCV's {cv2.getNumThreads()} threads")
    colour_passes(root, n_images, repeats, "describe, whole passes (best)")
    command = child_command(__file__, "colour-passes", root, n_images, "--repeats", repeats)
    subprocess.run(command, check=True, env=os.environ | KEEP_FREED_MEMORY)
    describers = colour_describers()
    report_colour_cost(
        f"describe, {TURN_BATCH} photos at a time in turn",
        batch_turn_seconds(describers, paths, repeats),
        n_images * repeats,
    )
    cost = detector_cost_ratio(paths, repeats)
    print(f"  the detectors alone, taking turns photo by photo: colour costs {cost:.2f}x")


KEEP_FREED_MEMORY = {name: str(value) for name, value in PROGRAM_ALLOCATOR.items()}
"""The glibc settings the ``fusionrec`` program applies to itself, as environment variables."""


def allocator_gain(root: Path, n_images: int, repeats: int) -> None:
    """Photos a second of the default keypoint branch with glibc's defaults and with its settings.

    Each measurement is a fresh child process (the settings act when a process
    starts); the two kinds take turns, ``repeats`` times.
    """
    print(
        f"BagOfVisualWords('opponent-rootsift', encoding='fisher'), {n_images} photos, n_jobs=1,"
        " a child process per measurement"
    )
    command = child_command(__file__, "allocator-pass", root, n_images)
    for _ in range(repeats):
        for label, settings in (("glibc's defaults", {}), ("fusionrec's", KEEP_FREED_MEMORY)):
            print(f"  {label:16}", end=" ", flush=True)
            subprocess.run(command, check=True, env=os.environ | settings)


def allocator_pass(root: Path, n_images: int) -> None:
    paths = colour_photos(root, n_images + 40)
    fitted = BagOfVisualWords(
        "opponent-rootsift", n_words=64, encoding="fisher", pca_components=64, random_state=0
    ).fit(paths[:40])
    rates = {}
    for name in ("transform", "describe"):
        started = time.perf_counter()
        getattr(fitted, name)(paths[40:])
        rates[name] = n_images / (time.perf_counter() - started)
    print(", ".join(f"{name} {rate:5.1f} img/s" for name, rate in rates.items()), flush=True)


def colour_photos(root: Path, n_images: int) -> np.ndarray:
    paths, _ = load_split(root, "train")
    return paths[np.random.default_rng(0).permutation(len(paths))[:n_images]]


def colour_describers() -> dict:
    return {
        detector: BagOfVisualWords(detector, max_side=MAX_SIDE).describe
        for detector in ("rootsift", "opponent-rootsift")
    }


def colour_passes(root: Path, n_images: int, repeats: int, label: str) -> None:
    """Whole passes of ``describe``, with the minor page faults they took a photo."""
    paths = colour_photos(root, n_images)
    seconds, faults = whole_pass_seconds(colour_describers(), paths, repeats)
    report_colour_cost(label, seconds, n_images)
    per_photo = ", ".join(f"{name} {count / n_images:.0f}" for name, count in faults.items())
    print(f"    minor page faults a photo in those passes: {per_photo}")


TURN_BATCH = 8
"""Photos each detector describes before the other takes its turn (one chunk of ``describe``)."""


def whole_pass_seconds(describers: dict, paths, repeats: int) -> tuple[dict, dict]:
    """Each describer's best pass over ``paths``, and the minor page faults of that pass."""
    seconds, faults = dict.fromkeys(describers, np.inf), dict.fromkeys(describers, 0)
    for _ in range(repeats):
        for detector, describe in describers.items():
            faults_before, started = minor_page_faults(), time.perf_counter()
            describe(paths)
            spent = time.perf_counter() - started
            if spent < seconds[detector]:
                seconds[detector] = spent
                faults[detector] = minor_page_faults() - faults_before
    return seconds, faults


def minor_page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def batch_turn_seconds(describers: dict, paths, repeats: int) -> dict:
    seconds = dict.fromkeys(describers, 0.0)
    order = list(describers)
    for _ in range(repeats):
        for start in range(0, len(paths), TURN_BATCH):
            batch = paths[start : start + TURN_BATCH]
            for detector in order:
                started = time.perf_counter()
                describers[detector](batch)
                seconds[detector] += time.perf_counter() - started
            order.reverse()
    return seconds


def report_colour_cost(label: str, seconds: dict, n_described: int) -> None:
    rates = {detector: n_described / spent for detector, spent in seconds.items()}
    cost = seconds["opponent-rootsift"] / seconds["rootsift"]
    rows = ", ".join(f"{detector} {rate:.1f} img/s" for detector, rate in rates.items())
    print(f"  {label}: {rows}; colour costs {cost:.2f}x")


def detector_cost_ratio(paths, repeats: int) -> float:
    """Time of opponent-colour RootSIFT over RootSIFT, decoded photos, the two in turn per photo.

    Taking turns photo by photo, a loaded machine slows both alike, so the
    ratio holds where the photos per second do not.
    """
    images = [load_image(path, max_side=MAX_SIDE) for path in paths]
    detectors = [make_detector("rootsift"), make_detector("opponent-rootsift")]
    seconds = np.zeros(len(detectors))
    for _ in range(repeats):
        for index, image in enumerate(images):
            for which in np.roll(np.arange(len(detectors)), index):
                started = time.perf_counter()
                detectors[which].describe(image)
                seconds[which] += time.perf_counter() - started
    return seconds[1] / seconds[0]


def fit_peak_memory(root: Path, n_images: int) -> None:
    """Fit with default settings and print the peak resident memory (run in a child)."""
    paths, _ = load_split(root, "train")
    before = peak_rss_mib()
    started = time.perf_counter()
    bovw = BagOfVisualWords(random_state=0, n_jobs=1).fit(paths[:n_images])
    seconds = time.perf_counter() - started
    peak = peak_rss_mib()
    print(
        f"  fit on {n_images:5d} photos: peak RSS {peak:7.1f} MiB "
        f"(after imports {before:.1f} MiB), {bovw.n_descriptors_} descriptors "
        f"sampled, {seconds:.0f} s"
    )


def memory(root: Path) -> None:
    print("BagOfVisualWords() defaults (sift, 256 words, max_descriptors=200,000), n_jobs=1")
    peak_memory_in_children(__file__, "fit-memory", root, (660, 2640))


def describe_all(paths, detector: str) -> list[np.ndarray]:
    def chunk(part):
        features = make_detector(detector)
        return [
            features.describe(cv2.cvtColor(load_image(p, max_side=MAX_SIDE), cv2.COLOR_RGB2GRAY))[1]
            for p in part
        ]

    parts = np.array_split(np.asarray(paths), max(1, len(paths) // 64))
    return [d for done in Parallel(n_jobs=2)(delayed(chunk)(p) for p in parts) for d in done]


ENCODINGS = [
    ("bovw, 1024 words", {"encoding": "bovw", "n_words": 1024}),
    ("bovw, 1024 words, tf-idf", {"encoding": "bovw", "n_words": 1024, "tfidf": True}),
    ("vlad, 64 words", {"encoding": "vlad", "n_words": 64}),
    ("vlad, 64 words, PCA 64", {"encoding": "vlad", "n_words": 64, "pca_components": 64}),
    ("fisher, 64 words, PCA 64", {"encoding": "fisher", "n_words": 64, "pca_components": 64}),
]


def accuracy(root: Path, detector: str) -> None:
    train, y_train = load_split(root, "train")
    test, y_test = load_split(root, "test")
    started = time.perf_counter()
    train_desc, test_desc = describe_all(train, detector), describe_all(test, detector)
    print(
        f"{detector}: described {len(train)} + {len(test)} photos in "
        f"{time.perf_counter() - started:.0f} s; LinearSVC(C=1), fine labels (81 classes)"
    )
    for name, params in ENCODINGS:
        started = time.perf_counter()
        bovw = BagOfVisualWords("precomputed", random_state=0, **params).fit(train_desc)
        classifier = LinearSVC(C=1.0, random_state=0).fit(bovw.transform(train_desc), y_train)
        score = classifier.score(bovw.transform(test_desc), y_test)
        seconds = time.perf_counter() - started
        width = bovw.n_features_out_
        print(f"  {name:28} {width:6d} features  test accuracy {score:.3f}  ({seconds:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "part",
        choices=[
            *("throughput", "colour", "memory", "accuracy", "allocator"),
            *("fit-memory", "colour-passes", "allocator-pass"),
        ],
    )
    add_data_arguments(parser)
    parser.add_argument("-n", "--n-images", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--detector", default="rootsift")
    args = parser.parse_args()
    if args.part == "throughput":
        throughput(args.root, args.n_images, args.repeats)
    elif args.part == "colour":
        colour_cost(args.root, args.n_images, args.repeats)
    elif args.part == "memory":
        memory(args.root)
    elif args.part == "fit-memory":
        fit_peak_memory(args.root, args.n_images)
    elif args.part == "allocator":
        allocator_gain(args.root, args.n_images, args.repeats)
    elif args.part == "allocator-pass":
        allocator_pass(args.root, args.n_images)
    elif args.part == "colour-passes":
        label = "the same, glibc keeping freed memory (" + ", ".join(KEEP_FREED_MEMORY) + ")"
        colour_passes(args.root, args.n_images, args.repeats, label)
    else:
        accuracy(args.root, args.detector)


if __name__ == "__main__":
    main()
