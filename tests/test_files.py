"""fusionrec.save / fusionrec.load: every estimator answers identically after a round trip.

Hostile and damaged files are in tests/test_files_hostile.py.
"""

import json
import os
import warnings
import zipfile

import joblib
import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.svm import LinearSVC
from torch import nn

import fusionrec
from fusionrec import BagOfVisualWords, CNNEmbedder, FusedClassifier, FusedFeatures, ProductIndex
from fusionrec.deep import FineTuning, Preprocessing
from fusionrec.files import ModelFileError, convert, describe_file, load_file
from fusionrec.files.archive import ALIGNMENT, MAPPED_FROM_BYTES, ArchiveReader
from fusionrec.search import DeferredInvertedFile

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_LITE = Preprocessing(resize=112, crop=96, mean=(0.5,) * 3, std=(0.5,) * 3)
TINY_WORDS = {"n_words": 8, "max_side": 160, "max_descriptors": 3000, "random_state": 0}


@pytest.fixture(scope="module")
def photos(demo):
    return demo.data[::10]  # 15 photos, every product


@pytest.fixture(scope="module")
def queries(demo):
    return demo.data[3::25]


@pytest.fixture(scope="module")
def labels(demo):
    return np.asarray(demo.target_names, dtype=object)[demo.target[::10]]


@pytest.fixture(scope="module")
def labelled(demo):
    """Six photos each of three products, labelled by name."""
    chosen = np.concatenate([np.flatnonzero(demo.target == label)[:6] for label in (0, 3, 6)])
    return demo.data[chosen], np.asarray(demo.target_names, dtype=object)[demo.target[chosen]]


def round_trip(estimator, folder, **load_options):
    return fusionrec.load(fusionrec.save(estimator, folder / "saved.fusionrec"), **load_options)


@pytest.mark.parametrize(
    "params",
    [
        {"encoding": "bovw", "tfidf": True, "spatial_pyramid": True},
        {"encoding": "fisher", "pca_components": 16, "detector": "rootsift"},
        {"encoding": "vlad", "detector": "orb"},
    ],
    ids=["bovw-tfidf-pyramid", "fisher-pca", "vlad-orb"],
)
def test_bag_of_visual_words(params, photos, queries, tmp_path):
    words = BagOfVisualWords(**TINY_WORDS, **params).fit(photos)
    loaded = round_trip(words, tmp_path)
    assert loaded.get_params() == words.get_params()
    np.testing.assert_array_equal(loaded.transform(queries), words.transform(queries))
    assert loaded.n_descriptors_ == words.n_descriptors_


def test_unfitted_estimators_keep_their_parameters(tmp_path):
    model = FusedClassifier(
        "fused",
        fusion="late",
        traditional=BagOfVisualWords("orb", n_words=5),
        deep=CNNEmbedder("resnet18", weights="IMAGENET1K_V1", layer=["layer3", "layer4"]),
        classifier=LinearSVC(C=0.5, class_weight={0: 2.0, 1: 1.0}),
        memory=joblib.Memory(None, verbose=0),
        random_state=np.random.RandomState(3),
    )
    loaded = round_trip(model, tmp_path)
    params = loaded.get_params(deep=False)
    assert params.pop("random_state").randint(1000) == np.random.RandomState(3).randint(1000)
    expected = model.get_params(deep=False)
    del expected["random_state"]
    assert repr(params) == repr(expected)
    assert loaded.deep.layer == ["layer3", "layer4"]
    assert loaded.classifier.class_weight == {0: 2.0, 1: 1.0}


@pytest.fixture(scope="module")
def lite(photos):
    return CNNEmbedder(preprocessing=SMALL_LITE, runtime="torch").fit(photos[:1])


def test_bundled_network(lite, queries, tmp_path):
    loaded = round_trip(lite, tmp_path)
    np.testing.assert_array_equal(loaded.transform(queries), lite.transform(queries))
    assert loaded.feature_key() == lite.feature_key()
    assert loaded.preprocessing_ == lite.preprocessing_


