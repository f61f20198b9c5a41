"""Compressed vectors (``ProductIndex(compression=...)``) and ids held as compact arrays.

Synthetic clusters stand in for a large catalogue: every query's ten true
neighbours are copies of its own centre (cosine about 0.9 to it), every other
item is near another random centre (cosine about 0 in 64 dimensions). Coarse
codes cannot mix those up, so with every list probed the exact re-scoring of
the candidates must give back exactly the exact search's top 10.
"""

import json
import tracemalloc

import numpy as np
import pytest

from fusionrec import ProductIndex
from fusionrec._vectors import l2_normalise
from fusionrec.search.ids import compact_ids, id_values, joined_ids
from fusionrec.search.inverted_file import (
    InvertedFile,
    default_n_lists,
    faiss_available,
    pq_shape,
    train_centroids,
    training_sample,
)
from fusionrec.search.vectors import top_k

needs_faiss = pytest.mark.skipif(
    not faiss_available(), reason="compressed lists need faiss-cpu: pip install 'fusionrec[ann]'"
)
COPIES = 10  # items per centre: a query's true top 10


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(0)
    centres = l2_normalise(rng.standard_normal((200, 64)).astype(np.float32))
    noise = 0.35 / np.sqrt(64)
    items = l2_normalise(
        np.repeat(centres, COPIES, axis=0) + noise * rng.standard_normal((2000, 64))
    )
    queries = l2_normalise(centres[:40] + noise * rng.standard_normal((40, 64)))
    return items.astype(np.float16), queries.astype(np.float32)


def filed(items, compression):
    n_lists = default_n_lists(len(items))
    sample = training_sample(items, n_lists, seed=0)
    inverted = InvertedFile(train_centroids(sample, n_lists, seed=0), compression, sample)
    inverted.add(items)
    return inverted


def same_top_k(found, expected):
    return [set(row) for row in found.tolist()] == [set(row) for row in expected.tolist()]


@needs_faiss
@pytest.mark.parametrize("compression", [None, "float16", "pq"])
def test_every_list_probed_finds_the_exact_top_10(clusters, compression):
    items, queries = clusters
    inverted = filed(items, compression)
    indices, scores = inverted.search(queries, 10, n_probes=inverted.index.nlist, items=items)
    exact_indices, exact_scores = top_k(queries, items, 10)
    assert same_top_k(indices, exact_indices)
    assert same_top_k(indices, np.arange(40)[:, None] * COPIES + np.arange(COPIES))
    np.testing.assert_allclose(scores, exact_scores, atol=2e-3)  # float16 lists round scores


@needs_faiss
def test_product_quantised_lists_are_a_fraction_of_whole_ones(clusters):
    items, _ = clusters
    whole, halved, coded = (len(filed(items, c).to_bytes()) for c in (None, "float16", "pq"))
    assert halved < 0.6 * whole
    assert coded < 0.3 * halved


@needs_faiss
@pytest.mark.parametrize("compression", [None, "float16", "pq"])
def test_removing_renumbers_the_items_after_the_removed_ones(clusters, compression):
    items, queries = clusters
    inverted = filed(items, compression)
    removed = np.array([0, 1, 15, 999, 1999])
    inverted.remove(removed)
    kept = np.delete(items, removed, axis=0)
    assert len(inverted) == len(kept)
    indices, _ = inverted.search(queries, 10, n_probes=inverted.index.nlist, items=kept)
    assert same_top_k(indices, top_k(queries, kept, 10)[0])
    inverted.add(queries[:1])  # a new item after the renumbered ones: the query itself
    grown = np.vstack([kept, queries[:1].astype(np.float16)])
    assert inverted.search(queries[:1], 1, inverted.index.nlist, grown)[0].tolist() == [[len(kept)]]


@needs_faiss
def test_a_compressed_inverted_file_reads_back_as_written(clusters):
    items, queries = clusters
    inverted = filed(items, "pq")
    again = InvertedFile.from_bytes(inverted.to_bytes())
    assert again.compression == "pq"
    for reader in (inverted, again):
        found = reader.search(queries, 10, 4, items)
        np.testing.assert_array_equal(found[0], inverted.search(queries, 10, 4, items)[0])


def faiss_filed(centroids, sample, items):
    """The "pq" lists as faiss's own ``train`` learns them (in a second array of residuals)."""
    import faiss

    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(centroids)
    shape = pq_shape(centroids.shape[1], len(sample))
    index = faiss.IndexIVFPQ(quantizer, *centroids.shape[::-1], *shape, faiss.METRIC_INNER_PRODUCT)
    index.train(sample)
    index.add(np.asarray(items, dtype=np.float32))
    return faiss.serialize_index(index)


@needs_faiss
@pytest.mark.parametrize("copy", [True, False])
def test_codes_learned_from_residuals_made_in_place_are_faiss_own(clusters, copy):
    items, _ = clusters
    n_lists = default_n_lists(len(items))
    sample = training_sample(items, n_lists, seed=0)
    centroids = train_centroids(sample, n_lists, seed=0)
    given = sample.copy()
    inverted = InvertedFile(centroids, "pq", given, copy=copy)
    assert np.array_equal(given, sample) == copy  # copy=False: the residuals were made in it
    inverted.add(items)
    np.testing.assert_array_equal(inverted.to_bytes(), faiss_filed(centroids, sample, items))


