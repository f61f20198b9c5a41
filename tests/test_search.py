"""ProductIndex: search by photo, changing the index, re-ranking, persistence, bad input."""

import copy
import json

import joblib
import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from fusionrec import BagOfVisualWords, CNNEmbedder, ProductIndex
from fusionrec.images import ImageReadError, UnreadableImageWarning, load_image
from fusionrec.search import Keypoints, Matches, count_inliers
from fusionrec.search.inverted_file import faiss_available

needs_faiss = pytest.mark.skipif(
    not faiss_available(), reason="search='ivf' needs faiss-cpu: pip install 'fusionrec[ann]'"
)
SMALL_TRADITIONAL = BagOfVisualWords(
    "rootsift", n_words=16, encoding="vlad", max_side=160, random_state=0
)


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def catalogue(demo):
    """Every demo photo but the first of each product; ids are product/photo names."""
    first = np.r_[[np.flatnonzero(demo.target == label)[0] for label in range(10)]]
    rest = np.setdiff1d(np.arange(len(demo.data)), first)
    ids = np.array([f"{demo.target_names[demo.target[i]]}/{i}" for i in rest], dtype=object)
    return demo.data[rest], ids, demo.data[first]


@pytest.fixture(scope="module")
def index(catalogue, memory):
    photos, ids, _ = catalogue
    return ProductIndex(memory=memory).fit(photos, ids)


def product(item_id):
    return item_id.split("/")[0]


def test_a_catalogue_photo_finds_itself_first(catalogue, index):
    photos, ids, _ = catalogue
    results = index.query(photos[:5], k=3)
    assert [matches.best for matches in results] == list(ids[:5])
    for matches in results:
        assert matches.scores[0] == pytest.approx(1.0, abs=1e-4)
        assert np.all(np.diff(matches.scores) <= 0)
        assert matches.inliers is None


def test_new_photos_find_their_own_product(demo, catalogue, index):
    _, _, queries = catalogue
    results = index.query(queries, k=5)
    found = [product(matches.best) for matches in results]
    assert np.mean(np.array(found) == np.array(demo.target_names)) >= 0.8  # chance is 0.1


