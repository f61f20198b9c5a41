"""scikit-learn estimators that hold more than arrays once fitted, stored with skops.io.

fusionrec's own linear classifiers are stored as their arrays (see
:mod:`fusionrec.files.allowed`); any other scikit-learn estimator (an SVC, a random
forest, a calibrated classifier) is written with skops.io, which, unlike pickle, builds
only types it is told to trust. fusionrec trusts skops' own defaults (scikit-learn's
public estimators, numpy arrays) and the scikit-learn internals in
:data:`TRUSTED_TYPES`, which hold arrays only; a file needing any other type is refused.
"""

from __future__ import annotations

from typing import Any

TRUSTED_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.tree._tree.Tree",
)
"""scikit-learn internals that fitted classifiers hold (trees, calibrators, neighbour
trees, optimiser state), trusted besides skops' defaults."""


def _skops_io():
    try:
        import skops.io
    except ImportError:
        raise ImportError(
            "storing or reading a scikit-learn classifier other than LogisticRegression or "
            "LinearSVC needs skops: pip install 'fusionrec[skops]'"
        ) from None
    return skops.io


def untrusted_types(data: bytes) -> list[str]:
    """The types skops would build from ``data`` that fusionrec does not trust."""
    found = _skops_io().get_untrusted_types(data=data)
    return sorted(set(found) - set(TRUSTED_TYPES))


def dumps(estimator: Any, where: str) -> bytes:
    """``estimator`` as skops bytes.

    Raises
    ------
    TypeError
        If reading it back would need a type fusionrec does not trust: the
        file would then be refused, so none is written.
    """
    data = _skops_io().dumps(estimator)
    refused = untrusted_types(data)
    if refused:
        raise TypeError(
            f"cannot store {where}, a {type(estimator).__name__}: it holds {refused}, which "
            "fusionrec does not trust to read back. Use LogisticRegression (the default "
            "classifier) or another scikit-learn classifier"
        )
    return data


def loads(data: bytes, decoder: Any, where: str) -> Any:
    """The estimator skops wrote in ``data``, built only from trusted types."""
    try:
        refused = untrusted_types(data)
    except ImportError:
        raise
    except Exception as error:  # skops reads the bytes with several libraries
        raise decoder.error(where, f"is not a readable skops file ({error})") from None
    if refused:
        raise decoder.error(
            where,
            f"would build {refused}, which fusionrec does not trust. fusionrec never writes "
            "such a file: do not use it",
        )
    try:
        return _skops_io().loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as error:
        raise decoder.error(where, f"is not a readable skops file ({error})") from None
