"""Duplicates in a catalogue: items that show the same photo of a product under two ids.

Catalogues collect one product twice: the same photo uploaded again under a second
id, re-encoded, cropped or resized on the way. Such copies are near neighbours in
feature space, but so are distinct photos of one product; what tells a copy apart is
its keypoints. A copy keeps nearly every keypoint where one transform of the photo
puts it, with nearly the same descriptor; a second shot of the product moves, lights
and frames it differently.

So duplicates are found in three steps:

1. candidate pairs: each item's ``n_neighbors`` nearest items whose features have a
   cosine similarity of at least ``min_similarity`` (computed in blocks of items,
   through the index's own search, so memory stays bounded);
2. verification: each candidate pair's keypoints are matched (Lowe's ratio test) and
   the matches one homography explains are counted (RANSAC, as in the re-ranking of
   :class:`fusionrec.ProductIndex`); a pair is a duplicate when enough matches agree
   (``min_inliers``), nearly all of them do (``min_inlier_share``) and the agreeing
   descriptors are nearly unchanged (``max_descriptor_distance``);
3. groups: the connected components of the verified pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .._parallel import map_chunks
from .._validation import IS_NONE, Integer, Options, Real, check_values
from .._vectors import l2_normalise
from .geometry import Keypoints, homography_inliers, ratio_matches
from .ids import id_values

N_NEIGHBORS = 10
"""Nearest items per item checked by default: a copy ranks behind a few shots of its shelf."""
MIN_SIMILARITY = 0.6
"""Lowest cosine similarity of a candidate pair by default (planted copies: 0.65 and up)."""
MIN_INLIERS = 20
"""Fewest keypoint matches one homography must explain by default."""
MIN_INLIER_SHARE = 0.85
"""Smallest share of the ratio-test matches that must be inliers, by default."""
MAX_DESCRIPTOR_DISTANCE = 0.15
"""Largest median distance between matched unit-length descriptors, by default."""
RATIO = 0.8  # Lowe's ratio test, as in re-ranking
_BLOCK = 1024  # items whose neighbours are searched at once
_PAIR_CHUNK = 256  # candidate pairs verified per joblib task

_RULES = {
    "n_neighbors": (Integer(1),),
    "min_similarity": (Real(-1.0, 1.0),),
    "min_inliers": (Integer(4),),
    "min_inlier_share": (Options((0,)), Real(0.0, 1.0)),
    "max_descriptor_distance": (IS_NONE, Real(0.0, 2.0)),
}


@dataclass(frozen=True)
class DuplicateGroup:
    """Catalogue items that show one product photo, and the verified pairs that join them.

    Attributes
    ----------
    ids : ndarray of shape (n_members,), object
        The items' ids, in index order.
    pairs : ndarray of shape (n_pairs, 2), object
        The ids of each verified pair (every member is in at least one).
    similarities : ndarray of shape (n_pairs,), float32
        Cosine similarity of each pair's features.
    inliers : ndarray of shape (n_pairs,), int64
        Keypoint matches that one homography explains, per pair.

    Examples
    --------
    >>> import numpy as np
    >>> group = DuplicateGroup(
    ...     np.array(["a.jpg", "b.jpg"], dtype=object),
    ...     np.array([["a.jpg", "b.jpg"]], dtype=object),
    ...     np.array([0.93], np.float32),
    ...     np.array([212]),
    ... )
    >>> len(group), group.to_dict()["pairs"]
    (2, [{'ids': ['a.jpg', 'b.jpg'], 'similarity': 0.93, 'inliers': 212}])
    """

    ids: np.ndarray
    pairs: np.ndarray
    similarities: np.ndarray
    inliers: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict:
        """Plain lists, ready for ``json.dumps``."""
        pairs = [
            {"ids": list(pair), "similarity": round(float(similarity), 4), "inliers": int(count)}
            for pair, similarity, count in zip(
                self.pairs.tolist(), self.similarities, self.inliers, strict=True
            )
        ]
        return {"ids": self.ids.tolist(), "pairs": pairs}


@dataclass(frozen=True)
class CandidatePairs:
    """Pairs of index positions ``(first, second)``, ``first < second``, with measurements.

    ``similarities`` come from the features; ``inliers``, ``inlier_shares`` and
    ``descriptor_distances`` from :func:`verify_pairs` (``None`` before).
    """

    positions: np.ndarray
    similarities: np.ndarray
    inliers: np.ndarray | None = None
    inlier_shares: np.ndarray | None = None
    descriptor_distances: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)


def find_duplicates(
    index: Any,
    *,
    n_neighbors: int = N_NEIGHBORS,
    min_similarity: float = MIN_SIMILARITY,
    min_inliers: int = MIN_INLIERS,
    min_inlier_share: float = MIN_INLIER_SHARE,
    max_descriptor_distance: float | None = MAX_DESCRIPTOR_DISTANCE,
) -> list[DuplicateGroup]:
    """Groups of items of a fitted ``ProductIndex`` that show the same photo.

    :meth:`fusionrec.ProductIndex.duplicates` documents the parameters; this
    is its implementation.
    """
    options = {
        "n_neighbors": n_neighbors,
        "min_similarity": min_similarity,
        "min_inliers": min_inliers,
        "min_inlier_share": min_inlier_share,
        "max_descriptor_distance": max_descriptor_distance,
    }
    check_values(options, _RULES)
    candidates = candidate_pairs(index, n_neighbors, min_similarity)
    keypoints = index.keypoints_
    measured = verify_pairs(keypoints, candidates, n_jobs=index.n_jobs, verbose=index.verbose)
    verified = is_duplicate(measured, min_inliers, min_inlier_share, max_descriptor_distance)
    return duplicate_groups(id_values(index.ids_), measured, verified)


def candidate_pairs(index: Any, n_neighbors: int, min_similarity: float) -> CandidatePairs:
    """Each item's nearest items at ``min_similarity`` or above, every pair once.

    The neighbours come from the index's own search (exact or inverted file),
    ``_BLOCK`` items at a time.
    """
    n_items = len(index.ids_)
    k = min(n_neighbors + 1, n_items)  # each item finds itself too
    found = []
    for start in range(0, n_items, _BLOCK):
        rows = np.arange(start, min(start + _BLOCK, n_items))
        neighbours, scores = index._nearest(index.vectors_[rows], k)
        first = np.repeat(rows, neighbours.shape[1])
        kept = (neighbours.ravel() != first) & (scores.ravel() >= min_similarity)
        pairs = np.sort(np.column_stack([first[kept], neighbours.ravel()[kept]]), axis=1)
        found.append((pairs, scores.ravel()[kept]))
    pairs = np.concatenate([pairs for pairs, _ in found] or [np.empty((0, 2), np.intp)])
    scores = np.concatenate([scores for _, scores in found] or [np.empty(0, np.float32)])
    pairs, first_seen = np.unique(pairs.reshape(-1, 2), axis=0, return_index=True)
    return CandidatePairs(pairs.astype(np.intp), scores[first_seen].astype(np.float32))


def verify_pairs(
    keypoints: Sequence[Keypoints],
    candidates: CandidatePairs,
    *,
    n_jobs: int | None = None,
    verbose: int = 0,
) -> CandidatePairs:
    """The candidates with their keypoint measurements (joblib tasks of pairs)."""
    pairs = [(keypoints[first], keypoints[second]) for first, second in candidates.positions]
    chunks = map_chunks(
        _measured_chunk,
        pairs,
        chunk_size=_PAIR_CHUNK,
        n_jobs=n_jobs,
        verbose=verbose,
        description="verifying pairs",
    )
    measured = np.concatenate(list(chunks) or [np.empty((0, 3))]).reshape(-1, 3)
    return CandidatePairs(
        candidates.positions,
        candidates.similarities,
        measured[:, 0].astype(np.int64),
        measured[:, 1],
        measured[:, 2],
    )


def is_duplicate(
    measured: CandidatePairs,
    min_inliers: int,
    min_inlier_share: float,
    max_descriptor_distance: float | None,
) -> np.ndarray:
    """Which measured pairs pass every threshold."""
    passed = (measured.inliers >= min_inliers) & (measured.inlier_shares >= min_inlier_share)
    if max_descriptor_distance is not None:
        passed &= measured.descriptor_distances <= max_descriptor_distance
    return passed


def duplicate_groups(
    ids: np.ndarray, measured: CandidatePairs, verified: np.ndarray
) -> list[DuplicateGroup]:
    """The connected components of the verified pairs, largest first."""
    pairs = measured.positions[verified]
    n_items = len(ids)
    if n_items == 0:
        return []
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_items, n_items))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component, minlength=n_items)
    grouped = np.flatnonzero(sizes[component] > 1)
    first_member = {}
    for position in grouped:
        first_member.setdefault(component[position], position)
    order = sorted(first_member, key=lambda label: (-sizes[label], first_member[label]))
    pair_component = component[pairs[:, 0]]
    similarities = measured.similarities[verified]
    inliers = measured.inliers[verified]
    groups = []
    for label in order:
        members = grouped[component[grouped] == label]
        joined = pair_component == label
        groups.append(
            DuplicateGroup(
                ids[members],
                ids[pairs[joined]].reshape(-1, 2),
                similarities[joined],
                inliers[joined],
            )
        )
    return groups


def _measured_chunk(pairs: list[tuple[Keypoints, Keypoints]], start: int) -> np.ndarray:
    """Rows of (inliers, inlier share, descriptor distance), one per pair."""
    return np.array([_measured(first, second) for first, second in pairs], dtype=np.float64)


def _measured(first: Keypoints, second: Keypoints) -> tuple[float, float, float]:
    """How well one photo's keypoints reappear in the other's.

    Returns the homography's inliers, their share of the ratio-test matches,
    and the median distance between the inliers' unit-length descriptors
    (``inf`` without inliers).
    """
    first_descriptors = l2_normalise(first.descriptors())
    second_descriptors = l2_normalise(second.descriptors())
    matched = ratio_matches(first_descriptors, second_descriptors, RATIO)
    rows = np.asarray(matched, dtype=np.intp).reshape(-1, 2)
    inlier = homography_inliers(first, second, rows)
    n_inliers = int(inlier.sum())
    if n_inliers == 0:
        return 0.0, 0.0, np.inf
    kept = rows[inlier]
    gaps = first_descriptors[kept[:, 0]] - second_descriptors[kept[:, 1]]
    return float(n_inliers), n_inliers / len(rows), float(np.median(np.linalg.norm(gaps, axis=1)))
