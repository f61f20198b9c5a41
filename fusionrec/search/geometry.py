"""Geometric verification: do two photos show the same object, in a consistent layout?

Two photos of the same packaged product share many keypoints whose positions
are related by one perspective transform (a homography). Counting the matches
that agree with the best such transform (the RANSAC inliers) is a far stronger
sign of "same product" than any global similarity score, and it is what the
re-ranking of :class:`fusionrec.ProductIndex` sorts by.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Keypoint positions arrive as fractions of the photo's width and height; they
# are matched on a nominal photo of this many pixels a side, which sets the
# scale of the RANSAC reprojection threshold.
NOMINAL_SIDE = 512.0
_MIN_MATCHES = 4  # a homography needs four correspondences


@dataclass(frozen=True)
class Keypoints:
    """One photo's keypoints, stored compactly for matching later.

    Descriptors are quantised to ``uint8`` with one scale per photo (a quarter
    of float32's memory); matching restores them to float32 first.

    Attributes
    ----------
    positions : ndarray of shape (n, 2), float32
        Keypoint centres on the nominal ``NOMINAL_SIDE`` square.
    codes : ndarray of shape (n, n_dims), uint8
    scale : float
        ``descriptors = codes * scale``.
    """

    positions: np.ndarray
    codes: np.ndarray
    scale: float

    @classmethod
    def from_pair(cls, positions: np.ndarray, descriptors: np.ndarray) -> Keypoints:
        """Quantise ``(positions, descriptors)`` as returned by ``BagOfVisualWords.describe``."""
        peak = float(descriptors.max()) if descriptors.size else 0.0
        scale = peak / 255.0 if peak > 0 else 1.0
        codes = np.rint(descriptors / scale).astype(np.uint8)
        return cls((positions * NOMINAL_SIDE).astype(np.float32), codes, scale)

    def __len__(self) -> int:
        return len(self.positions)

    def descriptors(self) -> np.ndarray:
        """The descriptors as float32 rows."""
        return self.codes.astype(np.float32) * np.float32(self.scale)

    @property
    def nbytes(self) -> int:
        """Memory held by this photo's keypoints."""
        return self.positions.nbytes + self.codes.nbytes


def ratio_matches(query: np.ndarray, candidate: np.ndarray, ratio: float) -> list[tuple[int, int]]:
    """Pairs ``(query row, candidate row)`` that pass Lowe's ratio test.

    A match is kept when its nearest candidate descriptor is clearly closer than
    the second nearest (``distance < ratio * second distance``).
    """
    if len(query) < 2 or len(candidate) < 2:
        return []
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = []
    for best, second in matcher.knnMatch(query, candidate, k=2):
        if best.distance < ratio * second.distance:
            pairs.append((best.queryIdx, best.trainIdx))
    return pairs


def verified_matches(
    query: Keypoints,
    candidate: Keypoints,
    *,
    query_descriptors: np.ndarray | None = None,
    ratio: float = 0.8,
    threshold: float = 8.0,
) -> np.ndarray:
    """The ratio-test matches consistent with one homography (OpenCV's USAC MAGSAC).

    Parameters
    ----------
    query, candidate : Keypoints
    query_descriptors : ndarray or None
        ``query.descriptors()``, when the caller already has it (one query is
        compared with many candidates).
    ratio : float
        Lowe's ratio test threshold.
    threshold : float
        Largest reprojection error of an inlier, in pixels of the nominal
        ``NOMINAL_SIDE``-pixel photo.

    Returns
    -------
    ndarray of shape (n_inliers, 4), float32
        One row per inlier: its query keypoint's x and y, then its candidate
        keypoint's, as fractions of each photo's width and height. No rows
        when there are fewer than four matches or no homography fits.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> positions = rng.random((60, 2)).astype(np.float32)
    >>> descriptors = rng.random((60, 128)).astype(np.float32)
    >>> same = Keypoints.from_pair(positions, descriptors)
    >>> pairs = verified_matches(same, same)
    >>> len(pairs) >= 55, bool(np.allclose(pairs[:, :2], pairs[:, 2:]))
    (True, True)
    """
    if query_descriptors is None:
        query_descriptors = query.descriptors()
    matched = ratio_matches(query_descriptors, candidate.descriptors(), ratio)
    rows = np.asarray(matched, dtype=np.intp).reshape(-1, 2)
    inlier = homography_inliers(query, candidate, rows, threshold)
    source = query.positions[rows[inlier, 0]]
    target = candidate.positions[rows[inlier, 1]]
    return (np.hstack([source, target]) / NOMINAL_SIDE).astype(np.float32)


def homography_inliers(
    query: Keypoints, candidate: Keypoints, rows: np.ndarray, threshold: float = 8.0
) -> np.ndarray:
    """Which matched keypoint pairs one homography explains (OpenCV's USAC MAGSAC).

    Parameters
    ----------
    query, candidate : Keypoints
    rows : ndarray of shape (n_matches, 2), int
        Matched pairs, ``(query row, candidate row)``, as from :func:`ratio_matches`.
    threshold : float
        Largest reprojection error of an inlier, in pixels of the nominal photo.

    Returns
    -------
    ndarray of shape (n_matches,), bool
        All false when there are fewer than four matches or no homography fits.
    """
    inlier = np.zeros(len(rows), dtype=bool)
    if len(rows) < _MIN_MATCHES:
        return inlier
    source = query.positions[rows[:, 0]]
    target = candidate.positions[rows[:, 1]]
    homography, mask = cv2.findHomography(source, target, cv2.USAC_MAGSAC, threshold)
    if homography is not None and mask is not None:
        inlier[:] = mask.ravel().astype(bool)
    return inlier


def count_inliers(query: Keypoints, candidate: Keypoints, **options) -> int:
    """Number of :func:`verified_matches` (which takes the same ``options``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> positions = rng.random((60, 2)).astype(np.float32)
    >>> descriptors = rng.random((60, 128)).astype(np.float32)
    >>> same = Keypoints.from_pair(positions, descriptors)
    >>> count_inliers(same, same) >= 55
    True
    """
    return len(verified_matches(query, candidate, **options))
