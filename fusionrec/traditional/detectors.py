"""Local feature detectors: keypoints and descriptors from one image.

Each detector is a small class with ``describe(image) -> (positions, descriptors)``;
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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class DetectorSpec:
    """How to build one detector, and what its descriptors are."""

    factory_name: str
    binary: bool
    summary: str


DETECTORS: dict[str, DetectorSpec] = {
    "sift": DetectorSpec("SIFT_create", False, "SIFT, 128-d gradient histograms"),
    "rootsift": DetectorSpec("SIFT_create", False, "SIFT with Hellinger (RootSIFT) normalisation"),
    "opponent-rootsift": DetectorSpec(
        "SIFT_create", False, "RootSIFT of intensity and two opponent-colour channels, 384-d"
    ),
    "dense-sift": DetectorSpec("SIFT_create", False, "SIFT on a regular grid at fixed scales"),
    "orb": DetectorSpec("ORB_create", True, "ORB, 256-bit binary, fastest"),
    "akaze": DetectorSpec("AKAZE_create", True, "AKAZE, 486-bit binary (MLDB)"),
    "brisk": DetectorSpec("BRISK_create", True, "BRISK, 512-bit binary"),
    "kaze": DetectorSpec("KAZE_create", False, "KAZE, 64-d, nonlinear scale space"),
    "surf": DetectorSpec("SURF_create", False, "SURF, 64-d (patented; needs a nonfree build)"),
}


def _surf_works() -> bool:
    factory = _factory("SURF_create")
    if factory is None:
        return False
    try:
        factory()
    except cv2.error:
        return False
    return True


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
    names = []
    for name, spec in DETECTORS.items():
        works = _surf_works() if name == "surf" else _factory(spec.factory_name) is not None
        if works:
            names.append(name)
    return names


def check_detector(name: str) -> DetectorSpec:
    """The detector's spec; a clear error if the name is unknown or this build lacks it."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}")
    spec = DETECTORS[name]
    if name == "surf" and not _surf_works():
        alternatives = [other for other in available_detectors() if other != "surf"]
        raise DetectorUnavailableError(
            "detector 'surf' is not in this OpenCV build: SURF is patented, and the OpenCV "
            "wheels on PyPI are built without it (it needs OPENCV_ENABLE_NONFREE). Use "
            f"'rootsift' or 'sift' instead (also available here: {', '.join(alternatives)})"
        )
    if _factory(spec.factory_name) is None:
        raise DetectorUnavailableError(
            f"detector {name!r} needs cv2.{spec.factory_name}, which this OpenCV "
            f"{cv2.__version__} build lacks; install opencv-contrib-python-headless"
        )
    return spec


class LocalFeatures:
    """Detect keypoints and compute descriptors with one OpenCV detector.

    Parameters
    ----------
    name : str
        A key of :data:`DETECTORS`.
    max_keypoints : int
        Keep at most this many keypoints per image, the strongest first.
    dense_step : int
        Grid spacing in pixels for ``"dense-sift"``.
    dense_scales : tuple of float
        Keypoint diameters in pixels for ``"dense-sift"``.
    """

    def __init__(
        self,
        name: str,
        max_keypoints: int = 1000,
        dense_step: int = 8,
        dense_scales: tuple[float, ...] = (16.0, 32.0),
    ) -> None:
        self.spec = check_detector(name)
        self.name = name
        self.max_keypoints = max_keypoints
        self.dense_step = dense_step
        self.dense_scales = dense_scales
        self._detector = self._create()

    def _create(self):
        factory = _factory(self.spec.factory_name)
        if self.name in ("sift", "rootsift", "opponent-rootsift"):
            return factory(nfeatures=self.max_keypoints)
        if self.name == "orb":
            return factory(nfeatures=self.max_keypoints)
        return factory()

    @property
    def descriptor_size(self) -> int:
        """Length of one descriptor row as returned by :meth:`describe`."""
        size = self._detector.descriptorSize()
        if self.name == "opponent-rootsift":
            return size * 3
        return size * 8 if self.spec.binary else size

    def describe(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoint positions and descriptors of one ``uint8`` RGB or gray image.

        Keypoints are found on the intensity. ``"opponent-rootsift"`` appends
        the descriptors of the opponent-colour channels ``R - G`` and
        ``R + G - 2B`` at the same keypoints (zeros for a gray image, whose
        colour channels are flat).

        Returns
        -------
        positions : ndarray of shape (n_keypoints, 2), float32
            Keypoint centres as fractions of the image width and height.
        descriptors : ndarray of shape (n_keypoints, descriptor_size), float32
        """
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if self.name == "dense-sift":
            keypoints, descriptors = self._detector.compute(gray, self._grid(gray.shape))
        else:
            keypoints, descriptors = self._detector.detectAndCompute(gray, None)
        if descriptors is None or len(keypoints) == 0:
            return np.zeros((0, 2), np.float32), np.zeros((0, self.descriptor_size), np.float32)
        keypoints, descriptors = self._strongest(keypoints, descriptors)
        if self.name == "opponent-rootsift":
            colour = [self._detector.compute(channel, keypoints)[1] for channel in _opponent(image)]
            descriptors = np.hstack([descriptors, *colour])
        height, width = gray.shape
        positions = cv2.KeyPoint_convert(keypoints).reshape(-1, 2)
        positions /= np.array([width, height], dtype=np.float32)
        return positions, self._as_float(descriptors)

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

    def _strongest(self, keypoints, descriptors):
        if self.name == "dense-sift" or len(keypoints) <= self.max_keypoints:
            return keypoints, descriptors
        order = np.argsort([-kp.response for kp in keypoints], kind="stable")
        order = order[: self.max_keypoints]
        return [keypoints[i] for i in order], descriptors[order]

    def _as_float(self, descriptors: np.ndarray) -> np.ndarray:
        if self.spec.binary:
            return np.unpackbits(descriptors, axis=1).astype(np.float32)
        descriptors = descriptors.astype(np.float32, copy=False)
        if self.name in ("rootsift", "opponent-rootsift"):
            descriptors = _hellinger(descriptors.reshape(len(descriptors), -1, 128))
        return descriptors.reshape(len(descriptors), -1)


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
