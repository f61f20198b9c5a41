"""The traditional branch: local keypoint features encoded as visual words."""

from .bag_of_words import BagOfVisualWords
from .codebook import ENCODINGS, Codebook
from .detectors import DETECTORS, DetectorUnavailableError, available_detectors, check_detector

__all__ = [
    "DETECTORS",
    "ENCODINGS",
    "BagOfVisualWords",
    "Codebook",
    "DetectorUnavailableError",
    "available_detectors",
    "check_detector",
]
