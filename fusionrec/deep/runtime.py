"""ONNX Runtime for CPU inference: the same network several times faster, or in int8.

Measured on this project's 2-core CPU (EfficientNet-Lite0, batch 32): eager
PyTorch spends much of its time in memory allocation, while ONNX Runtime
keeps its own arena; its embeddings match eager PyTorch to about 1e-5.
Exporting a network takes several seconds, so each export is also kept in
the user's cache folder (:func:`fusionrec._storage.user_cache_folder`): a
later process, or the next run of a command, starts at once. Idle ONNX
Runtime threads sleep rather than spin, so that the threads preparing the
next batch get the cores (+7% end to end, measured).

:func:`quantize_int8` turns an exported network into an int8 one with ONNX
Runtime's static quantisation, calibrated on prepared photos.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import tempfile
import warnings
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._storage import user_cache_folder, write_atomically

EXPORT_VERSION = 1
"""Changes whenever :func:`export_onnx` would export a network differently."""

_SESSIONS: dict[str, object] = {}
_FINGERPRINTS: dict[tuple, tuple[list[weakref.ref], str]] = {}


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` package (and the ONNX exporter's needs) are installed."""
    return all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnx", "onnxscript"))


def fingerprint(network: nn.Module, crop: int) -> str:
    """A key that changes whenever the network's parameters, settings or input size do.

    Hashing every weight takes tens of milliseconds, so a network's key is
    remembered while its tensors are the same objects, at the same memory and
    unchanged since (torch counts every in-place change in a tensor's
    version): a service embedding batch after batch hashes its network once.
    """
    header = f"{type(network).__qualname__}({network.extra_repr()})/{crop}"
    tensors = network.state_dict(keep_vars=True)
    state = (header, *((name, id(t), t.data_ptr(), t._version) for name, t in tensors.items()))
    remembered = _FINGERPRINTS.get(state)
    if remembered is not None and _still_the_same(remembered[0], tensors.values()):
        return remembered[1]
    digest = hashlib.sha1(header.encode())
    for name, tensor in tensors.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    _forget_dead_fingerprints()
    _FINGERPRINTS[state] = ([weakref.ref(t) for t in tensors.values()], digest.hexdigest())
    return digest.hexdigest()


def _still_the_same(references: list[weakref.ref], tensors: Iterable[torch.Tensor]) -> bool:
    """Whether each reference still points at the tensor in its place (no id was reused)."""
    return all(reference() is tensor for reference, tensor in zip(references, tensors, strict=True))


def _forget_dead_fingerprints() -> None:
    """Drop remembered keys of networks whose tensors are gone."""
    for state, (references, _) in list(_FINGERPRINTS.items()):
        if any(reference() is None for reference in references):
            del _FINGERPRINTS[state]


def export_onnx(network: nn.Module, crop: int) -> bytes:
    """Export ``network`` (batch, 3, crop, crop) -> (batch, features) as ONNX bytes."""
    example = (torch.zeros(2, 3, crop, crop),)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            network.cpu().eval(),
            example,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            opset_version=18,
            external_data=False,
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def exported_model(network: nn.Module, crop: int) -> bytes:
    """``network`` as ONNX bytes: from the user's cache folder, or exported and kept there.

    The file is named by the network's :func:`fingerprint`, the torch version
    and :data:`EXPORT_VERSION`, so a changed network or exporter never reads a
    stale export. Where the cache folder cannot be written, the export is
    simply not kept.
    """
    key = f"{fingerprint(network, crop)}-torch{torch.__version__}-v{EXPORT_VERSION}"
    path = user_cache_folder("onnx", f"{key}.onnx")
    if path.is_file():
        return path.read_bytes()
    model = export_onnx(network, crop)
    with suppress(OSError):
        write_atomically(path, lambda file: file.write(model))
    return model


def quantize_int8(model: bytes, batches: Iterable[np.ndarray]) -> bytes:
    """``model`` with int8 weights and activations, calibrated on ``batches``.

    ONNX Runtime's static quantisation in QDQ format: weights per output
    channel (signed), activations per tensor (unsigned), ranges from the
    minima and maxima seen on the calibration batches (prepared photos, as
    the network receives them).

    Weights use 7 of their 8 bits (``reduce_range``): on x86 CPUs without
    VNNI (AVX2 only), ONNX Runtime multiplies unsigned by signed 8-bit
    values with an instruction whose 16-bit sums saturate, which took the
    embeddings of some demo photos to a cosine of 0.76 with float32 ones;
    with 7-bit weights the lowest was 0.965, at the same speed.
    """
    from onnxruntime import quantization

    with tempfile.TemporaryDirectory(prefix="fusionrec-int8-") as folder:
        exported, prepared, quantized = (Path(folder, n) for n in ("f.onnx", "p.onnx", "q.onnx"))
        exported.write_bytes(model)
        with _quiet_quantisation_logs():
            quantization.quant_pre_process(str(exported), str(prepared))
            quantization.quantize_static(
                str(prepared),
                str(quantized),
                _Calibration(_input_name(model), batches),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                reduce_range=True,
            )
        return quantized.read_bytes()


class OnnxEmbedding:
    """Run an ONNX network with ONNX Runtime on the CPU; sessions are shared per model.

    ``threads`` caps the session's threads (a cluster worker's share of its
    machine); ``None`` lets ONNX Runtime use every core. Sessions live in
    this process only: an embedder sent to another process builds its own
    there, on first use.
    """

    def __init__(self, model: bytes, key: str | None = None, *, threads: int | None = None) -> None:
        key = f"{key or hashlib.sha1(model).hexdigest()}-threads{threads}"
        if key not in _SESSIONS:
            _SESSIONS[key] = _session(model, threads)
        self.session = _SESSIONS[key]
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def of_network(
        cls, network: nn.Module, crop: int, *, threads: int | None = None
    ) -> OnnxEmbedding:
        """A session for ``network`` taking ``crop`` x ``crop`` photos."""
        key = fingerprint(network, crop)
        if f"{key}-threads{threads}" in _SESSIONS:
            return cls(b"", key, threads=threads)
        return cls(exported_model(network, crop), key, threads=threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


def _session(model: bytes, threads: int | None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _input_name(model: bytes) -> str:
    import onnx

    return onnx.load_from_string(model).graph.input[0].name


class _Calibration:
    """ONNX Runtime's calibration reader interface over prepared batches."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self._feeds: Iterator[dict] = ({input_name: batch} for batch in batches)

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


@contextmanager
def _quiet_quantisation_logs() -> Iterator[None]:
    """Hold ONNX Runtime's quantisation tool to warnings while it works."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
