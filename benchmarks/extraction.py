"""Benchmarks of the sharded extraction job (fusionrec.extraction) on the Grocery Store photos.

    python benchmarks/extraction.py formats   # a shard as .npz or as Parquet: write, read, size
    python benchmarks/extraction.py memory    # driver peak RSS for 1,000 and 10,000 photos
    python benchmarks/extraction.py memory --sizes 1000 10000 --workers 2 --photos-per-shard 500

``memory`` runs each size in a fresh process (``driver``): a LocalCluster of
single-threaded worker processes extracts the default deep features of the
Grocery Store training photos, repeated to the size, under ids of their own;
it prints the driver's peak RSS and the photos per second, in all and per
worker. The driver's RSS includes PyTorch and the default CNN it saves for the
workers; what matters is that it does not grow with the number of photos.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, best_of, child_command, load_split, peak_rss_mib

WIDTH = 1280  # the default CNN's features


def formats(rows: int) -> None:
    """Write and read one shard of ``rows`` x 1,280 float32 rows and their ids, both ways."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    features = rng.standard_normal((rows, WIDTH)).astype(np.float32)
    ids = np.array([f"Fruit/Apple/Granny-Smith/{i:08d}.jpg" for i in range(rows)])

    def write_npz() -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, features=features, ids=ids)
        return buffer.getvalue()

    def read_npz(data: bytes) -> tuple:
        with np.load(io.BytesIO(data), allow_pickle=False) as shard:
            return shard["features"], shard["ids"]

    def write_parquet(compression: str) -> bytes:
        column = pa.FixedSizeListArray.from_arrays(pa.array(features.ravel()), WIDTH)
        buffer = io.BytesIO()
        pq.write_table(pa.table({"id": ids, "features": column}), buffer, compression=compression)
        return buffer.getvalue()

    def read_parquet(data: bytes) -> tuple:
        table = pq.read_table(io.BytesIO(data))
        values = table.column("features").combine_chunks().values.to_numpy()
        return values.reshape(-1, WIDTH), table.column("id").to_numpy()

    print(f"one shard of {rows} rows x {WIDTH} float32 and their ids (best of 7, in memory)")
    ways = {
        ".npz (numpy, no pickle)": (write_npz, read_npz),
        "Parquet, uncompressed": (lambda: write_parquet("NONE"), read_parquet),
        "Parquet, snappy": (lambda: write_parquet("snappy"), read_parquet),
    }
    for name, (write, read) in ways.items():
        writing, data = best_of(7, write)
        reading, (read_features, read_ids) = best_of(7, read, data)
        assert np.array_equal(read_features, features)
        assert read_ids.tolist() == ids.tolist()
        print(
            f"  {name:24s} write {writing * 1e3:6.1f} ms, read {reading * 1e3:6.1f} ms,"
            f" {len(data) / 2**20:5.2f} MiB"
        )


def memory(root: Path, sizes: list[int], workers: int, photos_per_shard: int) -> None:
    """Each size in a process of its own, so that each peak RSS is its own."""
    print(
        f"extract_features on a LocalCluster of {workers} single-threaded workers,"
        f" {photos_per_shard} photos a shard, default deep features"
    )
    for size in sizes:
        more = ("--workers", workers, "--photos-per-shard", photos_per_shard)
        subprocess.run(child_command(__file__, "driver", root, size, *more), check=True)


def driver(root: Path, n_photos: int, workers: int, photos_per_shard: int) -> None:
    """Extract ``n_photos`` (the training photos, repeated) on a LocalCluster; print the numbers."""
    from distributed import Client, LocalCluster

    from fusionrec.extraction import extract_features

    train, _ = load_split(root, "train")
    chosen = [str(train[i % len(train)]) for i in range(n_photos)]
    ids = [f"{i:08d}/{Path(path).name}" for i, path in enumerate(chosen)]
    folder = Path(tempfile.mkdtemp(prefix="fusionrec-extraction-"))
    try:
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster) as client,
        ):
            client.run(_warm_up)  # imports and the ONNX session outside the timing
            started = time.perf_counter()
            extracted = extract_features(
                chosen, folder, ids=ids, photos_per_shard=photos_per_shard, scheduler=client
            )
            seconds = time.perf_counter() - started
        rate = extracted.n_rows / seconds
        print(
            f"  {n_photos:7d} photos: driver peak RSS {peak_rss_mib():7.1f} MiB, {seconds:7.1f} s,"
            f" {rate:6.1f} photos/s in all, {rate / workers:6.1f} per worker"
            f" ({len(extracted.shard_paths)} shards)"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _warm_up() -> None:
    """Import the deep branch and build its runtime on a worker once, before the clock starts."""
    from fusionrec.datasets import load_demo_products
    from fusionrec.extraction import fitted_features

    fitted_features(None, load_demo_products().data[:1]).transform(load_demo_products().data[:2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["formats", "memory", "driver"])
    add_data_arguments(parser)
    parser.add_argument("--rows", type=int, default=1000, help="rows of a shard (formats)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("-n", type=int, default=1000, help="photos (driver)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--photos-per-shard", type=int, default=500)
    args = parser.parse_args()
    if args.part == "formats":
        formats(args.rows)
    elif args.part == "memory":
        memory(args.root, args.sizes, args.workers, args.photos_per_shard)
    else:
        driver(args.root, args.n, args.workers, args.photos_per_shard)


if __name__ == "__main__":
    main()
