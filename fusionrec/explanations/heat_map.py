"""Where the network looked: a Grad-CAM heat map of the deep branch for one product.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks
via Gradient-based Localization", ICCV 2017) weighs each channel of a
convolutional stage's feature maps by the mean gradient of the product's
score with respect to it, sums the weighted maps and keeps the positive
part. The score here is the linear classifier's term for the deep block, so
the gradient runs from the classifier through the embedding's L2
normalisation and pooling into the network. captum's ``LayerGradCam``
computes it; PyTorch runs the network whatever the embedder's ``runtime``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional

from ..deep import CNNEmbedder, resolve_device


class DeepScore(nn.Module):
    """One product's score from a prepared photo: a linear function of the normalised embedding.

    Parameters
    ----------
    embedding : torch.nn.Module
        Maps a batch ``(N, 3, crop, crop)`` to embeddings ``(N, width)``.
    coefficients : ndarray of shape (width,)
        The classifier's coefficients for the deep block.
    length : float
        Length of the deep block in the fused row (``block_weights``).
    """

    def __init__(self, embedding: nn.Module, coefficients: np.ndarray, length: float) -> None:
        super().__init__()
        self.embedding = embedding
        weights = torch.as_tensor(coefficients * length, dtype=torch.float32)
        self.register_buffer("weights", weights.reshape(-1, 1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(N, 1)`` scores."""
        return functional.normalize(self.embedding(inputs), dim=1) @ self.weights


def prepared_batch(embedder: CNNEmbedder, rgb: np.ndarray) -> torch.Tensor:
    """A photo prepared as the embedder prepares it, as a batch of one on its device."""
    batch = torch.from_numpy(embedder.preprocessing_(rgb)[np.newaxis])
    return batch.to(resolve_device(embedder.device))


def forward(embedder: CNNEmbedder, batch: torch.Tensor) -> tuple[np.ndarray, list]:
    """The photo's embedding ``(1, width)``, and what each module of the network output.

    PyTorch runs the network (no ONNX export for one photo). The second
    item lists ``(module name, output shape)`` in the order the modules
    finished (``()`` for an output that is not a tensor).
    """
    finished: list[tuple[str, tuple[int, ...]]] = []

    def record(name: str):
        return lambda module, args, output: finished.append(
            (name, tuple(output.shape) if torch.is_tensor(output) else ())
        )

    modules = embedder.network_.named_modules()
    hooks = [module.register_forward_hook(record(name)) for name, module in modules if name]
    try:
        with torch.inference_mode():
            embedding = embedder.embedding_module().to(batch.device)(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return embedding.float().cpu().numpy(), finished


def last_convolutional_stage(finished: list, embedder: CNNEmbedder) -> str:
    """The last module whose output is a feature map before the embedding is taken.

    A feature map is a 4-D output ``(N, C, H, W)`` with ``H`` and ``W`` above
    1 (so a global pooling's ``(N, C, 1, 1)`` is not one). When the
    embedder pools named inner layers (its ``layer``), only modules that
    finish by the last of them count.

    Parameters
    ----------
    finished : list of (str, tuple)
        What each module output, in order, as :func:`forward` gives it.
    embedder : CNNEmbedder

    Raises
    ------
    ValueError
        If no module outputs a feature map (a transformer, say): pass
        ``layer`` to name the module to explain.
    """
    finished = _until_embedding_layers(finished, _embedding_layers(embedder.layer))
    stages = [name for name, shape in finished if _is_feature_map(shape)]
    if not stages:
        raise ValueError(
            f"found no convolutional stage in {type(embedder.network_).__name__}: no module "
            "outputs a feature map (N, C, H, W) with H, W > 1 before the embedding; pass layer= "
            "the name of the module whose output the heat map should weigh"
        )
    return stages[-1]


def _embedding_layers(layer: str | Sequence[str] | None) -> list[str]:
    if layer is None:
        return []
    return [layer] if isinstance(layer, str) else list(layer)


def _until_embedding_layers(finished: list, layers: list[str]) -> list:
    """The modules that finished by the time the last embedding layer did."""
    if not layers:
        return finished
    last = max(i for i, (name, _) in enumerate(finished) if name in layers)
    return finished[: last + 1]


def _is_feature_map(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[2] > 1 and shape[3] > 1


def grad_cam(score: DeepScore, batch: torch.Tensor, layer: str) -> np.ndarray:
    """Grad-CAM of ``score`` at the module ``layer`` of its network, ``(H, W)``, ReLU'd.

    Raises
    ------
    ImportError
        Without captum (``pip install 'fusionrec[explain]'``).
    ValueError
        If ``layer`` is not a module of the network or gives no feature map.
    """
    try:
        from captum.attr import LayerGradCam
    except ImportError as error:
        raise ImportError("heat maps need captum: pip install 'fusionrec[explain]'") from error
    network = score.embedding.network
    known = dict(network.named_modules())
    if layer not in known or not layer:
        raise ValueError(
            f"layer {layer!r} is not a module of {type(network).__name__}; some of its modules: "
            f"{[name for name in known if name][-8:]}"
        )
    score = score.to(batch.device)
    with torch.enable_grad():
        cam = LayerGradCam(score, known[layer]).attribute(batch, target=0, relu_attributions=True)
    if cam.ndim != 4 or cam.shape[2] * cam.shape[3] < 2:
        raise ValueError(
            f"layer {layer!r} outputs shape {tuple(cam.shape)}, not a feature map (N, C, H, W): "
            "name a convolutional stage"
        )
    return cam[0, 0].detach().float().cpu().numpy()


def on_photo(cam: np.ndarray, box: tuple[float, ...], shape: tuple[int, int]) -> np.ndarray:
    """A heat map over the photo: ``cam`` stretched over ``box``, NaN where the network saw nothing.

    Values are scaled so that the hottest pixel is 1 (a map without heat stays 0).

    Parameters
    ----------
    cam : ndarray of shape (h, w)
    box : (left, top, right, bottom)
        The region of the photo the network saw, in its pixels.
    shape : (height, width)
        The photo's size.
    """
    heat = np.full(shape, np.nan, dtype=np.float32)
    left, top, right, bottom = (round(edge) for edge in box)
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, shape[1]), min(bottom, shape[0])
    stretched = cv2.resize(cam.astype(np.float32), (right - left, bottom - top))
    peak = float(stretched.max())
    heat[top:bottom, left:right] = np.clip(stretched, 0, None) / (peak if peak > 0 else 1.0)
    return heat
