"""fusionrec: recognise products in photos by fusing keypoint and CNN features.

The package follows one flowchart::

    images -> traditional branch (keypoints -> visual words) --+
           \\-> deep branch (CNN embeddings) -------------------+-> fusion -> tasks

:mod:`fusionrec.images` reads photos in every form; :mod:`fusionrec.traditional`
holds the keypoint branch and :mod:`fusionrec.deep` the CNN branch;
:mod:`fusionrec.fusion` combines them for classification and
:mod:`fusionrec.search` for search by photo; :mod:`fusionrec.explanations`
shows why a model or a search decided as it did; :mod:`fusionrec.files` saves and
loads any of them without pickle (:func:`save`, :func:`load`); :mod:`fusionrec.datasets`
loads labelled photo folders and the bundled demo products.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0.dev0"

_PUBLIC = {
    "BagOfVisualWords": "fusionrec.traditional",
    "CNNEmbedder": "fusionrec.deep",
    "FusedClassifier": "fusionrec.fusion",
    "FusedFeatures": "fusionrec.fusion",
    "ProductIndex": "fusionrec.search",
    "available_detectors": "fusionrec.traditional",
    "evaluate": "fusionrec.evaluation",
    "load": "fusionrec.files",
    "save": "fusionrec.files",
    "explain": "fusionrec.explanations",
    "explain_match": "fusionrec.explanations",
}
__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str) -> Any:
    """Import public names on first use, so ``import fusionrec`` stays light."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'fusionrec' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
