"""The training engine: augmentation, the fine-tuning loop and the small CNN.

Runs use one torch thread: on a shared two-core machine, two intra-op
threads were up to ten times slower in measurement when the cores were busy.
"""

import copy

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.frozen import FrozenEstimator
from torch.nn import functional

from fusionrec import CNNEmbedder, FusedClassifier, ProductIndex
from fusionrec.deep import FineTuning, Preprocessing, build_backbone
from fusionrec.deep.augmentation import Augmentation
from fusionrec.deep.small_cnn import SmallCNN, build_small_cnn
from fusionrec.deep.training import fine_tune, network_units
from fusionrec.images import load_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_LITE = Preprocessing(resize=112, crop=96, mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.fixture(scope="module")
def gray_demo(demo):
    """The demo photos as 28 x 28 gray images, (150, 28, 28, 1) uint8, and their labels."""
    images = np.stack(
        [
            np.asarray(Image.fromarray(load_image(path)).convert("L").resize((28, 28)))
            for path in demo.data
        ]
    )
    return images[..., None], np.asarray(demo.target)


@pytest.fixture(scope="module")
def halves(demo):
    """Two thirds of the demo photos to train on, one third to validate on, all classes."""
    train = np.arange(len(demo.data)) % 3 != 0
    return (demo.data[train], demo.target[train]), (demo.data[~train], demo.target[~train])


def small_cnn_run(gray_demo, random_state=0, **settings):
    images, labels = gray_demo
    train = np.arange(len(labels)) % 3 != 0
    torch.manual_seed(0)
    network, preprocessing = build_small_cnn(None, width=16)
    defaults = {
        "epochs": 20,
        "trainable_blocks": "all",
        "learning_rate": 3e-3,
        "batch_size": 16,
        "validation_fraction": 0,
        "patience": None,
        "augmentation": Augmentation(scale=(0.7, 1.0)),
    }
    return fine_tune(
        network,
        preprocessing,
        images[train],
        labels[train],
        settings=FineTuning(**{**defaults, **settings}),
        validation=(images[~train], labels[~train]),
        device="cpu",
        random_state=random_state,
    )


@pytest.fixture(scope="module")
def small_cnn_result(gray_demo):
    return small_cnn_run(gray_demo)


# Augmentation


def test_augmentation_shape_dtype_and_normalisation():
    """A photo of one colour stays that colour, normalised with each channel's own mean and std."""
    prepare = Preprocessing(resize=112, crop=96, mean=(0.2, 0.4, 0.6), std=(0.5, 0.25, 0.125))
    photo = np.empty((120, 90, 3), dtype=np.uint8)
    photo[:] = (255, 0, 51)  # 1.0, 0.0 and 0.2 of full scale
    out = Augmentation(brightness=0, contrast=0)(photo, prepare, np.random.default_rng(1))
    assert out.shape == (3, 96, 96)
    assert out.dtype == torch.float32
    expected = [(1.0 - 0.2) / 0.5, (0.0 - 0.4) / 0.25, (0.2 - 0.6) / 0.125]  # 1.6, -1.6, -3.2
    for channel, value in zip(out, expected, strict=True):
        np.testing.assert_allclose(channel.numpy(), value, atol=1e-5)


def test_augmentation_is_reproducible_and_varies_with_the_seed(demo_photo):
    photo = load_image(demo_photo)
    augment = Augmentation()
    first = augment(photo, SMALL_LITE, np.random.default_rng(7))
    again = augment(photo, SMALL_LITE, np.random.default_rng(7))
    other = augment(photo, SMALL_LITE, np.random.default_rng(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=0.05)


def test_augmentation_takes_arrays_and_tensors_alike(demo_photo):
    photo = load_image(demo_photo)
    from_array = Augmentation()(photo, SMALL_LITE, np.random.default_rng(3))
    tensor = torch.from_numpy(photo.copy()).permute(2, 0, 1)
    assert torch.equal(from_array, Augmentation()(tensor, SMALL_LITE, np.random.default_rng(3)))


def test_augmentation_never_shifts_hue():
    """A red photo stays red: lighting changes act on all channels alike."""
    red = np.zeros((64, 64, 3), dtype=np.uint8)
    red[..., 0], red[..., 1:] = 200, 40
    augment = Augmentation(brightness=0.4, contrast=0.4)
    for seed in range(20):
        out = augment(red, SMALL_LITE, np.random.default_rng(seed))
        assert (out[0] > out[1]).all()
        assert torch.equal(out[1], out[2])


def test_crop_box_stays_inside_and_draws_its_area_and_ratio_from_their_ranges():
    augment = Augmentation(scale=(0.5, 0.9))  # ratio (3/4, 4/3)
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(200):
        top, left, height, width = augment.crop_box(200, 300, rng)
        assert 0 <= top <= top + height <= 200
        assert 0 <= left <= left + width <= 300
        areas.append(height * width / (200 * 300))
        assert 3 / 4 - 0.02 <= width / height <= 4 / 3 + 0.02  # sides are whole pixels
    assert 0.5 - 0.02 <= min(areas) < 0.55  # the whole range is drawn from
    assert 0.85 < max(areas) <= 0.9 + 0.02


def test_crop_box_falls_back_to_the_largest_centred_crop_when_no_draw_fits():
    """A 60 x 200 strip holds no crop of half its area with a ratio of at most 4/3."""
    augment = Augmentation(scale=(0.5, 0.9))
    rng = np.random.default_rng(0)
    boxes = {augment.crop_box(60, 200, rng) for _ in range(20)}
    assert boxes == {(0, 60, 60, 80)}  # 60 high, 60 * 4/3 wide, centred: (200 - 80) / 2 left


@pytest.mark.parametrize(
    "settings", [{"scale": (0.0, 1.0)}, {"ratio": (2.0, 1.0)}, {"brightness": 1.0}]
)
def test_augmentation_refuses_bad_settings(settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        Augmentation(**settings)


# Units and settings


def test_units_of_efficientnet_lite_are_its_stages():
    network = build_backbone("efficientnet_lite0").network
    units = network_units(network)
    assert units[0] == ("conv_stem", "bn1")
    assert units[1:8] == [(f"blocks.{i}",) for i in range(7)]
    assert units[-1] == ("conv_head", "bn2")


def test_units_of_a_torchvision_resnet_are_its_residual_blocks():
    network = build_backbone("resnet18", weights=None).network
    units = network_units(network)
    assert units[0] == ("conv1", "bn1")
    assert units[-2:] == [("layer4.0",), ("layer4.1",)]


@pytest.mark.parametrize(
    "settings",
    [
        {"epochs": 0},
        {"trainable_blocks": -1},
        {"trainable_blocks": "last"},
        {"validation_fraction": 1.0},
        {"schedule": "step"},
        {"batch_size": 1},
        {"learning_rate": 0},
    ],
)
def test_fine_tuning_refuses_bad_settings(settings):
    with pytest.raises(ValueError, match="FineTuning: " + next(iter(settings))):
        FineTuning(**settings)


# The loop, fine-tuning pretrained EfficientNet-Lite0 on small inputs


@pytest.fixture(scope="module")
def lite0():
    return build_backbone("efficientnet_lite0", preprocessing=SMALL_LITE)


@pytest.fixture(scope="module")
def lite0_result(lite0, halves):
    (images, labels), validation = halves
    settings = FineTuning(epochs=3, trainable_blocks=2, batch_size=20, patience=None)
    return fine_tune(
        lite0.network,
        SMALL_LITE,
        images,
        labels,
        settings=settings,
        validation=validation,
        device="cpu",
        random_state=0,
    )


def test_fine_tuning_lowers_the_loss_and_recognises_products(lite0_result):
    history = lite0_result.history
    assert len(history.epochs) == 3
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert max(record.val_accuracy for record in history.epochs) >= 0.7  # chance: 0.1
    assert history.trainable == ["blocks.6", "conv_head+bn2"]


def test_frozen_units_stay_unchanged_and_trainable_ones_learn(lite0, lite0_result):
    before = lite0.network.state_dict()
    after = lite0_result.network.state_dict()
    trained = ("blocks.6.", "conv_head.", "bn2.")
    for name, tensor in before.items():
        if name.startswith(trained):
            continue
        assert torch.equal(tensor, after[name]), name
    assert not torch.equal(before["conv_head.weight"], after["conv_head.weight"])
    assert not torch.equal(before["bn2.running_mean"], after["bn2.running_mean"])
    assert all(parameter.requires_grad for parameter in lite0.network.parameters())


def test_tuned_network_is_an_embedding_network(lite0_result):
    network = lite0_result.network
    assert not network.training
    with torch.inference_mode():
        assert network(torch.zeros(2, 3, 96, 96)).shape == (2, 1280)
    assert lite0_result.head[-1].out_features == 10


# The loop, training the small CNN from scratch


def test_small_cnn_learns_gray_thumbnails_from_scratch(small_cnn_result):
    history = small_cnn_result.history
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss - 0.4
    assert max(record.val_accuracy for record in history.epochs) >= 0.35  # chance: 0.1
    assert history.trainable == ["blocks.0", "blocks.1", "blocks.2"]


def test_same_random_state_gives_identical_weights(gray_demo, small_cnn_result):
    again = small_cnn_run(gray_demo, epochs=2, patience=None)
    once_more = small_cnn_run(gray_demo, epochs=2, patience=None)
    other = small_cnn_run(gray_demo, epochs=2, patience=None, random_state=1)
    for name, tensor in again.network.state_dict().items():
        assert torch.equal(tensor, once_more.network.state_dict()[name]), name
    assert not torch.equal(
        again.network.state_dict()["blocks.0.0.weight"],
        other.network.state_dict()["blocks.0.0.weight"],
    )


def test_early_stopping_keeps_the_best_epoch(gray_demo):
    result = small_cnn_run(gray_demo, epochs=15, patience=1, learning_rate=2e-2)
    history = result.history
    assert history.stopped_early
    assert len(history.epochs) == history.best_epoch + 2
    images, labels = gray_demo
    validation = np.arange(len(labels)) % 3 == 0
    _, preprocessing = build_small_cnn(None)
    inputs = torch.stack([torch.from_numpy(preprocessing(load_image(image))) for image in images])
    with torch.inference_mode():
        logits = result.head(result.network(inputs[validation]))
    loss = functional.cross_entropy(logits, torch.from_numpy(labels[validation])).item()
    assert loss == pytest.approx(history.epochs[history.best_epoch].val_loss, abs=1e-4)
    assert loss != pytest.approx(history.epochs[-1].val_loss, abs=1e-4)


def test_continuing_grows_the_head_for_new_classes(gray_demo, small_cnn_result):
    images, labels = gray_demo
    before = {
        name: tensor.clone() for name, tensor in small_cnn_result.network.state_dict().items()
    }
    shifted = np.where(labels == 9, 10, labels)  # a class the head has not seen
    settings = FineTuning(epochs=1, trainable_blocks=1, batch_size=16, validation_fraction=0)
    result = fine_tune(
        small_cnn_result.network,
        build_small_cnn(None)[1],
        images,
        shifted,
        settings=settings,
        head=small_cnn_result.head,
        device="cpu",
        random_state=0,
    )
    old, new = small_cnn_result.head[-1], result.head[-1]
    assert new.out_features == 11
    after = result.network.state_dict()
    assert torch.equal(before["blocks.0.0.weight"], after["blocks.0.0.weight"])  # frozen
    assert not torch.equal(before["blocks.2.0.weight"], after["blocks.2.0.weight"])  # trained
    assert not torch.equal(old.weight, new.weight[:10])
    for name, tensor in small_cnn_result.network.state_dict().items():  # the fixture is unchanged
        assert torch.equal(tensor, before[name]), name


def test_labels_must_be_class_indices(gray_demo):
    images, labels = gray_demo
    network = SmallCNN(width=4)
    _, preprocessing = build_small_cnn(None)
    with pytest.raises(ValueError, match="integer class indices"):
        fine_tune(network, preprocessing, images, labels.astype(str), device="cpu")


def test_stratified_split_needs_two_photos_per_class(gray_demo):
    images, labels = gray_demo
    network = SmallCNN(width=4)
    _, preprocessing = build_small_cnn(None)
    few = np.r_[0:10, 15]  # one photo of the second class
    with pytest.raises(ValueError, match="validation_fraction=0"):
        fine_tune(network, preprocessing, images[few], labels[few], device="cpu")


def test_small_cnn_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="weights=None"):
        build_small_cnn("default")


def test_small_cnn_is_a_backbone_name(gray_demo):
    built = build_backbone("small_cnn", weights=None, seed=0)
    assert isinstance(built.network, SmallCNN)
    assert built.preprocessing.crop == 28
    images, _ = gray_demo
    embedder = CNNEmbedder("small_cnn", weights=None, runtime="torch", device="cpu")
    assert embedder.fit(images[:3]).transform(images[:3]).shape == (3, 128)


def tuned_embedder(**params):
    settings = FineTuning(
        epochs=2, trainable_blocks=1, validation_fraction=0, patience=None, batch_size=16
    )
    return CNNEmbedder(
        preprocessing=SMALL_LITE, runtime="torch", random_state=0, fine_tune=settings, **params
    )


@pytest.fixture(scope="module")
def tuned(demo, halves):
    (photos, labels), _ = halves
    names = np.asarray(demo.target_names, dtype=object)[labels]
    return tuned_embedder().fit(photos, names)


def test_cnn_embedder_fine_tunes_on_the_labels_given_to_fit(demo, halves, tuned):
    _, (held_out, _) = halves
    assert list(tuned.classes_) == sorted(demo.target_names)
    assert len(tuned.fine_tuning_history_.epochs) == 2
    frozen = CNNEmbedder(preprocessing=SMALL_LITE, runtime="torch").fit(held_out)
    before, after = frozen.transform(held_out[:8]), tuned.transform(held_out[:8])
    assert after.shape == before.shape == (8, 1280)
    assert not np.allclose(before, after, atol=1e-3)


def test_a_fine_tuned_embedder_round_trips_through_joblib(halves, tuned, tmp_path):
    _, (held_out, _) = halves
    joblib.dump(tuned, tmp_path / "tuned.joblib")
    loaded = joblib.load(tmp_path / "tuned.joblib")
    np.testing.assert_array_equal(loaded.transform(held_out[:4]), tuned.transform(held_out[:4]))


def test_fine_tuning_needs_one_label_per_photo(demo):
    with pytest.raises(ValueError, match=r"call fit\(X, y\)"):
        tuned_embedder().fit(demo.data[:4])
    with pytest.raises(ValueError, match="got 3 labels for 4 photos"):
        tuned_embedder().fit(demo.data[:4], [0, 1, 2])


def test_fused_classifier_passes_labels_to_a_fine_tuned_deep_branch(demo, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    photos = [*demo.data[::5], str(broken)]
    labels = [*demo.target[::5], 0]
    model = FusedClassifier(branch="deep", deep=tuned_embedder(), on_error="skip").fit(
        photos, labels
    )
    deep = model.features_.fitted_extractor("deep")
    assert len(deep.fine_tuning_history_.epochs) == 2
    assert list(deep.classes_) == list(range(10))
    assert model.dropped_indices_.tolist() == [len(photos) - 1]


def test_a_fine_tuned_embedder_serves_product_search_unchanged(halves, tuned):
    (catalogue, _), (queries, _) = halves
    index = ProductIndex(deep=FrozenEstimator(tuned)).fit(catalogue)
    served = index.features_.fitted_extractor("deep")
    assert served is not tuned
    assert served.fine_tuning_history_ is not None
    expected = tuned.transform(queries[:3]) @ tuned.transform(catalogue).T
    expected /= np.linalg.norm(tuned.transform(queries[:3]), axis=1)[:, None]
    expected /= np.linalg.norm(tuned.transform(catalogue), axis=1)[None, :]
    for matches, row in zip(index.query(queries[:3], k=5), expected, strict=True):
        np.testing.assert_array_equal(matches.ids, np.argsort(-row, kind="stable")[:5])
        np.testing.assert_allclose(matches.scores, np.sort(row)[::-1][:5], atol=1e-5)


def test_a_frozen_fine_tuned_branch_is_not_tuned_again(demo, halves, tuned):
    (photos, labels), (held_out, _) = halves
    history = tuned.fine_tuning_history_
    model = FusedClassifier(branch="deep", deep=FrozenEstimator(tuned)).fit(photos, labels)
    deep = model.features_.fitted_extractor("deep")
    assert deep.fine_tuning_history_.epochs == history.epochs
    np.testing.assert_array_equal(deep.transform(held_out[:4]), tuned.transform(held_out[:4]))


def test_warm_start_continues_from_the_tuned_network_and_grows_the_head(demo, halves):
    (photos, labels), (held_out, _) = halves
    names = np.asarray(demo.target_names, dtype=object)[labels]
    first = names != demo.target_names[9]  # one product arrives later
    embedder = tuned_embedder(warm_start=True).fit(photos[first], names[first])
    tuned_rows = embedder.transform(held_out[:4])
    assert list(embedder.classes_) == sorted(set(names[first]))
    head_only = FineTuning(epochs=1, trainable_blocks=0, validation_fraction=0, batch_size=16)
    embedder.set_params(fine_tune=head_only).fit(photos, names)
    assert list(embedder.classes_) == [*sorted(set(names[first])), demo.target_names[9]]
    assert embedder.fine_tuning_head_[-1].out_features == 10
    assert len(embedder.fine_tuning_history_.epochs) == 1
    # only the head trained this time, so the network is still the first run's
    np.testing.assert_array_equal(embedder.transform(held_out[:4]), tuned_rows)


def test_warm_start_false_restarts_from_the_pretrained_network(demo, halves, tuned):
    (photos, labels), (held_out, _) = halves
    names = np.asarray(demo.target_names, dtype=object)[labels]
    embedder = copy.deepcopy(tuned)  # fine-tuned already, so it could continue: it must not
    pretrained = CNNEmbedder(preprocessing=SMALL_LITE, runtime="torch").fit(held_out)
    pretrained_rows = pretrained.transform(held_out[:4])
    assert not np.allclose(embedder.transform(held_out[:4]), pretrained_rows, atol=1e-3)
    head_only = FineTuning(epochs=1, trainable_blocks=0, validation_fraction=0, batch_size=16)
    embedder.set_params(warm_start=False, fine_tune=head_only).fit(photos, names)
    np.testing.assert_allclose(embedder.transform(held_out[:4]), pretrained_rows, atol=1e-5)


def test_warm_start_without_a_fitted_network_fits_from_the_start(demo, halves):
    (photos, labels), _ = halves
    embedder = tuned_embedder(warm_start=True).fit(photos[::2], labels[::2])
    assert len(embedder.fine_tuning_history_.epochs) == 2
    assert list(embedder.classes_) == sorted(set(labels[::2]))
