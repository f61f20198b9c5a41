"""The traditional branch: local keypoint features encoded as visual words."""

from .bag_of_words import BagOfVisualWords
from .codebook import Codebook
from .detectors import DetectorUnavailableError, available_detectors

__all__ = ["BagOfVisualWords", "Codebook", "DetectorUnavailableError", "available_detectors"]
