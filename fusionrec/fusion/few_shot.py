"""Settings for products known from few photos (few-shot recognition).

A shop adding a product often has one photo of it, or a few. Two settings of
fusion that suit dozens of photos per product do not suit a few, so
:class:`fusionrec.FusedClassifier` picks them from the number of photos of
the rarest product it is given (measured with ``benchmarks/few_shot.py
choose`` on the Grocery Store val split; the numbers are in
docs/benchmarks.md):

- Early fusion's block lengths: with few photos the keypoint block deserves
  as much length as the embedding (it matches one exemplar of a printed
  package exactly, where the classifier cannot yet learn what varies).
- Late fusion's weight is normally chosen on held-out folds of the training
  photos, which needs at least two photos of every product (one to learn
  from, one to hold out) and is noisy with a few: with fewer than
  :data:`HELD_OUT_PHOTOS`, the weight measured best in that regime is used.
  So is it below :data:`FEW_PHOTOS` when the CNN is fine-tuned in ``fit`` on
  the same photos: the held-out folds were seen by the network, which then
  looks better on them than on new photos. With 5 photos a product the
  weight chosen there gave the keypoints nothing (0.0: test accuracy 0.743,
  against 0.772 at the few-shot weight); with 15 it chose 0.25 and did
  better than the few-shot weight (0.850 against 0.821), so from
  :data:`FEW_PHOTOS` on the weight is chosen on the folds again.
"""

from __future__ import annotations

import numpy as np

from .features import DEFAULT_BLOCK_WEIGHTS

HELD_OUT_PHOTOS = 5
"""Fewest photos of every product for which late fusion chooses its weight on held-out folds."""

FEW_SHOT_LATE_WEIGHT = 0.7
"""Weight of the traditional branch's log-probabilities with fewer photos than that."""

FEW_PHOTOS = 15
"""Fewer photos than this of some product, and early fusion uses :data:`FEW_SHOT_BLOCK_WEIGHTS`."""

FEW_SHOT_BLOCK_WEIGHTS = (1.0, 1.0)
"""Early fusion's block lengths (traditional, deep) with few photos of some product."""

LATE_WEIGHT_CHOICES = ("held-out", "few-shot", "fine-tuned")
"""How a late fusion's weight was set: chosen on held-out folds, or the few-shot weight
because products have few photos or because the network was fine-tuned on them."""


def late_weight_choice(photos_of_rarest: int, *, fine_tuned: bool = False) -> str:
    """How late fusion sets its weight when the rarest product has ``photos_of_rarest`` photos.

    ``fine_tuned``: the CNN is fine-tuned in the same ``fit``, on these photos.

    Examples
    --------
    >>> late_weight_choice(1), late_weight_choice(5), late_weight_choice(5, fine_tuned=True)
    ('few-shot', 'held-out', 'fine-tuned')
    >>> late_weight_choice(40, fine_tuned=True)
    'held-out'
    """
    if photos_of_rarest < HELD_OUT_PHOTOS:
        return "few-shot"
    return "fine-tuned" if fine_tuned and photos_of_rarest < FEW_PHOTOS else "held-out"


def photos_of_rarest(labels: np.ndarray) -> int:
    """How many photos the product with the fewest has.

    Examples
    --------
    >>> photos_of_rarest(np.array(["tea", "tea", "milk"]))
    1
    """
    return int(np.unique(labels, return_counts=True)[1].min())


def block_weights_for(photos: int) -> tuple[float, float]:
    """Early fusion's block lengths when the rarest product has ``photos`` photos.

    Examples
    --------
    >>> block_weights_for(1), block_weights_for(40)
    ((1.0, 1.0), (0.5, 1.0))
    """
    return FEW_SHOT_BLOCK_WEIGHTS if photos < FEW_PHOTOS else DEFAULT_BLOCK_WEIGHTS
