"""How well a classifier recognises products: one report, as numbers, JSON and a plot."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


@dataclass
class EvaluationReport:
    """Accuracy, macro and per-class precision, recall and F1, and the confusion matrix.

    :func:`fusionrec.evaluate` makes it.

    Attributes
    ----------
    accuracy : float
        Fraction of photos whose prediction is their true label.
    macro_precision : float
        Precision averaged over the classes, each with the same weight.
    macro_recall : float
        Recall averaged over the classes, each with the same weight.
    macro_f1 : float
        F1 averaged over the classes, each with the same weight.
    labels : list
        The classes reported, in the order of ``confusion``'s rows and columns.
    per_class : dict
        Per label: ``{"precision", "recall", "f1", "support"}``, where support
        counts the label's true photos.
    confusion : list of list of int
        ``confusion[i][j]`` counts photos of ``labels[i]`` predicted as ``labels[j]``.
    n_photos : int
        How many photos were scored.
    n_rejected : int
        How many photos the classifier rejected as of no known product
        (predicted ``unknown_label``).
    unknown_label : str, int or None
        The label of rejected photos, whose row and column come last in
        ``per_class`` and ``confusion``; ``None``: nothing is rejected.
    """

    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    labels: list
    per_class: dict
    confusion: list
    n_photos: int
    n_rejected: int = 0
    unknown_label: Any = None

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON and return the path."""
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2, default=_plain))
        return path

    def plot_confusion(self, path: str | os.PathLike) -> Path:
        """Draw the confusion matrix (rows: true product, columns: predicted) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        counts = np.asarray(self.confusion)
        size = max(5.0, 0.35 * len(self.labels) + 2)
        figure, axes = pyplot.subplots(figsize=(size, size))
        image = axes.imshow(counts, cmap="Blues")
        ticks = np.arange(len(self.labels))
        names = [str(label) for label in self.labels]
        axes.set_xticks(ticks, names, rotation=90, fontsize=7)
        axes.set_yticks(ticks, names, fontsize=7)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(f"accuracy {self.accuracy:.3f}, macro F1 {self.macro_f1:.3f}")
        figure.colorbar(image, ax=axes, fraction=0.046)
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, dpi=120)
        pyplot.close(figure)
        return path


def _plain(value: Any) -> Any:
    """JSON for numpy scalars."""
    return value.item() if isinstance(value, np.generic) else str(value)


def evaluate(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    unknown_label: Any = None,
    output_dir: str | os.PathLike | None = None,
) -> EvaluationReport:
    """Score predictions against the true products.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_photos,)
        True and predicted labels. ``None`` predictions (photos a classifier
        dropped as unreadable) count as wrong.
    labels : array-like, optional
        The products to report, in order; default: every label in ``y_true``
        and ``y_pred``, sorted.
    unknown_label : str, int or None, optional
        The label a classifier with a reject option predicts for a photo of
        no known product (``FusedClassifier.unknown_label_``); a true label
        equal to it marks a photo of a product the classifier was not
        trained on. Rejections get their own row and column, last, and are
        counted in ``n_rejected``; a rejected photo of an unknown product is
        a correct answer. Macro averages are over the products only.
    output_dir : str or path, optional
        Also write ``report.json`` and ``confusion_matrix.png`` there.

    Returns
    -------
    EvaluationReport

    Examples
    --------
    >>> report = evaluate(["milk", "milk", "kiwi"], ["milk", "kiwi", "kiwi"])
    >>> round(report.accuracy, 3), report.per_class["kiwi"]["recall"]
    (0.667, 1.0)
    """
    truth = np.asarray(y_true, dtype=object)
    predicted = np.asarray(y_pred, dtype=object)
    if truth.shape != predicted.shape or truth.ndim != 1:
        raise ValueError(
            "y_true and y_pred must be 1-D and equally long; "
            f"got shapes {truth.shape} and {predicted.shape}"
        )
    if len(truth) == 0:
        raise ValueError("nothing to evaluate: y_true is empty")
    if labels is None:
        labels = _sorted_labels({label for label in [*truth, *predicted] if label is not None})
    labels = [label for label in labels if unknown_label is None or label != unknown_label]
    products = len(labels)
    if unknown_label is not None:
        labels.append(unknown_label)
    position = {label: i for i, label in enumerate(labels)}
    # integer codes: labels of any type compare, and an unknown or dropped
    # prediction (-2) can never equal an unknown true label (-1)
    truth = np.array([position.get(label, -1) for label in truth])
    predicted = np.array([position.get(label, -2) for label in predicted])
    codes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=codes, zero_division=0
    )
    report = EvaluationReport(
        accuracy=float(accuracy_score(truth, predicted)),
        macro_precision=float(precision[:products].mean()),
        macro_recall=float(recall[:products].mean()),
        macro_f1=float(f1[:products].mean()),
        labels=labels,
        per_class={
            label: {
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        confusion=confusion_matrix(truth, predicted, labels=codes).tolist(),
        n_photos=len(truth),
        n_rejected=int(np.sum(predicted == len(labels) - 1)) if unknown_label is not None else 0,
        unknown_label=unknown_label,
    )
    if output_dir is not None:
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        report.to_json(folder / "report.json")
        report.plot_confusion(folder / "confusion_matrix.png")
    return report


def _sorted_labels(found: set) -> list:
    try:
        return sorted(found)
    except TypeError:  # labels of mixed types
        return sorted(found, key=str)
