"""Train a backbone on the user's labels: fine-tuning, or training from scratch.

:func:`fine_tune` puts a linear classifier (the *head*) on a network's
pooled embedding, unfreezes the head and the network's last blocks, and
trains them on labelled photos with product-friendly augmentation, AdamW, a
learning-rate schedule and early stopping on a validation split. It returns
the tuned network *without* the head: an embedding network that
``CNNEmbedder`` uses as its ``network_``, so everything built on embeddings
(``FusedClassifier``, ``ProductIndex``) uses the tuned network unchanged.

Which parts are "blocks"
------------------------
:func:`network_units` lists a network's trainable units in order: its direct
children, where a child that is an ``nn.Sequential`` or ``nn.ModuleList`` is
opened one level; units without parameters are dropped, and a unit that is
only a normalisation layer joins the unit before it (a convolution and its
batch norm train together). ``trainable_blocks=n`` unfreezes the last ``n``
units. For timm's EfficientNet-Lite this gives ``conv_stem+bn1``,
``blocks.0`` ... ``blocks.6`` (the seven stages) and ``conv_head+bn2``, so
``trainable_blocks=3`` trains ``blocks.5``, ``blocks.6`` and the final 1x1
convolution. For torchvision's EfficientNet, MobileNet and ConvNeXt it gives
the entries of ``features``; for ResNet, ``conv1+bn1`` and each residual
block of ``layer1`` ... ``layer4``.

Frozen units stay in eval mode while training, so their batch-norm
statistics do not move either: their parameters and buffers come back
bit-for-bit unchanged.

Reproducibility
---------------
With the same ``random_state``, device and number of torch threads, two runs
give identical weights: the split, the batch order and every augmentation
are drawn from one ``numpy.random.Generator`` (augmentations from a seed per
photo, so decoding threads can finish in any order), and torch's own random
state (head initialisation, dropout) is seeded and restored afterwards. On
the CPU, PyTorch's kernels are deterministic for a fixed thread count; a
different ``torch.set_num_threads`` may change the last bits of the sums.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional
from tqdm.auto import tqdm

from ..images import as_image_sequence, load_image
from .augmentation import Augmentation
from .device import resolve_device
from .fine_tuning import EpochRecord, FineTuned, FineTuning, History
from .layers import pool
from .prefetch import prefetched
from .preprocessing import Preprocessing

_NORMALISATION = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_WARMUP_FRACTION = 0.05


def network_units(network: nn.Module) -> list[tuple[str, ...]]:
    """The network's trainable units, in order, as tuples of module names.

    Direct children, with ``nn.Sequential`` and ``nn.ModuleList`` children
    opened one level; units without parameters are dropped; a normalisation
    layer joins the unit before it.

    Parameters
    ----------
    network : torch.nn.Module

    Returns
    -------
    list of tuple of str

    Examples
    --------
    >>> from fusionrec.deep.small_cnn import SmallCNN
    >>> network_units(SmallCNN())
    [('blocks.0',), ('blocks.1',), ('blocks.2',)]
    """
    units: list[tuple[str, ...]] = []
    for name, child in network.named_children():
        if isinstance(child, nn.Sequential | nn.ModuleList):
            members = [(f"{name}.{inner}", module) for inner, module in child.named_children()]
        else:
            members = [(name, child)]
        for member, module in members:
            if next(module.parameters(), None) is None:
                continue
            if units and isinstance(module, _NORMALISATION):
                units[-1] = (*units[-1], member)
            else:
                units.append((member,))
    return units


def fine_tune(
    network: nn.Module,
    preprocessing: Preprocessing,
    images: Any,
    labels: Any,
    *,
    settings: FineTuning | None = None,
    validation: tuple[Any, Any] | None = None,
    head: nn.Sequential | None = None,
    device: str | torch.device = "auto",
    random_state: int | None = None,
    n_threads: int = 2,
    verbose: int = 0,
) -> FineTuned:
    """Train a head and the last units of ``network`` on labelled photos.

    Parameters
    ----------
    network : torch.nn.Module
        An embedding network, as :func:`~fusionrec.deep.build_backbone`
        builds it: a batch of prepared photos in, one (pooled) vector per
        photo out. It is copied, not changed.
    preprocessing : Preprocessing
        Its crop size, interpolation, mean and std are used for training
        (with augmentation) and validation (centre crop).
    images : sequence of images
        Anything :func:`~fusionrec.images.as_image_sequence` accepts.
        Unreadable photos raise :class:`~fusionrec.images.ImageReadError`.
    labels : array-like of int, shape (n_images,)
        Class indices from 0. To add classes to a trained head, give the new
        classes the next indices.
    settings : FineTuning, optional
        Defaults to ``FineTuning()``.
    validation : (images, labels), optional
        Photos to pick the best epoch with, instead of holding out
        ``settings.validation_fraction`` of ``images``.
    head : torch.nn.Sequential, optional
        The ``head`` of an earlier run, to continue from it (say, after
        adding corrected or new photos); it grows rows for new classes.
    device : str or torch.device, default="auto"
        ``"auto"`` picks CUDA, then MPS, then the CPU.
    random_state : int or None
        Seeds the split, batch order, augmentation, head and dropout.
    n_threads : int, default=2
        Threads that decode and augment the next batches while the network
        trains.
    verbose : int, default=0
        Show a progress bar (epoch, training loss, validation accuracy).

    Returns
    -------
    FineTuned
        ``(network, history, head)``.
    """
    settings = FineTuning() if settings is None else settings
    images = as_image_sequence(images)
    labels = _class_indices(labels, len(images), "labels")
    rng = np.random.default_rng(random_state)
    train, valid = _split(images, labels, validation, settings.validation_fraction, rng)
    device = resolve_device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(rng.integers(2**31)))
        run = _Run(copy.deepcopy(network), preprocessing, settings, device, n_threads)
        return run.train(train, valid, head, rng, verbose)


@dataclass
class _Labelled:
    images: Sequence
    labels: np.ndarray

    def subset(self, positions: np.ndarray) -> _Labelled:
        return _Labelled([self.images[i] for i in positions], self.labels[positions])


def _class_indices(labels: Any, n_images: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n_images,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{name} must be {n_images} integer class indices, one per image; "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if n_images and labels.min() < 0:
        raise ValueError(f"{name} must be class indices from 0; got {labels.min()}")
    return labels.astype(np.int64)


def _split(images, labels, validation, fraction: float, rng) -> tuple[_Labelled, _Labelled | None]:
    everything = _Labelled(images, labels)
    if validation is not None:
        valid_images = as_image_sequence(validation[0])
        valid_labels = _class_indices(validation[1], len(valid_images), "validation labels")
        return everything, _Labelled(valid_images, valid_labels)
    if fraction == 0:
        return everything, None
    try:
        kept, held_out = train_test_split(
            np.arange(len(labels)),
            test_size=fraction,
            stratify=labels,
            random_state=int(rng.integers(2**31)),
        )
    except ValueError as error:
        raise ValueError(
            f"cannot hold out a stratified validation_fraction={fraction} of {len(labels)} "
            f"photos ({error}); give validation photos, or validation_fraction=0"
        ) from None
    return everything.subset(np.sort(kept)), everything.subset(np.sort(held_out))


class _Run:
    """One training run: the network, its head, the optimiser and the photo pipeline."""

    def __init__(
        self, network, preprocessing, settings: FineTuning, device, n_threads: int
    ) -> None:
        self.network = network.to(device, memory_format=torch.channels_last)
        self.preprocessing = preprocessing
        self.settings = settings
        self.device = device
        self.n_threads = n_threads
        units = network_units(network)
        count = len(units) if settings.trainable_blocks == "all" else settings.trainable_blocks
        self.units = units[len(units) - min(count, len(units)) :]
        self.modules = [network.get_submodule(name) for unit in self.units for name in unit]
        self.loss = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
        self.shown_accuracy = _percent(None)

    def train(self, train: _Labelled, valid: _Labelled | None, head, rng, verbose) -> FineTuned:
        n_classes = 1 + max(int(train.labels.max()), -1 if valid is None else valid.labels.max())
        self.head = _grown_head(head, self._width(), n_classes, self.settings.dropout)
        self.head.to(self.device)
        steps = _steps_per_epoch(len(train.labels), self.settings.batch_size)
        threads = ThreadPoolExecutor(self.n_threads)
        with _only_trainable(self.network, self.modules), threads as pool:
            self.pool = pool
            optimiser = _optimiser(self._trainable_parameters(), self.settings)
            scheduler = _scheduler(optimiser, self.settings, steps)
            history = self._epochs(train, valid, optimiser, scheduler, rng, verbose)
        self.network.eval().cpu()
        return FineTuned(self.network, history, self.head.eval().cpu())

    def _width(self) -> int:
        self.network.eval()
        crop = self.preprocessing.crop
        with torch.inference_mode():
            probe = torch.zeros(1, 3, crop, crop, device=self.device)
            return pool(self.network(probe)).shape[1]

    def _trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in (*self.network.parameters(), *self.head.parameters()) if p.requires_grad]

    def _epochs(self, train, valid, optimiser, scheduler, rng, verbose) -> History:
        settings = self.settings
        history = History(trainable=["+".join(unit) for unit in self.units])
        best = _BestEpoch(settings.patience, (self.network, self.head))
        total = settings.epochs * _steps_per_epoch(len(train.labels), settings.batch_size)
        with tqdm(total=total, unit="batch", disable=not verbose) as bar:
            for epoch in range(settings.epochs):
                bar.set_description(f"epoch {epoch + 1}/{settings.epochs}")
                started = time.perf_counter()
                loss = self._train_epoch(train, optimiser, scheduler, rng, bar)
                accuracy, val_loss = self._evaluate(valid) if valid is not None else (None, None)
                seconds = time.perf_counter() - started
                learning_rate = scheduler.get_last_lr()[0]
                history.epochs.append(
                    EpochRecord(epoch, loss, accuracy, val_loss, learning_rate, seconds)
                )
                self.shown_accuracy = _percent(accuracy)
                bar.set_postfix(loss=f"{loss:.3f}", val_acc=self.shown_accuracy)
                if valid is not None and best.should_stop(epoch, accuracy, val_loss):
                    history.stopped_early = epoch + 1 < settings.epochs
                    break
        history.best_epoch = best.restore() if valid is not None else len(history.epochs) - 1
        return history

    def _train_epoch(self, train: _Labelled, optimiser, scheduler, rng, bar) -> float:
        self.network.eval()
        for module in self.modules:
            module.train()
        self.head.train()
        order = rng.permutation(len(train.labels))
        seeds = rng.integers(2**63, size=len(train.labels))
        prepare = partial(
            _augmented, train.images, seeds, self.settings.augmentation, self.preprocessing
        )
        total, count = 0.0, 0
        for inputs, targets in self._batches(train, order, prepare):
            if len(targets) < 2:  # batch norm cannot train on a single photo
                continue
            with self._autocast():
                loss = self.loss(self._logits(inputs).float(), targets)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += loss.item() * len(targets)
            count += len(targets)
            bar.set_postfix(loss=f"{total / count:.3f}", val_acc=self.shown_accuracy, refresh=False)
            bar.update()
        return total / max(count, 1)

    def _evaluate(self, valid: _Labelled) -> tuple[float, float]:
        self.network.eval()
        self.head.eval()
        prepare = partial(_centre_cropped, valid.images, self.preprocessing)
        correct, total_loss = 0, 0.0
        order = np.arange(len(valid.labels))
        with torch.inference_mode(), self._autocast():
            for inputs, targets in self._batches(valid, order, prepare):
                logits = self._logits(inputs).float()
                total_loss += functional.cross_entropy(logits, targets, reduction="sum").item()
                correct += int((logits.argmax(dim=1) == targets).sum())
        return correct / len(order), total_loss / len(order)

    def _logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(pool(self.network(inputs)))

    def _autocast(self):
        if not self.settings.autocast:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _batches(
        self, data: _Labelled, order: np.ndarray, prepare: Callable[[int], torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Prepare batches in background threads, a few ahead of the network."""
        size = self.settings.batch_size
        tasks = (
            partial(_stack, order[start : start + size], prepare)
            for start in range(0, len(order), size)
        )
        for prepared in prefetched(self.pool, tasks, self.n_threads):
            yield self._to_device(prepared, data.labels)

    def _to_device(self, prepared, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        positions, inputs = prepared
        inputs = inputs.to(self.device).contiguous(memory_format=torch.channels_last)
        return inputs, torch.from_numpy(labels[positions]).to(self.device)


class _BestEpoch:
    """Early stopping: remember the best epoch's weights, count the epochs since."""

    def __init__(self, patience: int | None, modules: tuple[nn.Module, ...]) -> None:
        self.patience = patience
        self.modules = modules
        self.key: tuple[float, float] | None = None
        self.epoch = 0
        self.waited = 0
        self.weights: list[dict] = []

    def should_stop(self, epoch: int, accuracy: float, loss: float) -> bool:
        """Record an epoch; better means higher accuracy, then lower loss."""
        if self.key is None or (accuracy, -loss) > self.key:
            self.key, self.epoch, self.waited = (accuracy, -loss), epoch, 0
            self.weights = [
                {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
                for module in self.modules
            ]
            return False
        self.waited += 1
        return self.patience is not None and self.waited >= self.patience

    def restore(self) -> int:
        """Load the best epoch's weights back; return that epoch."""
        for module, weights in zip(self.modules, self.weights, strict=True):
            module.load_state_dict(weights)
        return self.epoch


def _augmented(images, seeds, augmentation: Augmentation, preprocessing, position: int):
    rng = np.random.default_rng(seeds[position])
    return augmentation(load_image(images[position]), preprocessing, rng)


def _centre_cropped(images, preprocessing: Preprocessing, position: int) -> torch.Tensor:
    return torch.from_numpy(preprocessing(load_image(images[position])))


def _stack(positions: np.ndarray, prepare: Callable[[int], torch.Tensor]):
    return positions, torch.stack([prepare(int(position)) for position in positions])


def _percent(accuracy: float | None) -> str:
    return "-" if accuracy is None else f"{100 * accuracy:.1f}%"


def _steps_per_epoch(n_photos: int, batch_size: int) -> int:
    steps = math.ceil(n_photos / batch_size)
    return steps - 1 if n_photos % batch_size == 1 and steps > 1 else steps


def _grown_head(head: nn.Sequential | None, width: int, n_classes: int, dropout: float):
    """A new head, or ``head`` with rows added for classes it has not seen."""
    linear = nn.Linear(width, n_classes)
    if head is None:
        return nn.Sequential(nn.Dropout(dropout), linear)
    old = head[-1]
    if old.in_features != width or old.out_features > n_classes:
        raise ValueError(
            f"the head maps {old.in_features} features to {old.out_features} classes; this "
            f"network gives {width} features and the labels need {n_classes} classes"
        )
    with torch.no_grad():
        linear.weight[: old.out_features] = old.weight
        linear.bias[: old.out_features] = old.bias
    return nn.Sequential(nn.Dropout(dropout), linear)


@contextmanager
def _only_trainable(network: nn.Module, modules: list[nn.Module]):
    """Freeze every parameter outside ``modules`` for the duration."""
    flags = [parameter.requires_grad for parameter in network.parameters()]
    network.requires_grad_(False)
    for module in modules:
        module.requires_grad_(True)
    try:
        yield
    finally:
        for parameter, flag in zip(network.parameters(), flags, strict=True):
            parameter.requires_grad_(flag)


def _optimiser(parameters: list[nn.Parameter], settings: FineTuning) -> torch.optim.AdamW:
    """AdamW, with weight decay on weights only (not on biases and normalisation)."""
    groups = [
        {"params": [p for p in parameters if p.ndim > 1], "weight_decay": settings.weight_decay},
        {"params": [p for p in parameters if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=settings.learning_rate)


def _scheduler(optimiser, settings: FineTuning, steps_per_epoch: int):
    total = max(settings.epochs * steps_per_epoch, 1)
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=settings.learning_rate, total_steps=total
        )
    warmup = max(1, round(_WARMUP_FRACTION * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
