"""BagOfVisualWords: shapes, encodings, determinism, persistence and the on_error contract."""

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import pairwise_distances_argmin
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from fusionrec import BagOfVisualWords
from fusionrec.images import ImageReadError, UnreadableImageWarning, unreadable_rows

BLANK = np.full((96, 96, 3), 127, dtype=np.uint8)


@pytest.fixture(scope="module")
def photos(demo):
    return demo.data[::5]  # 30 photos, 3 per product


@pytest.fixture(scope="module")
def fitted(photos):
    return BagOfVisualWords(n_words=24, max_side=192, random_state=0).fit(photos)


@pytest.mark.parametrize(
    ("encoding", "pyramid", "width"),
    [
        ("bovw", False, 16),
        ("bovw", True, 16 * 5),
        ("vlad", False, 16 * 128),
        ("fisher", False, 2 * 16 * 128),
        ("fisher", True, 2 * 16 * 128 * 5),
    ],
)
def test_encodings_give_unit_float32_rows(photos, encoding, pyramid, width):
    bovw = BagOfVisualWords(
        n_words=16, encoding=encoding, spatial_pyramid=pyramid, max_side=160, random_state=0
    )
    features = bovw.fit(photos[:12]).transform(photos[12:15])
    assert features.shape == (3, width)
    assert features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    names = bovw.get_feature_names_out()
    assert len(names) == width == bovw.n_features_out_
    assert len(set(names)) == width
    assert names[0].startswith(encoding)


def word_counts(bovw, photos):
    """How many of each photo's descriptors lie nearest each visual word (scikit-learn's argmin)."""
    centers = bovw.codebook_.centers
    return np.array(
        [
            np.bincount(pairwise_distances_argmin(descriptors, centers), minlength=len(centers))
            for _, descriptors in bovw.describe(photos)
        ]
    )


def test_bovw_histogram_counts_the_nearest_words(photos):
    bovw = BagOfVisualWords(n_words=8, power_norm=False, max_side=160, random_state=0)
    row = bovw.fit(photos[:10]).transform(photos[:1])[0]
    [counts] = word_counts(bovw, photos[:1])
    assert np.count_nonzero(counts) > 1
    np.testing.assert_allclose(row, counts / np.linalg.norm(counts), rtol=1e-5)


def test_photo_without_keypoints_gives_a_finite_zero_row(fitted, photos):
    features = fitted.transform([photos[0], BLANK, photos[1]])
    assert np.isfinite(features).all()
    assert not features[1].any()
    np.testing.assert_array_equal(features[[0, 2]], fitted.transform(photos[:2]))


def test_same_output_for_one_and_two_jobs(photos):
    one = BagOfVisualWords(n_words=16, max_side=160, random_state=3, n_jobs=1).fit(photos)
    two = clone(one).set_params(n_jobs=2).fit(photos)
    np.testing.assert_array_equal(one.codebook_.centers, two.codebook_.centers)
    np.testing.assert_array_equal(one.transform(photos), two.transform(photos))


def test_same_random_state_same_vocabulary_and_another_differs(photos):
    def centers(seed):
        bovw = BagOfVisualWords(n_words=16, max_side=160, max_descriptors=2000, random_state=seed)
        return bovw.fit(photos).codebook_.centers

    np.testing.assert_array_equal(centers(7), centers(7))
    assert not np.array_equal(centers(7), centers(8))


def test_joblib_round_trip_gives_identical_output(fitted, photos, tmp_path):
    joblib.dump(fitted, tmp_path / "bovw.joblib")
    restored = joblib.load(tmp_path / "bovw.joblib")
    np.testing.assert_array_equal(restored.transform(photos[:5]), fitted.transform(photos[:5]))


def test_descriptor_sample_takes_an_equal_share_from_each_photo(photos):
    bovw = BagOfVisualWords(n_words=8, max_side=160, max_descriptors=100, random_state=0)
    bovw.fit(photos[:10])
    share = 10  # of the 100, from each of the 10 photos; all a photo has if fewer
    found = [len(descriptors) for _, descriptors in bovw.describe(photos[:10])]
    assert bovw.n_descriptors_ == sum(min(count, share) for count in found) <= 100
    assert max(found) > share  # the bound really cuts


def test_unreadable_photo_raises_naming_its_position(fitted, photos):
    with pytest.raises(ImageReadError, match=r"at position 1 .*no such file"):
        fitted.transform([photos[0], "missing.jpg"])


@pytest.mark.parametrize("on_error", ["skip", "warn"])
def test_dropped_photo_leaves_a_nan_row_in_its_place(fitted, photos, on_error):
    bovw = clone(fitted).set_params(on_error=on_error)
    bovw.codebook_, bovw.n_descriptor_dims_ = fitted.codebook_, fitted.n_descriptor_dims_
    X = [photos[0], "missing.jpg", photos[1], np.full((5, 5), np.nan)]
    if on_error == "warn":
        with pytest.warns(UnreadableImageWarning, match=r"(?s)dropped 2 .*position 1.*position 3"):
            features = bovw.transform(X)
    else:
        features = bovw.transform(X)
    np.testing.assert_array_equal(unreadable_rows(features), [1, 3])
    np.testing.assert_array_equal(features[[0, 2]], fitted.transform(photos[:2]))


def test_fit_skips_unreadable_photos(photos):
    bovw = BagOfVisualWords(n_words=8, max_side=160, on_error="skip", random_state=0)
    skipping = bovw.fit([*photos[:3], "missing.jpg"])
    readable_only = clone(bovw).fit(photos[:3])
    assert skipping.n_descriptors_ == readable_only.n_descriptors_
    np.testing.assert_array_equal(skipping.codebook_.centers, readable_only.codebook_.centers)


