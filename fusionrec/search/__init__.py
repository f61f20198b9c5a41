"""Similar-product search: a catalogue indexed by features, queried by photo."""

from .duplicates import DuplicateGroup
from .geometry import Keypoints, count_inliers, verified_matches
from .index import ProductIndex
from .inverted_file import DeferredInvertedFile, InvertedFile
from .results import Matches

__all__ = [
    "DeferredInvertedFile",
    "DuplicateGroup",
    "InvertedFile",
    "Keypoints",
    "Matches",
    "ProductIndex",
    "count_inliers",
    "verified_matches",
]
