"""Accept ``X`` as a sequence of images and stream them one at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from .decode import load_image
from .errors import ImageReadError, check_on_error


def as_image_sequence(X: Any) -> Sequence:
    """Check that ``X`` is a sequence of images and return it, undecoded.

    Nothing is read here: paths stay paths, so a list of 100,000 files costs
    only the list. Each image is checked when it is read.

    Parameters
    ----------
    X : sequence of images
        A list or tuple of images (paths, encoded bytes, arrays or PIL images,
        as :func:`load_image` accepts), a 1-D numpy array of paths (as
        scikit-learn's cross-validation indexes them), a pandas Series, or a
        4-D ``(n_images, height, width, channels)`` array.

    Returns
    -------
    sequence
        ``X`` itself, or a 1-D object array for a pandas Series; it supports
        ``len`` and integer indexing.

    Raises
    ------
    TypeError
        If ``X`` is a single image, an iterator without a length, or not a
        sequence at all.
    ValueError
        If ``X`` is an array of a shape that cannot hold a batch of images.

    Examples
    --------
    >>> import numpy as np
    >>> len(as_image_sequence(np.zeros((5, 32, 32, 3), dtype=np.uint8)))
    5
    >>> len(as_image_sequence(np.array(["a.jpg", "b.jpg"], dtype=object)))
    2
    """
    if isinstance(X, (str, os.PathLike, bytes, bytearray, Image.Image)):
        raise TypeError(
            f"X must be a sequence of images; got a single {type(X).__name__}. "
            "Wrap it in a list: [image]"
        )
    if isinstance(X, np.ndarray):
        return _check_array_batch(X)
    if hasattr(X, "to_numpy") and getattr(X, "ndim", None) == 1:
        return _check_array_batch(X.to_numpy(dtype=object))
    if isinstance(X, Sequence):
        return X
    kind = type(X).__name__
    if hasattr(X, "__next__") or not hasattr(X, "__len__"):
        raise TypeError(
            f"X must be a sequence with a length (list, tuple, numpy array); got {kind}. "
            "Materialise an iterator with list(...)"
        )
    raise TypeError(f"X must be a sequence of images; got {kind}")


def non_empty_images(X: Any) -> Sequence:
    """:func:`as_image_sequence`, refusing a sequence without images.

    Examples
    --------
    >>> non_empty_images([])
    Traceback (most recent call last):
    ...
    ValueError: X holds no images; expected at least one
    """
    images = as_image_sequence(X)
    if len(images) == 0:
        raise ValueError("X holds no images; expected at least one")
    return images


def _check_array_batch(X: np.ndarray) -> np.ndarray:
    if X.ndim in (1, 4):
        return X
    hint = {
        2: "a single gray image or a feature matrix",
        3: "a single image or a stack of gray images",
    }.get(X.ndim, "not a batch of images")
    raise ValueError(
        f"X is a numpy array of shape {X.shape}, which looks like {hint}. Pass a list "
        "of images, a 1-D array of paths, or a 4-D (n_images, height, width, channels) array"
    )


def iter_images(
    X: Any,
    *,
    on_error: str = "raise",
    max_side: int | None = None,
    min_side: int | None = None,
    failures: list[ImageReadError] | None = None,
    start: int = 0,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Decode the images of ``X`` one at a time, under an ``on_error`` policy.

    Parameters
    ----------
    X : sequence of images
        Anything :func:`as_image_sequence` accepts.
    on_error : {"raise", "warn", "skip"}
        ``"raise"`` raises :class:`ImageReadError` at the first unreadable
        input. Otherwise an unreadable input yields ``None`` in its place and
        its error, with its position, is appended to ``failures``; report them
        with :func:`report_unreadable` once all are read.
    max_side, min_side : int, optional
        Passed to :func:`load_image`.
    failures : list, optional
        Where dropped inputs are recorded; required unless ``on_error="raise"``.
    start : int
        Position of ``X[0]`` in the caller's larger sequence, so that errors
        name the right position when ``X`` is a chunk of it.

    Yields
    ------
    position : int
        The input's position, counted from ``start``.
    image : numpy.ndarray or None
        The RGB ``uint8`` image, or ``None`` where it was dropped.

    Examples
    --------
    >>> import numpy as np
    >>> failures = []
    >>> X = [np.zeros((8, 8), dtype=np.uint8), "missing.jpg"]
    >>> [(i, img is None) for i, img in iter_images(X, on_error="skip", failures=failures)]
    [(0, False), (1, True)]
    >>> failures[0].position
    1
    """
    check_on_error(on_error)
    if on_error != "raise" and failures is None:
        raise ValueError(f"on_error={on_error!r} needs a failures list to record drops in")
    images = as_image_sequence(X)
    for offset in range(len(images)):
        position = start + offset
        try:
            yield position, load_image(images[offset], max_side=max_side, min_side=min_side)
        except ImageReadError as error:
            if on_error == "raise":
                raise error.at(position) from None
            failures.append(error.at(position))
            yield position, None
