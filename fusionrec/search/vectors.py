"""Exact cosine search over L2-normalised feature rows (float32, or float16 to halve memory)."""

from __future__ import annotations

import numpy as np

_QUERY_BLOCK = 256  # queries scored at once: bounds the score matrix to 256 x _ITEM_BLOCK
_ITEM_BLOCK = 65_536  # items scored at once, as float32 (a float16 block is converted)


def top_k(queries: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items most similar to each query, best first.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    items : ndarray of shape (n_items, n_features), float32 or float16
        Both L2-normalised, so that the dot product is the cosine similarity.
        Items are scored ``_ITEM_BLOCK`` rows at a time, in float32.
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
    queries = np.asarray(queries, dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.intp)
    scores = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), _QUERY_BLOCK):
        block = slice(start, start + _QUERY_BLOCK)
        indices[block], scores[block] = _blocked_top_k(queries[block], items, k)
    return indices, scores


def rescored(
    queries: np.ndarray, items: np.ndarray, candidates: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each query's candidates by their exact cosine similarity.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    items : ndarray of shape (n_items, n_features), float32 or float16
    candidates : ndarray of shape (n_queries, n_candidates), int
        Rows of ``items``; ``-1`` for none (scored ``-inf``).
    k : int
        At most ``n_candidates``.

    Returns
    -------
    indices : ndarray of shape (n_queries, k), int
    scores : ndarray of shape (n_queries, k), float32

    Examples
    --------
    >>> import numpy as np
    >>> items = np.eye(3, dtype=np.float16)
    >>> rescored(np.array([[0.0, 0.6, 0.8]], np.float32), items, np.array([[1, 2, -1]]), 1)
    (array([[2]]), array([[0.8]], dtype=float32))
    """
    queries = np.asarray(queries, dtype=np.float32)
    rows = items[np.maximum(candidates, 0)].astype(np.float32)
    exact = np.einsum("qcf,qf->qc", rows, queries)
    exact[candidates < 0] = -np.inf
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(exact, order, axis=1)


def _blocked_top_k(queries: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each item block's best ``k``, then the best ``k`` of those."""
    found = []
    for start in range(0, len(items), _ITEM_BLOCK):
        block = np.asarray(items[start : start + _ITEM_BLOCK], dtype=np.float32)
        best, best_scores = _block_top_k(queries @ block.T, min(k, len(block)))
        found.append((best + start, best_scores))
    if len(found) == 1:
        return found[0]
    best = np.concatenate([indices for indices, _ in found], axis=1)
    best_scores = np.concatenate([scores for _, scores in found], axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(best, order, axis=1), np.take_along_axis(best_scores, order, axis=1)


def _block_top_k(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < similarity.shape[1]:
        best = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    else:
        best = np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape)
    best_scores = np.take_along_axis(similarity, best, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1), np.take_along_axis(best_scores, order, axis=1)
