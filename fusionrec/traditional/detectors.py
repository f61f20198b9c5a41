"""Local feature detectors: keypoints and descriptors from one image.

Each detector is a small class with ``describe(image) -> (positions, descriptors)``
(:data:`DETECTORS` names them; :func:`make_detector` builds one by name);
keypoints are found on the image's intensity, and the opponent-colour detector
also describes its two colour-opponent channels at the same keypoints.
``positions`` are keypoint centres as ``(x, y)`` fractions of the image width and
height (for spatial pyramids); ``descriptors`` are float32 rows. Binary
descriptors (ORB, AKAZE, BRISK) are unpacked to one 0/1 value per bit, so that
the squared Euclidean distance between two of them equals their Hamming
distance and scikit-learn's k-means can cluster them honestly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import cv2
import numpy as np


class DetectorUnavailableError(RuntimeError):
    """The installed OpenCV build lacks the requested detector."""


def _factory(name: str) -> Callable | None:
    """Find ``cv2.<name>`` or ``cv2.xfeatures2d.<name>`` (OpenCV 4 and 5 differ)."""
    for namespace in (cv2, getattr(cv2, "xfeatures2d", None)):
        factory = getattr(namespace, name, None)
        if factory is not None:
            return factory
    return None


class Detector:
    """One OpenCV detector: keypoints found on a photo's intensity, and their descriptors.

    Each detector is a small subclass that says how OpenCV builds it and, where
    it differs from the rest, how it finds keypoints or finishes descriptors.

    Parameters
    ----------
    max_keypoints : int, default=1000
        Keep at most this many keypoints per image, the strongest first.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    >>> positions, descriptors = make_detector("rootsift", max_keypoints=10).describe(image)
    >>> positions.shape[1], descriptors.shape[1]
    (2, 128)
    """

    name: ClassVar[str]
    factory_name: ClassVar[str]
    binary: ClassVar[bool] = False
    bounds_keypoints: ClassVar[bool] = False
    """Whether OpenCV's factory takes ``nfeatures`` (our ``max_keypoints``) itself."""
    summary: ClassVar[str]
    revision: ClassVar[int] = 0
    """Raised whenever the detector's output changes, so cached older descriptions go unread."""

    def __init__(self, max_keypoints: int = 1000) -> None:
        self.max_keypoints = max_keypoints
        self._detector = self._create(_factory(self.factory_name))

    @classmethod
    def available(cls) -> bool:
        """Whether this OpenCV build provides the detector."""
        return _factory(cls.factory_name) is not None

    def _create(self, factory: Callable):
        return factory(nfeatures=self.max_keypoints) if self.bounds_keypoints else factory()

    @property
    def descriptor_size(self) -> int:
        """Length of one descriptor row as returned by :meth:`describe`."""
        size = self._detector.descriptorSize()
        return size * 8 if self.binary else size

    def describe(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoint positions and descriptors of one ``uint8`` RGB or gray image.

        Returns
        -------
        positions : ndarray of shape (n_keypoints, 2), float32
            Keypoint centres as fractions of the image width and height.
        descriptors : ndarray of shape (n_keypoints, descriptor_size), float32
        """
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        keypoints, descriptors = self._detect(gray)
        if descriptors is None or len(keypoints) == 0:
            return np.zeros((0, 2), np.float32), np.zeros((0, self.descriptor_size), np.float32)
        keypoints, descriptors = self._strongest(keypoints, descriptors)
        descriptors = self._described_further(image, keypoints, descriptors)
        height, width = gray.shape
        positions = cv2.KeyPoint_convert(keypoints).reshape(-1, 2)
        positions /= np.array([width, height], dtype=np.float32)
        return positions, self._as_float(descriptors)

    def _detect(self, gray: np.ndarray):
        return self._detector.detectAndCompute(gray, None)

    def _strongest(self, keypoints, descriptors):
        if len(keypoints) <= self.max_keypoints:
            return keypoints, descriptors
        order = np.argsort([-kp.response for kp in keypoints], kind="stable")
        order = order[: self.max_keypoints]
        return [keypoints[i] for i in order], descriptors[order]

    def _described_further(self, image: np.ndarray, keypoints, descriptors: np.ndarray):
        """Descriptors of other channels at the same keypoints; none but the intensity's here."""
        return descriptors

    def _as_float(self, descriptors: np.ndarray) -> np.ndarray:
        if self.binary:
            return np.unpackbits(descriptors, axis=1).astype(np.float32)
        return descriptors.astype(np.float32, copy=False)


class SIFT(Detector):
    """SIFT (Lowe, 2004): 128-d gradient histograms around scale-space extrema."""

    name = "sift"
    factory_name = "SIFT_create"
    bounds_keypoints = True
    summary = "SIFT, 128-d gradient histograms"


class RootSIFT(SIFT):
    """RootSIFT (Arandjelovic and Zisserman, 2012): SIFT compared with the Hellinger kernel."""

    name = "rootsift"
    summary = "SIFT with Hellinger (RootSIFT) normalisation"

    def _as_float(self, descriptors: np.ndarray) -> np.ndarray:
        blocks = descriptors.astype(np.float32, copy=False).reshape(len(descriptors), -1, 128)
        return _hellinger(blocks).reshape(len(descriptors), -1)


class OpponentRootSIFT(RootSIFT):
    """RootSIFT of the intensity and of the opponent-colour channels at the same keypoints.

    The colour channels are ``R - G`` and ``R + G - 2B`` (van de Sande et al.,
    2010); a gray image has flat colour channels, so its colour blocks are zeros.
    Each colour descriptor sees its keypoint's region as blurred as the
    intensity's, but sampled half as densely: a SIFT whose scale space starts
    at half the usual blur describes the colour channels, at the same
    keypoints moved one octave coarser. A descriptor then reads a quarter of
    the pixels, and the colour scale space starts from the photo itself,
    never doubled.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    >>> detector = make_detector("opponent-rootsift", max_keypoints=10)
    >>> positions, descriptors = detector.describe(image)
    >>> descriptors.shape[1]
    384
    >>> _, gray_descriptors = detector.describe(image.mean(axis=2).astype(np.uint8))
    >>> float(abs(gray_descriptors[:, 128:]).max())  # a gray photo has no colour
    0.0
    """

    name = "opponent-rootsift"
    summary = "RootSIFT of intensity and two opponent-colour channels, 384-d"
    revision = 3

    def __init__(self, max_keypoints: int = 1000) -> None:
        super().__init__(max_keypoints)
        self._colour_detector = _factory(self.factory_name)(sigma=_COLOUR_SIGMA)

    @property
    def descriptor_size(self) -> int:
        return 3 * self._detector.descriptorSize()

    def _described_further(self, image: np.ndarray, keypoints, descriptors: np.ndarray):
        coarser = [_one_octave_coarser(keypoint) for keypoint in keypoints]
        describe = self._colour_detector.compute
        colour = [describe(channel, coarser)[1] for channel in _opponent(image)]
        return np.hstack([descriptors, *colour])


_COLOUR_SIGMA = 0.8
"""Half of SIFT's base blur (1.6): one octave coarser, each keypoint's blur stays its own."""


def _one_octave_coarser(keypoint: cv2.KeyPoint) -> cv2.KeyPoint:
    """``keypoint`` in the next coarser octave of the scale space, same place and size.

    OpenCV packs the octave (a signed byte, -1 for the doubled image) and the
    layer within it into ``KeyPoint.octave``.
    """
    octave = keypoint.octave & 0xFF
    octave = octave - 256 if octave >= 128 else octave
    packed = (keypoint.octave & ~0xFF) | ((octave + 1) & 0xFF)
    x, y = keypoint.pt
    return cv2.KeyPoint(x, y, keypoint.size, keypoint.angle, keypoint.response, packed)


class DenseSIFT(SIFT):
    """SIFT described on a regular grid at fixed scales, every grid point kept.

    Parameters
    ----------
    max_keypoints : int, default=1000
        Not used: the grid fixes the keypoints.
    dense_step : int, default=8
        Grid spacing in pixels.
    dense_scales : tuple of float, default=(16.0, 32.0)
        Keypoint diameters in pixels.
    """

    name = "dense-sift"
    bounds_keypoints = False
    summary = "SIFT on a regular grid at fixed scales"

    def __init__(
        self,
        max_keypoints: int = 1000,
        dense_step: int = 8,
        dense_scales: tuple[float, ...] = (16.0, 32.0),
    ) -> None:
        super().__init__(max_keypoints)
        self.dense_step = dense_step
        self.dense_scales = dense_scales

    def _detect(self, gray: np.ndarray):
        return self._detector.compute(gray, self._grid(gray.shape))

    def _strongest(self, keypoints, descriptors):
        return keypoints, descriptors

    def _grid(self, shape: tuple[int, int]) -> list[cv2.KeyPoint]:
        height, width = shape
        margin = max(self.dense_scales) / 2
        ys = np.arange(margin, height - margin + 1, self.dense_step)
        xs = np.arange(margin, width - margin + 1, self.dense_step)
        return [
            cv2.KeyPoint(float(x), float(y), float(size))
            for size in self.dense_scales
            for y in ys
            for x in xs
        ]


class ORB(Detector):
    """ORB (Rublee et al., 2011): oriented FAST keypoints, rotated BRIEF bits."""

    name = "orb"
    factory_name = "ORB_create"
    binary = True
    bounds_keypoints = True
    summary = "ORB, 256-bit binary, fastest"


class AKAZE(Detector):
    """AKAZE (Alcantarilla et al., 2013): nonlinear scale space, binary MLDB descriptors."""

    name = "akaze"
    factory_name = "AKAZE_create"
    binary = True
    summary = "AKAZE, 486-bit binary (MLDB)"


class BRISK(Detector):
    """BRISK (Leutenegger et al., 2011): scale-space AGAST corners, binary descriptors."""

    name = "brisk"
    factory_name = "BRISK_create"
    binary = True
    summary = "BRISK, 512-bit binary"


class KAZE(Detector):
    """KAZE (Alcantarilla et al., 2012): nonlinear scale space, 64-d descriptors."""

    name = "kaze"
    factory_name = "KAZE_create"
    summary = "KAZE, 64-d, nonlinear scale space"


class SURF(Detector):
    """SURF (Bay et al., 2006); patented, so only in OpenCV builds with nonfree code."""

    name = "surf"
    factory_name = "SURF_create"
    summary = "SURF, 64-d (patented; needs a nonfree build)"

    @classmethod
    def available(cls) -> bool:
        """Whether ``SURF_create`` exists *and* works (it raises in builds without nonfree)."""
        factory = _factory(cls.factory_name)
        if factory is None:
            return False
        try:
            factory()
        except cv2.error:
            return False
        return True


DETECTORS: dict[str, type[Detector]] = {
    detector.name: detector
    for detector in (SIFT, RootSIFT, OpponentRootSIFT, DenseSIFT, ORB, AKAZE, BRISK, KAZE, SURF)
}
"""Every detector fusionrec knows, by name (:func:`available_detectors`: those this build has)."""


def available_detectors() -> list[str]:
    """Names of the detectors this OpenCV build really provides.

    SURF is patented and the OpenCV wheels on PyPI are built without it, so
    ``"surf"`` is listed only where a build with ``OPENCV_ENABLE_NONFREE`` is
    installed.

    Examples
    --------
    >>> "sift" in available_detectors()
    True
    """
    return [name for name, detector in DETECTORS.items() if detector.available()]


def check_detector(name: str) -> type[Detector]:
    """The detector's class; a clear error if the name is unknown or this build lacks it."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}")
    detector = DETECTORS[name]
    if detector.available():
        return detector
    if detector is SURF:
        alternatives = [other for other in available_detectors() if other != "surf"]
        raise DetectorUnavailableError(
            "detector 'surf' is not in this OpenCV build: SURF is patented, and the OpenCV "
            "wheels on PyPI are built without it (it needs OPENCV_ENABLE_NONFREE). Use "
            f"'rootsift' or 'sift' instead (also available here: {', '.join(alternatives)})"
        )
    raise DetectorUnavailableError(
        f"detector {name!r} needs cv2.{detector.factory_name}, which this OpenCV "
        f"{cv2.__version__} build lacks; install opencv-contrib-python-headless"
    )


def make_detector(name: str, max_keypoints: int = 1000, **options: Any) -> Detector:
    """The detector ``name``, built; ``options`` go to its class (``dense_step``, say).

    Raises
    ------
    ValueError
        For an unknown name.
    DetectorUnavailableError
        Where this OpenCV build lacks the detector.
    """
    return check_detector(name)(max_keypoints, **options)


def _hellinger(blocks: np.ndarray) -> np.ndarray:
    """RootSIFT: each 128-long SIFT block L1-normalised, then square-rooted."""
    return np.sqrt(blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + 1e-7))


def _opponent(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The opponent-colour channels ``(R - G) / 2`` and ``(R + G - 2B) / 4``, offset into uint8."""
    if image.ndim == 2:
        flat = np.full(image.shape, 128, np.uint8)
        return flat, flat
    red, green, blue = (image[..., i].astype(np.int16) for i in range(3))
    red_green = (red - green) // 2 + 128
    yellow_blue = (red + green - 2 * blue) // 4 + 128
    return red_green.astype(np.uint8), yellow_blue.astype(np.uint8)
