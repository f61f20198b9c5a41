"""The deep branch: CNN embeddings from pretrained or user-supplied networks."""

from .backbones import Backbone, build_backbone, register_backbone, registered_backbones
from .device import resolve_device
from .embedder import CNNEmbedder
from .fine_tuning import FineTuning
from .preprocessing import Preprocessing
from .weights import BUNDLED

__all__ = [
    "BUNDLED",
    "Backbone",
    "CNNEmbedder",
    "FineTuning",
    "Preprocessing",
    "build_backbone",
    "register_backbone",
    "registered_backbones",
    "resolve_device",
]
