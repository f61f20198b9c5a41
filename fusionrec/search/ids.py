"""Item ids held as one numpy array of fixed-width values, not as Python objects.

A catalogue of 10^6 string ids held as Python objects takes about 80 MiB, built
one object at a time; as a fixed-width unicode array (``<U``) or an ``int64``
array it is one block of memory, which a saved index opens memory-mapped
(nothing read until used). Ids of other kinds (floats, a mix of strings and
integers, very different lengths) stay an array of objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MAX_PADDING = 2
"""Fixed-width strings only while padding to the longest id at most doubles their length."""


def compact_ids(values: Sequence) -> np.ndarray:
    """The ids as ``<U`` when all are strings, ``int64`` when all are integers, else objects.

    Parameters
    ----------
    values : sequence of hashable
        Python values (an object array's ``tolist()``, say).

    Returns
    -------
    ndarray of shape (n_ids,)

    Examples
    --------
    >>> compact_ids(["tea", "milk"]).dtype, compact_ids([3, 7]).dtype
    (dtype('<U4'), dtype('int64'))
    >>> compact_ids(["tea", 7]).dtype, compact_ids([True, False]).dtype
    (dtype('O'), dtype('O'))
    """
    values = list(values)
    if values and all(isinstance(item, str) for item in values):
        lengths = [len(item) for item in values]
        if max(lengths) * len(values) <= _MAX_PADDING * max(sum(lengths), len(values)):
            return np.array(values, dtype=str)
    elif values and all(isinstance(item, int) and not isinstance(item, bool) for item in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            pass
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def joined_ids(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``first`` then ``second``, compact when both are of one kind (never str(int)).

    Examples
    --------
    >>> joined_ids(compact_ids(["a"]), compact_ids(["bb"])).tolist()
    ['a', 'bb']
    >>> joined_ids(compact_ids(["a"]), compact_ids([1])).tolist()
    ['a', 1]
    """
    if not len(first):
        return second
    if not len(second):
        return first
    if first.dtype.kind == second.dtype.kind and first.dtype.kind in "Ui":
        return np.concatenate([first, second])
    return compact_ids(first.tolist() + second.tolist())


def id_values(ids: np.ndarray) -> np.ndarray:
    """The ids as an object array of Python ``str`` and ``int`` (what JSON encodes).

    Examples
    --------
    >>> type(id_values(compact_ids([3]))[0]).__name__
    'int'
    """
    values = np.empty(len(ids), dtype=object)
    values[:] = ids.tolist()
    return values
