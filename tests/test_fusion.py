"""Early and late fusion, the branch switch, the feature cache and the on_error contract."""

import joblib
import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedKFold,
    cross_val_predict,
    train_test_split,
)
from sklearn.svm import LinearSVC

from fusionrec import BagOfVisualWords, CNNEmbedder, FusedClassifier, FusedFeatures
from fusionrec.features import Branch
from fusionrec.fusion.features import normalise_blocks
from fusionrec.images import UnreadableImageWarning, unreadable_rows

SMALL_TRADITIONAL = BagOfVisualWords(
    "rootsift", n_words=16, encoding="vlad", max_side=160, random_state=0
)


@pytest.fixture(scope="module")
def split(demo):
    names = np.array(demo.target_names)[demo.target]  # string labels
    return train_test_split(demo.data, names, test_size=0.3, stratify=names, random_state=0)


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


def model(memory, **params):
    return FusedClassifier(traditional=SMALL_TRADITIONAL, memory=memory, random_state=0, **params)


@pytest.fixture(scope="module")
def late(split, memory):
    """A late-fused model of the training photos; tests only read it."""
    train, _, y_train, _ = split
    return model(memory, fusion="late").fit(train, y_train)


@pytest.mark.parametrize(
    ("branch", "fusion", "least_accuracy"),
    [
        ("traditional", "early", 0.6),
        ("deep", "early", 0.8),  # look-alikes: the CNN alone confuses the Arla milks
        ("fused", "early", 0.9),
        ("fused", "late", 0.9),
    ],
)
def test_every_branch_and_fusion_classifies_the_demo(split, memory, branch, fusion, least_accuracy):
    train, test, y_train, y_test = split
    fitted = model(memory, branch=branch, fusion=fusion).fit(train, y_train)
    assert fitted.score(test, y_test) >= least_accuracy  # chance is 0.1
    assert list(fitted.classes_) == sorted(set(y_train))
    probabilities = fitted.predict_proba(test[:5])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert set(fitted.features_.branches_) == (
        {"traditional", "deep"} if branch == "fused" else {branch}
    )


def held_out_log_probabilities(fitted, photos, target):
    """Each branch's log-probabilities for each photo from a classifier fitted on the other folds.

    Computed with scikit-learn alone, on the fitted model's own features, with the folds
    ``FusedClassifier`` documents for late fusion: five stratified, shuffled by ``random_state``.
    """
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    blocks = fitted.features_.transform_blocks(photos)
    return [
        np.log(
            cross_val_predict(
                LogisticRegression(C=10.0, solver="newton-cg", max_iter=3000, random_state=0),
                fitted.features_.fuse({name: blocks[name]}),
                target,
                cv=folds,
                method="predict_proba",
            )
        )
        for name in ("traditional", "deep")
    ]


def log_softmax(scores):
    return scores - logsumexp(scores, axis=1, keepdims=True)


def test_late_fusion_picks_the_weight_that_classifies_held_out_photos_best(split, late):
    train, _, y_train, _ = split
    target = np.searchsorted(late.classes_, y_train)
    traditional, deep = held_out_log_probabilities(late, train, target)
    scores = {}  # weight -> (held-out accuracy, held-out log-likelihood), ties go to the latter
    for weight in np.linspace(0.0, 1.0, 21):
        combined = log_softmax(weight * traditional + (1 - weight) * deep)
        accuracy = np.mean(combined.argmax(axis=1) == target)
        scores[weight] = (accuracy, combined[np.arange(len(target)), target].mean())
    best = max(scores, key=scores.get)
    assert 0.0 < best < 1.0  # the case is not trivial: both branches count
    assert late.late_weight_ == pytest.approx(best)


def test_late_fusion_predicts_with_its_weighted_log_probabilities(split, late):
    test = split[1]
    blocks = late.features_.transform_blocks(test[:5])
    traditional, deep = (
        np.log(late.classifiers_[name].predict_proba(late.features_.fuse({name: blocks[name]})))
        for name in ("traditional", "deep")
    )
    weight = late.late_weight_
    expected = np.exp(log_softmax(weight * traditional + (1 - weight) * deep))
    np.testing.assert_allclose(late.predict_proba(test[:5]), expected, rtol=1e-6)


