"""Local feature detectors, checked against the OpenCV build that is really installed."""

import cv2
import numpy as np
import pytest

from fusionrec import BagOfVisualWords, available_detectors
from fusionrec.images import load_image
from fusionrec.traditional import DetectorUnavailableError
from fusionrec.traditional.detectors import DETECTORS, LocalFeatures

ALWAYS_ON_PYPI = ["sift", "rootsift", "dense-sift", "orb", "akaze", "brisk", "kaze"]


@pytest.fixture(scope="module")
def gray(demo_photo):
    return cv2.cvtColor(load_image(demo_photo), cv2.COLOR_RGB2GRAY)


def test_pypi_build_detectors_are_available():
    available = available_detectors()
    assert set(ALWAYS_ON_PYPI) <= set(available)
    assert set(available) <= set(DETECTORS)


@pytest.mark.parametrize("name", ALWAYS_ON_PYPI)
def test_each_detector_describes_a_real_photo(gray, name):
    features = LocalFeatures(name)
    positions, descriptors = features.describe(gray)
    assert len(positions) == len(descriptors) > 20
    assert descriptors.dtype == np.float32
    assert descriptors.shape[1] == features.descriptor_size
    assert positions.min() >= 0.0
    assert positions.max() <= 1.0
    if features.spec.binary:
        assert set(np.unique(descriptors)) <= {0.0, 1.0}
        assert features.descriptor_size % 8 == 0


def test_surf_is_usable_exactly_when_the_build_has_it(demo_photo):
    if "surf" in available_detectors():
        assert (
            BagOfVisualWords("surf", n_words=4).fit([demo_photo] * 2).transform([demo_photo]).shape
        )
        return
    with pytest.raises(DetectorUnavailableError) as caught:
        BagOfVisualWords(detector="surf", n_words=4).fit([demo_photo])
    message = str(caught.value)
    assert "patented" in message
    assert "NONFREE" in message
    assert "'rootsift'" in message


def test_rootsift_rows_are_hellinger_normalised(gray):
    _, descriptors = LocalFeatures("rootsift").describe(gray)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-3)
    assert descriptors.min() >= 0


def test_dense_sift_describes_the_whole_grid(gray):
    features = LocalFeatures("dense-sift", dense_step=16, dense_scales=(16.0,))
    positions, descriptors = features.describe(gray)
    per_axis = len(np.arange(8, gray.shape[0] - 8 + 1, 16))
    assert len(descriptors) == per_axis * per_axis
    assert positions[:, 0].max() - positions[:, 0].min() > 0.8


@pytest.mark.parametrize("name", ["sift", "orb"])
def test_max_keypoints_keeps_the_strongest(gray, name):
    positions, _ = LocalFeatures(name, max_keypoints=25).describe(gray)
    assert 0 < len(positions) <= 25


@pytest.mark.parametrize("name", ALWAYS_ON_PYPI)
def test_blank_image_gives_empty_but_well_shaped_arrays(name):
    features = LocalFeatures(name)
    blank = np.full((64, 64), 128, dtype=np.uint8)
    positions, descriptors = features.describe(blank)
    if name != "dense-sift":
        assert positions.shape == (0, 2)
    assert descriptors.shape[1] == features.descriptor_size


def test_unknown_detector_lists_the_choices():
    with pytest.raises(ValueError, match="unknown detector 'fast'"):
        LocalFeatures("fast")
