"""A compact CNN for small images (28 x 28 gray, say), trained from scratch.

Pretrained ImageNet networks expect photos of 200 pixels and more; for tiny
images (MNIST-sized scans, thumbnails) a network of three small stages,
trained on the user's own labels, is faster and fits better. It has no
pretrained weights: build it with ``weights=None`` (random, seeded) or a
state dict saved from an earlier training, then train it with
:func:`fusionrec.deep.training.fine_tune`.

Gray images arrive as RGB with three equal channels (as every fusionrec
image does), so the same network also takes small colour images.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .preprocessing import Preprocessing
from .weights import load_state_dict

SMALL_CNN = "small_cnn"
SMALL_IMAGE_PREPROCESSING = Preprocessing(
    resize=28, crop=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear"
)


class SmallCNN(nn.Module):
    """Three stages of two 3x3 convolutions each, then global average pooling.

    Each stage is conv-BN-ReLU twice; the first two end with a 2x2 max
    pooling (28 -> 14 -> 7 pixels). Any input size of at least 4 pixels
    works, since the output is pooled.

    Parameters
    ----------
    width : int, default=32
        Channels of the first stage; the second has twice, the third four
        times as many, which is also the embedding's length.

    Examples
    --------
    >>> SmallCNN(width=8)(torch.zeros(2, 3, 28, 28)).shape
    torch.Size([2, 32])
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            _stage(3, width, pool=True),
            _stage(width, 2 * width, pool=True),
            _stage(2 * width, 4 * width, pool=False),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Embed a batch ``(N, 3, H, W)`` as ``(N, 4 * width)``."""
        return self.blocks(inputs).mean(dim=(2, 3))


def _stage(channels_in: int, channels_out: int, *, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels in (channels_in, channels_out):
        layers += [
            nn.Conv2d(channels, channels_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True),
        ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def build_small_cnn(weights: Any = None, width: int = 32) -> tuple[nn.Module, Preprocessing]:
    """The small CNN and its preprocessing (28 x 28, mean = std = 0.5).

    Parameters
    ----------
    weights : None, str or os.PathLike
        ``None``: random initialisation, seeded by the caller's
        ``torch.manual_seed``. A path: a state dict saved from a trained
        ``SmallCNN`` of the same ``width``.
    width : int, default=32

    Returns
    -------
    network : SmallCNN
    preprocessing : Preprocessing
    """
    network = SmallCNN(width)
    if isinstance(weights, str | os.PathLike) and weights != "default":
        network.load_state_dict(load_state_dict(weights))
    elif weights is not None:
        raise ValueError(
            f"{SMALL_CNN!r} has no pretrained weights: use weights=None and train it on your "
            f"labels, or a path to a state dict; got {weights!r}"
        )
    return network, SMALL_IMAGE_PREPROCESSING
