"""The deep branch: CNN embeddings from pretrained or user-supplied networks."""

from .augmentation import Augmentation
from .backbones import Backbone, build_backbone, register_backbone, registered_backbones
from .device import device_available, resolve_device
from .embedder import CNNEmbedder
from .fine_tuning import EpochRecord, FineTuning, History
from .preprocessing import Preprocessing
from .weights import BUNDLED

__all__ = [
    "BUNDLED",
    "Augmentation",
    "Backbone",
    "CNNEmbedder",
    "EpochRecord",
    "FineTuning",
    "History",
    "Preprocessing",
    "build_backbone",
    "device_available",
    "register_backbone",
    "registered_backbones",
    "resolve_device",
]
