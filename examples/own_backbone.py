"""Plug your own network, or a torchvision architecture, into the deep branch and fuse it.

Run: python examples/own_backbone.py

CNNEmbedder takes any torch.nn.Module as its backbone (its output, globally
pooled, is the embedding) or a torchvision model name with ``weights=None``, a
local weights file, or torchvision's weights. Both here are randomly
initialised, so they run offline but embed poorly: the table shows how much the
fused classifier gains from the keypoint branch beside a weak CNN. Train or load
weights for real use (``weights="my_weights.pt"`` loads a state dict).
"""

import tempfile

import torch
from sklearn.model_selection import train_test_split
from torch import nn

from fusionrec import BagOfVisualWords, CNNEmbedder, FusedClassifier
from fusionrec.datasets import load_demo_products
from fusionrec.deep import Preprocessing


class TinyConvNet(nn.Module):
    """Three strided convolutions; CNNEmbedder average-pools the last one's 64 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


torch.manual_seed(0)
backbones = {
    # your own module: say how photos are to be prepared for it
    "TinyConvNet": CNNEmbedder(TinyConvNet(), preprocessing=Preprocessing(resize=128, crop=112)),
    # a torchvision architecture: its usual ImageNet preprocessing comes with it
    "mobilenet_v3_small": CNNEmbedder("mobilenet_v3_small", weights=None, random_state=0),
}
keypoints = BagOfVisualWords(
    "rootsift", n_words=32, encoding="fisher", pca_components=64, max_descriptors=10_000
)

demo = load_demo_products()
train, test, y_train, y_test = train_test_split(
    demo.data, demo.target, test_size=0.3, stratify=demo.target, random_state=0
)
print(f"{'backbone':20} {'deep accuracy':>13} {'fused accuracy':>14}")
with tempfile.TemporaryDirectory() as cache:  # the keypoints are described once for both
    for name, embedder in backbones.items():
        scores = [
            FusedClassifier(
                branch=branch, traditional=keypoints, deep=embedder, memory=cache, random_state=0
            )
            .fit(train, y_train)
            .score(test, y_test)
            for branch in ("deep", "fused")
        ]
        print(f"{name:20} {scores[0]:13.3f} {scores[1]:14.3f}")
