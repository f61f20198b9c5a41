"""Settings for products known from few photos (few-shot recognition).

A shop adding a product often has one photo of it, or a few. Late fusion's
weight is normally chosen on held-out folds of the training photos, which
needs at least two photos of every product (one to learn from, one to hold
out) and is noisy with only a few: below :data:`HELD_OUT_PHOTOS` photos of
the rarest product, :class:`fusionrec.FusedClassifier` uses the weight
measured best in that regime instead (``benchmarks/few_shot.py choose``;
the numbers are in docs/benchmarks.md).
"""

from __future__ import annotations

HELD_OUT_PHOTOS = 5
"""Fewest photos of every product for which late fusion chooses its weight on held-out folds."""

FEW_SHOT_LATE_WEIGHT = 0.6
"""Weight of the traditional branch's log-probabilities with fewer photos than that."""

LATE_WEIGHT_CHOICES = ("held-out", "few-shot")
"""How a late fusion's weight was set: chosen on held-out folds, or the few-shot weight."""


def late_weight_choice(photos_of_rarest: int) -> str:
    """How late fusion sets its weight when the rarest product has ``photos_of_rarest`` photos.

    Examples
    --------
    >>> late_weight_choice(1), late_weight_choice(40)
    ('few-shot', 'held-out')
    """
    return "held-out" if photos_of_rarest >= HELD_OUT_PHOTOS else "few-shot"
