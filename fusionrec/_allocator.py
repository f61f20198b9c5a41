"""glibc's allocator tuned to keep freed memory, for the processes fusionrec itself starts.

Describing a photo, OpenCV builds a scale space of about 18 MB and frees it.
When the photo's descriptors are kept (as ``BagOfVisualWords.describe`` and an
index with re-ranking keep them), glibc returns the freed scale space to the
system after each photo, because its trimming threshold follows the largest
block freed so far, and the next photo faults it in again page by page: 4,700
minor page faults a photo with colour keypoints, about 5 microseconds each on
the virtual machine measured. Fixing both thresholds keeps that memory for
reuse (docs/benchmarks.md, colour cost): describing with colour ran 15-34%
faster, at the price of up to :data:`KEEP_FREED_MEMORY`'s trim threshold of
freed memory staying resident. ``transform``, which drops each photo's
descriptors once encoded, showed no clear change.

Only the ``fusionrec`` program applies it (:func:`keep_freed_memory`); a
library must not retune the allocator of its host's process. Users of the
Python API set the same variables in the environment before Python starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

KEEP_FREED_MEMORY = {
    "MALLOC_TRIM_THRESHOLD_": 256 * 2**20,
    "MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
}
"""glibc's environment settings: keep up to 256 MiB freed; blocks up to 32 MiB from the heap."""

_MALLOPT_PARAMETERS = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}
"""glibc's ``mallopt`` numbers of the same settings (``M_TRIM_THRESHOLD``, ``M_MMAP_THRESHOLD``)."""


def keep_freed_memory() -> bool:
    """Apply :data:`KEEP_FREED_MEMORY` to this process and to the processes it starts.

    Values already in the environment are kept, so a user can choose others.
    Child processes (joblib's workers) read the settings from the environment
    when they start; this process, already running, gets them through
    ``mallopt``.

    Returns
    -------
    bool
        Whether the settings were applied: ``False`` where the C library is not
        glibc or a setting in the environment is not an integer.
    """
    libc = _glibc()
    if libc is None:
        return False
    settings = {name: os.environ.get(name, str(value)) for name, value in KEEP_FREED_MEMORY.items()}
    if not all(value.isdigit() for value in settings.values()):
        return False
    for name, value in settings.items():
        os.environ[name] = value
        libc.mallopt(_MALLOPT_PARAMETERS[name], int(value))
    return True


def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
