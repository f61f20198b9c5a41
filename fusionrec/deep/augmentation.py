"""Training-time augmentation for product photos, reproducible from a numpy Generator.

Each training photo is shown to the network a little differently at every
epoch: a random part of it (random resized crop), maybe mirrored, under
slightly different lighting. Colour is left alone on purpose: a red and a
green apple, or a yellow and a green bell pepper, differ mostly by hue, so a
hue or saturation shift would teach the network that they are the same
product. Brightness and contrast only change the lighting, not the hue.

The random parameters are drawn from a :class:`numpy.random.Generator`
rather than from torch's global random state, so photos can be augmented in
several threads at once and a run still gives the same pixels for the same
seed. The pixel work is done by :mod:`torchvision.transforms.v2.functional`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional

from .preprocessing import Preprocessing

_CROP_ATTEMPTS = 10


@dataclass(frozen=True)
class Augmentation:
    """How training photos are varied: crop, mirror, lighting; never hue.

    Parameters
    ----------
    scale : (float, float), default=(0.35, 1.0)
        Range of the crop's area as a fraction of the photo's. Narrower than
        the usual ImageNet range (0.08, 1): a product often fills only part
        of a shop photo, and a crop of a twelfth of it may miss the product.
    ratio : (float, float), default=(3/4, 4/3)
        Range of the crop's aspect ratio (width / height), drawn log-uniformly.
    horizontal_flip : bool, default=True
        Mirror half of the photos. Mirrored packaging text still shows the
        same product; set False if the text's direction matters.
    brightness, contrast : float, default=0.2
        Each photo's brightness and contrast are multiplied by a factor drawn
        uniformly from ``[1 - value, 1 + value]``; 0 switches it off.

    Examples
    --------
    >>> import numpy as np
    >>> from fusionrec.deep import Preprocessing
    >>> prepare = Preprocessing(resize=64, crop=56)
    >>> photo = np.zeros((80, 100, 3), dtype=np.uint8)
    >>> Augmentation()(photo, prepare, np.random.default_rng(0)).shape
    torch.Size([3, 56, 56])
    """

    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2

    def __post_init__(self) -> None:
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1; got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high; got {self.ratio}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)!r}")

    def __call__(
        self,
        image: np.ndarray | torch.Tensor,
        preprocessing: Preprocessing,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        """Augment one photo and prepare it for the network.

        Parameters
        ----------
        image : ndarray of shape (H, W, 3) or tensor of shape (3, H, W), uint8
            An RGB photo.
        preprocessing : Preprocessing
            Gives the output size (its ``crop``), interpolation, mean and std.
        rng : numpy.random.Generator
            Source of every random choice.

        Returns
        -------
        tensor of shape (3, crop, crop), float32
            Normalised with the preprocessing's mean and std.
        """
        pixels = as_chw_uint8(image)
        top, left, height, width = self.crop_box(pixels.shape[1], pixels.shape[2], rng)
        size = [preprocessing.crop, preprocessing.crop]
        pixels = functional.resized_crop(
            pixels,
            top,
            left,
            height,
            width,
            size,
            interpolation=InterpolationMode(preprocessing.interpolation),
            antialias=True,
        )
        if self.horizontal_flip and rng.random() < 0.5:
            pixels = functional.horizontal_flip(pixels)
        pixels = self._jitter_lighting(pixels, rng)
        pixels = functional.to_dtype(pixels, torch.float32, scale=True)
        return functional.normalize(pixels, list(preprocessing.mean), list(preprocessing.std))

    def crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, ...]:
        """Draw ``(top, left, height, width)`` of a crop within ``height`` x ``width``.

        Up to ten draws of area and aspect ratio; if none fits, the largest
        centred crop with the ratio clipped to the allowed range.
        """
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(_CROP_ATTEMPTS):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            crop_width = round(math.sqrt(target * aspect))
            crop_height = round(math.sqrt(target / aspect))
            if 0 < crop_width <= width and 0 < crop_height <= height:
                top = int(rng.integers(0, height - crop_height + 1))
                left = int(rng.integers(0, width - crop_width + 1))
                return top, left, crop_height, crop_width
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        crop_width = min(width, round(height * aspect))
        crop_height = min(height, round(crop_width / aspect))
        return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width

    def _jitter_lighting(self, pixels: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.brightness:
            factor = rng.uniform(1 - self.brightness, 1 + self.brightness)
            pixels = functional.adjust_brightness(pixels, factor)
        if self.contrast:
            factor = rng.uniform(1 - self.contrast, 1 + self.contrast)
            pixels = functional.adjust_contrast(pixels, factor)
        return pixels


def as_chw_uint8(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An RGB uint8 photo, (H, W, 3) array or (3, H, W) tensor, as a (3, H, W) tensor."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an RGB uint8 array of shape (H, W, 3); got {image.dtype} {image.shape}"
            )
        return torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(
            "expected an RGB uint8 tensor of shape (3, H, W); "
            f"got {image.dtype} {tuple(image.shape)}"
        )
    return image
