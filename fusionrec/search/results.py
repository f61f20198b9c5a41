"""What a search returns for one query photo."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Matches:
    """The catalogue items that best match one query photo, best first.

    Attributes
    ----------
    ids : ndarray of shape (k,)
        The matching items' ids, as given to ``fit`` or ``add``.
    scores : ndarray of shape (k,), float32
        Cosine similarity of each item's features to the query's, in [-1, 1].
    inliers : ndarray of shape (k,), int, or None
        With ``rerank="ransac"``: keypoint matches that one homography explains
        (0 for items outside the re-ranked candidates); else ``None``.
    inlier_positions : tuple of ndarray, or None
        With ``rerank="ransac"``, per item, the matches ``inliers`` counts:
        ``(inliers[i], 4)`` float32 rows holding the query keypoint's x and y
        and the item keypoint's x and y, as fractions of each photo's width
        and height (:func:`fusionrec.explain_match` draws them); else ``None``.

    Examples
    --------
    >>> import numpy as np
    >>> matches = Matches(np.array(["tea", "milk"]), np.array([0.9, 0.4], np.float32))
    >>> matches.best
    'tea'
    """

    ids: np.ndarray
    scores: np.ndarray
    inliers: np.ndarray | None = None
    inlier_positions: tuple[np.ndarray, ...] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def best(self):
        """The id of the best match (``None`` when there is no match)."""
        return self.ids[:1].tolist()[0] if len(self.ids) else None

    def at_least(self, min_score: float) -> Matches:
        """Only the matches whose score is at least ``min_score``, in the same order.

        Examples
        --------
        >>> matches = Matches(np.array(["tea", "milk"]), np.array([0.9, 0.4], np.float32))
        >>> matches.at_least(0.5).ids.tolist(), len(matches.at_least(0.95))
        (['tea'], 0)
        """
        kept = np.flatnonzero(self.scores >= min_score)
        return Matches(
            self.ids[kept],
            self.scores[kept],
            None if self.inliers is None else self.inliers[kept],
            None
            if self.inlier_positions is None
            else tuple(self.inlier_positions[i] for i in kept),
        )

    def to_dict(self) -> dict:
        """Plain lists, ready for ``json.dumps``."""
        result = {"ids": self.ids.tolist(), "scores": self.scores.tolist()}
        if self.inliers is not None:
            result["inliers"] = self.inliers.tolist()
        return result
