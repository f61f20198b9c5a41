"""The sharded extraction job: shards, reruns after a crash or a kill, a cluster, the index."""

import fcntl
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import fusionrec
from fusionrec import CNNEmbedder, ProductIndex
from fusionrec.cli import main
from fusionrec.extraction import (
    ExtractedFeatures,
    extract_features,
    fitted_features,
    index_from_features,
)

REPO = Path(__file__).resolve().parents[1]
PER_SHARD = 3


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, demo):
    """Ten demo photos in two product folders, and one file that is no photo, in between."""
    root = tmp_path_factory.mktemp("catalogue")
    for product in ("Granny-Smith", "Tropicana-Apple-Juice"):
        (root / product).mkdir()
        chosen = demo.data[demo.target == demo.target_names.index(product)][:5]
        for photo in chosen:
            shutil.copy(photo, root / product)
    (root / "Granny-Smith" / "Granny-Smith_010_broken.jpg").write_text("not a photo")
    return root


def photos_of(root):
    paths = sorted(root.rglob("*.jpg"))
    return [str(path) for path in paths], [path.relative_to(root).as_posix() for path in paths]


@pytest.fixture(scope="module")
def extracted(catalogue, tmp_path_factory):
    """A clean local run of the job on the catalogue: the reference every other run must equal."""
    photos, ids = photos_of(catalogue)
    folder = tmp_path_factory.mktemp("reference")
    return extract_features(photos, folder, ids=ids, photos_per_shard=PER_SHARD)


def shard_contents(folder):
    """Every array of every shard of the folder's finished job, by file name."""
    contents = {}
    for path in ExtractedFeatures(folder).shard_paths:
        with np.load(path, allow_pickle=False) as shard:
            contents[path.name] = {name: shard[name] for name in shard.files}
    return contents


def assert_same_shards(folder, reference):
    found, expected = shard_contents(folder), shard_contents(reference)
    assert sorted(found) == sorted(expected)
    for name, arrays in expected.items():
        assert sorted(found[name]) == sorted(arrays)
        for key, array in arrays.items():
            np.testing.assert_array_equal(found[name][key], array, err_msg=f"{name}: {key}")


def job_files(folder):
    """Names of the files in the job folders (shards, extractor, partial files)."""
    return sorted(path.name for path in Path(folder).glob("job-*/*"))


def test_each_photo_is_in_one_shard_in_order_with_its_features(extracted, catalogue):
    photos, ids = photos_of(catalogue)
    rows, row_ids = extracted.stacked()
    broken = ids.index("Granny-Smith/Granny-Smith_010_broken.jpg")
    assert row_ids.tolist() == ids[:broken] + ids[broken + 1 :]
    assert len(extracted.shard_paths) == -(-len(photos) // PER_SHARD)
    expected = extracted.extractor().transform(
        [photos[i] for i in range(len(photos)) if i != broken]
    )
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)


def test_unreadable_photos_are_listed_in_their_shards_report(extracted):
    [(id_, reason)] = extracted.unreadable()
    assert id_ == "Granny-Smith/Granny-Smith_010_broken.jpg"
    assert "cannot identify image file" in reason or "not" in reason.lower()
    [shard] = [shard for shard in extracted.manifest["shards"] if shard["unreadable"]]
    assert (shard["photos"], shard["rows"]) == (PER_SHARD, PER_SHARD - 1)


def test_a_rerun_writes_nothing_and_keeps_the_shards(extracted, catalogue):
    photos, ids = photos_of(catalogue)
    written = {path: path.stat().st_mtime_ns for path in extracted.shard_paths}
    again = extract_features(photos, extracted.folder, ids=ids, photos_per_shard=PER_SHARD)
    assert again.manifest["written_now"] == 0
    assert {path: path.stat().st_mtime_ns for path in again.shard_paths} == written


def test_a_job_that_failed_half_way_and_ran_again_has_every_shard_once(
    extracted, catalogue, tmp_path
):
    """Shard 2 cannot be written (a folder is in its way): the job fails; a rerun ends it."""
    photos, ids = photos_of(catalogue)
    job = extracted.shard_paths[0].parent.name
    blocker = tmp_path / job / "shard-000002.npz"
    blocker.mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        extract_features(photos, tmp_path, ids=ids, photos_per_shard=PER_SHARD)
    blocker.rmdir()
    left = job_files(tmp_path)
    assert "shard-000002.npz" not in left
    assert set(left) < set(job_files(extracted.folder))
    again = extract_features(photos, tmp_path, ids=ids, photos_per_shard=PER_SHARD)
    assert again.manifest["written_now"] == len(job_files(extracted.folder)) - len(left)
    assert_same_shards(tmp_path, extracted.folder)
    assert job_files(tmp_path) == job_files(extracted.folder)


