"""The small product photo set bundled with fusionrec, for demos, examples and tests."""

from __future__ import annotations

from importlib import resources

import numpy as np
from sklearn.utils import Bunch

from .folder import load_image_folder

_DESCRIPTION = """\
Demo products: 150 photos of 10 products taken in grocery stores (15 each).
Look-alikes: four Tropicana juices, four Arla milks and two apple varieties.

A subset of the Grocery Store dataset by Marcus Klasson, Cheng Zhang and Hedvig
Kjellstrom ("A Hierarchical Grocery Store Image Dataset with Visual and Semantic
Labels", WACV 2019), drawn from its official training split and downscaled to
256 pixels on the shorter side. MIT licence; see LICENSE beside the photos.
"""


def load_demo_products(*, return_X_y: bool = False) -> Bunch | tuple[np.ndarray, np.ndarray]:
    """Load the demo product photos that ship inside the package.

    Ten look-alike products, 15 phone photos each, from the Grocery Store
    dataset (MIT licence): four Tropicana juices, four Arla milks and two apple
    varieties. The keypoint and the CNN features confuse different ones of
    them, so the demo can show what fusing the two adds. They need no download
    and suit quick experiments, examples and tests.

    Parameters
    ----------
    return_X_y : bool
        Return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    sklearn.utils.Bunch
        As :func:`load_image_folder`, plus ``DESCR``, the credit and licence.

    Examples
    --------
    >>> demo = load_demo_products()
    >>> len(demo.data), len(demo.target_names)
    (150, 10)
    """
    root = resources.files("fusionrec.datasets") / "data" / "demo_products"
    bunch = load_image_folder(str(root))
    if return_X_y:
        return bunch.data, bunch.target
    bunch.DESCR = _DESCRIPTION
    return bunch
