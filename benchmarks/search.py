"""Benchmarks of search by photo (ProductIndex) on the Grocery Store photos.

    python benchmarks/search.py recall    # train split as catalogue, test photos as queries
    python benchmarks/search.py latency   # query latency and index memory, 2,640 and 100,000 items
    python benchmarks/search.py ann --items 100000  # search="ivf" (faiss) against exact search
    python benchmarks/search.py million   # 10^6 items: compression="float16" and "pq" side by side
    python benchmarks/search.py recall --deep-model tuned.joblib  # a fine-tuned CNNEmbedder
                                          # (saved by benchmarks/fine_tune.py --save)

A query "hits" when a returned catalogue photo shows the query's product (fine label).
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
from sklearn.frozen import FrozenEstimator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, current_rss_mib, load_split, peak_rss_mib

from fusionrec import CNNEmbedder, ProductIndex
from fusionrec._vectors import l2_normalise
from fusionrec.search.ids import compact_ids, joined_ids


def ranking_metrics(hits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Recall@1, recall@5, mAP, and mAP averaged by class, from full rankings.

    ``hits[i, j]`` says whether the ``j``-th item returned for query ``i`` shows
    the query's product; ``labels`` are the queries' products.
    """
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at_hits = np.cumsum(hits, axis=1) / ranks * hits
    average_precision = precision_at_hits.sum(axis=1) / np.maximum(hits.sum(axis=1), 1)
    by_class = [average_precision[labels == label].mean() for label in np.unique(labels)]
    return {
        "recall@1": hits[:, 0].mean(),
        "recall@5": hits[:, :5].any(axis=1).mean(),
        "mAP": average_precision.mean(),
        "mAP by class": float(np.mean(by_class)),
    }


def deep_branch(crop_fraction: float | None, deep_model: Path | None):
    """The index's deep branch: a saved, fitted CNNEmbedder (frozen), or Lite0 at a crop."""
    if deep_model is not None:
        return FrozenEstimator(joblib.load(deep_model))
    return None if crop_fraction is None else CNNEmbedder(crop_fraction=crop_fraction)


def recall(root: Path, cache: Path, split: str, deep, depth: int) -> None:
    catalogue, catalogue_labels = load_split(root, "train")
    queries, query_labels = load_split(root, split)
    index = ProductIndex(deep=deep, rerank="ransac", rerank_depth=depth, memory=cache, n_jobs=2)
    started = time.perf_counter()
    index.fit(catalogue)
    print(
        f"catalogue: {len(catalogue)} training photos ({time.perf_counter() - started:.0f} s "
        f"to index); queries: {len(queries)} {split} photos; fine labels"
    )
    for rerank in (None, "ransac"):
        started = time.perf_counter()
        results = index.set_params(rerank=rerank).query(queries, k=len(catalogue))
        seconds = time.perf_counter() - started
        ranked = np.stack([catalogue_labels[matches.ids.astype(int)] for matches in results])
        metrics = ranking_metrics(ranked == query_labels[:, None], query_labels)
        shown = "  ".join(f"{name} {value:.3f}" for name, value in metrics.items())
        name = f"re-ranked (top {depth})" if rerank else "cosine only"
        print(f"  {name:20} {shown}  ({1000 * seconds / len(queries):.0f} ms a query)")


def timed_queries(index: ProductIndex, photos: np.ndarray) -> tuple[str, list]:
    """Query one photo at a time, k=10: the latency summary and the answers."""
    timings, answers = [], []
    for photo in photos:
        started = time.perf_counter()
        answers.extend(index.query([photo], k=10))
        timings.append(time.perf_counter() - started)
    median, p95 = np.percentile(timings, [50, 95]) * 1000
    return f"median {median:.1f} ms, p95 {p95:.1f} ms", answers


def latencies(index: ProductIndex, photos: np.ndarray) -> str:
    return timed_queries(index, photos)[0]


def grown_to(index: ProductIndex, n_items: int, seed: int = 0) -> ProductIndex:
    """The index padded with random unit vectors to ``n_items`` (search cost only)."""
    extra = n_items - len(index.ids_)
    rng = np.random.default_rng(seed)
    padding = l2_normalise(rng.standard_normal((extra, index.vectors_.shape[1]), np.float32))
    index.vectors_ = np.vstack([index.vectors_, padding])
    index.ids_ = joined_ids(index.ids_, compact_ids([f"synthetic-{i}" for i in range(extra)]))
    return index


LOOK_ALIKES_AT_ONCE = 2_000  # 20 MiB a float64 temporary at 1,280 features