def test_ids_default_to_positions_and_k_is_clipped(catalogue, memory):
    photos, _, queries = catalogue
    small = ProductIndex(memory=memory).fit(photos[:4])
    assert small.ids_.tolist() == [0, 1, 2, 3]
    [matches] = small.query(queries[:1], k=50)
    assert sorted(matches.ids.tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize("k", [0, -1, 2.5, True, None])
def test_a_bad_k_is_refused(index, catalogue, k):
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.query(catalogue[2][:1], k=k)


def test_add_and_remove_change_the_answers_without_a_rebuild(catalogue, memory):
    photos, ids, _ = catalogue
    grown = ProductIndex(memory=memory).fit(photos[10:], ids[10:])
    vectors_before = grown.vectors_.copy()
    grown.add(photos[:10], ids[:10])
    assert grown.query(photos[:1], k=1)[0].best == ids[0]
    np.testing.assert_array_equal(grown.vectors_[: len(vectors_before)], vectors_before)
    grown.remove([ids[0]])
    assert ids[0] not in grown.ids_.tolist()
    assert grown.query(photos[:1], k=1)[0].best != ids[0]
    assert len(grown.ids_) == len(ids) - 1


def test_id_errors_name_the_ids(catalogue, memory):
    photos = catalogue[0]
    fitted = ProductIndex(memory=memory).fit(photos[:3], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"already in the index: \['b'\]"):
        fitted.add(photos[3:5], ["b", "d"])
    with pytest.raises(ValueError, match=r"repeated: \['e'\]"):
        fitted.add(photos[3:5], ["e", "e"])
    with pytest.raises(ValueError, match="got 1 ids for 2 photos"):
        fitted.add(photos[3:5], ["f"])
    with pytest.raises(TypeError, match="hashable"):
        fitted.add(photos[3:4], [["not", "hashable"]])
    with pytest.raises(KeyError, match=r"not in the index: \['x', 'y'\]"):
        fitted.remove(["a", "x", "y"])
    assert fitted.ids_.tolist() == ["a", "b", "c"]  # a failed remove removes nothing


def test_an_emptied_index_says_so(catalogue, memory):
    photos, _, queries = catalogue
    emptied = ProductIndex(memory=memory).fit(photos[:2], ["a", "b"]).remove(["a", "b"])
    with pytest.raises(ValueError, match="the index is empty"):
        emptied.query(queries[:1])


def test_an_unfitted_index_refuses_to_query(catalogue):
    with pytest.raises(NotFittedError):
        ProductIndex().query(catalogue[2][:1])


def test_a_joblib_round_trip_answers_identically(catalogue, index, tmp_path):
    _, _, queries = catalogue
    before = index.query(queries, k=5)
    joblib.dump(index, tmp_path / "index.joblib")
    after = joblib.load(tmp_path / "index.joblib").query(queries, k=5)
    for old, new in zip(before, after, strict=True):
        assert old.ids.tolist() == new.ids.tolist()
        np.testing.assert_array_equal(old.scores, new.scores)


def test_unreadable_photos_are_skipped_by_id_or_answered_with_none(catalogue, memory, tmp_path):
    photos, _, queries = catalogue
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    mixed = [photos[0], str(broken), photos[1]]
    with pytest.raises(ImageReadError, match=r"broken\.jpg"):
        ProductIndex(memory=memory).fit(mixed, ["a", "broken", "b"])
    skipping = ProductIndex(memory=memory, on_error="skip").fit(mixed, ["a", "broken", "b"])
    assert skipping.ids_.tolist() == ["a", "b"]
    assert skipping.dropped_indices_.tolist() == [1]
    with pytest.warns(UnreadableImageWarning, match=r"broken\.jpg"):
        results = skipping.set_params(on_error="warn").query([str(broken), queries[0]], k=1)
    assert results[0] is None
    assert isinstance(results[1], Matches)


@pytest.mark.parametrize("branch", ["traditional", "fused"])
def test_keypoint_and_fused_features_search_too(catalogue, memory, branch):
    photos, ids, _ = catalogue
    fitted = ProductIndex(branch, traditional=SMALL_TRADITIONAL, memory=memory).fit(photos, ids)
    width = {"traditional": 16 * 128, "fused": 16 * 128 + 1280}[branch]
    assert fitted.vectors_.shape == (len(ids), width)
    np.testing.assert_allclose(np.linalg.norm(fitted.vectors_, axis=1), 1.0, rtol=1e-5)
    assert [matches.best for matches in fitted.query(photos[:3], k=2)] == list(ids[:3])


def test_clone_keeps_parameters_and_drops_the_index(index):
    fresh = clone(index)
    assert fresh.get_params() == index.get_params()
    assert not hasattr(fresh, "vectors_")


def _rotated_crop(path, angle=12.0):
    """The photo turned by ``angle`` degrees and cropped: same product, new geometry."""
    image = Image.fromarray(load_image(path)).rotate(angle, resample=Image.Resampling.BICUBIC)
    width, height = image.size
    return np.asarray(image.crop((20, 20, width - 20, height - 20)))


@pytest.fixture(scope="module")
def random_network_index(catalogue, memory):
    """Re-ranking on top of a meaningless (randomly initialised) embedding."""
    photos, ids, _ = catalogue
    noise = CNNEmbedder(weights=None, random_state=0)
    return ProductIndex(deep=noise, rerank="ransac", memory=memory).fit(photos, ids)


@pytest.fixture(scope="module")
def turned(catalogue, random_network_index):
    """Turned crops of four catalogue photos, their ids, and the whole catalogue in cosine order."""
    photos, ids, _ = catalogue
    picked = [0, 45, 65, 135]  # a milk, a look-alike milk, an apple, a juice
    queries = [_rotated_crop(photos[i]) for i in picked]
    cosine = copy.deepcopy(random_network_index).set_params(rerank=None)
    orders = [matches.ids.tolist() for matches in cosine.query(queries, k=len(ids))]
    return queries, list(ids[picked]), orders


def test_reranking_lifts_the_same_photo_from_below_the_cosine_top_k(random_network_index, turned):
    queries, expected, orders = turned
    k, depth = 2, 8
    cosine_ranks = [order.index(item) for order, item in zip(orders, expected, strict=True)]
    assert any(k <= rank < depth for rank in cosine_ranks)  # cosine alone misses some
    reranking = copy.deepcopy(random_network_index).set_params(rerank_depth=depth)
    results = reranking.query(queries, k=k)
    for matches, item, order in zip(results, expected, orders, strict=True):
        assert matches.best == item
        assert matches.inliers[0] == matches.inliers.max()
        assert set(matches.ids) <= set(order[:depth])


def test_reranking_reorders_only_the_top_depth_candidates(random_network_index, turned):
    """A photo that cosine similarity ranks just below the depth is never verified."""
    queries, expected, orders = turned
    k = 2
    reranking = copy.deepcopy(random_network_index)
    beyond_k = [
        (query, item, order)
        for query, item, order in zip(queries, expected, orders, strict=True)
        if order.index(item) > k
    ]
    assert beyond_k
    for query, item, order in beyond_k:
        depth = order.index(item)  # the candidates ranked above the very photo
        [matches] = reranking.set_params(rerank_depth=depth).query([query], k=k)
        assert item not in matches.ids
        assert set(matches.ids) <= set(order[:depth])


def test_reranking_needs_keypoints_kept_at_fit(index, catalogue):
    reranking = copy.deepcopy(index).set_params(rerank="ransac")
    with pytest.raises(ValueError, match="refit"):
        reranking.query(catalogue[2][:1])


def test_matches_serialise_to_json():
    matches = Matches(np.array(["x", "y"], dtype=object), np.array([0.9, 0.5], np.float32))
    assert json.loads(json.dumps(matches.to_dict()))["ids"] == ["x", "y"]
    with_inliers = Matches(matches.ids, matches.scores, np.array([30, 0]))
    assert with_inliers.to_dict()["inliers"] == [30, 0]
    assert Matches(np.array([]), np.array([], np.float32)).best is None


def test_geometry_prefers_the_same_product_over_another(demo):
    describer = BagOfVisualWords("rootsift", max_keypoints=500)
    photo, other = demo.data[0], demo.data[np.flatnonzero(demo.target == 5)[0]]
    keypoints = [Keypoints.from_pair(*pair) for pair in describer.describe([photo, other])]
    [turned] = describer.describe([_rotated_crop(photo)])
    query = Keypoints.from_pair(*turned)
    same, different = (count_inliers(query, candidate) for candidate in keypoints)
    assert same >= 20
    assert same > 3 * different


def test_quantised_descriptors_stay_close_and_small():
    rng = np.random.default_rng(0)
    descriptors = rng.random((100, 128)).astype(np.float32)
    keypoints = Keypoints.from_pair(rng.random((100, 2)).astype(np.float32), descriptors)
    np.testing.assert_allclose(keypoints.descriptors(), descriptors, atol=descriptors.max() / 255)
    assert keypoints.codes.dtype == np.uint8
    assert keypoints.nbytes == 100 * 128 + 100 * 2 * 4
    empty = Keypoints.from_pair(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    assert count_inliers(empty, keypoints) == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"block_weights": (1.0, -1.0)}, "block_weights must be two non-negative numbers"),
        ({"branch": "colour"}, "branch must be one of"),
        ({"rerank": "sift"}, "rerank must be one of"),
        ({"rerank_depth": 0}, "rerank_depth must be an int"),
        ({"search": "hnsw"}, "search must be one of"),
        ({"rerank": "ransac", "rerank_detector": "harris"}, "unknown detector 'harris'"),
        ({"n_probes": 0}, "n_probes must be an int"),
    ],
)
def test_bad_parameters_are_named_before_any_photo_is_read(params, message):
    with pytest.raises(ValueError, match=message):
        ProductIndex(**params).fit(["no-such-photo.jpg"])