@needs_faiss
def test_more_rows_than_the_codes_learn_from_go_to_faiss_own_training():
    rows = l2_normalise(np.random.default_rng(1).standard_normal((256 * 256 + 1, 16)))
    rows = rows.astype(np.float32)
    centroids = train_centroids(rows[:2000], 4, seed=0)
    expected = faiss_filed(centroids, rows, rows[:500])  # faiss picks 2^16 of the rows
    inverted = InvertedFile(centroids, "pq", rows, copy=False)
    inverted.add(rows[:500])
    np.testing.assert_array_equal(inverted.to_bytes(), expected)


def test_the_training_sample_is_the_same_whatever_the_block(clusters, monkeypatch):
    items, _ = clusters
    whole = training_sample(items, 4, seed=3)
    monkeypatch.setattr("fusionrec.search.inverted_file._ROWS_AT_ONCE", 300)  # 4 blocks
    blocked = training_sample(items, 4, seed=3)
    assert blocked.dtype == np.float32
    assert blocked.shape == (4 * 256, items.shape[1])
    np.testing.assert_array_equal(blocked, whole)
    assert set(map(bytes, blocked.astype(np.float16))) <= set(map(bytes, items))


@needs_faiss
def test_filing_pq_holds_the_sample_or_a_block_of_items_not_both(clusters, monkeypatch):
    """numpy's arrays while a "pq" index is built: at most the float32 sample and small blocks.

    The sample (all 2,000 rows here) used to be gathered beside a float16 copy of
    it (1.57 times its size at the peak, traced) and held while the items were filed.
    """
    items, _ = clusters
    monkeypatch.setattr("fusionrec.search.inverted_file._ROWS_AT_ONCE", 100)
    index = ProductIndex(search="ivf", compression="pq", random_state=0)
    index.vectors_, index.ids_ = items, compact_ids([f"item-{i}" for i in range(len(items))])
    index.centroids_, index._inverted_file = None, None
    sample_bytes = len(items) * items.shape[1] * 4
    pytest.importorskip("faiss")  # imported before tracing: its module is not the build's memory
    tracemalloc.start()
    try:
        index._filed()
        held_at_most = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sample_bytes < held_at_most < 1.25 * sample_bytes
    assert len(index._inverted_file) == len(items)


def test_exact_search_over_float16_blocks_equals_float32(clusters, monkeypatch):
    items, queries = clusters
    expected = top_k(queries, items.astype(np.float32), 10)
    monkeypatch.setattr("fusionrec.search.vectors._ITEM_BLOCK", 300)  # 7 blocks, merged
    found = top_k(queries, items, 10)
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_allclose(found[1], expected[1], atol=1e-6)


def test_ids_are_compact_only_when_all_of_one_kind():
    assert compact_ids(["tea", "milk"]).dtype == np.dtype("<U4")
    assert compact_ids([3, 2**40]).dtype == np.int64
    for mixed in (["tea", 3], [3, 2**70], [1.5, 2.5], [True, False], ["a", "b", "c" * 100], []):
        array = compact_ids(mixed)
        assert array.dtype == object
        assert array.tolist() == mixed
    joined = joined_ids(compact_ids([1, 2]), compact_ids(["3"]))
    assert joined.tolist() == [1, 2, "3"]  # not ["1", "2", "3"]
    assert [type(value) for value in id_values(joined_ids(compact_ids([1]), compact_ids([2])))] == [
        int,
        int,
    ]


@pytest.fixture(scope="module")
def photos(demo):
    return demo.data[1::3][:40]


@pytest.mark.parametrize(
    ("ids", "kind", "python_type"),
    [([f"sku-{i}" for i in range(40)], "U", str), (list(range(100, 140)), "i", int)],
    ids=["str", "int"],
)
def test_ids_are_held_compact_and_matches_give_python_values(photos, ids, kind, python_type):
    index = ProductIndex(memory=None).fit(photos, ids)
    assert index.ids_.dtype.kind == kind
    [matches] = index.query(photos[:1], k=3)
    assert matches.best == ids[0]
    assert {type(item) for item in matches.ids} == {python_type}
    assert json.loads(json.dumps(matches.to_dict()))["ids"][0] == ids[0]
    json.dumps([matches.best, matches.ids[0]])  # numpy scalars would fail here
    other = 7 if python_type is str else "new"
    index.remove(ids[:2]).add(photos[:1], [other])
    assert index.ids_.dtype == object  # str and int together
    assert index.ids_.tolist() == [*ids[2:], other]


@needs_faiss
@pytest.mark.parametrize("compression", ["float16", "pq"])
def test_a_compressed_index_finds_each_photo_and_follows_add_and_remove(photos, compression):
    ids = [f"sku-{i}" for i in range(len(photos))]
    index = ProductIndex(search="ivf", compression=compression, n_probes=8, random_state=0)
    index.fit(photos[5:], ids[5:])
    assert index.vectors_.dtype == np.float16
    index.add(photos[:5], ids[:5])
    results = index.query(photos, k=3)
    assert [matches.best for matches in results] == ids
    assert [float(matches.scores[0]) for matches in results] == pytest.approx([1.0] * 40, abs=2e-3)
    index.remove(ids[:2])
    assert [matches.best for matches in index.query(photos[2:6], k=1)] == ids[2:6]
    assert not {*ids[:2]} & {*index.query(photos[:2], k=5)[0].ids.tolist()}


def test_pq_needs_the_inverted_file(photos):
    with pytest.raises(ValueError, match="needs search='ivf'"):
        ProductIndex(compression="pq").fit(photos[:2])
