"""A ProductIndex's keypoints and inverted file, stored so that opening reads neither.

Every item's keypoints go into four arrays (positions, codes, scales, counts), which
open memory-mapped like the vectors: a re-ranked query reads only its candidates'
keypoints. The faiss inverted file (``search="ivf"``, its lists whole, float16 or
product-quantised) is written by faiss's own writer and read by faiss when the
index is first searched, added to or removed from, not when it is opened.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..search import DeferredInvertedFile, InvertedFile, Keypoints
from .values import Decoder, Encoder


class IndexCodec:
    """Stores ``keypoints_`` and the inverted file of a ProductIndex."""

    names = ("keypoints_", "_inverted_file")

    def encode(self, index: Any, encoder: Encoder, where: str) -> dict[str, Any]:
        """Nodes for the packed keypoints and the faiss lists (filed now if not yet)."""
        nodes = {}
        if getattr(index, "keypoints_", None) is not None:
            nodes["keypoints_"] = _packed_keypoints(index.keypoints_, encoder, where)
        inverted = _inverted_file(index)
        if inverted is not None:
            part = encoder.part("index", ".faiss", inverted.to_bytes())
            nodes["_inverted_file"] = {"type": "inverted_file", "part": part}
        elif "_inverted_file" in vars(index):
            nodes["_inverted_file"] = None
        return nodes

    def decode(
        self, nodes: dict[str, Any], values: dict[str, Any], decoder: Decoder, where: str
    ) -> dict[str, Any]:
        """Keypoints as views of the mapped file; the inverted file read at first use."""
        decoded = {}
        if "keypoints_" in nodes:
            node = nodes["keypoints_"]
            decoded["keypoints_"] = None if node is None else _keypoints(node, decoder, where)
        if isinstance(nodes.get("_inverted_file"), dict):
            name = decoder.part(nodes["_inverted_file"], f"{where}._inverted_file")
            archive = decoder.archive
            decoded["_inverted_file"] = DeferredInvertedFile(lambda: archive.view(name))
        elif "_inverted_file" in nodes:
            decoded["_inverted_file"] = None
        return decoded


def _inverted_file(index: Any) -> InvertedFile | DeferredInvertedFile | None:
    """The index's inverted file; filed now when ``search="ivf"`` has not filed it yet."""
    inverted = getattr(index, "_inverted_file", None)
    if (
        inverted is None
        and index.search == "ivf"
        and getattr(index, "centroids_", None) is not None
    ):
        inverted = index._filed()
    return inverted


def _packed_keypoints(keypoints: list[Keypoints], encoder: Encoder, where: str) -> dict:
    width = max((item.codes.shape[1] for item in keypoints if len(item)), default=0)
    codes = [item.codes.reshape(len(item), width) for item in keypoints]
    arrays = {
        "counts": np.array([len(item) for item in keypoints], dtype=np.int64),
        "positions": np.concatenate([item.positions for item in keypoints] or [np.zeros((0, 2))]),
        "codes": np.concatenate(codes or [np.zeros((0, width), np.uint8)]),
        "scales": np.array([item.scale for item in keypoints], dtype=np.float64),
    }
    packed = {name: encoder.array(array, f"{where}.keypoints_") for name, array in arrays.items()}
    return {"type": "keypoints", **packed}


def _keypoints(node: Any, decoder: Decoder, where: str) -> list[Keypoints]:
    where = f"{where}.keypoints_"
    if not isinstance(node, dict) or node.get("type") != "keypoints":
        raise decoder.error(where, "is not a list of keypoints")
    counts, positions, codes, scales = (
        decoder.array(node.get(name, {}), where)
        for name in ("counts", "positions", "codes", "scales")
    )
    ends = np.cumsum(counts)
    consistent = (
        counts.ndim == 1
        and len(scales) == len(counts)
        and (counts >= 0).all()
        and positions.shape == (int(ends[-1]) if len(ends) else 0, 2)
        and codes.ndim == 2
        and len(codes) == len(positions)
    )
    if not consistent:
        raise decoder.error(where, "has keypoint arrays of sizes that do not agree")
    starts = ends - counts
    return [
        Keypoints(positions[start:end], codes[start:end], float(scale))
        for start, end, scale in zip(starts.tolist(), ends.tolist(), scales.tolist(), strict=True)
    ]
