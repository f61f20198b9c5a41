"""Why items were grouped as duplicates: a contact sheet of the group's photos.

:meth:`fusionrec.ProductIndex.duplicates` groups catalogue items that show the
same product photo. A contact sheet puts a group's photos side by side, each
under its id and its strongest verified link, so a person can confirm the group
(and delete the extra ids) at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..images import load_image
from ..search import DuplicateGroup
from .rendering import DrawsPNG, short_id, show_photo

THUMBNAIL_SIDE = 256
"""Longest side, in pixels, of each photo a contact sheet shows."""
CAPTION_ID_LENGTH = 28
"""A longer id shows only its end under its photo."""


@dataclass(frozen=True)
class DuplicateSheet(DrawsPNG):
    """A duplicate group's photos on one sheet, each under its id.

    :func:`duplicate_sheet` makes it; :meth:`render`, :meth:`to_png` and
    :meth:`save_png` draw it.

    Attributes
    ----------
    group : DuplicateGroup
        The group drawn.
    images : tuple of ndarray of shape (height, width, 3), uint8
        One photo per member, in the order of ``group.ids``.

    Examples
    --------
    >>> import numpy as np
    >>> from fusionrec.search import DuplicateGroup
    >>> group = DuplicateGroup(
    ...     np.array(["a.jpg", "b.jpg"], dtype=object),
    ...     np.array([["a.jpg", "b.jpg"]], dtype=object),
    ...     np.array([0.93], np.float32),
    ...     np.array([212]),
    ... )
    >>> photo = np.zeros((60, 80, 3), np.uint8)
    >>> sheet = duplicate_sheet(group, [photo, photo])
    >>> sheet.to_png()[:4]
    b'\\x89PNG'
    """

    group: DuplicateGroup
    images: tuple[np.ndarray, ...] = field(repr=False)

    def render(self, *, title: str | None = None, columns: int = 4) -> Figure:
        """The photos in a grid of ``columns`` a row, each captioned.

        Parameters
        ----------
        title : str or None
            ``None``: how many photos, verified pairs and keypoint matches.
        columns : int, default=4
            Photos a row, at most.
        """
        columns = max(1, min(columns, len(self.images)))
        rows = math.ceil(len(self.images) / columns)
        figure = Figure(figsize=(2.6 * columns, 2.8 * rows + 0.5))
        strongest = self._strongest_links()
        for position, (item, image) in enumerate(zip(self.group.ids, self.images, strict=True)):
            axes = figure.add_subplot(rows, columns, position + 1)
            caption = f"{short_id(item, CAPTION_ID_LENGTH)}\n{strongest[position]} matches"
            show_photo(axes, image, caption)
        figure.suptitle(title or self._title(), fontsize=10)
        figure.tight_layout()
        return figure

    def _strongest_links(self) -> list[int]:
        """Each member's largest inlier count among the pairs it belongs to."""
        links = dict.fromkeys(self.group.ids.tolist(), 0)
        for pair, inliers in zip(self.group.pairs.tolist(), self.group.inliers, strict=True):
            for item in pair:
                links[item] = max(links[item], int(inliers))
        return [links[item] for item in self.group.ids.tolist()]

    def _title(self) -> str:
        inliers = self.group.inliers
        pairs = f"{len(inliers)} verified pair{'' if len(inliers) == 1 else 's'}"
        low, high = int(inliers.min()), int(inliers.max())
        matches = f"{low}" if low == high else f"{low}-{high}"
        return f"{len(self.group)} near-duplicate photos: {pairs}, {matches} keypoint matches"


def duplicate_sheet(group: DuplicateGroup, photos: Sequence[Any]) -> DuplicateSheet:
    """A contact sheet of one duplicate group.

    Parameters
    ----------
    group : DuplicateGroup
        One group that :meth:`fusionrec.ProductIndex.duplicates` returned.
    photos : sequence of path, bytes, ndarray or PIL image
        The photo of each member, in the order of ``group.ids``.

    Returns
    -------
    DuplicateSheet

    Raises
    ------
    ValueError
        If the number of photos is not the group's size.
    """
    if len(photos) != len(group):
        raise ValueError(f"got {len(photos)} photos for a group of {len(group)}; need one each")
    images = tuple(load_image(photo, max_side=THUMBNAIL_SIDE) for photo in photos)
    return DuplicateSheet(group, images)
