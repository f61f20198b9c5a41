"""Local feature detectors, checked against the OpenCV build that is really installed."""

import cv2
import numpy as np
import pytest

from fusionrec import BagOfVisualWords, available_detectors
from fusionrec.images import load_image
from fusionrec.traditional import DetectorUnavailableError
from fusionrec.traditional.detectors import DETECTORS, _one_octave_coarser, make_detector

ALWAYS_ON_PYPI = [
    "sift",
    "rootsift",
    "opponent-rootsift",
    "dense-sift",
    "orb",
    "akaze",
    "brisk",
    "kaze",
]


@pytest.fixture(scope="module")
def gray(demo_photo):
    return cv2.cvtColor(load_image(demo_photo), cv2.COLOR_RGB2GRAY)


def test_pypi_build_detectors_are_available():
    available = available_detectors()
    assert set(ALWAYS_ON_PYPI) <= set(available)
    assert set(available) <= set(DETECTORS)


@pytest.mark.parametrize("name", ALWAYS_ON_PYPI)
def test_each_detector_describes_a_real_photo(gray, name):
    features = make_detector(name)
    positions, descriptors = features.describe(gray)
    assert len(positions) == len(descriptors) > 20
    assert descriptors.dtype == np.float32
    assert descriptors.shape[1] == features.descriptor_size
    assert positions.min() >= 0.0
    assert positions.max() <= 1.0
    if features.binary:
        assert set(np.unique(descriptors)) <= {0.0, 1.0}
        assert features.descriptor_size % 8 == 0


SURF_BUILT = "surf" in available_detectors()


@pytest.mark.skipif(not SURF_BUILT, reason="this OpenCV build has no SURF (patented, NONFREE)")
def test_surf_describes_photos_when_the_build_has_it(demo_photo):
    bovw = BagOfVisualWords("surf", n_words=4).fit([demo_photo] * 2)
    assert bovw.transform([demo_photo]).shape == (1, 4)


@pytest.mark.skipif(SURF_BUILT, reason="this OpenCV build has SURF")
def test_surf_is_a_clear_error_when_the_build_lacks_it(demo_photo):
    with pytest.raises(DetectorUnavailableError) as caught:
        BagOfVisualWords(detector="surf", n_words=4).fit([demo_photo])
    message = str(caught.value)
    assert "patented" in message
    assert "NONFREE" in message
    assert "'rootsift'" in message


def test_rootsift_rows_are_hellinger_normalised(gray):
    _, descriptors = make_detector("rootsift").describe(gray)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-3)
    assert descriptors.min() >= 0


@pytest.fixture(scope="module")
def rgb(demo_photo):
    return load_image(demo_photo)


def test_opponent_rootsift_adds_colour_at_the_rootsift_keypoints(rgb, gray):
    positions, descriptors = make_detector("opponent-rootsift").describe(rgb)
    gray_positions, intensity = make_detector("rootsift").describe(gray)
    np.testing.assert_array_equal(positions, gray_positions)
    assert descriptors.shape == (len(intensity), 384)
    np.testing.assert_allclose(descriptors[:, :128], intensity, atol=1e-6)
    # each 128-long block is a RootSIFT descriptor, and the colour blocks carry texture
    blocks = descriptors.reshape(len(descriptors), 3, 128)
    np.testing.assert_allclose(np.linalg.norm(blocks, axis=2), 1.0, atol=1e-3)
    assert not np.allclose(blocks[:, 1], blocks[:, 0])


def test_opponent_rootsift_of_a_gray_photo_has_no_colour(gray):
    positions, descriptors = make_detector("opponent-rootsift").describe(gray)
    assert len(positions) > 20
    np.testing.assert_array_equal(descriptors[:, 128:], 0.0)


def test_opponent_rootsift_tells_colours_apart_where_rootsift_cannot():
    """Red and green discs of the same intensity: the same gray image, not the same colours."""
    images = []
    for colour in ((200, 60, 60), (60, 131, 60)):
        image = np.full((160, 160, 3), 230, np.uint8)
        for x, y, radius in ((40, 40, 14), (110, 50, 22), (60, 115, 18), (125, 125, 10)):
            cv2.circle(image, (x, y), radius, colour, -1)
        images.append(image)
    red, green = (make_detector("opponent-rootsift").describe(image) for image in images)
    np.testing.assert_array_equal(red[0], green[0])  # the keypoints come from the intensity
    assert len(red[0]) > 10
    np.testing.assert_allclose(red[1][:, :128], green[1][:, :128], atol=1e-6)
    assert not np.allclose(red[1][:, 128:], green[1][:, 128:], atol=0.05)


