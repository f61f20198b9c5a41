"""CNNEmbedder: bundled weights load correctly, and the estimator keeps its contract."""

import joblib
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from fusionrec import CNNEmbedder
from fusionrec.deep import BUNDLED, Backbone, Preprocessing, build_backbone, register_backbone
from fusionrec.deep.backbones import _BUILDERS, DEFAULT_PREPROCESSING
from fusionrec.deep.runtime import OnnxEmbedding, onnxruntime_available
from fusionrec.deep.weights import load_state_dict, map_by_position
from fusionrec.images import ImageReadError, UnreadableImageWarning, load_image, unreadable_rows

# Demo products and the ImageNet class they are: "Granny Smith", and "packet" (a milk carton).
IMAGENET_CLASS = {"Granny-Smith": 948, "Arla-Standard-Milk": 692}
needs_onnxruntime = pytest.mark.skipif(
    not onnxruntime_available(),
    reason="needs onnxruntime, onnx and onnxscript: pip install 'fusionrec[onnx]'",
)


@pytest.fixture(scope="module")
def embedder(demo):
    return CNNEmbedder(device="cpu").fit(demo.data[:1])


@pytest.fixture(scope="module")
def photos(demo):
    return demo.data[::15]  # one photo per product


@pytest.fixture(scope="module")
def lite0_classifier():
    spec = BUNDLED["efficientnet_lite0"]
    network = timm.create_model(spec.architecture, pretrained=False)
    network.load_state_dict(map_by_position(load_state_dict(spec.path()), network.state_dict()))
    return network.eval()


def test_bundled_weights_recognise_imagenet_classes(demo, lite0_classifier):
    """30 demo photos of two ImageNet classes, among 1,000 (chance: 1 in 1,000 for top-1).

    Weights loaded wrongly (mapped to the wrong tensors, or fed the wrong mean and std)
    recognise almost none; the bundled ones must recognise most, and nearly all in the top 5.
    """
    prepare = BUNDLED["efficientnet_lite0"].preprocessing
    top1_hits = top5_hits = photos = 0
    for product, imagenet_class in IMAGENET_CLASS.items():
        paths = demo.data[demo.target == demo.target_names.index(product)]
        batch = torch.from_numpy(np.stack([prepare(load_image(p)) for p in paths]))
        with torch.inference_mode():
            top5 = lite0_classifier(batch).topk(5, dim=1).indices.numpy()
        top1_hits += int((top5[:, 0] == imagenet_class).sum())
        top5_hits += int((top5 == imagenet_class).any(axis=1).sum())
        photos += len(paths)
    assert top1_hits > photos / 2
    assert top5_hits >= 0.9 * photos


def test_embedding_is_the_classifier_input(embedder, photos, lite0_classifier):
    prepare = embedder.preprocessing_
    batch = torch.from_numpy(np.stack([prepare(load_image(p)) for p in photos[:3]]))
    with torch.inference_mode():
        expected = lite0_classifier.forward_head(
            lite0_classifier.forward_features(batch), pre_logits=True
        )
    np.testing.assert_allclose(embedder.transform(photos[:3]), expected.numpy(), atol=1e-4)


def test_position_mapping_refuses_weights_that_do_not_fit():
    source = {"a.weight": torch.zeros(3, 2), "a.bias": torch.zeros(3)}
    with pytest.raises(ValueError, match="do not fit"):
        map_by_position(source, {"x.weight": torch.zeros(3, 2), "x.running_mean": torch.zeros(3)})
    with pytest.raises(ValueError, match="2 tensors; the model expects 1"):
        map_by_position(source, {"x.weight": torch.zeros(3, 2)})


def test_default_output(embedder, photos):
    features = embedder.transform(photos)
    assert features.shape == (10, 1280)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert embedder.preprocessing_.mean == (0.5, 0.5, 0.5)
    assert embedder.get_feature_names_out()[0] == "efficientnet_lite0_0"


