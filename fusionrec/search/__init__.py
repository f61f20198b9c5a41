"""Similar-product search: a catalogue indexed by features, queried by photo."""

from .geometry import Keypoints, count_inliers, verified_matches
from .index import ProductIndex
from .results import Matches

__all__ = ["Keypoints", "Matches", "ProductIndex", "count_inliers", "verified_matches"]
