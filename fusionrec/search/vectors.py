"""Exact cosine search over L2-normalised feature rows."""

from __future__ import annotations

import numpy as np

_QUERY_BLOCK = 256  # queries scored at once: bounds the score matrix to 256 x n_items


def top_k(queries: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items most similar to each query, best first.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    items : ndarray of shape (n_items, n_features)
        Both L2-normalised, so that the dot product is the cosine similarity.
    k : int
        At most ``n_items``.

    Returns
    -------
    indices : ndarray of shape (n_queries, k), int
    scores : ndarray of shape (n_queries, k), float32

    Examples
    --------
    >>> import numpy as np
    >>> items = np.eye(3, dtype=np.float32)
    >>> indices, scores = top_k(np.array([[0.0, 0.6, 0.8]], np.float32), items, 2)
    >>> indices.tolist(), scores.astype(float).round(2).tolist()
    ([[2, 1]], [[0.8, 0.6]])
    """
    indices = np.empty((len(queries), k), dtype=np.intp)
    scores = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), _QUERY_BLOCK):
        block = slice(start, start + _QUERY_BLOCK)
        indices[block], scores[block] = _block_top_k(queries[block] @ items.T, k)
    return indices, scores


def _block_top_k(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < similarity.shape[1]:
        best = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    else:
        best = np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape)
    best_scores = np.take_along_axis(similarity, best, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1), np.take_along_axis(best_scores, order, axis=1)