def test_same_output_across_runs_and_batch_sizes(embedder, photos):
    first = embedder.transform(photos)
    np.testing.assert_array_equal(embedder.transform(photos), first)
    small_batches = clone(embedder).set_params(batch_size=3, n_threads=2).fit(photos)
    np.testing.assert_allclose(small_batches.transform(photos), first, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("runtime", ["torch", pytest.param("onnxruntime", marks=needs_onnxruntime)])
def test_normalize_gives_unit_rows(photos, runtime):
    features = CNNEmbedder(normalize=True, runtime=runtime).fit(photos).transform(photos[:2])
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


@pytest.fixture
def onnxruntime_batches(monkeypatch):
    """From now on: how many batches ONNX Runtime embedded."""
    batches = []
    run = OnnxEmbedding.__call__

    def counting_run(self, batch):
        batches.append(len(batch))
        return run(self, batch)

    monkeypatch.setattr(OnnxEmbedding, "__call__", counting_run)
    return batches


@needs_onnxruntime
def test_onnxruntime_matches_eager_pytorch(embedder, photos, onnxruntime_batches):
    eager = clone(embedder).set_params(runtime="torch").fit(photos).transform(photos)
    assert onnxruntime_batches == []
    fast = clone(embedder).set_params(runtime="onnxruntime").fit(photos).transform(photos)
    assert sum(onnxruntime_batches) == len(photos)  # every photo went through ONNX Runtime
    np.testing.assert_allclose(fast, eager, atol=1e-4)


@pytest.mark.parametrize("installed", [True, False])
def test_auto_runtime_uses_onnxruntime_on_the_cpu_when_installed(monkeypatch, installed):
    monkeypatch.setattr("fusionrec.deep.embedder.onnxruntime_available", lambda: installed)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert CNNEmbedder()._uses_onnxruntime(cpu) is installed
    assert CNNEmbedder(layer=["blocks.5", "blocks.6"])._uses_onnxruntime(cpu) is installed
    assert not CNNEmbedder()._uses_onnxruntime(gpu)
    assert not CNNEmbedder(runtime="torch")._uses_onnxruntime(cpu)
    if installed:
        assert CNNEmbedder(runtime="onnxruntime")._uses_onnxruntime(cpu)
        with pytest.raises(ValueError, match="CPU only"):
            CNNEmbedder(runtime="onnxruntime")._uses_onnxruntime(gpu)
    else:
        with pytest.raises(
            ImportError, match="which fusionrec installs: pip install onnxruntime onnx onnxscript"
        ):
            CNNEmbedder(runtime="onnxruntime")._uses_onnxruntime(cpu)


def test_joblib_round_trip(embedder, photos, tmp_path):
    joblib.dump(embedder, tmp_path / "embedder.joblib")
    restored = joblib.load(tmp_path / "embedder.joblib")
    np.testing.assert_array_equal(restored.transform(photos[:2]), embedder.transform(photos[:2]))


def test_layer_picks_an_inner_feature_map(photos):
    embedder = CNNEmbedder(layer="blocks.5").fit(photos)
    assert embedder.transform(photos[:2]).shape == (2, embedder.n_features_out_)
    assert embedder.n_features_out_ == 192
    with pytest.raises(ValueError, match="not a module of this network"):
        CNNEmbedder(layer="no.such.layer").fit(photos)


LAYERS = ["blocks.5", "blocks.6", "global_pool"]


@pytest.fixture(scope="module")
def layered(photos):
    return CNNEmbedder(layer=LAYERS, runtime="torch").fit(photos)


def test_layer_list_concatenates_unit_blocks_in_order(layered, photos):
    features = layered.transform(photos[:3])
    assert layered.blocks_ == [("blocks.5", 192), ("blocks.6", 320), ("global_pool", 1280)]
    assert features.shape == (3, 1792)
    blocks = np.split(features, [192, 512], axis=1)
    for block in blocks:
        np.testing.assert_allclose(np.linalg.norm(block, axis=1), 1.0, rtol=1e-5)
    single = CNNEmbedder(layer="blocks.6", runtime="torch").fit(photos).transform(photos[:3])
    unit = single / np.linalg.norm(single, axis=1, keepdims=True)
    np.testing.assert_allclose(blocks[1], unit, atol=1e-5)
    names = layered.get_feature_names_out()
    assert list(names[[0, 191, 192, 512, 1791]]) == [
        "efficientnet_lite0_blocks.5_0",
        "efficientnet_lite0_blocks.5_191",
        "efficientnet_lite0_blocks.6_0",
        "efficientnet_lite0_global_pool_0",
        "efficientnet_lite0_global_pool_1279",
    ]


def test_layer_list_order_is_kept(layered, photos):
    reordered = clone(layered).set_params(layer=LAYERS[::-1]).fit(photos)
    assert [name for name, _ in reordered.blocks_] == LAYERS[::-1]
    np.testing.assert_allclose(
        reordered.transform(photos[:2])[:, :1280], layered.transform(photos[:2])[:, 512:], atol=1e-5
    )


def test_layer_list_with_normalize_gives_unit_rows(photos):
    embedder = CNNEmbedder(layer=("blocks.5", "blocks.6"), normalize=True, runtime="torch")
    features = embedder.fit(photos).transform(photos[:2])
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


@needs_onnxruntime
def test_onnxruntime_matches_eager_pytorch_for_a_layer_list(layered, photos):
    fast = clone(layered).set_params(runtime="onnxruntime").fit(photos)
    eager = layered.transform(photos)
    np.testing.assert_allclose(fast.transform(photos), eager, atol=1e-4)
    single = CNNEmbedder(layer="blocks.5", runtime="onnxruntime").fit(photos).transform(photos)
    np.testing.assert_allclose(
        single / np.linalg.norm(single, axis=1, keepdims=True), eager[:, :192], atol=1e-4
    )


@pytest.mark.parametrize(
    ("layer", "fragment"),
    [
        (["blocks.5", "no.such.layer"], "'no.such.layer' is not a module"),
        ([], "at least one module"),
        (["blocks.5", "blocks.5"], "more than once"),
        (["blocks.5", 3], "module names"),
        (5, "layer must be None or a module name"),
    ],
)
def test_bad_layer_lists_are_named(photos, layer, fragment):
    with pytest.raises(ValueError, match=fragment):
        CNNEmbedder(layer=layer).fit(photos)


def test_crop_fraction_changes_only_the_resize(photos):
    own = BUNDLED["efficientnet_lite0"].preprocessing
    tighter = CNNEmbedder(crop_fraction=0.75).fit(photos).preprocessing_
    assert tighter == Preprocessing(
        resize=299, crop=224, mean=own.mean, std=own.std, interpolation=own.interpolation
    )
    assert CNNEmbedder(crop_fraction=1).fit(photos).preprocessing_.resize == 224
    assert CNNEmbedder(crop_fraction=None).fit(photos).preprocessing_ == own


def test_crop_fraction_keeps_that_share_of_the_shorter_side():
    rgb = np.zeros((200, 300, 3), dtype=np.uint8)
    rgb[50:150, 100:200] = 255  # a white square, half the shorter side, in the centre
    prepare = Preprocessing(resize=40, crop=32, mean=(0.0,) * 3, std=(1.0,) * 3)
    half = prepare.with_crop_fraction(0.5)(rgb)
    assert half[:, 1:-1, 1:-1].min() > 0.99  # only the white square (edges blurred by resampling)
    whole = prepare.with_crop_fraction(1.0)(rgb)
    assert whole[:, :4, :4].max() < 0.01  # the black surround is in the crop
    assert prepare.with_crop_fraction(0.5).resize == 64


def test_crop_fraction_applies_to_an_own_preprocessing(photos):
    prepare = Preprocessing(resize=40, crop=32, mean=(0.1,) * 3, std=(0.2,) * 3)
    embedder = CNNEmbedder(TinyNet(), preprocessing=prepare, crop_fraction=0.5).fit(photos)
    assert embedder.preprocessing_ == Preprocessing(
        resize=64, crop=32, mean=(0.1,) * 3, std=(0.2,) * 3
    )
    assert embedder.transform(photos[:2]).shape == (2, 4)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_own_module_with_own_preprocessing_and_local_weights(photos, tmp_path):
    torch.manual_seed(0)
    net = TinyNet()
    prepare = Preprocessing(resize=40, crop=32)
    embedder = CNNEmbedder(net, preprocessing=prepare).fit(photos)
    assert embedder.transform(photos[:2]).shape == (2, 4)
    assert embedder.network_ is not net
    torch.save(net.state_dict(), tmp_path / "tiny.pth")
    reloaded = CNNEmbedder(TinyNet(), weights=tmp_path / "tiny.pth", preprocessing=prepare)
    np.testing.assert_allclose(
        reloaded.fit(photos).transform(photos[:2]), embedder.transform(photos[:2]), atol=1e-6
    )


def test_random_weights_are_seeded(photos):
    def embed(seed):
        embedder = CNNEmbedder(weights=None, runtime="torch", random_state=seed)
        return embedder.fit(photos).transform(photos[:2])

    np.testing.assert_array_equal(embed(1), embed(1))
    assert not np.allclose(embed(1), embed(2))
    np.testing.assert_array_equal(embed(np.random.RandomState(5)), embed(np.random.RandomState(5)))


def test_random_weights_without_a_seed_differ_between_fits(photos):
    """``random_state=None`` means unseeded, as in scikit-learn (it used to mean 0)."""

    def embed():
        embedder = CNNEmbedder(weights=None, runtime="torch", random_state=None)
        return embedder.fit(photos).transform(photos[:2])

    assert not np.allclose(embed(), embed())


def test_torchvision_model_by_name_without_download(photos):
    embedder = CNNEmbedder("resnet18", weights=None, runtime="torch", random_state=0).fit(photos)
    assert embedder.transform(photos[:2]).shape == (2, 512)
    assert embedder.preprocessing_.crop == 224


def test_torchvision_weights_are_a_clear_error_offline(photos, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(RuntimeError, match="without internet, use backbone='efficientnet_lite0'"):
        CNNEmbedder("resnet18").fit(photos)


def test_torchvision_weight_names_are_checked(photos):
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET9K'"):
        build_backbone("resnet18", "IMAGENET9K")


def test_unknown_backbone_is_named(photos):
    with pytest.raises(ValueError, match="unknown backbone 'efficientnet_lite9'"):
        CNNEmbedder("efficientnet_lite9").fit(photos)


def test_missing_weights_file_is_named(photos, tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights file"):
        CNNEmbedder(weights=tmp_path / "missing.pth").fit(photos)


@pytest.mark.parametrize("on_error", ["skip", "warn"])
def test_dropped_photo_leaves_a_nan_row(embedder, photos, on_error):
    tolerant = clone(embedder).set_params(on_error=on_error, batch_size=2).fit(photos)
    X = [photos[0], "missing.jpg", photos[1], b"not an image"]
    if on_error == "warn":
        with pytest.warns(UnreadableImageWarning, match="dropped 2"):
            features = tolerant.transform(X)
    else:
        features = tolerant.transform(X)
    np.testing.assert_array_equal(unreadable_rows(features), [1, 3])
    np.testing.assert_allclose(features[[0, 2]], embedder.transform(photos[:2]), atol=1e-5)


def test_unreadable_photo_raises_with_its_position(embedder, photos):
    with pytest.raises(ImageReadError, match="at position 2"):
        embedder.transform([photos[0], photos[1], "missing.jpg"])


def test_a_pickle_from_before_a_new_parameter_loads_with_its_default(embedder, photos):
    state = embedder.__getstate__()
    del state["warm_start"]
    loaded = CNNEmbedder.__new__(CNNEmbedder)
    loaded.__setstate__(state)
    assert loaded.get_params()["warm_start"] is False
    np.testing.assert_array_equal(loaded.transform(photos[:2]), embedder.transform(photos[:2]))


class ClaimsItsDevice(TinyNet):
    """A network that says which device it was last moved to.

    There is no GPU here: it starts out claiming ``"cuda"``, as a network fitted on a GPU
    would be, and each move (``to``, ``cpu``, a parent's move) updates the claim.
    """

    def __init__(self):
        super().__init__()
        self.claimed_device = "cuda"

    def _apply(self, fn, recurse=True):
        moved = super()._apply(fn, recurse)
        self.claimed_device = fn(torch.zeros(1)).device.type
        return moved


def test_a_network_fitted_on_a_gpu_is_pickled_on_the_cpu_and_left_on_the_gpu(photos, tmp_path):
    prepare = Preprocessing(resize=40, crop=32)
    fitted = CNNEmbedder(ClaimsItsDevice(), preprocessing=prepare, runtime="torch").fit(photos)
    assert fitted.network_.claimed_device == "cuda"
    assert fitted.__getstate__()["network_"].claimed_device == "cpu"
    joblib.dump(fitted, tmp_path / "embedder.joblib")
    assert fitted.network_.claimed_device == "cuda"  # pickling moved a copy, not the model
    restored = joblib.load(tmp_path / "embedder.joblib")
    assert restored.network_.claimed_device == "cpu"
    np.testing.assert_allclose(
        restored.transform(photos[:2]), fitted.transform(photos[:2]), atol=1e-6
    )


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_device_auto_prefers_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected):
    from fusionrec.deep import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")


def test_transform_before_fit():
    with pytest.raises(NotFittedError):
        CNNEmbedder().transform(["x.jpg"])


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"batch_size": 0}, "batch_size must be"),
        ({"device": "tpu"}, "device must be one of"),
        ({"backbone": 42}, "backbone must be a model name"),
        ({"crop_fraction": 0}, r"crop_fraction must be None or a number in \(0.0, 1.0\]; got 0"),
        ({"crop_fraction": 1.5}, r"crop_fraction .* got 1.5"),
        ({"crop_fraction": "0.75"}, r"crop_fraction .* got '0.75'"),
        ({"crop_fraction": True}, r"crop_fraction .* got True"),
    ],
)
def test_bad_parameters_are_named(photos, params, fragment):
    with pytest.raises(ValueError, match=fragment):
        CNNEmbedder(**params).fit(photos)


