"""Benchmarks of model and index files (fusionrec.save, fusionrec.load) on Grocery Store photos.

    python benchmarks/files.py open --n-items 1000000  # open a 10^6-item index: time, RSS, queries
    python benchmarks/files.py sizes                   # file size, save and load time vs joblib

``open`` indexes the training photos, pads the index with look-alike vectors (as
benchmarks/search.py makes them) to ``--n-items``, saves it, and then, each in a fresh
process: measures an empty process (fusionrec.files and timm imported, nothing opened),
opens the index and measures time and resident memory, then queries it one test photo at
a time, with the vectors memory-mapped as opened and then read into memory. ``sizes``
fits a fused early classifier and a re-ranking index on the training photos and compares
fusionrec files with joblib pickles. ``--n-catalogue`` takes fewer photos, spread over the
split, for a quick run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, best_of, current_rss_mib, load_split, peak_rss_mib
from search import look_alikes

import fusionrec
from fusionrec import FusedClassifier, ProductIndex
from fusionrec.search.ids import compact_ids, joined_ids

CHUNK = 50_000  # look-alike rows made at once, so that building the index stays small


def catalogue(root: Path, n_catalogue: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The training photos and labels; with ``n_catalogue``, that many spread over the split."""
    photos, labels = load_split(root, "train")
    if n_catalogue is None:
        return photos, labels
    chosen = np.linspace(0, len(photos) - 1, n_catalogue).astype(int)
    return photos[chosen], labels[chosen]


def padded_index(index: ProductIndex, n_items: int, folder: Path) -> ProductIndex:
    """``index`` with look-alikes up to ``n_items``; vectors in a disk-backed array, not RAM."""
    real, width = index.vectors_, index.vectors_.shape[1]
    vectors = np.lib.format.open_memmap(
        folder / "vectors.npy", mode="w+", dtype=np.float32, shape=(n_items, width)
    )
    vectors[: len(real)] = real
    rng = np.random.default_rng(0)
    for start in range(len(real), n_items, CHUNK):
        stop = min(start + CHUNK, n_items)
        vectors[start:stop] = look_alikes(real, stop - start, rng)
    vectors.flush()
    extra = compact_ids([f"look-alike-{i}" for i in range(n_items - len(real))])
    index.vectors_ = vectors
    index.ids_ = joined_ids(index.ids_, extra)
    return index


