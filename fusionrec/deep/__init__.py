"""The deep branch: CNN embeddings from pretrained or user-supplied networks."""

from .backbones import Backbone, build_backbone
from .embedder import CNNEmbedder, resolve_device
from .preprocessing import Preprocessing
from .training import FineTuning
from .weights import BUNDLED

__all__ = [
    "BUNDLED",
    "Backbone",
    "CNNEmbedder",
    "FineTuning",
    "Preprocessing",
    "build_backbone",
    "resolve_device",
]
