"""The extraction job: photos in shards on Dask, each shard written where it is computed."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._storage import write_atomically
from ..files import save
from .extractor import fitted_features
from .folder import MANIFEST, ExtractedFeatures
from .shards import ShardReport, ShardTask, read_report, write_shards

EXTRACTOR_FILE = "extractor.fusionrec"
LOCAL_SCHEDULERS = ("synchronous", "threads", "processes")


def extract_features(
    photos: Sequence,
    folder: str | os.PathLike,
    model: Any = None,
    *,
    ids: Sequence[str] | None = None,
    photos_per_shard: int = 1000,
    scheduler: Any = "synchronous",
    progress: bool = False,
) -> ExtractedFeatures:
    """Extract the features of many photos into a folder of shards, resumably, on Dask.

    The photos are cut into runs of ``photos_per_shard``; each run is one
    partition of a ``dask.bag``, whose task extracts the run's features and
    writes them, with their ids and a report of the unreadable photos, as one
    shard file, where it runs. The driver receives only each shard's report,
    never feature rows. Shards are named by the job (the extractor's file and
    the photo list) and their number, and written atomically: running the same
    job again (after a crash, or a killed worker) computes only the shards that
    are missing, and a job with another model writes beside, never over, them.
    ``manifest.json`` names the finished job; :class:`ExtractedFeatures` reads it.

    Parameters
    ----------
    photos : sequence of paths
        Photo files every worker can read (absolute paths on a cluster).
    folder : str or path
        Where shards go; on a cluster, a folder every worker can write.
    model : fitted fusionrec model or None, default=None
        Whose features to extract (see :func:`fitted_features`); ``None``: the
        default ``CNNEmbedder``.
    ids : sequence of str or None, default=None
        One id per photo; ``None``: the photos' paths as given.
    photos_per_shard : int, default=1000
        Photos per shard (and per task).
    scheduler : str or distributed.Client, default="synchronous"
        One of dask's local schedulers (``"synchronous"``, ``"threads"``,
        ``"processes"``), or a client of a Dask cluster.
    progress : bool, default=False
        Show a progress bar of the shards written.

    Returns
    -------
    ExtractedFeatures
        The folder's finished job.

    Examples
    --------
    >>> import tempfile
    >>> from fusionrec.datasets import load_demo_products
    >>> photos = load_demo_products().data[:6]
    >>> extracted = extract_features(photos, tempfile.mkdtemp(), photos_per_shard=4)
    >>> extracted.n_rows, len(extracted.shard_paths)
    (6, 2)
    """
    if isinstance(photos, (str, os.PathLike)):
        raise TypeError("photos must be a sequence of photo paths; got a single path")
    photos = [str(photo) for photo in photos]
    ids = photos if ids is None else [str(id_) for id_ in ids]
    if len(ids) != len(photos) or not photos:
        raise ValueError(f"got {len(ids)} ids for {len(photos)} photos; need one id per photo")
    if not (isinstance(photos_per_shard, int) and photos_per_shard >= 1):
        raise ValueError(f"photos_per_shard must be a positive int; got {photos_per_shard!r}")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique: a search index tells its items apart by them")
    folder = Path(folder).absolute()  # workers elsewhere write the same paths
    features = fitted_features(model, photos)
    job = _job_folder(folder, features, photos, ids, photos_per_shard)
    tasks = _shard_tasks(job, photos, ids, photos_per_shard)
    pending = [task for task in tasks if not Path(task.path).is_file()]
    done = [read_report(task.path) for task in tasks if Path(task.path).is_file()]
    reports = sorted(done + _run(pending, scheduler, progress), key=lambda report: report.number)
    for partial in job.glob("*.tmp"):  # left by a worker killed while writing
        partial.unlink(missing_ok=True)
    summary = {
        "job": job.name,
        "extractor": f"{job.name}/{EXTRACTOR_FILE}",
        "photos": len(photos),
        "rows": sum(report.n_rows for report in reports),
        "features": features.n_features_out_,
        "photos_per_shard": photos_per_shard,
        "written_now": len(pending),
        "shards": [report.as_json(folder) for report in reports],
    }
    text = json.dumps(summary, indent=1).encode()
    write_atomically(folder / MANIFEST, lambda file: file.write(text))
    return ExtractedFeatures(folder)


def _shard_tasks(
    job: Path, photos: list[str], ids: list[str], photos_per_shard: int
) -> list[ShardTask]:
    """One task per run of ``photos_per_shard`` consecutive photos, numbered in photo order."""
    return [
        ShardTask(
            number,
            str(job / f"shard-{number:06d}.npz"),
            str(job / EXTRACTOR_FILE),
            photos[start : start + photos_per_shard],
            ids[start : start + photos_per_shard],
        )
        for number, start in enumerate(range(0, len(photos), photos_per_shard))
    ]


def _job_folder(
    folder: Path, features: Any, photos: list[str], ids: list[str], photos_per_shard: int
) -> Path:
    """``folder/job-<key>``, holding the job's extractor file; the key names both inputs.

    The key digests the saved extractor (fusionrec files are byte-for-byte
    reproducible), the photos, their ids and the shard size, so the same job
    finds its shards again and any other job gets a folder of its own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    staged = save(features, folder / f".extractor-{os.getpid()}.fusionrec")
    digest = hashlib.sha1(hashlib.sha1(staged.read_bytes()).digest())
    digest.update(f"{photos_per_shard}\n".encode())
    for photo, id_ in zip(photos, ids, strict=True):
        digest.update(f"{photo}\0{id_}\n".encode())
    job = folder / f"job-{digest.hexdigest()[:16]}"
    job.mkdir(exist_ok=True)
    if (job / EXTRACTOR_FILE).is_file():
        staged.unlink()
    else:
        os.replace(staged, job / EXTRACTOR_FILE)
    return job


def _run(tasks: list[ShardTask], scheduler: Any, progress: bool) -> list[ShardReport]:
    """Write the shards of ``tasks`` through a ``dask.bag``, one partition per shard."""
    if not tasks:
        return []
    try:
        import dask.bag
    except ImportError as error:
        raise ImportError(
            "the extraction job runs on Dask: pip install 'fusionrec[cluster]'"
        ) from error
    parts = dask.bag.from_sequence(tasks, partition_size=1).map_partitions(write_shards)
    parts = parts.to_delayed()
    with tqdm(total=len(tasks), desc="shards", unit="shard", disable=not progress) as bar:
        if isinstance(scheduler, str):
            return _run_locally(parts, scheduler, bar)
        return _run_on_cluster(parts, scheduler, bar)


def _run_locally(parts: list, scheduler: str, bar: tqdm) -> list[ShardReport]:
    import dask
    from dask.callbacks import Callback

    if scheduler not in LOCAL_SCHEDULERS:
        raise ValueError(
            f"scheduler must be one of {LOCAL_SCHEDULERS} or a distributed.Client;"
            f" got {scheduler!r}"
        )
    keys = {part.key for part in parts}

    def count(key: Any, *_: Any) -> None:
        if key in keys:
            bar.update(1)

    with Callback(posttask=count):
        results = dask.compute(*parts, scheduler=scheduler)
    return [report for reports in results for report in reports]


def _run_on_cluster(parts: list, client: Any, bar: tqdm) -> list[ShardReport]:
    from distributed import Client, as_completed

    if not isinstance(client, Client):
        raise TypeError(
            f"scheduler must be a local scheduler's name or a distributed.Client;"
            f" got {type(client).__name__}"
        )
    reports = []
    for future in as_completed(client.compute(parts)):
        reports.extend(future.result())
        future.release()
        bar.update(1)
    return reports
