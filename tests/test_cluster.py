"""Both branches and the index on a cluster's workers give what a local run gives.

A two-process Dask ``LocalCluster`` on loopback and a two-CPU local Ray run
stand in for a cluster; each is started once per module and shut down after.
"""

import pickle

import joblib
import numpy as np
import pytest

from fusionrec import BagOfVisualWords, CNNEmbedder, ProductIndex
from fusionrec._parallel import Shipped, map_chunks, runs_elsewhere

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def photos(demo):
    """A handful of demo photos, three products."""
    return list(demo.data[::15][:9])


@pytest.fixture(scope="module")
def ray_backend():
    """Ray's joblib backend over a two-CPU local Ray instance."""
    ray = pytest.importorskip("ray")
    from ray.util.joblib import register_ray

    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield "ray"
    ray.shutdown()


def _embedder(photos):
    return CNNEmbedder(batch_size=2).fit(photos)


def _vocabulary():
    return BagOfVisualWords(n_words=8, encoding="vlad", random_state=0)


def _index():
    return ProductIndex(
        branch="fused",
        traditional=_vocabulary(),
        deep=CNNEmbedder(batch_size=2),
        rerank="ransac",
        random_state=0,
    )


def _index_state(photos):
    index = _index().fit(photos[:6], ids=list(range(6)))
    index.add(photos[6:], ids=list(range(6, len(photos))))
    keypoints = [item.descriptors() for item in index.keypoints_]
    return index.ids_.tolist(), index.vectors_, keypoints


def test_runs_elsewhere_only_inside_a_cluster_backend(dask_client):
    assert not runs_elsewhere()
    with joblib.parallel_backend("loky", n_jobs=2):
        assert not runs_elsewhere()
    with joblib.parallel_backend("dask"):
        assert runs_elsewhere()


def test_shipped_value_is_pickled_once_and_rebuilt_once_per_process():
    shipped = Shipped({"words": np.arange(5)})
    assert pickle.dumps(shipped) == pickle.dumps(shipped)
    first, second = (pickle.loads(pickle.dumps(shipped)) for _ in range(2))
    assert first.get() is second.get()
    np.testing.assert_array_equal(first.get()["words"], np.arange(5))


def test_chunks_come_back_in_order_where_a_backend_cannot_stream():
    chunk_starts = _starts_of_chunks(backend="multiprocessing")
    assert chunk_starts == list(range(0, 23, 2))


def _starts_of_chunks(backend):
    with joblib.parallel_backend(backend, n_jobs=2):
        return list(map_chunks(_first_item, list(range(23)), chunk_size=2, n_jobs=None))


def _first_item(chunk, *, start):
    assert chunk[0] == start
    return start


def test_embeddings_on_dask_workers_equal_local_ones(photos, dask_client):
    embedder = _embedder(photos)
    local = embedder.transform(photos)
    with joblib.parallel_backend("dask"):
        remote = embedder.transform(photos)
    np.testing.assert_array_equal(remote, local)


def test_dropped_photos_keep_their_positions_on_dask_workers(photos, dask_client):
    broken = [*photos[:5], b"not a photo", *photos[5:]]
    embedder = _embedder(photos).set_params(on_error="skip")
    with joblib.parallel_backend("dask"):
        rows = embedder.transform(broken)
    assert np.flatnonzero(np.isnan(rows).all(axis=1)).tolist() == [5]
    np.testing.assert_array_equal(np.delete(rows, 5, axis=0), embedder.transform(photos))


def test_keypoint_branch_on_dask_workers_equals_local_one(photos, dask_client):
    local = _vocabulary().fit(photos)
    with joblib.parallel_backend("dask"):
        remote = _vocabulary().fit(photos)
        remote_rows = remote.transform(photos)
    np.testing.assert_array_equal(remote.codebook_.centers, local.codebook_.centers)
    np.testing.assert_array_equal(remote_rows, local.transform(photos))


def test_index_on_dask_workers_equals_local_one(photos, dask_client):
    local_ids, local_vectors, local_keypoints = _index_state(photos)
    with joblib.parallel_backend("dask"):
        ids, vectors, keypoints = _index_state(photos)
    assert ids == local_ids
    np.testing.assert_array_equal(vectors, local_vectors)
    for remote_item, local_item in zip(keypoints, local_keypoints, strict=True):
        np.testing.assert_array_equal(remote_item, local_item)


def test_index_on_ray_equals_local_one(photos, ray_backend):
    """Ray's backend cannot stream results: both branches run there in waves."""
    local_index = _index().fit(photos, ids=list(range(len(photos))))
    with joblib.parallel_backend(ray_backend):
        index = _index().fit(photos, ids=list(range(len(photos))))
    np.testing.assert_array_equal(index.vectors_, local_index.vectors_)
    for remote_item, local_item in zip(index.keypoints_, local_index.keypoints_, strict=True):
        np.testing.assert_array_equal(remote_item.descriptors(), local_item.descriptors())
