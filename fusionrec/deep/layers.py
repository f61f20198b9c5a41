"""Which part of a network is the embedding: its output, or pooled inner layers.

``EmbeddingHead`` wraps a network so that its forward pass returns the
embedding itself. Eager PyTorch runs it, and ONNX Runtime runs its export,
so both compute the same thing from one definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

Layers = str | Sequence[str] | None


def as_layers(layer: Layers) -> str | tuple[str, ...] | None:
    """``layer`` as ``None``, one module name, or a tuple of module names."""
    if layer is None or isinstance(layer, str):
        return layer
    return tuple(layer)


def check_layers(network: nn.Module, layer: Layers) -> None:
    """Raise ``ValueError`` unless every name in ``layer`` is a module of ``network``, once."""
    layers = as_layers(layer)
    if layers is None:
        return
    names = (layers,) if isinstance(layers, str) else layers
    if not names:
        raise ValueError("layer must name at least one module; got an empty list")
    if not all(isinstance(name, str) for name in names):
        raise ValueError(f"layer must hold module names (str); got {list(names)!r}")
    if len(set(names)) < len(names):
        raise ValueError(f"layer names a module more than once: {list(names)!r}")
    known = [name for name, _ in network.named_modules() if name]
    for name in names:
        if name not in known:
            raise ValueError(
                f"layer {name!r} is not a module of this network; some of its modules: {known[-8:]}"
            )


class EmbeddingHead(nn.Module):
    """A network whose forward pass returns the embedding.

    Parameters
    ----------
    network : torch.nn.Module
    layers : None, str or tuple of str
        ``None``: the network's own output, pooled. One name: that module's
        output, globally average-pooled. A tuple: each module's output
        pooled and L2-normalised, then concatenated in the order given.
    normalize : bool
        L2-normalise the whole embedding.
    """

    def __init__(self, network: nn.Module, layers: str | tuple[str, ...] | None, normalize: bool):
        super().__init__()
        self.network = network
        self.layers = layers
        self.normalize = normalize

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Embed a batch ``(N, 3, H, W)`` as ``(N, features)``."""
        if self.layers is None:
            embedding = pool(self.network(inputs))
        elif isinstance(self.layers, str):
            embedding = pool(layer_outputs(self.network, (self.layers,), inputs)[0])
        else:
            outputs = layer_outputs(self.network, self.layers, inputs)
            embedding = torch.cat([functional.normalize(pool(out), dim=1) for out in outputs], 1)
        if self.normalize:
            embedding = functional.normalize(embedding, dim=1)
        return embedding

    def block_widths(self, inputs: torch.Tensor) -> list[tuple[str | None, int]]:
        """``(layer, width)`` of each block of the embedding; layer ``None``: the output."""
        if self.layers is None:
            return [(None, pool(self.network(inputs)).shape[1])]
        names = (self.layers,) if isinstance(self.layers, str) else self.layers
        outputs = layer_outputs(self.network, names, inputs)
        return [(name, pool(out).shape[1]) for name, out in zip(names, outputs, strict=True)]

    def extra_repr(self) -> str:
        """The settings that change the output (part of the ONNX cache key)."""
        return f"layers={self.layers!r}, normalize={self.normalize}"


def layer_outputs(
    network: nn.Module, names: Sequence[str], inputs: torch.Tensor
) -> list[torch.Tensor]:
    """Run ``network`` once and return the first output of each named module."""
    captured: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        return lambda module, args, output: captured.setdefault(name, output)

    hooks = [network.get_submodule(name).register_forward_hook(keeper(name)) for name in names]
    try:
        network(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    missing = [name for name in names if name not in captured]
    if missing:
        raise ValueError(f"layer {missing[0]!r} is not used in the network's forward pass")
    return [captured[name] for name in names]


def pool(output: torch.Tensor) -> torch.Tensor:
    """Global average pooling of feature maps (N, C, H, W) or tokens (N, L, C)."""
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:
        return output.mean(dim=1)
    if output.ndim == 2:
        return output
    raise ValueError(f"cannot pool a network output of shape {tuple(output.shape)}")