def resized_then_cropped(rgb, size, crop):
    """Pillow's bicubic resize of the whole photo, then its centre crop, as uint8 grey levels."""
    image = Image.fromarray(rgb)
    scale = size / min(image.size)
    resized = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
    )
    left, top = (resized.width - crop) // 2, (resized.height - crop) // 2
    cropped = resized.crop((left, top, left + crop, top + crop))
    return np.asarray(cropped, dtype=np.float32).transpose(2, 0, 1)


def test_preprocessing_equals_resize_then_crop_to_within_rounding(demo):
    """Resampling only the cropped region gives what resizing, then cropping, gives.

    Both round to whole grey levels, so they may differ by a level here and there: on
    average by less than half a level, and most values not at all.
    """
    prepare = BUNDLED["efficientnet_lite0"].preprocessing
    assert (prepare.mean, prepare.std) == ((0.5,) * 3, (0.5,) * 3)
    for path in demo.data[::30]:
        rgb = load_image(path)[:, 20:]  # not square: 256 x 236, so the photo is resized
        grey_levels = (prepare(rgb) * 0.5 + 0.5) * 255
        difference = np.abs(grey_levels - resized_then_cropped(rgb, prepare.resize, prepare.crop))
        assert difference.mean() < 0.5
        assert (difference < 0.5).mean() > 0.5