def test_only_early_fusion_has_a_decision_function(split, memory, late):
    train, test, y_train, _ = split
    assert not hasattr(late, "decision_function")
    early = model(memory).fit(train, y_train)
    scores = early.decision_function(test[:5])
    assert scores.shape == (5, 10)
    np.testing.assert_array_equal(early.classes_[scores.argmax(axis=1)], early.predict(test[:5]))


def test_integer_labels_and_a_classifier_without_probabilities(split, memory, demo):
    train, test, y_train, _ = split
    codes = np.array([demo.target_names.index(name) for name in y_train])
    late = model(memory, fusion="late", classifier=LinearSVC(C=1.0)).fit(train, codes)
    assert late.predict(test[:3]).dtype.kind == "i"
    assert late.predict_proba(test[:3]).shape == (3, 10)


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_probabilities_from_blocks_extracted_once_equal_predict_proba(split, memory, fusion):
    train, test, y_train, _ = split
    fitted = model(memory, fusion=fusion).fit(train, y_train)
    blocks = fitted.features_.transform_blocks(test[:4])
    np.testing.assert_array_equal(
        fitted.predict_proba_from_blocks(blocks), fitted.predict_proba(test[:4])
    )


def test_joblib_round_trip_and_determinism(split, memory, late, tmp_path):
    train, test, y_train, _ = split
    joblib.dump(late, tmp_path / "model.joblib")
    restored = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(restored.predict_proba(test), late.predict_proba(test))
    again = model(memory, fusion="late").fit(train, y_train)
    np.testing.assert_array_equal(again.predict_proba(test), late.predict_proba(test))


@pytest.fixture
def photos_read(monkeypatch):
    """From now on: photos described (keypoints), encoded and embedded; vocabularies learned."""
    read = {"described": [], "encoded": 0, "embedded": [], "vocabularies learned": 0}
    describe, transform = BagOfVisualWords.describe, CNNEmbedder.transform
    learn, encode = BagOfVisualWords.fit_described, BagOfVisualWords.encode_described

    def counting_encode(self, described):
        read["encoded"] += len(described)
        return encode(self, described)

    def counting_fit(self, described):
        read["vocabularies learned"] += 1
        return learn(self, described)

    def counting_describe(self, X):
        read["described"].extend(X)
        return describe(self, X)

    def counting_transform(self, X):
        read["embedded"].extend(X)
        return transform(self, X)

    monkeypatch.setattr(BagOfVisualWords, "describe", counting_describe)
    monkeypatch.setattr(CNNEmbedder, "transform", counting_transform)
    monkeypatch.setattr(BagOfVisualWords, "fit_described", counting_fit)
    monkeypatch.setattr(BagOfVisualWords, "encode_described", counting_encode)
    return read


def test_grid_search_reads_each_photo_once(split, tmp_path, photos_read):
    train, _, y_train, _ = split
    search = GridSearchCV(
        model(tmp_path),
        {"branch": ["traditional", "deep", "fused"], "fusion": ["early", "late"]},
        cv=3,
    )
    search.fit(train, y_train)
    assert len(search.cv_results_["params"]) == 6
    assert sorted(photos_read["described"]) == sorted(train)
    assert sorted(photos_read["embedded"]) == sorted(train)
    # one vocabulary per fold, shared by the four settings that use it, and one for the refit
    uses_keypoints = search.best_params_["branch"] != "deep"
    assert photos_read["vocabularies learned"] == 3 + uses_keypoints
    # each photo encoded once against each vocabulary: in each fold, as training or held-out photo
    assert photos_read["encoded"] == (3 + uses_keypoints) * len(train)
    assert search.best_score_ > 0.8


def test_a_refit_from_the_cache_reads_no_descriptors(split, tmp_path, monkeypatch):
    train, test, y_train, _ = split
    expected = model(tmp_path, branch="traditional").fit(train, y_train).predict(test)
    read = []
    described = Branch._described

    def counting_described(self, images, keys=None):
        read.extend(images)
        return described(self, images, keys)

    monkeypatch.setattr(Branch, "_described", counting_described)
    again = model(tmp_path, branch="traditional").fit(train, y_train)
    np.testing.assert_array_equal(again.predict(test), expected)
    assert read == []  # the vocabulary and every encoding came from the cache


