"""What a fine-tuning run is given (:class:`FineTuning`) and what it gives back.

The settings and results live apart from the training loop
(:mod:`fusionrec.deep.training`), so that ``CNNEmbedder`` and the files that
store a tuned network can name them without importing the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from .augmentation import Augmentation

SCHEDULES = ("cosine", "onecycle")


@dataclass(frozen=True)
class FineTuning:
    """Settings of a training run on the user's labels.

    Parameters
    ----------
    epochs : int, default=10
        Most passes over the training photos; early stopping may end sooner.
    trainable_blocks : int or "all", default=3
        How many of the network's last units (see ``network_units`` in this module)
        train along with the head; ``"all"`` trains the whole network (from
        scratch, with ``weights=None``); ``0`` the head alone.
    learning_rate : float, default=1e-3
        Peak learning rate of AdamW.
    weight_decay : float, default=0.05
        AdamW's decoupled weight decay, applied to weights, not to biases or
        normalisation parameters.
    batch_size : int, default=32
    validation_fraction : float in [0, 1), default=0.1
        Share of the training photos held out, stratified by class, to pick
        the best epoch and stop early. Ignored when validation photos are
        given to ``fine_tune``; 0 trains on everything, for all epochs.
    patience : int or None, default=3
        Stop after this many epochs without a better validation accuracy;
        ``None`` runs every epoch. Either way, the weights of the best epoch
        are kept (higher validation accuracy, then lower validation loss).
    schedule : {"cosine", "onecycle"}, default="cosine"
        ``"cosine"``: a linear warm-up over the first 5% of the steps, then
        cosine decay to zero over all ``epochs``. ``"onecycle"``: PyTorch's
        one-cycle policy.
    label_smoothing : float in [0, 1), default=0.1
    dropout : float in [0, 1), default=0.2
        Dropout before the head.
    augmentation : Augmentation, default=Augmentation()
        How training photos are varied; never their hue.
    autocast : bool, default=False
        Run forward passes under bfloat16 autocast. Off by default: on a CPU
        without native bfloat16 (no AVX-512 BF16 or AMX) it was slower, see
        ``docs/fine_tuning.md``.

    Examples
    --------
    >>> FineTuning(epochs=5, trainable_blocks="all").batch_size
    32
    """

    epochs: int = 10
    trainable_blocks: int | str = 3
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 32
    validation_fraction: float = 0.1
    patience: int | None = 3
    schedule: str = "cosine"
    label_smoothing: float = 0.1
    dropout: float = 0.2
    augmentation: Augmentation = field(default_factory=Augmentation)
    autocast: bool = False

    def __post_init__(self) -> None:
        problems = [
            ("epochs", _is_int(self.epochs, 1), "an int >= 1"),
            (
                "trainable_blocks",
                self.trainable_blocks == "all" or _is_int(self.trainable_blocks, 0),
                "an int >= 0 or 'all'",
            ),
            ("learning_rate", _in_range(self.learning_rate, 0, math.inf, low_open=True), "> 0"),
            ("weight_decay", _in_range(self.weight_decay, 0, math.inf), ">= 0"),
            ("batch_size", _is_int(self.batch_size, 2), "an int >= 2"),
            ("validation_fraction", _in_range(self.validation_fraction, 0, 1), "in [0, 1)"),
            ("patience", self.patience is None or _is_int(self.patience, 1), "None or int >= 1"),
            ("schedule", self.schedule in SCHEDULES, f"one of {SCHEDULES}"),
            ("label_smoothing", _in_range(self.label_smoothing, 0, 1), "in [0, 1)"),
            ("dropout", _in_range(self.dropout, 0, 1), "in [0, 1)"),
            ("augmentation", isinstance(self.augmentation, Augmentation), "an Augmentation"),
            ("autocast", isinstance(self.autocast, bool), "True or False"),
        ]
        for name, valid, rule in problems:
            if not valid:
                raise ValueError(f"FineTuning: {name} must be {rule}; got {getattr(self, name)!r}")


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= low


def _in_range(value: Any, low: float, high: float, *, low_open: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        return False
    return (low < value if low_open else low <= value) and value < high


@dataclass
class EpochRecord:
    """What one epoch did."""

    epoch: int
    train_loss: float
    val_accuracy: float | None
    val_loss: float | None
    learning_rate: float
    seconds: float


@dataclass
class History:
    """The course of a training run.

    Attributes
    ----------
    epochs : list of EpochRecord
        One record per epoch run, in order.
    best_epoch : int
        The epoch (counted from 0) whose weights were kept.
    stopped_early : bool
        Whether early stopping ended the run before ``FineTuning.epochs``.
    trainable : list of str
        The units that trained besides the head, e.g. ``["blocks.6", "conv_head+bn2"]``.
    """

    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    trainable: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Total training time."""
        return sum(record.seconds for record in self.epochs)


class FineTuned(NamedTuple):
    """What :func:`fine_tune` returns."""

    network: nn.Module
    """The tuned embedding network, on the CPU, in eval mode, without the head."""
    history: History
    head: nn.Sequential
    """Dropout and the linear classifier over the embedding; pass it back to continue."""
