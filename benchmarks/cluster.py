"""Fused features on a Dask cluster's workers against the same work on this machine.

    python benchmarks/cluster.py throughput -n 1000   # LocalCluster (2 x 1 thread) vs n_jobs=2
    python benchmarks/cluster.py memory -n 1000       # driver peak RSS for N and 10 N photos

Both parts extract the default fused features (``FusedFeatures(n_jobs=2)``,
both branches) of Grocery Store test photos with extractors fitted on 200
train photos (N, if fewer). ``throughput`` times the same photos side by side in one run:
locally (the keypoint branch in two joblib workers, the CNN in this process
fed by decoding threads), then inside ``joblib.parallel_backend("dask")`` on
a loopback ``distributed.LocalCluster`` of two single-threaded worker
processes, started as Dask starts them and again without the glibc
``MALLOC_TRIM_THRESHOLD_`` Dask's nanny sets (docs/cluster.md). ``memory`` fits once and
saves the fitted features to a temporary file; a fresh driver process per size loads them
and runs the cluster extraction of N and of 10 N photos (the photos repeated), and
prints the driver's peak resident memory during that extraction (Linux's
VmHWM, reset just before it), with and without the features it returns.
The dataset is expected at ../shared/data/grocery_store (``--root``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import dask
import joblib
import numpy as np
from distributed import Client, LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_data_arguments, current_rss_mib, load_split, peak_memory_in_children

import fusionrec
from fusionrec import FusedFeatures

FIT_PHOTOS = 200
WARM_UP_PHOTOS = 2 * 32  # a batch of 32 for each of the two workers, so that both warm up
FITTED = Path(tempfile.gettempdir()) / "fusionrec-benchmark-cluster-features.fusionrec"


@contextmanager
def two_worker_cluster(dask_malloc_trim: bool = True):
    """Two single-threaded worker processes on loopback, as joblib's active backend.

    ``dask_malloc_trim=False`` starts the workers without the
    ``MALLOC_TRIM_THRESHOLD_=65536`` that Dask's nanny sets by default
    (docs/cluster.md: workers).
    """
    environment = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
    trim = dask.config.get(environment) if dask_malloc_trim else None
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # a nanny leaves it in this process's own
    with (
        dask.config.set({environment: trim}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        yield


def fitted_features(root: Path, n_photos: int) -> FusedFeatures:
    train, _ = load_split(root, "train")
    chosen = np.random.default_rng(0).permutation(len(train))[: min(FIT_PHOTOS, n_photos)]
    return FusedFeatures(n_jobs=2, random_state=0).fit(train[chosen])


def test_photos(root: Path, n_photos: int) -> np.ndarray:
    """``n_photos`` test photos, the split repeated where it is shorter."""
    paths, _ = load_split(root, "test")
    return np.resize(paths, n_photos)


def timed_transform(features: FusedFeatures, photos: np.ndarray) -> tuple[float, np.ndarray]:
    features.transform(photos[:WARM_UP_PHOTOS])  # sessions, worker imports, the ONNX export
    started = time.perf_counter()
    rows = features.transform(photos)
    return time.perf_counter() - started, rows


def throughput(root: Path, n_photos: int) -> None:
    features = fitted_features(root, n_photos)
    photos = test_photos(root, n_photos)
    local_seconds, local_rows = timed_transform(features, photos)
    print(f"{n_photos} test photos, default fused features (both branches)")
    print(f"  local, n_jobs=2:                      {n_photos / local_seconds:6.1f} img/s")
    for dask_malloc_trim, workers in ((True, "Dask's default"), (False, "no malloc trim")):
        with two_worker_cluster(dask_malloc_trim):
            cluster_seconds, cluster_rows = timed_transform(features, photos)
        print(f"  LocalCluster, 2 workers x 1 thread, {workers}:")
        ratio = local_seconds / cluster_seconds
        print(f"    {n_photos / cluster_seconds:6.1f} img/s, {ratio:.2f}x local")
        difference = np.nanmax(np.abs(cluster_rows - local_rows))
        print(f"    max |difference| from local:    {difference:.1e}")


def driver_memory(root: Path, n_photos: int) -> None:
    features = fusionrec.load(FITTED)
    photos = test_photos(root, n_photos)
    with two_worker_cluster():
        features.transform(photos[:WARM_UP_PHOTOS])
        before = current_rss_mib()
        reset_peak_rss()
        rows = features.transform(photos)
        peak = peak_rss_since_reset_mib()
    output = rows.nbytes / 2**20
    print(
        f"  {n_photos:6d} photos: driver RSS before {before:7.1f} MiB, peak during the "
        f"extraction {peak:7.1f} MiB, of which the features returned {output:6.1f} MiB; "
        f"peak - before - features: {peak - before - output:6.1f} MiB"
    )


def reset_peak_rss() -> None:
    """Start Linux's count of this process's peak resident memory (VmHWM) again from now."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_since_reset_mib() -> float:
    """Peak resident memory since :func:`reset_peak_rss`, in MiB (/proc/self/status, KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def memory(root: Path, n_photos: int) -> None:
    fusionrec.save(fitted_features(root, n_photos), FITTED)
    print("Default fused features on a 2-worker LocalCluster: the driver's peak resident memory")
    try:
        peak_memory_in_children(__file__, "driver-memory", root, (n_photos, 10 * n_photos))
    finally:
        FITTED.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["throughput", "memory", "driver-memory"])
    add_data_arguments(parser)
    parser.add_argument("-n", "--n-images", type=int, default=1000)
    args = parser.parse_args()
    if args.part == "throughput":
        throughput(args.root, args.n_images)
    elif args.part == "memory":
        memory(args.root, args.n_images)
    else:
        driver_memory(args.root, args.n_images)


if __name__ == "__main__":
    main()