@pytest.fixture
def classifier_fits(monkeypatch):
    """From now on: a digest of each logistic-regression fit's settings and rows."""
    fits = []
    fit = LogisticRegression.fit

    def recording_fit(self, X, y, sample_weight=None):
        fits.append(joblib.hash((self.get_params(), X, y)))
        return fit(self, X, y, sample_weight)

    monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
    return fits


def test_grid_search_trains_each_classifier_once(split, tmp_path, classifier_fits):
    train, _, y_train, _ = split
    grid = {"branch": ["traditional", "deep", "fused"], "fusion": ["early", "late"]}
    GridSearchCV(model(tmp_path), grid, cv=3).fit(train, y_train)
    assert len(classifier_fits) == len(set(classifier_fits))
    fits_with_cache = len(classifier_fits)
    classifier_fits.clear()
    GridSearchCV(model(None), grid, cv=3).fit(train, y_train)
    # without memory, each of the 3 folds trains the traditional and the deep classifier
    # once per fusion setting, and once more each for late fusion
    assert len(classifier_fits) == fits_with_cache + 3 * 4


def test_unseeded_classifiers_are_not_cached(split, tmp_path, classifier_fits):
    train, _, y_train, _ = split
    for _ in range(2):
        FusedClassifier(branch="deep", memory=tmp_path).fit(train, y_train)
    assert len(classifier_fits) == 2
    assert classifier_fits[0] == classifier_fits[1]
    classifier_fits.clear()
    cached = [model(tmp_path, branch="deep").fit(train, y_train) for _ in range(2)]
    assert len(classifier_fits) == 1
    np.testing.assert_array_equal(
        cached[0].predict_proba(train),
        model(None, branch="deep").fit(train, y_train).predict_proba(train),
    )


def test_refitting_with_feedback_reads_only_the_new_photos(split, tmp_path, photos_read):
    train, test, y_train, y_test = split
    model(tmp_path, branch="fused").fit(train, y_train)
    photos_read["described"].clear()
    photos_read["embedded"].clear()
    corrected = y_train.copy()
    corrected[0] = y_train[1]  # a label fixed by a reviewer
    feedback = model(tmp_path, branch="fused").fit([*train, *test[:5]], [*corrected, *y_test[:5]])
    assert sorted(photos_read["described"]) == sorted(test[:5])
    assert sorted(photos_read["embedded"]) == sorted(test[:5])
    assert feedback.score(test[:5], y_test[:5]) == 1.0


def test_skip_drops_photos_with_their_labels(split, memory):
    train, test, y_train, _ = split
    X = [*train[:40], "missing.jpg", np.full((4, 4), np.nan)]
    y = [*y_train[:40], "Banana", "Kiwi"]
    with pytest.warns(UnreadableImageWarning):
        fitted = model(memory, branch="fused", on_error="warn").fit(X, y)
    np.testing.assert_array_equal(fitted.dropped_indices_, [40, 41])
    fitted.set_params(on_error="skip")
    predicted = fitted.predict([test[0], "missing.jpg"])
    assert predicted[0] is not None
    assert predicted[1] is None
    assert np.isnan(fitted.predict_proba(["missing.jpg"])).all()


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"branch": "both"}, "branch must be one of"),
        ({"fusion": "middle"}, "fusion must be one of"),
        ({"deep": "lite0"}, "deep must be None or a CNNEmbedder"),
        ({"deep": FrozenEstimator(SMALL_TRADITIONAL)}, r"or FrozenEstimator\(a fitted CNNEmbedder"),
        ({"block_weights": 1.0}, "block_weights must be 'auto' or a pair of weights"),
        ({"block_weights": (1.0,)}, "two non-negative numbers"),
        ({"block_weights": (1.0, -0.5)}, "two non-negative numbers"),
        ({"block_weights": ("a", 1.0)}, "two non-negative numbers"),
    ],
)
def test_bad_parameters_are_named(split, params, fragment):
    train, _, y_train, _ = split
    with pytest.raises(ValueError, match=fragment):
        FusedClassifier(**params).fit(train, y_train)


def test_default_deep_branch_crops_tighter_than_the_weights(split, memory):
    train, _, y_train, _ = split
    fitted = model(memory, branch="deep").fit(train[:20], y_train[:20])
    assert fitted.features_.fitted_extractor("deep").preprocessing_.resize == 299  # 224 / 0.75
    assert CNNEmbedder().fit(train[:1]).preprocessing_.resize == 256  # the weights' own 0.875