def test_int8_network_is_stored_as_the_onnx_model_it_is(photos, queries, tmp_path):
    int8 = CNNEmbedder(preprocessing=SMALL_LITE, precision="int8").fit(photos)
    loaded = round_trip(int8, tmp_path)
    assert loaded.int8_network_ == int8.int8_network_
    np.testing.assert_array_equal(loaded.transform(queries), int8.transform(queries))
    assert loaded.feature_key() == int8.feature_key()


def test_torchvision_network(photos, queries, tmp_path):
    embedder = CNNEmbedder(
        "mobilenet_v3_small",
        weights=None,
        preprocessing=SMALL_LITE,
        runtime="torch",
        random_state=0,
    ).fit(photos[:1])
    loaded = round_trip(embedder, tmp_path)
    np.testing.assert_array_equal(loaded.transform(queries), embedder.transform(queries))


def test_network_from_a_local_weights_file_needs_the_file_no_more(photos, queries, tmp_path):
    weights = tmp_path / "small.pt"
    torch.manual_seed(1)
    torch.save(
        CNNEmbedder("small_cnn", weights=None).fit(photos[:1]).network_.state_dict(), weights
    )
    embedder = CNNEmbedder("small_cnn", weights=str(weights), runtime="torch").fit(photos[:1])
    path = fusionrec.save(embedder, tmp_path / "small.fusionrec")
    weights.unlink()
    loaded = fusionrec.load(path)
    assert loaded.weights == str(weights)
    np.testing.assert_array_equal(loaded.transform(queries), embedder.transform(queries))


@pytest.fixture(scope="module")
def tuned(photos, labels):
    settings = FineTuning(
        epochs=1, trainable_blocks=1, batch_size=8, validation_fraction=0, patience=None
    )
    embedder = CNNEmbedder(
        preprocessing=SMALL_LITE, runtime="torch", random_state=0, fine_tune=settings
    )
    return embedder.fit(photos, labels)


def test_fine_tuned_network_and_its_head(tuned, lite, queries, tmp_path):
    loaded = round_trip(tuned, tmp_path)
    np.testing.assert_array_equal(loaded.transform(queries), tuned.transform(queries))
    assert not np.array_equal(loaded.transform(queries), lite.transform(queries))
    assert list(loaded.classes_) == list(tuned.classes_)
    assert loaded.fine_tune == tuned.fine_tune
    assert loaded.fine_tuning_history_ == tuned.fine_tuning_history_
    for name, tensor in tuned.fine_tuning_head_.state_dict().items():
        assert torch.equal(loaded.fine_tuning_head_.state_dict()[name], tensor)
    assert loaded.fine_tuning_head_[0].p == tuned.fine_tuning_head_[0].p


def test_a_loaded_tuned_network_keeps_training(tuned, photos, labels, tmp_path):
    loaded = round_trip(tuned, tmp_path).set_params(warm_start=True)
    before = loaded.fine_tuning_head_[1].weight.detach().clone()
    loaded.fit(photos, labels)
    assert loaded.fine_tuning_head_[1].weight.shape == before.shape
    assert not torch.equal(loaded.fine_tuning_head_[1].weight, before)


def test_model_fitted_for_a_gpu_opens_on_a_machine_without_one(
    photos, queries, tmp_path, monkeypatch
):
    """Fitting reads no photo on the device, so a "cuda" model fits anywhere; loading it
    where CUDA is missing (as here, simulated) runs it on "auto" and says so."""
    embedder = CNNEmbedder("small_cnn", weights=None, device="cuda", random_state=0)
    embedder.set_params(runtime="torch").fit(photos[:1])
    expected = embedder.set_params(device="cpu").transform(queries)
    path = fusionrec.save(embedder.set_params(device="cuda"), tmp_path / "gpu.fusionrec")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match=r"device='cuda', which this machine lacks"):
        loaded = fusionrec.load(path)
    assert loaded.device == "auto"
    np.testing.assert_array_equal(loaded.transform(queries), expected)


