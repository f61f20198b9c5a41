"""Declare each estimator's parameter rules once, and check them in ``fit``.

Each estimator lists its rules in ``_parameter_rules`` (parameter name -> rules, any of
which may accept a value). The name is fusionrec's own on purpose: scikit-learn reads
``_parameter_constraints`` in its own format (``Interval``, ``StrOptions``), and these rules
are simpler objects with messages of their own.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.frozen import FrozenEstimator

from .images import ON_ERROR_CHOICES


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: tuple

    def __call__(self, value: Any) -> bool:
        return any(value is option or value == option for option in self.values)

    def __str__(self) -> str:
        if len(self.values) == 1:
            return repr(self.values[0])
        return "one of " + ", ".join(repr(value) for value in self.values)


@dataclass(frozen=True)
class Integer:
    """A whole number in ``[low, high]`` (either end open when ``None``)."""

    low: int | None = None
    high: int | None = None

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        return f"an int in [{low}, {high}]"


@dataclass(frozen=True)
class Real:
    """A real number (not a bool) in ``(low, high]``."""

    low: float
    high: float

    def __call__(self, value: Any) -> bool:
        is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return is_real and self.low < value <= self.high

    def __str__(self) -> str:
        return f"a number in ({self.low}, {self.high}]"


@dataclass(frozen=True)
class InstanceOf:
    """An instance of one of the given types."""

    types: tuple
    description: str

    def __call__(self, value: Any) -> bool:
        return isinstance(value, self.types)

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class Frozen:
    """A ``sklearn.frozen.FrozenEstimator`` wrapping an instance of one of the given types."""

    types: tuple
    description: str

    def __call__(self, value: Any) -> bool:
        return isinstance(value, FrozenEstimator) and isinstance(value.estimator, self.types)

    def __str__(self) -> str:
        return f"FrozenEstimator({self.description})"


IS_NONE: Callable[[Any], bool] = Options((None,))
RANDOM_STATE = (
    IS_NONE,
    Integer(0, 2**32 - 1),
    InstanceOf((np.random.RandomState,), "a numpy RandomState"),
)
N_JOBS = (IS_NONE, Integer(1), Integer(None, -1))
ON_ERROR = (Options(ON_ERROR_CHOICES),)
VERBOSE = (Integer(0),)
RUN_CONSTRAINTS = {
    "on_error": ON_ERROR,
    "n_jobs": N_JOBS,
    "random_state": RANDOM_STATE,
    "verbose": VERBOSE,
}
"""The rules shared by every estimator that reads photos in parallel."""


def validate_params(estimator: Any, constraints: Mapping[str, tuple]) -> None:
    """Raise ``ValueError`` naming the first parameter that breaks its rule.

    Parameters
    ----------
    estimator : object
        An estimator with ``get_params``.
    constraints : mapping
        Parameter name -> tuple of rules; a value passes if any rule accepts it.
    """
    check_values(estimator.get_params(deep=False), constraints, f"{type(estimator).__name__}: ")


def check_values(
    values: Mapping[str, Any], constraints: Mapping[str, tuple], prefix: str = ""
) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that breaks its rule.

    Parameters
    ----------
    values : mapping
        Name -> value, one for each name in ``constraints``.
    constraints : mapping
        Name -> tuple of rules; a value passes if any rule accepts it.
    prefix : str
        Starts the message (who was given the value).

    Examples
    --------
    >>> check_values({"k": 0}, {"k": (Integer(1),)})
    Traceback (most recent call last):
    ...
    ValueError: k must be an int in [1, inf]; got 0
    """
    for name, rules in constraints.items():
        value = values[name]
        if not any(rule(value) for rule in rules):
            allowed = " or ".join(str(rule) for rule in rules)
            raise ValueError(f"{prefix}{name} must be {allowed}; got {value!r}")