@contextmanager
def opening_held(photo):
    """Hold a write lease on the photo: whoever opens it waits until the lease is released.

    Linux makes an ``open`` of a leased file wait for the holder (at most
    ``/proc/sys/fs/lease-break-time``, 45 s by default) and tells the holder
    by SIGIO, here ignored. Yields a function that says whether an open is
    waiting: then the job is inside that photo, for as long as the test likes.
    """
    previous = signal.signal(signal.SIGIO, lambda *_: None)
    descriptor = os.open(photo, os.O_RDONLY)
    try:
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        yield lambda: fcntl.fcntl(descriptor, fcntl.F_GETLEASE) != fcntl.F_WRLCK
    finally:
        fcntl.fcntl(descriptor, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        os.close(descriptor)
        signal.signal(signal.SIGIO, previous)


def wait_until(condition, process=None, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, "the job ended early"
        assert time.monotonic() < deadline, "the job never opened the photo"
        time.sleep(0.01)


def waiting_to_open(pid):
    """Whether a thread of process ``pid`` waits to open a leased file (Linux)."""
    tasks = Path(f"/proc/{pid}/task")
    return any((task / "wchan").read_text() == "__break_lease" for task in tasks.iterdir())


def test_a_job_killed_half_way_and_run_again_has_every_shard_once(catalogue, extracted, tmp_path):
    """The CLI is killed while it opens a photo of shard 2: its rerun ends the job."""
    _, ids = photos_of(catalogue)
    out = tmp_path / "features"
    command = [sys.executable, "-m", "fusionrec", "extract", str(catalogue), "--out", str(out)]
    command += ["--photos-per-shard", str(PER_SHARD)]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with opening_held(catalogue / ids[2 * PER_SHARD]) as waiting:
        job = subprocess.Popen(command, env=environment)
        try:
            wait_until(waiting, job)
            job.send_signal(signal.SIGKILL)
            job.wait(timeout=60)
        finally:
            job.kill()
    left = [name for name in job_files(out) if name.endswith(".npz")]
    assert "shard-000002.npz" not in left
    with redirect_stdout(io.StringIO()) as printed:
        assert main(command[3:]) == 0
    written_now = 4 - len(left)
    assert f"4 shards ({written_now} written now, {len(left)} found written)" in printed.getvalue()
    assert_same_shards(out, extracted.folder)
    assert job_files(out) == job_files(extracted.folder)


def test_a_worker_killed_half_way_leaves_every_shard_once(
    catalogue, extracted, tmp_path, dask_client
):
    """A worker is killed while it opens a photo of shard 2: Dask runs that shard elsewhere."""
    photos, ids = photos_of(catalogue)
    with (
        ThreadPoolExecutor(1) as driver,
        opening_held(photos[2 * PER_SHARD]) as waiting,
    ):
        job = driver.submit(
            extract_features,
            photos,
            tmp_path,
            ids=ids,
            photos_per_shard=PER_SHARD,
            scheduler=dask_client,
        )
        wait_until(waiting)
        workers = list(dask_client.run(os.getpid).values())
        wait_until(lambda: any(waiting_to_open(pid) for pid in workers), timeout=30.0)
        [stuck] = [pid for pid in workers if waiting_to_open(pid)]
        os.kill(stuck, signal.SIGKILL)
    extracted_on_cluster = job.result(timeout=300)
    assert extracted_on_cluster.manifest["written_now"] == len(extracted.shard_paths)
    assert_same_shards(tmp_path, extracted.folder)
    assert job_files(tmp_path) == job_files(extracted.folder)


def test_progress_counts_the_shards_written(catalogue, tmp_path, capsys):
    photos, ids = photos_of(catalogue)
    extract_features(photos[:2], tmp_path, ids=ids[:2], photos_per_shard=1, progress=True)
    bar = capsys.readouterr().err
    assert "shards: 100%" in bar
    assert "2/2" in bar


def test_a_job_with_another_model_writes_beside_the_first(extracted, catalogue, tmp_path):
    photos, ids = photos_of(catalogue)
    folder = tmp_path / "features"
    shutil.copytree(extracted.folder, folder)
    first = {path.name: path.stat().st_mtime_ns for path in folder.glob("job-*/*")}
    other = CNNEmbedder(crop_fraction=0.5)
    again = extract_features(photos[:4], folder, other, ids=ids[:4], photos_per_shard=PER_SHARD)
    assert len(list(folder.glob("job-*"))) == 2
    assert again.manifest["job"] != extracted.manifest["job"]
    assert again.stacked()[1].tolist() + [id_ for id_, _ in again.unreadable()] == ids[:4]
    old_job = folder / extracted.manifest["job"]
    assert {path.name: path.stat().st_mtime_ns for path in old_job.iterdir()} == first


def test_a_cluster_writes_the_same_shards_as_a_local_run(
    extracted, catalogue, tmp_path, dask_client, capsys
):
    photos, ids = photos_of(catalogue)
    on_cluster = extract_features(
        photos, tmp_path, ids=ids, photos_per_shard=PER_SHARD, scheduler=dask_client, progress=True
    )
    assert "shards: 100%" in capsys.readouterr().err
    assert on_cluster.manifest["written_now"] == len(on_cluster.shard_paths)
    assert_same_shards(tmp_path, extracted.folder)


def test_an_index_from_the_features_equals_one_fitted_on_the_photos(catalogue, tmp_path, demo):
    photos, ids = photos_of(catalogue)
    readable = [i for i, id_ in enumerate(ids) if "broken" not in id_]
    fitted = ProductIndex().fit([photos[i] for i in readable], [ids[i] for i in readable])
    extract_features(photos, tmp_path, fitted, ids=ids, photos_per_shard=PER_SHARD)
    built = index_from_features(tmp_path)
    assert built.ids_.tolist() == fitted.ids_.tolist()
    np.testing.assert_allclose(built.vectors_, fitted.vectors_, rtol=1e-5, atol=1e-6)
    [a], [b] = built.query(demo.data[-1:], k=3), fitted.query(demo.data[-1:], k=3)
    assert a.ids.tolist() == b.ids.tolist()


def test_an_index_cannot_rerank_without_photos(extracted):
    with pytest.raises(ValueError, match="rerank"):
        index_from_features(extracted.folder, rerank="ransac")


def test_fit_extracted_refuses_rows_of_another_width(extracted):
    features = extracted.extractor()
    with pytest.raises(ValueError, match="shape"):
        ProductIndex().fit_extracted(features, np.zeros((2, 5), np.float32), ["a", "b"])


def test_a_folder_without_a_finished_job_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished extraction"):
        ExtractedFeatures(tmp_path)


def test_ids_must_be_unique(catalogue, tmp_path):
    photos, _ = photos_of(catalogue)
    with pytest.raises(ValueError, match="ids must be unique"):
        extract_features(photos[:2], tmp_path, ids=["same", "same"])
    assert list(tmp_path.iterdir()) == []


def test_fitted_features_refuses_what_extracts_nothing():
    with pytest.raises(TypeError, match="model must be"):
        fitted_features("model.fusionrec", [])


def test_the_cli_reads_a_list_of_photos_relative_to_it_and_indexes_them(
    catalogue, extracted, tmp_path
):
    _, ids = photos_of(catalogue)
    listing = catalogue / "photos.txt"
    listing.write_text("\n".join(ids) + "\n")
    out, index = tmp_path / "features", tmp_path / "index.fusionrec"
    command = ["extract", str(listing), "--out", str(out), "--photos-per-shard", str(PER_SHARD)]
    try:
        with redirect_stdout(io.StringIO()) as printed:
            status = main([*command, "--index", str(index)])
    finally:
        listing.unlink()
    assert status == 0
    lines = printed.getvalue().splitlines()
    broken = "Granny-Smith/Granny-Smith_010_broken.jpg"
    assert lines[0].startswith(f"left out unreadable photo: {broken} (")
    summary = f"10 of 11 photos extracted in 4 shards (4 written now, 0 found written) to {out}"
    assert lines[-2:] == [summary, f"indexed 10 photos; saved to {index}"]
    assert_same_shards(out, extracted.folder)
    assert fusionrec.load(index).ids_.tolist() == extracted.stacked()[1].tolist()