def test_too_few_descriptors_is_a_clear_error():
    with pytest.raises(ValueError, match="found only 0 descriptors in 2 readable photo"):
        BagOfVisualWords(n_words=8).fit([BLANK, BLANK])


def test_precomputed_descriptors(photos):
    rng = np.random.default_rng(0)
    descriptors = [rng.random((40, 12), dtype=np.float32) for _ in range(6)]
    bovw = BagOfVisualWords("precomputed", n_words=5, encoding="vlad", random_state=0)
    features = bovw.fit(descriptors).transform(descriptors[:2])
    assert features.shape == (2, 5 * 12)
    assert bovw.transform([np.zeros((0, 12))]).any() == np.False_
    with pytest.raises(ImageReadError, match="fitted on 12"):
        bovw.transform([rng.random((4, 7))])
    with pytest.raises(ImageReadError, match="descriptor array"):
        bovw.transform([photos[0]])


def test_described_pairs_reproduce_the_photo_features(fitted, photos):
    pairs = fitted.describe(photos[:4])
    assert all(p.shape == (len(d), 2) for p, d in pairs)
    for pyramid in (False, True):
        direct = clone(fitted).set_params(spatial_pyramid=pyramid).fit(photos)
        precomputed = clone(direct).set_params(detector="precomputed").fit(fitted.describe(photos))
        np.testing.assert_allclose(precomputed.transform(pairs), direct.transform(photos[:4]))


def test_pyramid_over_bare_descriptors_is_refused(photos):
    bovw = BagOfVisualWords("precomputed", n_words=2, spatial_pyramid=True)
    with pytest.raises(ImageReadError, match="needs \\(positions, descriptors\\) pairs"):
        bovw.fit([np.ones((4, 3))])
    with pytest.raises(ImageReadError, match="fractions in \\[0, 1\\]"):
        bovw.fit([(np.full((4, 2), 2.0), np.ones((4, 3)))])


def test_precomputed_with_mismatched_lengths_is_refused():
    with pytest.raises(ValueError, match="different lengths"):
        BagOfVisualWords("precomputed", n_words=2).fit([np.ones((4, 3)), np.ones((4, 5))])


def test_tfidf_weights_histograms_by_smoothed_inverse_document_frequency(photos):
    """The vocabulary learns from every descriptor here, so its document frequencies are exact."""
    bovw = BagOfVisualWords(n_words=128, max_side=160, tfidf=True, random_state=0)
    weighted = bovw.fit(photos[:10])
    counts = word_counts(weighted, photos[:10])
    tfidf = TfidfTransformer(norm=None, smooth_idf=True).fit(counts)  # ln((1+n)/(1+df)) + 1
    assert np.ptp(tfidf.idf_) > 0.1  # some words are rarer than others
    np.testing.assert_allclose(weighted.codebook_.idf, tfidf.idf_, rtol=1e-6)
    expected = np.sqrt(tfidf.transform(counts[:2]).toarray())  # power-normalised
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(weighted.transform(photos[:2]), expected, rtol=1e-5)


def test_pca_shrinks_vlad(photos):
    bovw = BagOfVisualWords(n_words=8, encoding="vlad", pca_components=32, max_side=160)
    assert bovw.fit(photos).transform(photos[:1]).shape == (1, 8 * 32)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"n_words": 1}, "n_words must be an int in \\[2, inf\\]; got 1"),
        ({"detector": "fast"}, "detector must be one of"),
        ({"encoding": "sparse"}, "encoding must be one of"),
        ({"on_error": "ignore"}, "on_error must be one of"),
        ({"n_jobs": 0}, "n_jobs must be"),
        ({"tfidf": True, "encoding": "vlad"}, "tfidf applies to encoding='bovw' only"),
    ],
)
def test_bad_parameters_are_named(photos, params, fragment):
    with pytest.raises(ValueError, match=fragment):
        BagOfVisualWords(**params).fit(photos[:2])


def test_x_must_hold_images():
    with pytest.raises(ValueError, match="no images"):
        BagOfVisualWords().fit([])
    with pytest.raises(TypeError, match="Wrap it in a list"):
        BagOfVisualWords().fit("photo.jpg")


def test_transform_before_fit():
    with pytest.raises(NotFittedError):
        BagOfVisualWords().transform([BLANK])


def test_classifies_demo_products_in_a_pipeline(demo):
    train, test, y_train, y_test = train_test_split(
        demo.data, demo.target, test_size=0.3, stratify=demo.target, random_state=0
    )
    model = make_pipeline(
        BagOfVisualWords("rootsift", n_words=64, max_descriptors=20_000, random_state=0),
        LinearSVC(C=1.0, random_state=0),
    )
    accuracy = model.fit(train, y_train).score(test, y_test)
    assert accuracy > 0.5  # chance is 0.1


def test_fit_is_idempotent_and_returns_self(photos):
    bovw = BagOfVisualWords(n_words=8, max_side=160, random_state=0)
    assert bovw.fit(photos) is bovw
    first = bovw.transform(photos[:4])
    np.testing.assert_array_equal(bovw.fit(photos).transform(photos[:4]), first)


def test_rows_do_not_depend_on_order_or_batch(fitted, photos):
    order = np.array([4, 0, 3, 1, 2])
    together = fitted.transform(photos[:5])
    np.testing.assert_array_equal(fitted.transform(photos[:5][order]), together[order])
    np.testing.assert_array_equal(fitted.transform(photos[2:3]), together[2:3])
