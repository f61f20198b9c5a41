"""Explaining a FusedClassifier prediction: shares that add up, heat maps and keypoints that
pass the saliency literature's sanity checks, one PNG.

The sanity checks follow Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018):
a map must change when the network's weights are randomised, and on a photo of one textured
object on a flat background, most of the heat and of the drawn keypoints must fall on it.
"""

import copy

import cv2
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.frozen import FrozenEstimator
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from fusionrec import BagOfVisualWords, CNNEmbedder, FusedClassifier, explain
from fusionrec.deep import FineTuning, Preprocessing
from fusionrec.deep import embedder as embedder_module
from fusionrec.explanations import Explanation, branch_shares
from fusionrec.images import load_image

SMALL_TRADITIONAL = BagOfVisualWords(
    "rootsift", n_words=16, encoding="vlad", max_side=160, random_state=0
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def train_and_test(demo):
    """A third of the demo photos (5 of each product) to train on, and the others."""
    train = np.arange(len(demo.data)) % 3 == 0
    return demo.data[train], demo.target[train], demo.data[~train], demo.target[~train]


def fused(memory, train_and_test, **params):
    train, labels, _, _ = train_and_test
    model = FusedClassifier(traditional=SMALL_TRADITIONAL, memory=memory, random_state=0, **params)
    return model.fit(train, labels)


@pytest.fixture(scope="module")
def early(memory, train_and_test):
    """Early fusion of the pretrained EfficientNet-Lite0 and RootSIFT VLAD (not mutated)."""
    return fused(memory, train_and_test)


@pytest.fixture(scope="module")
def late(memory, train_and_test):
    return fused(memory, train_and_test, fusion="late")


@pytest.fixture(scope="module")
def test_photos(train_and_test):
    """One held-out photo of each of five products."""
    _, _, photos, labels = train_and_test
    return [photos[np.flatnonzero(labels == label)[0]] for label in (0, 2, 4, 6, 8)]


def test_early_shares_add_up_to_the_decision_function(early, test_photos):
    for photo in test_photos:
        why = explain(early, photo)
        [decision] = early.decision_function([photo])
        assert why.predicted == why.label == early.predict([photo])[0]
        assert set(why.shares) == {"traditional", "deep"}
        assert sum(why.shares.values()) + why.intercept == pytest.approx(why.score, abs=1e-9)
        assert why.score == pytest.approx(decision[why.label], abs=1e-4)
        assert why.probability == pytest.approx(early.predict_proba([photo])[0, why.label], 1e-4)


def test_any_product_can_be_explained_not_only_the_prediction(early, test_photos):
    why = explain(early, test_photos[0])
    other = (why.predicted + 1) % len(early.classes_)
    why_not = explain(early, test_photos[0], label=other)
    assert why_not.label == other
    assert why_not.predicted == why.predicted
    [decision] = early.decision_function(test_photos[:1])
    assert sum(why_not.shares.values()) + why_not.intercept == pytest.approx(decision[other], 1e-4)
    assert "predicted" in why_not.render().get_suptitle()
    with pytest.raises(ValueError, match="not a class of the model"):
        explain(early, test_photos[0], label="no such product")


def test_late_shares_are_the_weighted_log_probabilities(late, test_photos):
    for photo in test_photos[:3]:
        why = explain(late, photo)
        assert why.late_weight == late.late_weight_
        weights = {"traditional": late.late_weight_, "deep": 1 - late.late_weight_}
        for name, share in why.shares.items():
            assert share == pytest.approx(weights[name] * np.log(why.branch_probabilities[name]))
        assert why.score == pytest.approx(sum(why.shares.values()))
        assert why.probability == pytest.approx(late.predict_proba([photo])[0, why.label], 1e-4)
        assert why.label == late.predict([photo])[0]


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_shares_from_extracted_features_are_those_of_the_full_explanation(
    fusion, early, late, test_photos
):
    model = {"early": early, "late": late}[fusion]
    photo = test_photos[1]
    numbers = branch_shares(model, model.features_.transform_blocks([photo]))
    why = explain(model, photo)
    assert numbers["label"] == why.label
    assert numbers["shares"] == pytest.approx(why.shares, abs=1e-6)
    assert numbers["score"] == pytest.approx(why.score, abs=1e-6)


def test_two_products_split_the_one_binary_score(demo):
    """A binary classifier's score is the second class's; the first class's is its negative."""
    two = np.isin(demo.target, (0, 5))
    photos, labels = demo.data[two], demo.target[two]
    model = FusedClassifier("traditional", traditional=SMALL_TRADITIONAL, random_state=0)
    model.fit(photos[::2], labels[::2])
    [decision] = model.decision_function(photos[1:2])
    for label, sign in ((0, -1.0), (5, 1.0)):
        why = explain(model, photos[1], label=label)
        assert set(why.shares) == {"traditional"}
        assert why.heat_map is None
        assert why.score == pytest.approx(sign * decision, abs=1e-5)


def test_keypoint_weights_add_up_to_the_traditional_term(early, late, test_photos):
    why = explain(early, test_photos[1])
    assert why.keypoint_weights.sum() == pytest.approx(why.shares["traditional"], abs=1e-6)
    height, width = why.image.shape[:2]
    assert why.keypoints.shape == (len(why.keypoint_weights), 2)
    assert (why.keypoints >= 0).all()
    assert (why.keypoints <= [width, height]).all()
    late_why = explain(late, test_photos[1])
    classifier = late.classifiers_["traditional"]
    block = late.features_.transform_blocks(test_photos[1:2])["traditional"]
    row = late.features_.fuse({"traditional": block})
    linear = (
        classifier.decision_function(row)[0, late_why.label] - classifier.intercept_[late_why.label]
    )
    assert late_why.keypoint_weights.sum() == pytest.approx(linear, abs=1e-5)


def test_the_network_runs_in_pytorch_whatever_the_runtime(early, test_photos, monkeypatch):
    """Gradients need PyTorch; one photo is not worth an ONNX export either."""
    [decision] = early.decision_function(test_photos[:1])
    onnx_model = copy.deepcopy(early)
    onnx_model.features_.fitted_extractor("deep").set_params(runtime="onnxruntime")

    def refuse(*args, **kwargs):
        raise AssertionError("explain exported the network to ONNX")

    monkeypatch.setattr(embedder_module, "OnnxEmbedding", refuse)
    why = explain(onnx_model, test_photos[0])
    assert why.score == pytest.approx(decision[why.label], abs=1e-4)
    assert np.nanmax(why.heat_map) == 1.0


def test_randomising_the_network_changes_the_heat_map(early, test_photos, demo):
    """Rank correlation of trained and random-weight maps (measured mean near 0)."""
    randomised = copy.deepcopy(early)
    random_network = CNNEmbedder(weights=None, random_state=0).fit(demo.data[:1]).network_
    randomised.features_.fitted_extractor("deep").network_ = random_network
    correlations = []
    for photo in test_photos:
        trained = explain(early, photo)
        random = explain(randomised, photo, label=trained.label)
        seen = ~np.isnan(trained.heat_map)
        assert np.array_equal(seen, ~np.isnan(random.heat_map))
        correlations.append(spearmanr(trained.heat_map[seen], random.heat_map[seen])[0])
    assert np.mean(correlations) < 0.5
    assert np.nanmax(trained.heat_map) == 1.0


@pytest.fixture(scope="module")
def object_on_flat_background(demo):
    """A textured product (the middle of a juice carton photo) pasted off-centre on flat grey."""
    photo = load_image(demo.data[demo.target_names.index("Tropicana-Apple-Juice") * 15 + 1])
    height, width = photo.shape[:2]
    product = cv2.resize(
        photo[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4], (110, 110)
    )
    canvas = np.full((300, 300, 3), 128, np.uint8)
    top, left = 50, 60
    canvas[top : top + 110, left : left + 110] = product
    mask = np.zeros((300, 300), bool)
    mask[top : top + 110, left : left + 110] = True
    return canvas, mask


def test_most_heat_and_drawn_keypoints_fall_on_the_object(early, object_on_flat_background):
    photo, mask = object_on_flat_background
    why = explain(early, photo)
    heat = np.nan_to_num(why.heat_map)
    seen = ~np.isnan(why.heat_map)
    assert mask[seen].mean() < 0.3  # the object is under a third of what the network sees
    assert heat[mask].sum() / heat.sum() > 0.5
    drawn = why.keypoints[why.strongest_keypoints()]
    assert len(drawn) > 0
    near = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    x, y = np.clip(drawn.astype(int), 0, 299).T
    assert near[y, x].mean() > 0.5


def test_render_draws_every_panel_into_one_png(early, test_photos, tmp_path):
    why = explain(early, test_photos[2])
    figure = why.render(n_keypoints=10)
    assert len(figure.axes) == 3
    assert len(why.strongest_keypoints(10)) <= 10
    assert (why.keypoint_weights[why.strongest_keypoints(10)] > 0).all()
    assert why.to_png().startswith(PNG_MAGIC)
    path = why.save_png(tmp_path / "deeper" / "why.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert set(why.to_dict()) >= {"label", "probability", "shares", "intercept", "score"}


def test_explanations_are_frozen_data(early, test_photos):
    why = explain(early, test_photos[0])
    assert isinstance(why, Explanation)
    with pytest.raises(AttributeError):
        why.label = "changed"


def test_a_non_linear_classifier_is_refused_clearly(memory, train_and_test):
    kernel = fused(memory, train_and_test, branch="traditional", classifier=KNeighborsClassifier(3))
    with pytest.raises(TypeError, match="linear classifier"):
        explain(kernel, train_and_test[2][0])


def deep_only(deep, train_and_test, photos_per_product=2):
    train, labels, _, _ = train_and_test
    chosen = np.concatenate(
        [np.flatnonzero(labels == label)[:photos_per_product] for label in range(10)]
    )
    model = FusedClassifier("deep", deep=FrozenEstimator(deep), random_state=0)
    return model.fit(train[chosen], labels[chosen])


def test_a_torchvision_backbone_is_explained_at_its_last_stage(train_and_test):
    resnet = CNNEmbedder("resnet18", weights=None, random_state=0).fit(train_and_test[0][:1])
    why = explain(deep_only(resnet, train_and_test), train_and_test[2][0])
    assert why.heat_map_layer == "layer4"
    assert why.keypoints is None
    assert set(why.shares) == {"deep"}


def test_a_fine_tuned_network_is_explained(train_and_test):
    settings = FineTuning(epochs=1, trainable_blocks=1, batch_size=16, validation_fraction=0)
    tuned = CNNEmbedder("small_cnn", weights=None, fine_tune=settings, random_state=0)
    train, labels, photos, _ = train_and_test
    tuned.fit(train, labels)
    why = explain(deep_only(tuned, train_and_test), photos[0])
    assert why.heat_map_layer == "blocks"
    assert np.nanmax(why.heat_map) == 1.0


class Flat(nn.Module):
    """A network of one's own with no convolutional stage."""

    def __init__(self):
        super().__init__()
        self.pixels = nn.Flatten()
        self.linear = nn.Linear(3 * 16 * 16, 8)

    def forward(self, inputs):
        return self.linear(self.pixels(inputs))


class TwoConvolutions(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 4, 3, padding=1)
        self.second = nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, inputs):
        return self.second(self.first(inputs).relu())


OWN_PREPROCESSING = Preprocessing(resize=16, crop=16)


def test_an_own_module_without_a_convolutional_stage_is_refused_clearly(train_and_test):
    own = CNNEmbedder(Flat(), preprocessing=OWN_PREPROCESSING, random_state=0)
    model = deep_only(own.fit(train_and_test[0][:1]), train_and_test)
    with pytest.raises(ValueError, match=r"no convolutional stage.*pass layer="):
        explain(model, train_and_test[2][0])
    with pytest.raises(ValueError, match="not a feature map"):
        explain(model, train_and_test[2][0], layer="linear")


def test_the_layer_parameter_names_the_stage_to_explain(train_and_test):
    own = CNNEmbedder(TwoConvolutions(), preprocessing=OWN_PREPROCESSING, random_state=0)
    model = deep_only(own.fit(train_and_test[0][:1]), train_and_test)
    photo = train_and_test[2][0]
    assert explain(model, photo).heat_map_layer == "second"
    assert explain(model, photo, layer="first").heat_map_layer == "first"
    with pytest.raises(ValueError, match="not a module"):
        explain(model, photo, layer="third")


def test_an_embedding_from_an_inner_layer_is_explained_at_or_before_it(train_and_test):
    own = CNNEmbedder(
        TwoConvolutions(), layer="first", preprocessing=OWN_PREPROCESSING, random_state=0
    )
    model = deep_only(own.fit(train_and_test[0][:1]), train_and_test)
    assert explain(model, train_and_test[2][0]).heat_map_layer == "first"