def test_preprocessing_rejects_bad_settings():
    with pytest.raises(ValueError, match="interpolation must be one of"):
        Preprocessing(resize=256, crop=224, interpolation="lanczos")
    with pytest.raises(ValueError, match="crop <= resize"):
        Preprocessing(resize=200, crop=224)
    with pytest.raises(ValueError, match=r"crop fraction must be in \(0, 1\]; got 0"):
        Preprocessing(resize=256, crop=224).with_crop_fraction(0)


def test_the_bundled_weights_metadata_describes_the_network_built():
    meta = BUNDLED["efficientnet_lite0"]
    built = build_backbone("efficientnet_lite0")
    assert sum(p.numel() for p in built.network.parameters()) == meta.parameters
    crop = meta.preprocessing.crop
    with torch.inference_mode():
        width = built.network(torch.zeros(1, 3, crop, crop)).shape[1]
    assert width == meta.embedding_width
    assert built.preprocessing == meta.preprocessing


def test_a_registered_backbone_is_built_by_name(photos):
    def two_filters(weights):
        network = torch.nn.Sequential(
            torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
        )
        return Backbone(network, DEFAULT_PREPROCESSING, "two_filters")

    register_backbone("two_filters")(two_filters)
    try:
        with pytest.raises(ValueError, match="registered already"):
            register_backbone("two_filters")(two_filters)
        embedder = CNNEmbedder("two_filters", runtime="torch").fit(photos[:2])
        assert embedder.transform(photos[:2]).shape == (2, 2)
    finally:
        del _BUILDERS["two_filters"]
