"""Fusion: traditional and deep features combined, and the classifier built on them."""

from .classifier import FusedClassifier
from .features import (
    DEFAULT_BLOCK_WEIGHTS,
    FUSED_CONSTRAINTS,
    FusedFeatures,
    check_block_weights,
    features_for,
    upgraded_branches,
)
from .rejection import RejectsUnknown, threshold_for

__all__ = [
    "DEFAULT_BLOCK_WEIGHTS",
    "FUSED_CONSTRAINTS",
    "FusedClassifier",
    "FusedFeatures",
    "RejectsUnknown",
    "check_block_weights",
    "features_for",
    "threshold_for",
    "upgraded_branches",
]
