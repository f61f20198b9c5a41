"""Explanations on the Grocery Store photos: how long one takes, and docs/explain.md's gallery.

    python benchmarks/explain.py time               # seconds to explain one test photo
    python benchmarks/explain.py time --profile     # and where that time goes
    python benchmarks/explain.py gallery            # remake the gallery of docs/explain.md

Both fit fusionrec's default early fusion (frozen EfficientNet-Lite0 and opponent-colour
RootSIFT Fisher vectors) on ``-n`` training photos, as many of each product, with features
cached in ``--cache``. ``time`` explains ``--photos`` test photos (after one more, which pays
for first calls) and draws each as a PNG. ``gallery`` explains test photos the model names
rightly and wrongly (a wrong one also for its true product: why not that one?), draws one
re-ranked search match, writes the pictures to docs/explain/ (as JPEG, to keep the repository
small) and the gallery to docs/explain.md, between its gallery markers.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import pstats
import sys
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.frozen import FrozenEstimator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, load_split

from fusionrec import FusedClassifier, ProductIndex, explain, explain_match

DOCS = Path(__file__).resolve().parents[1] / "docs"
PICTURES = DOCS / "explain"
GALLERY_START = "<!-- gallery: written by benchmarks/explain.py gallery -->"
GALLERY_END = "<!-- end of gallery -->"
JPEG_QUALITY = 85
PROFILED = (
    r"prediction.py:\d+\(explain\)|heat_map.py:\d+\((forward|grad_cam|last_convolutional_stage)\)"
    r"|bag_of_words.py:\d+\((describe|encode_described)\)|keypoints.py:\d+\(keypoint_weights\)"
    r"|decode.py:\d+\(load_image\)|rendering.py:\d+\(to_png\)"
)


def named_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Paths and fine product names (not ids) of one official split."""
    paths, ids = load_split(root, split)
    with open(Path(root) / "classes.csv", newline="") as file:
        names = {int(row[1]): row[0] for row in list(csv.reader(file))[1:]}
    return paths, np.array([names[i] for i in ids], dtype=object)


