"""Fusion: traditional and deep features combined, and the classifier built on them."""

from .classifier import FusedClassifier
from .features import FusedFeatures

__all__ = ["FusedClassifier", "FusedFeatures"]