class TinyNet(nn.Module):
    """A network of the user's own class."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)

    def forward(self, inputs):
        return self.conv(inputs)


def test_own_module_needs_its_class_passed_back(photos, queries, tmp_path):
    torch.manual_seed(0)
    embedder = CNNEmbedder(
        TinyNet(), preprocessing=Preprocessing(resize=40, crop=32), runtime="torch"
    ).fit(photos[:1])
    path = fusionrec.save(embedder, tmp_path / "own.fusionrec")
    with pytest.raises(ModelFileError, match=r"your own class 'TinyNet'.*modules=\{'TinyNet'"):
        fusionrec.load(path)
    with pytest.raises(ModelFileError, match="your own class 'TinyNet'"):
        fusionrec.load(path, modules={"TinyNet": nn.Linear(2, 2)})
    loaded = fusionrec.load(path, modules={"TinyNet": TinyNet()})
    np.testing.assert_array_equal(loaded.transform(queries), embedder.transform(queries))
    assert isinstance(loaded.backbone, TinyNet)
    assert torch.equal(loaded.backbone.conv.weight, embedder.backbone.conv.weight)


def test_fused_features_with_a_frozen_branch(lite, photos, queries, tmp_path):
    features = FusedFeatures(
        BagOfVisualWords(**TINY_WORDS), deep=FrozenEstimator(lite), block_weights=(0.7, 1.0)
    ).fit(photos)
    loaded = round_trip(features, tmp_path)
    np.testing.assert_array_equal(loaded.transform(queries), features.transform(queries))
    branch = loaded.branches_["deep"]
    assert branch.frozen
    assert branch.extractor is branch.fitted_  # shared, as before saving
    assert list(loaded.get_feature_names_out()) == list(features.get_feature_names_out())


@pytest.mark.parametrize(
    ("fusion", "classifier"),
    [("early", None), ("late", None), ("late", LinearSVC(C=0.5))],
    ids=["early", "late", "late-calibrated-svc"],
)
def test_fused_classifier(fusion, classifier, lite, labelled, queries, tmp_path):
    photos, labels = labelled
    model = FusedClassifier(
        fusion=fusion,
        traditional=BagOfVisualWords(**TINY_WORDS),
        deep=FrozenEstimator(lite),
        classifier=classifier,
        random_state=0,
    ).fit(photos, labels)
    loaded = round_trip(model, tmp_path)
    np.testing.assert_array_equal(loaded.predict_proba(queries), model.predict_proba(queries))
    np.testing.assert_array_equal(loaded.predict(queries), model.predict(queries))
    assert list(loaded.classes_) == list(model.classes_)
    if fusion == "early":
        np.testing.assert_array_equal(
            loaded.decision_function(queries), model.decision_function(queries)
        )
    else:
        assert loaded.late_weight_ == model.late_weight_


def test_classifier_on_integer_labels_and_a_skipped_photo(demo, lite, tmp_path):
    photos = [*demo.data[:12:2], "missing.jpg", *demo.data[15:27:2]]
    labels = [*demo.target[:12:2], 0, *demo.target[15:27:2]]
    model = FusedClassifier("deep", deep=FrozenEstimator(lite), on_error="skip")
    model.fit(photos, labels)
    loaded = round_trip(model, tmp_path)
    assert loaded.dropped_indices_.tolist() == [6]
    np.testing.assert_array_equal(loaded.predict(demo.data[1::30]), model.predict(demo.data[1::30]))
    assert loaded.classes_.dtype == model.classes_.dtype


def same_matches(loaded, index, queries, k=4):
    for got, expected in zip(loaded.query(queries, k=k), index.query(queries, k=k), strict=True):
        assert got.ids.tolist() == expected.ids.tolist()
        np.testing.assert_array_equal(got.scores, expected.scores)
        if expected.inliers is None:
            assert got.inliers is None
        else:
            np.testing.assert_array_equal(got.inliers, expected.inliers)


@pytest.fixture(scope="module")
def catalogue(demo):
    photos = demo.data[1::3]
    return photos, [f"sku-{i}" for i in range(len(photos))]


def test_index_with_keypoints_for_reranking(lite, catalogue, queries, tmp_path):
    photos, ids = catalogue
    index = ProductIndex(deep=FrozenEstimator(lite), rerank="ransac", rerank_depth=5)
    index.fit(photos, ids)
    loaded = round_trip(index, tmp_path)
    same_matches(loaded, index, queries)
    assert [len(item) for item in loaded.keypoints_] == [len(item) for item in index.keypoints_]


def test_index_with_an_inverted_file_reads_it_only_when_searched(
    lite, catalogue, queries, tmp_path
):
    photos, ids = catalogue
    index = ProductIndex(deep=FrozenEstimator(lite), search="ivf", random_state=0).fit(photos, ids)
    loaded = round_trip(index, tmp_path)
    assert isinstance(loaded._inverted_file, DeferredInvertedFile)
    assert loaded._inverted_file.loaded is None
    np.testing.assert_array_equal(loaded.centroids_, index.centroids_)
    same_matches(loaded, index, queries)
    assert len(loaded._inverted_file.loaded) == len(ids)


def test_a_large_index_is_memory_mapped_and_still_changes(lite, catalogue, queries, tmp_path):
    photos, ids = catalogue
    index = ProductIndex(deep=FrozenEstimator(lite)).fit(photos, ids)
    rows = MAPPED_FROM_BYTES // (4 * index.vectors_.shape[1]) + 1 - len(ids)
    padding = np.random.default_rng(0).standard_normal((rows, index.vectors_.shape[1]))
    padding /= np.linalg.norm(padding, axis=1, keepdims=True)
    index.vectors_ = np.vstack([index.vectors_, padding.astype(np.float32)])
    index.ids_ = np.concatenate([index.ids_, np.arange(rows, dtype=object)])
    loaded = round_trip(index, tmp_path)
    assert not loaded.vectors_.flags.owndata
    assert not loaded.vectors_.flags.writeable
    assert loaded.vectors_.ctypes.data % ALIGNMENT == 0
    same_matches(loaded, index, queries)
    assert loaded.ids_.dtype == object
    assert loaded.ids_.tolist() == index.ids_.tolist()
    loaded.remove(["sku-0", 3]).add(queries[:1], ids=["new"])
    assert loaded.query(queries[:1], k=1)[0].best == "new"
    assert len(loaded.ids_) == len(index.ids_) - 1


def test_saving_over_the_file_an_index_was_loaded_from(lite, catalogue, queries, tmp_path):
    photos, ids = catalogue
    index = ProductIndex(deep=FrozenEstimator(lite)).fit(photos, ids)
    path = fusionrec.save(index, tmp_path / "index.fusionrec")
    loaded = fusionrec.load(path)
    fusionrec.save(loaded.remove(["sku-1"]), path)
    again = fusionrec.load(path)
    assert "sku-1" not in again.ids_.tolist()
    same_matches(again, loaded, queries)


def test_about_facts_and_manifest(lite, tmp_path):
    path = fusionrec.save(lite, tmp_path / "lite.fusionrec", about={"photos": 1, "by": ["me"]})
    loaded = load_file(path)
    assert loaded.about == {"photos": 1, "by": ["me"]}
    assert loaded.manifest["estimator"]["params"]["backbone"] == "efficientnet_lite0"
    described = describe_file(path)
    assert described.class_name == "fusionrec.CNNEmbedder"
    assert described.kind == "model"
    assert described.fusionrec_version == fusionrec.__version__
    assert described.about == loaded.about
    assert sum(described.parts.values()) < path.stat().st_size


def test_entries_are_stored_and_aligned(tuned, tmp_path):
    archive = ArchiveReader(fusionrec.save(tuned, tmp_path / "tuned.fusionrec"))
    assert {name.split("/")[0] for name in archive.entries} >= {"manifest.json", "networks"}
    assert all(start % ALIGNMENT == 0 for start, _ in archive.entries.values())


class Unstorable:
    """Not a value a file can hold."""


def test_a_failed_save_leaves_the_old_file_and_no_partial_one(lite, tmp_path):
    path = fusionrec.save(lite, tmp_path / "model.fusionrec")
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"cannot store CNNEmbedder\.weights: a .*Unstorable"):
        fusionrec.save(CNNEmbedder(weights=Unstorable()), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.fusionrec"]


def test_a_pickle_opens_only_when_allowed(lite, queries, tmp_path):
    path = tmp_path / "lite.joblib"
    joblib.dump(lite, path)
    with pytest.raises(ModelFileError, match=r"is a pickle.*fusionrec convert .*allow_pickle=True"):
        fusionrec.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opened = fusionrec.load(path, allow_pickle=True)
    np.testing.assert_array_equal(opened.transform(queries), lite.transform(queries))
    converted = fusionrec.load(convert(path, tmp_path / "lite.fusionrec"))
    np.testing.assert_array_equal(converted.transform(queries), lite.transform(queries))
    with pytest.raises(ModelFileError, match="fusionrec file already"):
        convert(tmp_path / "lite.fusionrec", tmp_path / "again.fusionrec")


def test_only_estimators_are_saved(tmp_path):
    with pytest.raises(TypeError, match="got a dict"):
        fusionrec.save({"model": 1}, tmp_path / "x.fusionrec")
    assert not (tmp_path / "x.fusionrec").exists()


@pytest.mark.parametrize(
    "padding", [lambda i: f"look-alike-{i:0>300}", lambda i: 10**12 + i], ids=["str", "int"]
)
def test_ids_of_a_large_index_open_memory_mapped(lite, catalogue, queries, padding, tmp_path):
    photos, _ = catalogue
    first = [padding(-1 - i) for i in range(len(photos))]
    index = ProductIndex(deep=FrozenEstimator(lite)).fit(photos, first)
    rows = MAPPED_FROM_BYTES // index.ids_.dtype.itemsize + 1
    index.vectors_ = np.vstack([index.vectors_, np.zeros((rows, index.vectors_.shape[1]), "f4")])
    index.ids_ = np.concatenate([index.ids_, np.array([padding(i) for i in range(rows)])])
    path = fusionrec.save(index, tmp_path / "index.fusionrec")
    loaded = fusionrec.load(path)
    assert loaded.ids_.dtype == index.ids_.dtype
    assert not loaded.ids_.flags.owndata
    assert not loaded.ids_.flags.writeable
    same_matches(loaded, index, queries)
    [matches] = loaded.query(queries[:1], k=3)
    assert type(matches.best) is type(first[0])
    json.dumps(matches.to_dict() | {"best": matches.best, "first": matches.ids[0]})
    loaded.remove([first[0], padding(0)]).add(queries[:1], ids=[padding(rows)])
    assert loaded.query(queries[:1], k=1)[0].best == padding(rows)
    assert loaded.ids_.dtype == index.ids_.dtype
    assert fusionrec.load(path).ids_.tolist() == index.ids_.tolist()  # the file is unchanged


def test_an_index_file_of_format_1_with_ids_as_json_still_opens(lite, catalogue, queries, tmp_path):
    photos, ids = catalogue
    index = ProductIndex(deep=FrozenEstimator(lite)).fit(photos, ids)
    index.ids_ = index.ids_.astype(object)  # as format 1 held them: written as a JSON list
    path = fusionrec.save(index, tmp_path / "new.fusionrec")
    old = tmp_path / "old.fusionrec"
    with zipfile.ZipFile(path) as new, zipfile.ZipFile(old, "w") as written:
        for name in new.namelist():
            data = new.read(name)
            if name == "manifest.json":
                data = json.dumps(json.loads(data) | {"format_version": 1})
            written.writestr(name, data)
    assert any(name.startswith("labels/") for name in zipfile.ZipFile(old).namelist())
    assert describe_file(old).format_version == 1
    loaded = fusionrec.load(old)
    assert loaded.ids_.dtype.kind == "U"  # made compact on loading
    same_matches(loaded, index, queries)


@pytest.mark.parametrize("compression", ["float16", "pq"])
def test_a_compressed_index_answers_alike_after_loading_and_still_changes(
    lite, catalogue, queries, compression, tmp_path
):
    photos, ids = catalogue
    index = ProductIndex(
        deep=FrozenEstimator(lite), search="ivf", compression=compression, random_state=0
    ).fit(photos, ids)
    loaded = round_trip(index, tmp_path)
    assert loaded.vectors_.dtype == np.float16
    assert loaded.compression == compression
    same_matches(loaded, index, queries)
    assert loaded._inverted_file.compression == compression
    for changed in (index, loaded):
        changed.remove(ids[:2]).add(queries[:1], ids=["new"])
    same_matches(loaded, index, queries)
    assert loaded.query(queries[:1], k=1)[0].best == "new"
