"""Images in: the one place where fusionrec reads pixels.

Every estimator takes ``X`` as a sequence of images (paths, encoded bytes,
numpy arrays, PIL images, or a 4-D batch) and reads them here, lazily and one
at a time, as RGB ``uint8`` arrays. Unreadable inputs follow the shared
``on_error`` policy described in :mod:`fusionrec.images.errors`.
"""

from .decode import load_image
from .errors import (
    ON_ERROR_CHOICES,
    ImageReadError,
    UnreadableImageWarning,
    check_on_error,
    report_unreadable,
    unreadable_rows,
)
from .sequence import as_image_sequence, iter_images, non_empty_images

__all__ = [
    "ON_ERROR_CHOICES",
    "ImageReadError",
    "UnreadableImageWarning",
    "as_image_sequence",
    "check_on_error",
    "iter_images",
    "load_image",
    "non_empty_images",
    "report_unreadable",
    "unreadable_rows",
]
