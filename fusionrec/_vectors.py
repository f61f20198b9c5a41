"""Row-wise L2 normalisation, shared by the encodings, fusion and search."""

from __future__ import annotations

import numpy as np


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero, NaN rows NaN; the dtype is kept.

    Examples
    --------
    >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0).astype(rows.dtype)