@pytest.fixture(scope="module")
def ivf_index(catalogue, memory):
    """An inverted-file index searching only the nearest of its lists."""
    photos, ids, _ = catalogue
    return ProductIndex(search="ivf", n_probes=1, memory=memory, random_state=0).fit(photos, ids)


@needs_faiss
def test_inverted_file_finds_each_catalogue_photo_in_its_own_list(catalogue, ivf_index):
    photos, ids, _ = catalogue
    # about 4 sqrt(n) lists, but at least 39 items to learn each from: 140 // 39 = 3 lists
    assert len(ids) == 140
    assert len(ivf_index.centroids_) == 3
    results = ivf_index.query(photos, k=1)
    assert [matches.best for matches in results] == list(ids)


@needs_faiss
def test_inverted_file_probing_every_list_is_exact(catalogue, index, ivf_index):
    _, _, queries = catalogue
    everything = clone(ivf_index).set_params(n_probes=len(ivf_index.centroids_))
    everything.fit(*catalogue[:2])
    pairs = zip(index.query(queries, k=8), everything.query(queries, k=8), strict=True)
    for exact, probed in pairs:
        assert exact.ids.tolist() == probed.ids.tolist()
        np.testing.assert_allclose(exact.scores, probed.scores, atol=1e-5)


@needs_faiss
def test_inverted_file_follows_add_and_remove_and_pickling(catalogue, memory, tmp_path):
    photos, ids, _ = catalogue
    grown = ProductIndex(search="ivf", n_probes=1, memory=memory, random_state=0)
    grown.fit(photos[10:], ids[10:]).query(photos[:1])  # files the lists
    grown.add(photos[:10], ids[:10])
    assert [m.best for m in grown.query(photos[:10], k=1)] == list(ids[:10])
    grown.remove([ids[0]])
    assert ids[0] not in grown.query(photos[:1], k=3)[0].ids.tolist()
    joblib.dump(grown, tmp_path / "ivf.joblib")
    loaded = joblib.load(tmp_path / "ivf.joblib")
    for old, new in zip(grown.query(photos[:6], k=4), loaded.query(photos[:6], k=4), strict=True):
        assert old.ids.tolist() == new.ids.tolist()


@needs_faiss
def test_search_can_switch_to_the_inverted_file_after_fit(catalogue, memory):
    photos, ids, _ = catalogue
    switched = ProductIndex(memory=memory).fit(photos, ids).set_params(search="ivf", n_probes=1)
    assert [matches.best for matches in switched.query(photos[:3], k=1)] == list(ids[:3])
    assert len(switched.centroids_) == 3  # as many lists as a fit with search="ivf" learns


def test_inverted_file_without_faiss_says_how_to_install_it(catalogue, monkeypatch):
    monkeypatch.setattr("fusionrec.search.inverted_file.faiss_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install 'fusionrec\[ann\]'"):
        ProductIndex(search="ivf").fit(catalogue[0][:2])