def test_dense_sift_describes_the_whole_grid():
    """On a 64 x 48 image, 16 px apart, centres at least half the keypoint size from the edges."""
    image = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)
    features = make_detector("dense-sift", dense_step=16, dense_scales=(16.0,))
    positions, descriptors = features.describe(image)
    grid = [(x / 64, y / 48) for y in (8, 24, 40) for x in (8, 24, 40, 56)]
    np.testing.assert_allclose(positions, grid, atol=1e-6)
    assert descriptors.shape == (12, 128)
    two_sizes = make_detector("dense-sift", dense_step=16, dense_scales=(16.0, 8.0))
    assert len(two_sizes.describe(image)[0]) == 2 * 12  # each grid point at each size


def opencv_detector(factory_name):
    """OpenCV's own detector, from cv2 or cv2.xfeatures2d (OpenCV 4 and 5 differ)."""
    for namespace in (cv2, getattr(cv2, "xfeatures2d", None)):
        if hasattr(namespace, factory_name):
            return getattr(namespace, factory_name)()
    raise AssertionError(f"cv2 has no {factory_name}")


def sorted_rows(points):
    points = np.asarray(points, dtype=np.float64)
    return points[np.lexsort(points.T[::-1])]


@pytest.mark.parametrize(
    ("name", "factory_name"),
    [("sift", "SIFT_create"), ("akaze", "AKAZE_create"), ("brisk", "BRISK_create")],
)
def test_max_keypoints_keeps_the_strongest(gray, name, factory_name):
    """The 25 keypoints of highest response among all that OpenCV's detector finds."""
    positions, _ = make_detector(name, max_keypoints=25).describe(gray)
    keypoints, _ = opencv_detector(factory_name).detectAndCompute(gray, None)
    assert len(keypoints) > 25
    strongest = sorted(keypoints, key=lambda keypoint: -keypoint.response)[:25]
    height, width = gray.shape
    expected = [(kp.pt[0] / width, kp.pt[1] / height) for kp in strongest]
    np.testing.assert_allclose(sorted_rows(positions), sorted_rows(expected), atol=1e-6)


def test_max_keypoints_bounds_orb(gray):
    """ORB shares its keypoints out among pyramid levels, so they need not be the strongest."""
    assert len(make_detector("orb").describe(gray)[0]) > 25
    assert 0 < len(make_detector("orb", max_keypoints=25).describe(gray)[0]) <= 25


@pytest.mark.parametrize("name", ALWAYS_ON_PYPI)
def test_blank_image_gives_empty_but_well_shaped_arrays(name):
    features = make_detector(name)
    blank = np.full((64, 64), 128, dtype=np.uint8)
    positions, descriptors = features.describe(blank)
    if name != "dense-sift":
        assert positions.shape == (0, 2)
    assert descriptors.shape[1] == features.descriptor_size


def test_unknown_detector_lists_the_choices():
    with pytest.raises(ValueError, match="unknown detector 'fast'"):
        make_detector("fast")


def test_colour_sampled_half_as_densely_stays_close_to_opencvs_own_description(demo):
    """The reference: OpenCV's own description of the colour channels, full density."""
    sift = cv2.SIFT_create(nfeatures=5000)
    similarities = []
    for path in demo.data[::15]:
        rgb = load_image(path)
        keypoints, _ = sift.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
        signed = rgb.astype(np.int16)
        channels = (
            (signed[..., 0] - signed[..., 1]) // 2 + 128,
            (signed[..., 0] + signed[..., 1] - 2 * signed[..., 2]) // 4 + 128,
        )
        _, described = make_detector("opponent-rootsift", max_keypoints=5000).describe(rgb)
        assert len(described) == len(keypoints) < 5000  # the same keypoints, in OpenCV's order
        for block, channel in enumerate(channels, start=1):
            reference = np.sqrt(sift.compute(channel.astype(np.uint8), keypoints)[1])
            sparser = described[:, 128 * block : 128 * (block + 1)]
            norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(sparser, axis=1)
            similarities.append(np.sum(reference * sparser, axis=1)[norms > 0] / norms[norms > 0])
    assert np.mean(np.concatenate(similarities)) > 0.97


@pytest.mark.parametrize(("octave", "layer", "expected_octave"), [(2, 1, 3), (0, 3, 1), (-1, 2, 0)])
def test_a_keypoint_moves_one_octave_coarser_and_keeps_the_rest(octave, layer, expected_octave):
    packed = (layer << 8) | (octave & 0xFF)
    coarser = _one_octave_coarser(cv2.KeyPoint(100.0, 60.0, 12.0, 30.0, 0.5, packed))
    signed = coarser.octave & 0xFF
    assert (signed - 256 if signed >= 128 else signed) == expected_octave
    assert (coarser.octave >> 8) & 0xFF == layer
    assert coarser.pt == (100.0, 60.0)
    assert coarser.size == 12.0
    assert coarser.angle == 30.0
