"""Why a search returned a photo: the keypoint matches its geometric check verified, drawn.

A :class:`fusionrec.ProductIndex` built with ``rerank="ransac"`` re-ranks its
best candidates by how many keypoint matches one homography explains, and
its :class:`fusionrec.search.Matches` keep those matches. Drawn side by side,
one line per verified match, they show what the score counted, and only that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ..images import load_image
from ..search import Matches
from .rendering import DrawsPNG, short_id

DISPLAY_SIDE = 512
"""Longest side, in pixels, of each photo a match picture shows."""
TITLE_ID_LENGTH = 40
"""A longer item id (a deep path, say) shows only its end in the picture's title."""


@dataclass(frozen=True)
class MatchExplanation(DrawsPNG):
    """The verified keypoint matches between a query photo and one catalogue photo.

    :func:`fusionrec.explain_match` makes it; :meth:`render`,
    :meth:`to_png` and :meth:`save_png` draw the two photos side by side
    with one line per match.

    Attributes
    ----------
    query_image, item_image : ndarray of shape (height, width, 3), uint8
        The query photo and the catalogue photo.
    item_id : object
        The catalogue photo's id in the index.
    similarity : float
        The cosine similarity of their features.
    query_points, item_points : ndarray of shape (n_inliers, 2), float32
        Row ``i`` of each: the two ends of verified match ``i``, ``(x, y)`` in
        pixels of ``query_image`` and of ``item_image``.

    Examples
    --------
    >>> import numpy as np
    >>> from fusionrec.search import Matches
    >>> pairs = np.array([[0.2, 0.3, 0.25, 0.35], [0.6, 0.5, 0.6, 0.55]], np.float32)
    >>> matches = Matches(np.array(["tea"]), np.array([0.9], np.float32), np.array([2]), (pairs,))
    >>> query = np.zeros((100, 200, 3), np.uint8)
    >>> why = explain_match(query, query, matches)
    >>> why.n_inliers, why.query_points.round(1).tolist()
    (2, [[40.0, 30.0], [120.0, 50.0]])
    """

    query_image: np.ndarray = field(repr=False)
    item_image: np.ndarray = field(repr=False)
    item_id: Any
    similarity: float
    query_points: np.ndarray = field(repr=False)
    item_points: np.ndarray = field(repr=False)

    @property
    def n_inliers(self) -> int:
        """How many verified matches there are (the index's inlier count)."""
        return len(self.query_points)

    def render(self, *, title: str | None = None) -> Figure:
        """The two photos side by side, at one height, with a line for each verified match.

        Parameters
        ----------
        title : str or None
            ``None``: the catalogue photo's id, similarity and inlier count.
        """
        height = max(self.query_image.shape[0], self.item_image.shape[0])
        query, query_scale = _at_height(self.query_image, height)
        item, item_scale = _at_height(self.item_image, height)
        canvas = np.full((height, query.shape[1] + item.shape[1], 3), 255, np.uint8)
        canvas[:, : query.shape[1]] = query
        canvas[:, query.shape[1] :] = item
        starts = self.query_points * query_scale
        ends = self.item_points * item_scale + np.array([query.shape[1], 0], np.float32)
        width_inches = 7.0 * canvas.shape[1] / canvas.shape[0] / 2 + 0.5
        figure = Figure(figsize=(min(width_inches, 14.0), 4.2))
        axes = figure.add_axes((0.01, 0.01, 0.98, 0.9))
        axes.imshow(canvas)
        axes.set_axis_off()
        segments = np.stack([starts, ends], axis=1)
        colours = colormaps["hsv"](np.linspace(0.0, 1.0, self.n_inliers, endpoint=False))
        axes.add_collection(LineCollection(segments, colors=colours, linewidths=0.7, alpha=0.8))
        axes.set_title(title or self._title(), fontsize=10)
        return figure

    def _title(self) -> str:
        name = short_id(self.item_id, TITLE_ID_LENGTH)
        return f"{name}: similarity {self.similarity:.3f}, {self.n_inliers} verified matches"


def explain_match(query: Any, item: Any, matches: Matches, rank: int = 0) -> MatchExplanation:
    """The verified keypoint matches behind one re-ranked search result.

    Parameters
    ----------
    query : path, bytes, ndarray or PIL image
        The photo that was searched with.
    item : path, bytes, ndarray or PIL image
        The catalogue photo of the match (the photo indexed under
        ``matches.ids[rank]``).
    matches : Matches
        What ``ProductIndex.query`` returned for ``query``, from an index
        built with ``rerank="ransac"``.
    rank : int, default=0
        Which match to explain: 0 for the best.

    Returns
    -------
    MatchExplanation
        With exactly ``matches.inliers[rank]`` matches.

    Raises
    ------
    ValueError
        If ``matches`` holds no verified matches (the index does not
        re-rank) or ``rank`` is out of range.
    """
    if matches.inlier_positions is None:
        raise ValueError(
            "these matches hold no verified keypoint matches: search an index built with "
            "rerank='ransac'"
        )
    if not 0 <= rank < len(matches):
        raise ValueError(f"rank must be in [0, {len(matches)}); got {rank!r}")
    query_image = load_image(query, max_side=DISPLAY_SIDE)
    item_image = load_image(item, max_side=DISPLAY_SIDE)
    pairs = matches.inlier_positions[rank]
    return MatchExplanation(
        query_image=query_image,
        item_image=item_image,
        item_id=matches.ids[rank],
        similarity=float(matches.scores[rank]),
        query_points=_in_pixels(pairs[:, :2], query_image),
        item_points=_in_pixels(pairs[:, 2:], item_image),
    )


def _in_pixels(fractions: np.ndarray, image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return (fractions * np.array([width, height], np.float32)).astype(np.float32)


def _at_height(image: np.ndarray, height: int) -> tuple[np.ndarray, float]:
    """``image`` resized to ``height`` rows, keeping its aspect ratio, and the scale."""
    scale = height / image.shape[0]
    width = max(1, round(image.shape[1] * scale))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), scale
