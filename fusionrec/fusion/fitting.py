"""Fit a classifier on fused features, once per distinct problem when a cache is given.

Grid-search candidates that train the same seeded classifier on the same rows
(a single branch ignores ``fusion``, say) then train it once.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from ..features import load_or_none, store
from .row_space import fit_in_row_space


def fit_cached(classifier: Any, features: np.ndarray, target: np.ndarray, location: Path | None):
    """``classifier`` fitted on ``features`` and ``target``, from the cache when it is there.

    Only classifiers whose every ``random_state`` is an integer (or that have
    none) are cached, since only they give the same fit from the same rows.
    """
    if location is None or not _is_seeded(classifier):
        return fit_in_row_space(classifier, features, target)
    path = location / "classifier" / f"{joblib.hash((classifier, features, target))}.joblib"
    fitted = load_or_none(path)
    if fitted is None:
        fitted = fit_in_row_space(classifier, features, target)
        store(fitted, path)
    return fitted


def _is_seeded(estimator: Any) -> bool:
    return all(
        isinstance(value, numbers.Integral)
        for name, value in estimator.get_params(deep=True).items()
        if name.split("__")[-1] == "random_state"
    )
