"""The allow-list: every class a fusionrec file may name, by a fixed public name.

A manifest names classes as strings, and a string is only ever a key into these
dictionaries: no module is imported and no attribute looked up because a file says
so. A name not listed here is an error, whatever it is (``os.system``,
``subprocess.Popen``, ``builtins.eval``). Names are the public ones (``fusionrec.CNNEmbedder``,
not the module it is defined in), so moving a class between modules never breaks a file.
"""

from __future__ import annotations

from functools import cache

from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder
from sklearn.svm import LinearSVC

from ..deep import Augmentation, CNNEmbedder, EpochRecord, FineTuning, History, Preprocessing
from ..features import Branch
from ..fusion import FusedClassifier, FusedFeatures
from ..search import ProductIndex
from ..traditional import BagOfVisualWords, Codebook

ESTIMATORS: dict[str, type] = {
    "fusionrec.BagOfVisualWords": BagOfVisualWords,
    "fusionrec.CNNEmbedder": CNNEmbedder,
    "fusionrec.FusedFeatures": FusedFeatures,
    "fusionrec.FusedClassifier": FusedClassifier,
    "fusionrec.ProductIndex": ProductIndex,
    "sklearn.frozen.FrozenEstimator": FrozenEstimator,
    "sklearn.linear_model.LogisticRegression": LogisticRegression,
    "sklearn.svm.LinearSVC": LinearSVC,
    "sklearn.preprocessing.LabelEncoder": LabelEncoder,
}
"""Estimators stored as their parameters (JSON) and fitted attributes (arrays and JSON).

The scikit-learn ones hold only arrays and numbers once fitted, which is why
they are here: the linear classifiers ``FusedClassifier`` trains, and the label
encoder it keeps. Other scikit-learn estimators go through skops
(:mod:`fusionrec.files.classifiers`)."""

RECORDS: dict[str, type] = {
    "fusionrec.traditional.Codebook": Codebook,
    "fusionrec.deep.Preprocessing": Preprocessing,
    "fusionrec.deep.FineTuning": FineTuning,
    "fusionrec.deep.Augmentation": Augmentation,
    "fusionrec.deep.History": History,
    "fusionrec.deep.EpochRecord": EpochRecord,
}
"""Dataclasses, rebuilt by calling the class with their fields (which it validates)."""

OBJECTS: dict[str, type] = {"fusionrec.features.Branch": Branch}
"""Plain objects, rebuilt from their attributes."""


@cache
def name_of(cls: type) -> str | None:
    """The allow-listed name of ``cls``, or ``None``."""
    for table in (ESTIMATORS, RECORDS, OBJECTS):
        for name, listed in table.items():
            if listed is cls:
                return name
    return None