def look_alikes(vectors: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` noisy copies of random rows of ``vectors`` (cosine ~0.8 to them), unit length.

    Unlike random unit vectors, these crowd around the real products as a
    large catalogue's look-alikes do, which is what an inverted file must cope with.
    Made ``LOOK_ALIKES_AT_ONCE`` rows at a time (in float64: the noise's scale is
    a float64 scalar), which draws the same numbers as making all ``n`` at once.
    """
    sources = rng.integers(len(vectors), size=n)
    made = np.empty((n, vectors.shape[1]), dtype=vectors.dtype)
    for start in range(0, n, LOOK_ALIKES_AT_ONCE):
        rows = vectors[sources[start : start + LOOK_ALIKES_AT_ONCE]]
        noise = rng.standard_normal(rows.shape, np.float32) * (0.75 / np.sqrt(rows.shape[1]))
        made[start : start + len(rows)] = l2_normalise(rows + noise)
    return made


def grown_with_look_alikes(index: ProductIndex, n_items: int, seed: int = 0) -> ProductIndex:
    """The index padded to ``n_items`` with :func:`look_alikes` of its real items."""
    extra = n_items - len(index.ids_)
    rng = np.random.default_rng(seed)
    index.vectors_ = np.vstack([index.vectors_, look_alikes(index.vectors_, extra, rng)])
    index.ids_ = joined_ids(index.ids_, compact_ids([f"look-alike-{i}" for i in range(extra)]))
    return index


def overlap(exact: list, approximate: list) -> str:
    """How much of the exact top 10 (and top 1) the approximate answers kept."""
    pairs = list(zip(exact, approximate, strict=True))
    kept = np.mean([len(set(a.ids.tolist()) & set(e.ids.tolist())) / 10 for e, a in pairs])
    first = np.mean([a.best == e.best for e, a in pairs])
    return f"recall@10 of the exact top 10 {kept:.3f}, same best match {first:.3f}"


def ann(root: Path, cache: Path, n_queries: int, deep, n_items: int) -> None:
    catalogue, _ = load_split(root, "train")
    queries = load_split(root, "test")[0][:n_queries]
    index = ProductIndex(deep=deep, memory=cache, random_state=0).fit(catalogue)
    index.query(queries[:3])  # warm up: ONNX export, thread pools
    grown = grown_with_look_alikes(index, n_items)
    print(f"{n_queries} test photos queried one at a time, k=10, against {n_items:,} items")
    print(f"(2,640 real + look-alikes); vectors {grown.vectors_.nbytes / 2**20:.0f} MiB")
    summary, exact = timed_queries(grown, queries)
    print(f"  exact (numpy):         {summary}")
    grown.set_params(search="ivf")
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    grown._nearest(grown.vectors_[:1], 1)  # learns the centroids and files the items
    print(
        f"  ivf: {len(grown.centroids_)} lists learned and filled in "
        f"{time.perf_counter() - started:.1f} s; peak RSS {rss_before:.0f} -> "
        f"{peak_rss_mib():.0f} MiB"
    )
    for n_probes in (4, 8, 16, 32, 64):
        summary, answers = timed_queries(grown.set_params(n_probes=n_probes), queries)
        print(f"  ivf, n_probes={n_probes:<3}     {summary}; {overlap(exact, answers)}")


MILLION_CHUNK = 20_000  # look-alikes made (in float32) at once


def million(args: argparse.Namespace) -> None:
    """Each compression in a fresh process: build time, peak RSS, search latency, recall@10."""
    with tempfile.TemporaryDirectory(prefix="fusionrec-million-") as folder:
        million_in(Path(folder), args)


def million_in(folder: Path, args: argparse.Namespace) -> None:
    """:func:`million`, its real and query vectors kept in ``folder`` for the children."""
    catalogue, _ = load_split(args.root, "train")
    queries = load_split(args.root, "test")[0][: args.n_queries]
    index = ProductIndex(memory=args.cache, random_state=0).fit(catalogue)
    np.save(folder / "real.npy", index.vectors_)
    np.save(folder / "queries.npy", index._features(queries))
    print(
        f"{args.items:,} items ({len(catalogue):,} real + look-alikes), {args.n_queries} test "
        "photos' vectors searched one at a time, k=10, search='ivf'; recall@10 of the exact "
        "float32 top 10; latency of the search alone (embedding a photo adds about 12 ms)"
    )
    for compression in args.compressions:
        command = [sys.executable, __file__, "million-one", "--folder", str(folder)]
        command += ["--items", str(args.items), "--compression", compression]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.splitlines()[-1])
        print(
            f"  compression={compression:8} lists {result['lists']}, build {result['build']:.0f} s"
            f" (vectors made in {result['made']:.0f} s); peak RSS {result['peak']:.0f} MiB,"
            f" after building {result['rss']:.0f} MiB"
        )
        for n_probes, row in result["probes"].items():
            print(
                f"    n_probes={n_probes:<3} p50 {row['p50']:.2f} ms, p95 {row['p95']:.2f} ms,"
                f" recall@10 {row['recall']:.3f}"
            )


def million_one(args: argparse.Namespace) -> None:
    """One compression: grow, file and search an index; print one JSON line."""
    compression = None if args.compression == "none" else args.compression
    folder = Path(args.folder)
    real, queries = np.load(folder / "real.npy"), np.load(folder / "queries.npy")
    index = ProductIndex(search="ivf", compression=compression, random_state=0)
    started = time.perf_counter()
    index.vectors_, exact = look_alike_vectors(real, queries, args.items, index._vector_dtype())
    index.ids_ = np.array([f"item-{i}" for i in range(args.items)])
    index.centroids_, index._inverted_file = None, None
    made = time.perf_counter() - started
    started = time.perf_counter()
    index._filed()
    result = {"made": made, "build": time.perf_counter() - started, "rss": current_rss_mib()}
    result["lists"], result["probes"] = len(index.centroids_), {}
    for n_probes in (16, 32, 64):
        index.set_params(n_probes=n_probes)
        timings, found = [], []
        for vector in queries:
            started = time.perf_counter()
            found.append(index._nearest(vector[None], 10)[0][0])
            timings.append(time.perf_counter() - started)
        p50, p95 = np.percentile(timings, [50, 95]) * 1000
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(found, exact, strict=True)])
        result["probes"][n_probes] = {"p50": p50, "p95": p95, "recall": recall}
    result["peak"] = peak_rss_mib()
    print(json.dumps(result))


def look_alike_vectors(
    real: np.ndarray, queries: np.ndarray, n_items: int, dtype: type
) -> tuple[np.ndarray, list]:
    """``real`` then look-alikes up to ``n_items``, stored as ``dtype``; the queries' exact top 10.

    Made a chunk at a time, in float32, and searched exactly while made, so that
    no float32 copy of every item is ever held.
    """
    vectors = np.empty((n_items, real.shape[1]), dtype=dtype)
    rng = np.random.default_rng(0)
    best = np.empty((len(queries), 0), dtype=np.intp), np.empty((len(queries), 0), np.float32)
    for start in range(0, n_items, MILLION_CHUNK):
        stop = min(start + MILLION_CHUNK, n_items)
        real_rows = real[start:stop]  # empty past the real items
        chunk = np.vstack([real_rows, look_alikes(real, stop - start - len(real_rows), rng)])
        vectors[start:stop] = chunk
        scores = queries @ chunk.T
        indices = np.concatenate(
            [best[0], np.broadcast_to(np.arange(start, stop), scores.shape)], 1
        )
        scores = np.concatenate([best[1], scores], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        best = np.take_along_axis(indices, order, 1), np.take_along_axis(scores, order, 1)
    return vectors, best[0].tolist()


def latency(root: Path, cache: Path, n_queries: int, deep) -> None:
    catalogue, _ = load_split(root, "train")
    queries = load_split(root, "test")[0][:n_queries]
    index = ProductIndex(deep=deep, rerank="ransac", memory=cache, n_jobs=2)
    index.fit(catalogue)
    index.query(queries[:3])  # warm up: ONNX export, thread pools
    keypoint_bytes = sum(keypoints.nbytes for keypoints in index.keypoints_)
    print(f"{n_queries} test photos queried one at a time, k=10")
    print(
        f"  {len(index.ids_):,} items: vectors {index.vectors_.nbytes / 2**20:.1f} MiB, "
        f"re-ranking keypoints {keypoint_bytes / 2**20:.1f} MiB"
    )
    print(f"    cosine only:       {latencies(index.set_params(rerank=None), queries)}")
    print(f"    re-ranked top 20:  {latencies(index.set_params(rerank='ransac'), queries)}")
    rss_before = peak_rss_mib()
    grown = grown_to(index.set_params(rerank=None), 100_000)
    print(
        f"  {len(grown.ids_):,} items (2,640 real + random unit vectors): vectors "
        f"{grown.vectors_.nbytes / 2**20:.1f} MiB; peak RSS {rss_before:.0f} -> "
        f"{peak_rss_mib():.0f} MiB"
    )
    print(f"    cosine only:       {latencies(grown, queries)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["recall", "latency", "ann", "million", "million-one"])
    add_data_arguments(parser, cache=True)
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--depth", type=int, default=20, help="candidates re-ranked per query")
    parser.add_argument("--crop-fraction", type=float, default=None)
    parser.add_argument("-n", "--n-queries", type=int, default=200)
    parser.add_argument(
        "--items", type=int, default=None, help="catalogue size: 'ann' 100,000, 'million' 10^6"
    )
    parser.add_argument(
        "--compressions",
        nargs="+",
        default=["float16", "pq"],
        choices=["none", "float16", "pq"],
        help="for 'million' (none: float32 vectors and lists, about 10 GB at 10^6 items)",
    )
    parser.add_argument("--compression", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--deep-model", type=Path, default=None, help="a joblib CNNEmbedder")
    args = parser.parse_args()
    if args.part.startswith("million"):
        args.items = args.items or 1_000_000
        args.n_queries = min(args.n_queries, 200)
        (million if args.part == "million" else million_one)(args)
        return
    deep = deep_branch(args.crop_fraction, args.deep_model)
    if args.part == "recall":
        recall(args.root, args.cache, args.split, deep, args.depth)
    elif args.part == "ann":
        ann(args.root, args.cache, args.n_queries, deep, args.items or 100_000)
    else:
        latency(args.root, args.cache, args.n_queries, deep)


if __name__ == "__main__":
    main()