@pytest.mark.parametrize("block_weights", [(0.5, 1.0), (2.0, 1.0)])
def test_early_fusion_weights_the_blocks_as_fused_features_do(split, memory, block_weights):
    train, test, y_train, _ = split
    # lbfgs takes the same steps in the row space (where FusedClassifier solves) as on the
    # columns (a plain fit on FusedFeatures' output), so the two fits agree closely
    classifier = LogisticRegression(C=10.0, solver="lbfgs", max_iter=3000)
    fitted = model(memory, block_weights=block_weights, classifier=classifier).fit(train, y_train)
    features = FusedFeatures(SMALL_TRADITIONAL, block_weights=block_weights, memory=memory)
    expected = clone(classifier).fit(features.fit_transform(train), y_train)
    np.testing.assert_allclose(
        fitted.decision_function(test[:5]),
        expected.decision_function(features.transform(test[:5])),
        atol=1e-4,
    )


def test_default_block_weights_shorten_the_traditional_block(demo, memory):
    fused = FusedFeatures(traditional=SMALL_TRADITIONAL, memory=memory)
    features = fused.fit_transform(demo.data[::10])
    width = fused.branches_["traditional"].fitted_.n_features_out_
    np.testing.assert_allclose(np.linalg.norm(features[:, :width], axis=1), 0.5, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features[:, width:], axis=1), 1.0, rtol=1e-5)


def test_labels_must_match_the_photos(split):
    train, _, y_train, _ = split
    with pytest.raises(ValueError, match="holds 105 images but y holds 104 labels"):
        FusedClassifier(branch="deep").fit(train, y_train[:-1])
    with pytest.raises(ValueError, match="at least two products"):
        FusedClassifier(branch="deep").fit(train[:3], ["Banana"] * 3)


def test_fused_features_blocks_are_normalised_and_named(demo, memory):
    photos = demo.data[::10]
    fused = FusedFeatures(SMALL_TRADITIONAL, block_weights=(1.0, 2.0), memory=memory)
    features = fused.fit_transform(photos)
    width = fused.branches_["traditional"].fitted_.n_features_out_
    np.testing.assert_allclose(np.linalg.norm(features[:, :width], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features[:, width:], axis=1), 2.0, rtol=1e-5)
    names = fused.get_feature_names_out()
    assert len(names) == features.shape[1] == fused.n_features_out_
    assert names[0].startswith("traditional__vlad")
    assert names[-1].startswith("deep__efficientnet_lite0")
    np.testing.assert_allclose(fused.transform(photos), features, atol=1e-6)


def test_fused_features_leave_the_given_branches_untouched(demo):
    traditional = clone(SMALL_TRADITIONAL)
    FusedFeatures(traditional=traditional, on_error="skip").fit(demo.data[:10])
    assert traditional.on_error == "raise"
    assert not hasattr(traditional, "codebook_")


@pytest.mark.parametrize("cached", [False, True])
def test_a_frozen_branch_is_used_as_fitted_and_left_untouched(demo, tmp_path, cached):
    photos = demo.data[::10]
    vocabulary = clone(SMALL_TRADITIONAL).fit(demo.data[1::10])
    frozen = FrozenEstimator(vocabulary)
    fused = FusedFeatures(traditional=frozen, memory=tmp_path if cached else None, on_error="skip")
    features = fused.fit_transform(photos)
    width = vocabulary.n_features_out_
    expected = vocabulary.transform(photos)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(features[:, :width], 0.5 * expected, atol=1e-5)
    assert vocabulary.on_error == "raise"
    assert clone(fused).traditional is frozen


def test_an_unfitted_frozen_branch_is_named(demo):
    with pytest.raises(NotFittedError, match="traditional branch is a FrozenEstimator around an"):
        FusedFeatures(traditional=FrozenEstimator(clone(SMALL_TRADITIONAL))).fit(demo.data[:4])


def test_normalise_blocks_keeps_nan_and_zero_rows():
    blocks = [
        np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, np.nan]]),
        np.array([[1.0], [2.0], [np.nan]]),
    ]
    fused = normalise_blocks(blocks, [1.0, 1.0])
    np.testing.assert_allclose(fused[0], [0.6, 0.8, 1.0])
    np.testing.assert_allclose(fused[1], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(unreadable_rows(fused), [2])
