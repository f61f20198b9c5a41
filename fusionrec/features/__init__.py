"""Features: each branch's extractor run over photos, with the per-photo cache.

The layer both tasks stand on. :class:`Branch` runs one extractor (the
keypoint branch's :class:`fusionrec.BagOfVisualWords` or the deep branch's
:class:`fusionrec.CNNEmbedder`) and, given a ``memory`` folder, caches what it
computes per photo; :func:`make_branches` builds the branches an estimator
asks for, with fusionrec's measured defaults. :mod:`fusionrec.fusion` and
:mod:`fusionrec.search` import these names, never each other's internals.
"""

from .branch import Branch, DescribesPhotos
from .cache import cache_location, content_key, load_or_none, store, write_atomically
from .defaults import (
    BRANCH_CONSTRAINTS,
    BRANCH_NAMES,
    default_deep,
    default_traditional,
    make_branches,
)

__all__ = [
    "BRANCH_CONSTRAINTS",
    "BRANCH_NAMES",
    "Branch",
    "DescribesPhotos",
    "cache_location",
    "content_key",
    "default_deep",
    "default_traditional",
    "load_or_none",
    "make_branches",
    "store",
    "write_atomically",
]
