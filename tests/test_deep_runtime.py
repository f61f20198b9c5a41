"""ONNX exports kept in the user's cache folder, and int8 networks calibrated on the fit photos."""

import pickle

import numpy as np
import onnx
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from fusionrec import CNNEmbedder
from fusionrec.deep import runtime
from fusionrec.images import load_image


@pytest.fixture(scope="module")
def photos(demo):
    return demo.data[::10]


@pytest.fixture(scope="module")
def float32(photos):
    return CNNEmbedder().fit(photos)


@pytest.fixture(scope="module")
def int8(photos):
    return CNNEmbedder(precision="int8").fit(photos)


def tiny_network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_an_export_is_kept_and_read_back_instead_of_exporting_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSIONREC_CACHE", str(tmp_path))
    head = tiny_network()
    exported = runtime.exported_model(head, 32)
    assert [path.parent.name for path in tmp_path.rglob("*.onnx")] == ["onnx"]

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(runtime, "export_onnx", no_export)
    assert runtime.exported_model(head, 32) == exported
    with pytest.raises(AssertionError, match="exported again"):
        runtime.exported_model(head, 48)  # another input size is another network
    changed = tiny_network()
    with torch.no_grad():
        changed[0].weight.add_(1)
    with pytest.raises(AssertionError, match="exported again"):
        runtime.exported_model(changed, 32)  # other weights are another network


def test_an_unwritable_cache_folder_still_gives_the_export(tmp_path, monkeypatch):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("FUSIONREC_CACHE", str(not_a_folder))
    assert onnx.load_from_string(runtime.exported_model(tiny_network(), 32)).graph.node


def changed_in_place(network):
    with torch.no_grad():
        network[0].weight[0, 0, 0, 0] += 1


def weights_replaced(network):
    network[0].weight.data = torch.zeros_like(network[0].weight)


def statistics_updated(network):
    network.train()
    network(torch.rand(2, 3, 8, 8))


@pytest.mark.parametrize("change", [changed_in_place, weights_replaced, statistics_updated])
def test_a_remembered_fingerprint_follows_every_change_to_the_network(change):
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    before = runtime.fingerprint(network, 8)
    assert runtime.fingerprint(network, 8) == before
    change(network)
    after = runtime.fingerprint(network, 8)
    assert after != before
    assert after == runtime.fingerprint(copy_of(network), 8)


def copy_of(network):
    copy = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())
    copy.load_state_dict(network.state_dict())
    return copy.train(network.training)


def test_int8_embeddings_point_the_same_way_as_float32_ones(float32, int8, photos):
    exact, quantised = float32.transform(photos), int8.transform(photos)
    cosine = np.sum(exact * quantised, axis=1) / (
        np.linalg.norm(exact, axis=1) * np.linalg.norm(quantised, axis=1)
    )
    assert cosine.min() > 0.95
    assert np.abs(exact - quantised).max() > 1e-3  # really another network


def test_int8_network_stores_its_weights_in_a_quarter_of_the_bytes(float32, int8):
    exported = runtime.exported_model(float32.embedding_module(), 224)
    assert len(int8.int8_network_) < 0.35 * len(exported)


def test_int8_calibrates_on_64_evenly_spaced_fit_photos(demo, monkeypatch):
    seen = []

    def record(model, batches):
        seen.extend(batches)
        return model

    monkeypatch.setattr("fusionrec.deep.embedder.quantize_int8", record)
    embedder = CNNEmbedder(precision="int8", batch_size=16).fit(demo.data)
    assert [len(batch) for batch in seen] == [16, 16, 16, 16]
    rows = np.concatenate(seen)
    prepared = embedder.preprocessing_
    for row, photo in ((0, 0), (1, 2), (63, 149)):  # linspace(0, 149, 64), rounded
        expected = prepared(load_image(demo.data[photo], min_side=prepared.resize))
        np.testing.assert_array_equal(rows[row], expected)


def test_int8_and_float32_embeddings_have_different_cache_keys(float32, int8):
    assert float32.feature_key() != int8.feature_key()


def test_an_int8_embedder_pickles_with_its_network(int8, photos):
    restored = pickle.loads(pickle.dumps(int8))
    np.testing.assert_array_equal(restored.transform(photos[:3]), int8.transform(photos[:3]))


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"runtime": "torch"}, "runtime='torch'"), ({"device": "cuda"}, "device='cuda'")],
)
def test_int8_refuses_settings_it_cannot_run_on(photos, setting, message):
    with pytest.raises(ValueError, match=message):
        CNNEmbedder(precision="int8", **setting).fit(photos)


def test_switching_to_int8_after_fit_asks_to_fit_again(float32, photos):
    switched = clone(float32).fit(photos[:1]).set_params(precision="int8")
    with pytest.raises(NotFittedError, match="fit again"):
        switched.transform(photos[:1])