def balanced(paths: np.ndarray, labels: np.ndarray, n_images: int) -> tuple[np.ndarray, ...]:
    """About ``n_images`` photos, as many of each product, drawn at random (seeded)."""
    rng = np.random.default_rng(0)
    products = np.unique(labels)
    per_product = max(1, n_images // len(products))
    chosen = np.sort(
        np.concatenate(
            [rng.permutation(np.flatnonzero(labels == p))[:per_product] for p in products]
        )
    )
    return paths[chosen], labels[chosen]


def fitted_model(root: Path, n_images: int, cache: Path) -> tuple[FusedClassifier, np.ndarray]:
    """The default fused model, fitted on a balanced subset of the training photos."""
    train, labels = balanced(*named_split(root, "train"), n_images)
    started = time.perf_counter()
    model = FusedClassifier(memory=cache, random_state=0).fit(train, labels)
    seconds = time.perf_counter() - started
    print(f"default fused model fitted on {len(train)} training photos in {seconds:.0f} s")
    return model, train


def timing(root: Path, n_images: int, n_photos: int, cache: Path, profile: bool) -> None:
    model, _ = fitted_model(root, n_images, cache)
    test, _ = named_split(root, "test")
    photos = test[np.random.default_rng(1).permutation(len(test))[: n_photos + 1]]
    print(f"PyTorch threads: {torch.get_num_threads()}")
    started = time.perf_counter()
    explain(model, photos[0]).to_png()
    print(f"  first explanation and picture: {time.perf_counter() - started:.2f} s")
    profiler = cProfile.Profile()
    seconds: dict[str, list[float]] = {"explain": [], "to_png": []}
    with profiler if profile else contextlib.nullcontext():
        for photo in photos[1:]:
            started = time.perf_counter()
            explanation = explain(model, photo)
            seconds["explain"].append(time.perf_counter() - started)
            started = time.perf_counter()
            explanation.to_png()
            seconds["to_png"].append(time.perf_counter() - started)
    for name, times in seconds.items():
        print(
            f"  {name:8} median {np.median(times):.3f} s, fastest {np.min(times):.3f} s, "
            f"slowest {np.max(times):.3f} s ({len(times)} test photos)"
        )
    if profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(PROFILED)


def gallery(root: Path, n_images: int, n_candidates: int, shown: tuple[int, int], cache) -> None:
    model, train = fitted_model(root, n_images, cache)
    PICTURES.mkdir(exist_ok=True)
    for old in PICTURES.glob("*.jpg"):  # the folder holds this gallery's pictures only
        old.unlink()
    test, truth = named_split(root, "test")
    drawn = np.random.default_rng(2).permutation(len(test))[:n_candidates]
    photos, truth = test[drawn], truth[drawn]
    predicted = model.predict(photos)
    correct = predicted == truth
    print(f"accuracy on {len(photos)} random test photos: {correct.mean():.3f}")
    entries = []
    for photo, label in zip(photos[correct][: shown[0]], truth[correct][: shown[0]], strict=True):
        entries.append(picture(explain(model, photo), f"right-{Path(photo).stem}", label))
    for photo, label in zip(photos[~correct][: shown[1]], truth[~correct][: shown[1]], strict=True):
        entries.append(picture(explain(model, photo), f"wrong-{Path(photo).stem}", label))
        why_not = explain(model, photo, label=label)
        entries.append(picture(why_not, f"wrong-{Path(photo).stem}-why-not", label))
    entries.append(match_picture(model, train, photos[correct][: shown[0]], cache))
    summary = (
        f"The model: `FusedClassifier()` (its defaults: early fusion of EfficientNet-Lite0 and "
        f"opponent-colour RootSIFT Fisher vectors) fitted on {len(train)} training photos "
        f"({len(train) // len(model.classes_)} of each of the {len(model.classes_)} products); "
        f"it names {correct.mean():.0%} of {len(photos)} random test photos rightly. The "
        f"pictures below are of the first {shown[0]} it names rightly and the first {shown[1]} it "
        "names wrongly among them."
    )
    write_gallery(summary, entries)


def picture(explanation, name: str, truth: str) -> tuple[str, str]:
    """Save an explanation's picture under ``name``; return its caption and file name."""
    if explanation.label != explanation.predicted:
        caption = f"Why not {truth}? The same photo, explained for its true product."
        title = f"why not {truth}? probability {explanation.probability:.2f}"
    else:
        verdict = "right" if explanation.predicted == truth else f"wrong: it is {truth}"
        caption = f"Predicted {explanation.predicted} ({verdict})."
        title = f"predicted {explanation.predicted}, p={explanation.probability:.2f} ({verdict})"
    return caption, saved(explanation, name, title)


def match_picture(model, catalogue: np.ndarray, queries: np.ndarray, cache) -> tuple[str, str]:
    """The best-verified first match among ``queries``, in an index of the training photos."""
    deep = FrozenEstimator(model.features_.fitted_extractor("deep"))
    index = ProductIndex(deep=deep, rerank="ransac", memory=cache, random_state=0)
    index.fit(catalogue, ids=catalogue)
    found = index.query(queries, k=1)
    best = int(np.argmax([matches.inliers[0] for matches in found]))
    why = explain_match(queries[best], found[best].ids[0], found[best])
    name = f"match-{Path(queries[best]).stem}"
    caption = (
        f"Search by photo: the test photo (left) and its best match among the training photos "
        f"(right), re-ranked by its {why.n_inliers} verified keypoint matches, one line each."
    )
    return caption, saved(why, name, f"{why.n_inliers} verified keypoint matches")


def saved(explanation, name: str, title: str) -> str:
    """Save an explanation's picture as a JPEG (a fifth of the PNG's bytes); its file name."""
    file_name = f"{name}.jpg"
    picture = Image.open(BytesIO(explanation.to_png(title=title))).convert("RGB")
    picture.save(PICTURES / file_name, quality=JPEG_QUALITY)
    print(f"  {file_name}: {title}")
    return file_name


def write_gallery(summary: str, entries: list[tuple[str, str]]) -> None:
    """Replace the gallery between its markers in docs/explain.md."""
    page = DOCS / "explain.md"
    text = page.read_text()
    before, rest = text.split(GALLERY_START)
    _, after = rest.split(GALLERY_END)
    body = "\n\n".join(f"{caption}\n\n![{name}](explain/{name})" for caption, name in entries)
    page.write_text(f"{before}{GALLERY_START}\n{summary}\n\n{body}\n{GALLERY_END}{after}")
    print(f"wrote {len(entries)} pictures to {PICTURES} and the gallery to {page}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["time", "gallery"])
    add_data_arguments(parser, cache=True)
    parser.add_argument("-n", "--n-images", type=int, default=810, help="training photos")
    parser.add_argument("--photos", type=int, default=20, help="time: test photos explained")
    parser.add_argument("--profile", action="store_true", help="time: where the time goes")
    parser.add_argument(
        "--candidates", type=int, default=200, help="gallery: test photos predicted"
    )
    parser.add_argument("--right", type=int, default=4, help="gallery: right ones shown")
    parser.add_argument("--wrong", type=int, default=3, help="gallery: wrong ones shown")
    args = parser.parse_args()
    if args.part == "time":
        timing(args.root, args.n_images, args.photos, args.cache, args.profile)
    else:
        gallery(args.root, args.n_images, args.candidates, (args.right, args.wrong), args.cache)


if __name__ == "__main__":
    main()
