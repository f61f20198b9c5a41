"""Explanations: why a model named a product, or why a search returned a photo.

Data first, then pictures: :func:`fusionrec.explain` gives the numbers and maps behind
one :class:`fusionrec.FusedClassifier` prediction (each branch's share of the
score, the deep branch's Grad-CAM heat map, the keypoints that weigh most)
and :func:`fusionrec.explain_match` the verified keypoint matches behind one
re-ranked :class:`fusionrec.ProductIndex` match, and :func:`duplicate_sheet` a
contact sheet of one group of duplicates. Each result draws itself
as one PNG (``render``, ``to_png``, ``save_png``); the ``fusionrec explain``
command and ``fusionrec search --explain`` write the same pictures.
"""

from .duplicates import DuplicateSheet, duplicate_sheet
from .matches import MatchExplanation, explain_match
from .prediction import branch_shares, explain
from .result import Explanation

__all__ = [
    "DuplicateSheet",
    "Explanation",
    "MatchExplanation",
    "branch_shares",
    "duplicate_sheet",
    "explain",
    "explain_match",
]