def open_index(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"index-{args.n_items}.fusionrec"
    photos, _ = catalogue(args.root, args.n_catalogue)
    ids = [f"photo-{i}" for i in range(len(photos))]  # string ids, as a shop's SKUs
    index = ProductIndex(memory=args.cache, random_state=0).fit(photos, ids)
    padded = padded_index(index, args.n_items, folder)
    started = time.perf_counter()
    fusionrec.save(padded, path)
    print(
        f"index of {args.n_items:,} items ({len(photos):,} training photos + look-alikes), "
        f"{padded.vectors_.shape[1]} features, ids {padded.ids_.dtype}: "
        f"{path.stat().st_size / 2**30:.2f} GiB written "
        f"in {time.perf_counter() - started:.1f} s"
    )
    (folder / "vectors.npy").unlink()
    results = {mode: in_child(args, path, mode) for mode in ("empty", "mapped", "memory")}
    empty = results["empty"]["rss"]
    for mode in ("mapped", "memory"):
        result = results[mode]
        print(
            f"  {mode:7} open {result['open']:.3f} s, RSS after opening {result['rss']:.0f} MiB"
            f" (+{result['rss'] - empty:.0f} over an empty process's {empty:.0f} MiB); first"
            f" search {result['first'] * 1000:.0f} ms; query() median {result['median']:.1f}"
            f" ms, p95 {result['p95']:.1f} ms; search only median {result['search']:.1f} ms;"
            f" peak RSS {result['peak']:.0f} MiB"
        )
    if not args.keep:
        path.unlink()


def in_child(args: argparse.Namespace, path: Path, mode: str) -> dict:
    """Run ``child`` in a fresh process, so its memory is its own."""
    command = [
        sys.executable,
        __file__,
        "child",
        "--path",
        str(path),
        "--mode",
        mode,
        "--root",
        str(args.root),
        "--n-queries",
        str(args.n_queries),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def child(args: argparse.Namespace) -> None:
    """Open the index (unless ``empty``) and time queries; print one JSON line."""
    import timm  # noqa: F401  (the CNN's builder imports it: part of the empty process too)

    import fusionrec.files

    result = {"rss": current_rss_mib()}
    if args.mode != "empty":
        started = time.perf_counter()
        index = fusionrec.load(args.path)
        result["open"] = time.perf_counter() - started
        result["rss"] = current_rss_mib()
        if args.mode == "memory":
            index.vectors_ = np.array(index.vectors_)
        result |= query_latencies(index, load_split(args.root, "test")[0][: args.n_queries])
    result["peak"] = peak_rss_mib()
    print(json.dumps(result))


def query_latencies(index: ProductIndex, queries: np.ndarray) -> dict:
    """The first search (it reads every vector), then queries one photo at a time, k=10."""
    vectors = index._features(queries)  # the CNN warmed up; each photo's features cached
    started = time.perf_counter()
    index._nearest(vectors[:1], 10)
    first = time.perf_counter() - started
    timings, searches = [], []
    for photo, vector in zip(queries, vectors, strict=True):
        started = time.perf_counter()
        index.query([photo], k=10)
        timings.append(time.perf_counter() - started)
        started = time.perf_counter()
        index._nearest(vector[None], 10)
        searches.append(time.perf_counter() - started)
    median, p95 = np.percentile(timings, [50, 95]) * 1000
    return {"first": first, "median": median, "p95": p95, "search": np.median(searches) * 1000}


def sizes(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    photos, labels = catalogue(args.root, args.n_catalogue)
    queries = load_split(args.root, "test")[0][:5]
    models = {
        "FusedClassifier (fused, early)": FusedClassifier(memory=args.cache, random_state=0).fit(
            photos, labels
        ),
        "ProductIndex (rerank='ransac')": ProductIndex(
            rerank="ransac", memory=args.cache, random_state=0
        ).fit(photos),
    }
    print(f"{len(photos):,} training photos; best of 3 (the OS caches the files)")
    for name, model in models.items():
        print(f"  {name}")
        for format_name, save, load in (
            ("joblib pickle", joblib.dump, joblib.load),
            ("fusionrec file", fusionrec.save, fusionrec.load),
        ):
            path = folder / f"model.{format_name.split()[0]}"
            save_seconds, _ = best_of(3, save, model, path)
            load_seconds, loaded = best_of(3, load, path)
            check_same_answers(model, loaded, queries)
            print(
                f"    {format_name:15} {path.stat().st_size / 2**20:8.1f} MiB, save"
                f" {save_seconds:6.2f} s, load {load_seconds:6.3f} s"
            )
            path.unlink()


def check_same_answers(model, loaded, queries: np.ndarray) -> None:
    if isinstance(model, ProductIndex):
        got, expected = loaded.query(queries, k=5), model.query(queries, k=5)
        assert [m.ids.tolist() for m in got] == [m.ids.tolist() for m in expected]
    else:
        np.testing.assert_array_equal(loaded.predict_proba(queries), model.predict_proba(queries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["open", "sizes", "child"])
    add_data_arguments(parser, cache=True)
    parser.add_argument(
        "--folder",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fusionrec-files-bench",
        help="where the files are written (the 10^6-item index takes 5 GiB)",
    )
    parser.add_argument("--n-items", type=int, default=1_000_000, help="index size for 'open'")
    parser.add_argument(
        "--n-catalogue", type=int, default=None, help="N training photos, spread over the split"
    )
    parser.add_argument("--n-queries", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the index file of 'open'")
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["empty", "mapped", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    {"open": open_index, "sizes": sizes, "child": child}[args.part](args)


if __name__ == "__main__":
    main()
