"""What happens when an input cannot be read: the shared ``on_error`` policy.

Every fusionrec estimator takes ``on_error`` with one of three values:

``"raise"`` (default)
    The first unreadable input raises :class:`~fusionrec.images.ImageReadError`,
    which names the input's position in ``X``, what it was (a path, an array's
    shape, a type) and why it could not be read.
``"warn"``
    Unreadable inputs are dropped and one
    :class:`~fusionrec.images.UnreadableImageWarning` lists every one of them,
    with its position and reason.
``"skip"``
    As ``"warn"``, without the warning.

Dropping never shifts rows. Outputs aligned with ``X`` keep one row per input:
a transformer gives an all-NaN row for each dropped image (find them with
:func:`~fusionrec.images.unreadable_rows`), so a later step can never pair
features with the wrong label. Estimators that receive labels or ids alongside
the images drop those together with the images and record the dropped positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

ON_ERROR_CHOICES = ("raise", "warn", "skip")


class ImageReadError(ValueError):
    """An input could not be read as an image.

    Parameters
    ----------
    source : str
        A short description of the input: its path, or its type and shape.
    reason : str
        Why it could not be read.
    position : int or None
        The input's position in ``X``, where known.
    """

    def __init__(self, source: str, reason: str, position: int | None = None) -> None:
        self.source = source
        self.reason = reason
        self.position = position
        super().__init__(self._message())

    def _message(self) -> str:
        where = "" if self.position is None else f" at position {self.position}"
        return f"cannot read image{where} ({self.source}): {self.reason}"

    def at(self, position: int) -> ImageReadError:
        """Return the same error, placed at ``position`` in ``X``."""
        return ImageReadError(self.source, self.reason, position)

    def __reduce__(self):
        return type(self), (self.source, self.reason, self.position)


class UnreadableImageWarning(UserWarning):
    """Some inputs could not be read and were dropped (``on_error="warn"``)."""


def check_on_error(on_error: str) -> str:
    """Return ``on_error`` if it is a known policy, else raise ``ValueError``."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}; got {on_error!r}")
    return on_error


def report_unreadable(failures: Sequence[ImageReadError], on_error: str) -> None:
    """Tell the user about dropped inputs as ``on_error`` asks.

    Parameters
    ----------
    failures : sequence of ImageReadError
        The errors of the dropped inputs, each with its position.
    on_error : {"raise", "warn", "skip"}
        With ``"raise"`` the first failure is raised (normally readers raise
        before any failure is collected); ``"warn"`` issues one warning that
        lists them all; ``"skip"`` says nothing.
    """
    if not failures or on_error == "skip":
        return
    if on_error == "raise":
        raise failures[0]
    lines = "\n".join(f"  {failure}" for failure in failures)
    warnings.warn(
        f"dropped {len(failures)} unreadable input(s):\n{lines}",
        UnreadableImageWarning,
        stacklevel=3,
    )


def unreadable_rows(features: np.ndarray) -> np.ndarray:
    """Positions of the all-NaN rows that mark dropped images in a feature array.

    Examples
    --------
    >>> import numpy as np
    >>> unreadable_rows(np.array([[0.5, 1.0], [np.nan, np.nan]]))
    array([1])
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"expected a 2-D feature array; got shape {features.shape}")
    return np.flatnonzero(np.isnan(features).all(axis=1) & (features.shape[1] > 0))
