"""A CNNEmbedder's networks: weights as safetensors, architectures rebuilt by fusionrec.

A file holds a network's tensors only, never its code. At load the architecture comes
from what the embedder names: a registered backbone (the bundled EfficientNet-Lite,
``small_cnn``) or a torchvision model, built without weights, which the stored tensors
then fill (a fine-tuned network's included). The fine-tuning head is dropout and one
linear layer, rebuilt from its tensors' shapes.

A backbone that is the user's own ``torch.nn.Module`` cannot be rebuilt from data: its
class is code. Its weights are stored, and :func:`fusionrec.load` needs an instance of
the class, passed as ``modules={"ClassName": ClassName(...)}``, to load them into.

Weights are stored from the CPU, so a model fitted on a GPU opens on a machine without
one; if the device it names is missing there, the embedder runs on ``"auto"`` and says so.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from torch import nn

from ..deep import build_backbone, device_available, resolve_device
from .values import Decoder, Encoder

_HEAD_LINEAR = "1"  # the head is nn.Sequential(nn.Dropout, nn.Linear)


def weights_bytes(network: nn.Module) -> bytes:
    """The network's state dict as safetensors bytes, from CPU copies of its tensors."""
    from safetensors.torch import save

    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in network.state_dict().items()
    }
    return save(tensors)


class EmbedderCodec:
    """Stores a CNNEmbedder's networks: ``network_``, ``fine_tuning_head_``, a module
    ``backbone`` (safetensors) and ``int8_network_`` (the ONNX model it is)."""

    names = ("backbone", "network_", "fine_tuning_head_", "int8_network_")

    def encode(self, embedder: Any, encoder: Encoder, where: str) -> dict[str, Any]:
        """Nodes naming each network's safetensors entry."""
        nodes = {}
        if isinstance(embedder.backbone, nn.Module):
            module = type(embedder.backbone)
            nodes["backbone"] = {
                "type": "own_network",
                "class": module.__name__,
                "module": module.__module__,
                "part": _weights_part(encoder, embedder.backbone),
            }
        if hasattr(embedder, "network_"):
            nodes["network_"] = {
                "type": "network",
                "part": _weights_part(encoder, embedder.network_),
            }
        if hasattr(embedder, "fine_tuning_head_"):
            nodes["fine_tuning_head_"] = _head_node(embedder.fine_tuning_head_, encoder, where)
        if hasattr(embedder, "int8_network_"):
            part = encoder.part("networks", ".onnx", embedder.int8_network_)
            nodes["int8_network_"] = {"type": "onnx", "part": part}
        return nodes

    def decode(
        self, nodes: dict[str, Any], values: dict[str, Any], decoder: Decoder, where: str
    ) -> dict[str, Any]:
        """The networks rebuilt and filled with their weights; a missing device replaced."""
        decoded = {}
        backbone = nodes.get("backbone", values.get("backbone"))
        if isinstance(backbone, dict):
            backbone = _own_module(backbone, decoder, f"{where}.backbone")
        decoded["backbone"] = backbone
        if "network_" in nodes:
            network = _architecture(backbone, decoder, f"{where}.network_")
            decoded["network_"] = _filled(network, nodes["network_"], decoder, f"{where}.network_")
        if "fine_tuning_head_" in nodes:
            head = _head(nodes["fine_tuning_head_"], decoder, f"{where}.fine_tuning_head_")
            decoded["fine_tuning_head_"] = head
        if "int8_network_" in nodes:
            node = nodes["int8_network_"]
            decoded["int8_network_"] = decoder.archive.read(decoder.part(node, f"{where}.int8"))
        device = values.get("device")
        if isinstance(device, str) and not device_available(device):
            warnings.warn(
                f"a CNNEmbedder was saved with device={device!r}, which this machine lacks: it "
                f"runs with device='auto' ({resolve_device('auto').type}) instead",
                UserWarning,
                stacklevel=2,
            )
            decoded["device"] = "auto"
        return decoded


def _weights_part(encoder: Encoder, network: nn.Module) -> str:
    return encoder.part("networks", ".safetensors", weights_bytes(network))


def _head_node(head: Any, encoder: Encoder, where: str) -> dict:
    is_head = (
        isinstance(head, nn.Sequential)
        and len(head) == 2
        and isinstance(head[0], nn.Dropout)
        and isinstance(head[1], nn.Linear)
    )
    if not is_head:
        raise TypeError(f"cannot store {where}: expected nn.Sequential(nn.Dropout, nn.Linear)")
    return {"type": "head", "dropout": float(head[0].p), "part": _weights_part(encoder, head)}


def _own_module(node: dict, decoder: Decoder, where: str) -> nn.Module:
    """A copy of the module the user passed for the class ``node`` names, with its weights."""
    name = node.get("class")
    given = decoder.modules.get(name)
    if not isinstance(given, nn.Module) or type(given).__name__ != name:
        raise decoder.archive.error(
            f"holds the weights of {where}, a network of your own class {name!r} (from "
            f"module {node.get('module')!r}). A file holds no code, so it cannot rebuild "
            f"that class: pass an instance to fill, fusionrec.load(path, modules={{{name!r}: "
            f"{name}(...)}})"
        )
    return _filled(copy.deepcopy(given), node, decoder, where)


def _architecture(backbone: Any, decoder: Decoder, where: str) -> nn.Module:
    """The network ``backbone`` names, built without downloading or reading any weights."""
    if isinstance(backbone, nn.Module):
        return copy.deepcopy(backbone)
    try:
        return build_backbone(backbone, weights=None, seed=0).network
    except (ValueError, TypeError, ImportError, RuntimeError) as error:
        raise decoder.error(where, f"cannot be rebuilt here: {error}") from None


def _tensors(node: Any, decoder: Decoder, where: str) -> dict[str, Any]:
    """The tensors of the safetensors entry ``node`` names."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not isinstance(node, dict):
        raise decoder.error(where, "is not a network's weights")
    data = bytes(decoder.archive.view(decoder.part(node, where)))
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise decoder.error(where, f"has unreadable weights (safetensors: {error})") from None


def _filled(network: nn.Module, node: Any, decoder: Decoder, where: str) -> nn.Module:
    """``network`` with the weights ``node`` names."""
    return _loaded(network, _tensors(node, decoder, where), decoder, where)


def _loaded(network: nn.Module, tensors: dict, decoder: Decoder, where: str) -> nn.Module:
    try:
        network.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        problem = " ".join(str(error).split())
        raise decoder.error(where, f"has weights that do not fit its network: {problem}") from None
    return network.eval()


def _head(node: Any, decoder: Decoder, where: str) -> nn.Sequential:
    """Dropout and a linear layer, shaped by the stored weights."""
    dropout = node.get("dropout") if isinstance(node, dict) else None
    if not isinstance(dropout, float) or not 0 <= dropout < 1:
        raise decoder.error(where, "is not a fine-tuning head")
    tensors = _tensors(node, decoder, where)
    weight = tensors.get(f"{_HEAD_LINEAR}.weight")
    if weight is None or weight.ndim != 2:
        raise decoder.error(where, "lacks its linear layer's weights")
    classes, width = weight.shape
    return _loaded(
        nn.Sequential(nn.Dropout(dropout), nn.Linear(width, classes)), tensors, decoder, where
    )
