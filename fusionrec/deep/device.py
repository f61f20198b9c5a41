"""Where the network runs: the one place that turns a device name into a torch device."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device``; ``"auto"`` picks CUDA, then Apple's MPS, then the CPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device != "auto":
        return torch.device(device)
    for accelerator in ("cuda", "mps"):
        if device_available(accelerator):
            return torch.device(accelerator)
    return torch.device("cpu")


def device_available(device: str) -> bool:
    """Whether this machine can run networks on ``device`` (``"auto"`` and the CPU always can).

    Examples
    --------
    >>> device_available("cpu")
    True
    """
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return (
            getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        )
    return True
