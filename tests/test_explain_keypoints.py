"""Keypoint weights: every encoding splits into one term per keypoint, and the split conserves
the score."""

import numpy as np
import pytest

from fusionrec import BagOfVisualWords
from fusionrec._vectors import l2_normalise
from fusionrec.explanations.keypoints import keypoint_weights, strongest


@pytest.fixture(scope="module")
def photos(demo):
    return demo.data[::15]  # one photo of each product


@pytest.mark.parametrize(
    "settings",
    [
        {"encoding": "bovw", "tfidf": True},
        {"encoding": "vlad"},
        {"encoding": "fisher", "pca_components": 16},
        {"encoding": "bovw", "spatial_pyramid": True},
        {"encoding": "vlad", "spatial_pyramid": True, "power_norm": False},
        {"encoding": "fisher", "spatial_pyramid": True},
    ],
    ids=str,
)
def test_keypoint_parts_add_up_to_the_encoding(photos, settings):
    bag = BagOfVisualWords("rootsift", n_words=8, max_side=160, random_state=0, **settings)
    bag.fit(photos)
    [(positions, descriptors)] = bag.describe(photos[3:4])
    parts = bag.codebook_.keypoint_parts(positions, descriptors)
    assert parts.shape == (len(descriptors), bag.n_features_out_)
    total = parts.sum(axis=0, dtype=np.float64)
    if bag.power_norm:
        total = np.sign(total) * np.sqrt(np.abs(total))
    np.testing.assert_allclose(
        l2_normalise(total[np.newaxis])[0], bag.transform(photos[3:4])[0], atol=1e-5
    )


def test_weights_conserve_the_score_and_follow_the_coefficients(photos):
    bag = BagOfVisualWords("rootsift", n_words=8, max_side=160, random_state=0).fit(photos)
    [(positions, descriptors)] = bag.describe(photos[:1])
    [encoded] = bag.transform(photos[:1])
    favoured = int(np.argmax(encoded))
    coefficients = np.where(np.arange(bag.n_features_out_) == favoured, 1.0, 0.0)
    weights = keypoint_weights(bag.codebook_, positions, descriptors, coefficients * encoded)
    assert weights.sum() == pytest.approx(encoded[favoured])
    in_favoured_word = weights > 0
    assert in_favoured_word.any()
    assert np.allclose(weights[~in_favoured_word], 0.0)  # keypoints of other words weigh nothing
    assert strongest(weights, 5).tolist() == np.flatnonzero(in_favoured_word)[:5].tolist()
