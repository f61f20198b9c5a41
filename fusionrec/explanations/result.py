"""Why a FusedClassifier named a product: the numbers, the maps, and one picture of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .keypoints import strongest
from .rendering import DrawsPNG, show_photo

N_DRAWN_KEYPOINTS = 30
"""How many keypoints a picture draws by default: the strongest for the product."""


@dataclass(frozen=True)
class Explanation(DrawsPNG):
    """Why a :class:`fusionrec.FusedClassifier` gave a photo its score for one product.

    :func:`fusionrec.explain` makes it. Numbers first; :meth:`render`,
    :meth:`to_png` and :meth:`save_png` draw them as one picture: the deep
    branch's heat map, the traditional branch's strongest keypoints, and the
    branches' shares.

    Attributes
    ----------
    image : ndarray of shape (height, width, 3), uint8
        The photo, as the model read it.
    label : object
        The product explained: the prediction, unless another was asked for.
    predicted : object
        The product the model predicts.
    probability : float
        The model's probability of ``label``.
    fusion : {"early", "late"}
        How the model combines its branches (``"early"`` for one branch).
    score : float
        The model's score of ``label``: the decision function with early
        fusion; with late fusion, the weighted sum of the branches'
        log-probabilities (whose softmax is ``predict_proba``).
    shares : dict of str to float
        Each branch's part of ``score``: ``score == sum(shares.values()) + intercept``.
    intercept : float
        The classifier's intercept for ``label`` (0 with late fusion).
    branch_probabilities : dict of str to float or None
        Late fusion: each branch's own probability of ``label``.
    late_weight : float or None
        Late fusion: the weight of the traditional branch's log-probabilities
        (the deep branch's is ``1 - late_weight``).
    heat_map : ndarray of shape (height, width), float32, or None
        Grad-CAM of ``label``'s score over ``image``: 1 at the hottest pixel,
        0 where nothing argues for ``label``, NaN outside the centre crop the
        network sees; ``None`` without a deep branch.
    heat_map_layer : str or None
        The network module the heat map was taken at.
    keypoints : ndarray of shape (n, 2), float32, or None
        The traditional branch's keypoints, ``(x, y)`` in pixels of ``image``;
        ``None`` without a traditional branch.
    keypoint_weights : ndarray of shape (n,) or None
        Each keypoint's part of the traditional block's term of the linear
        score of ``label`` (``shares["traditional"]`` with early fusion; with
        late fusion, of the traditional classifier's own score). They add up
        to it; the largest mark the keypoints whose visual words argue most
        for ``label``.

    Examples
    --------
    >>> from fusionrec import BagOfVisualWords, FusedClassifier, explain
    >>> from fusionrec.datasets import load_demo_products
    >>> demo = load_demo_products()
    >>> keypoints = BagOfVisualWords(n_words=16, max_side=160, random_state=0)
    >>> model = FusedClassifier("traditional", traditional=keypoints, random_state=0)
    >>> model = model.fit(demo.data[::3], demo.target[::3])
    >>> why = explain(model, demo.data[1])
    >>> bool(abs(sum(why.shares.values()) + why.intercept - why.score) < 1e-6)
    True
    >>> why.to_png()[:4]
    b'\\x89PNG'
    """

    image: np.ndarray
    label: Any
    predicted: Any
    probability: float
    fusion: str
    score: float
    shares: dict
    intercept: float = 0.0
    branch_probabilities: dict | None = None
    late_weight: float | None = None
    heat_map: np.ndarray | None = field(default=None, repr=False)
    heat_map_layer: str | None = None
    keypoints: np.ndarray | None = field(default=None, repr=False)
    keypoint_weights: np.ndarray | None = field(default=None, repr=False)

    def strongest_keypoints(self, n: int = N_DRAWN_KEYPOINTS) -> np.ndarray:
        """Indices into ``keypoints`` of the ``n`` that argue most for ``label`` (positive only)."""
        if self.keypoint_weights is None:
            return np.zeros(0, dtype=np.intp)
        return strongest(self.keypoint_weights, n)

    def to_dict(self) -> dict:
        """The numbers, as plain Python values ready for ``json.dumps`` (no maps)."""
        return {
            "label": _plain(self.label),
            "predicted": _plain(self.predicted),
            "probability": self.probability,
            "fusion": self.fusion,
            "score": self.score,
            "shares": dict(self.shares),
            "intercept": self.intercept,
            "branch_probabilities": self.branch_probabilities,
            "late_weight": self.late_weight,
            "heat_map_layer": self.heat_map_layer,
        }

    def render(self, *, n_keypoints: int = N_DRAWN_KEYPOINTS, title: str | None = None) -> Figure:
        """One figure: heat map, strongest keypoints and the branches' shares, side by side.

        Parameters
        ----------
        n_keypoints : int, default=30
            How many of the strongest keypoints to draw.
        title : str or None
            Above the panels; ``None``: the product and its probability.
        """
        panels = [self._draw_shares]
        if self.keypoints is not None:
            panels.insert(0, partial(self._draw_keypoints, n_keypoints=n_keypoints))
        if self.heat_map is not None:
            panels.insert(0, self._draw_heat_map)
        figure = Figure(figsize=(3.6 * len(panels), 3.9))
        # fixed margins: a layout engine would draw the figure twice (a third of the time)
        figure.subplots_adjust(left=0.02, right=0.98, bottom=0.12, top=0.84, wspace=0.35)
        for axes, draw in zip(
            figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
        ):
            draw(axes)
        figure.suptitle(title or self._title(), fontsize=11)
        return figure

    def _title(self) -> str:
        title = f"{self.label}: probability {self.probability:.2f}"
        if _plain(self.predicted) != _plain(self.label):
            title += f" (predicted: {self.predicted})"
        return title

    def _draw_heat_map(self, axes: Axes) -> None:
        show_photo(axes, self.image, f"deep: Grad-CAM at {self.heat_map_layer}")
        seen = ~np.isnan(self.heat_map)
        heat = np.nan_to_num(self.heat_map)
        overlay = colormaps["inferno"](heat)
        overlay[..., 3] = 0.75 * heat  # the photo shows through where nothing argues for the label
        axes.imshow(overlay)
        rows, columns = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
        if len(rows) and len(columns):
            corner = (columns[0] - 0.5, rows[0] - 0.5)
            size = (columns[-1] - columns[0] + 1, rows[-1] - rows[0] + 1)
            axes.add_patch(Rectangle(corner, *size, fill=False, linestyle="--", color="white"))

    def _draw_keypoints(self, axes: Axes, n_keypoints: int) -> None:
        chosen = self.strongest_keypoints(n_keypoints)
        title = f"traditional: {len(chosen)} strongest of {len(self.keypoints)} keypoints"
        show_photo(axes, self.image, title)
        if len(chosen):
            weights = self.keypoint_weights[chosen]
            sizes = 20 + 180 * weights / weights.max()
            points = self.keypoints[chosen]
            axes.scatter(points[:, 0], points[:, 1], s=sizes, facecolors="none", edgecolors="lime")

    def _draw_shares(self, axes: Axes) -> None:
        names = list(self.shares)
        values = [self.shares[name] for name in names]
        if self.fusion == "early":
            names.append("intercept")
            values.append(self.intercept)
        colours = ["tab:blue" if value >= 0 else "tab:red" for value in values]
        axes.barh(names, values, color=colours)
        axes.axvline(0.0, color="black", linewidth=0.8)
        axes.invert_yaxis()
        axes.tick_params(labelsize=8)
        if self.fusion == "late":
            axes.set_title(self._late_caption(), fontsize=9)
            axes.set_xlabel("weighted log-probability", fontsize=8)
        else:
            axes.set_title(f"shares of the score {self.score:.2f}", fontsize=9)
            axes.set_xlabel("part of the decision score", fontsize=8)

    def _late_caption(self) -> str:
        weights = {"traditional": self.late_weight, "deep": 1.0 - self.late_weight}
        return "\n".join(
            f"{name}: p={self.branch_probabilities[name]:.2f}, weight {weights[name]:.2f}"
            for name in self.shares
        )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON can write."""
    return value.item() if isinstance(value, np.generic) else value
