"""A folder of extracted features: the finished job's shards, read one at a time."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..files import load
from ..fusion import FusedFeatures
from ..search import ProductIndex
from .shards import read_rows

MANIFEST = "manifest.json"


class ExtractedFeatures:
    """The features an extraction job wrote to ``folder``: its shards, extractor and reports.

    Opening one reads ``manifest.json`` only (written when the job finished);
    the rows stay in their shards until :meth:`shards` reads them, one shard at
    a time.

    Parameters
    ----------
    folder : str or path
        The folder given to :func:`extract_features`.

    Attributes
    ----------
    folder : pathlib.Path
    manifest : dict
        What the job wrote: ``photos``, ``rows``, ``features`` (their width),
        ``shards`` (each one's ``file``, ``photos``, ``rows`` and
        ``unreadable``: the ``id`` and ``reason`` of each photo left out).

    See Also
    --------
    extract_features : writes such a folder.
    index_from_features : a ProductIndex from one.

    Examples
    --------
    >>> import tempfile
    >>> from fusionrec.datasets import load_demo_products
    >>> from fusionrec.extraction import extract_features
    >>> folder = tempfile.mkdtemp()
    >>> _ = extract_features(load_demo_products().data[:5], folder, photos_per_shard=2)
    >>> extracted = ExtractedFeatures(folder)
    >>> [rows.shape for rows, ids in extracted.shards()]
    [(2, 1280), (2, 1280), (1, 1280)]
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(self.folder)!r} holds no finished extraction ({MANIFEST} is missing):"
                " run the job (again) to finish it"
            )
        self.manifest = json.loads(path.read_text())

    @property
    def n_rows(self) -> int:
        """Feature rows in all shards: the readable photos."""
        return self.manifest["rows"]

    @property
    def shard_paths(self) -> list[Path]:
        """The shard files, in photo order."""
        return [self.folder / shard["file"] for shard in self.manifest["shards"]]

    def shards(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each shard's ``(features, ids)`` in photo order: float32 rows, ids as text."""
        for path in self.shard_paths:
            yield read_rows(path)

    def unreadable(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of every photo the job could not read."""
        return [
            (photo["id"], photo["reason"])
            for shard in self.manifest["shards"]
            for photo in shard["unreadable"]
        ]

    def extractor(self) -> FusedFeatures:
        """The fitted features that wrote the rows (from the job's fusionrec file)."""
        return load(self.folder / self.manifest["extractor"])

    def stacked(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row and id, filled shard by shard into arrays allocated once."""
        rows = np.empty((self.n_rows, self.manifest["features"]), dtype=np.float32)
        ids = np.empty(self.n_rows, dtype=object)
        start = 0
        for features, shard_ids in self.shards():
            rows[start : start + len(features)] = features
            ids[start : start + len(features)] = shard_ids.tolist()
            start += len(features)
        return rows, ids


def index_from_features(folder: str | os.PathLike, **params: Any) -> ProductIndex:
    """A :class:`fusionrec.ProductIndex` of the rows an extraction job wrote, without the photos.

    The index queries with the job's extractor and equals one fitted on the
    photos themselves with it (re-ranking, which needs the photos' keypoints,
    is not available). Rows are read shard by shard into the index's arrays.

    Parameters
    ----------
    folder : str or path
        A folder :func:`extract_features` finished.
    **params
        Other ProductIndex parameters (``search="ivf"``, ``on_error``, ...);
        ``branch`` and ``block_weights`` come from the extractor.

    Returns
    -------
    ProductIndex

    Examples
    --------
    >>> import tempfile
    >>> from fusionrec.datasets import load_demo_products
    >>> from fusionrec.extraction import extract_features
    >>> photos = load_demo_products().data
    >>> folder = tempfile.mkdtemp()
    >>> _ = extract_features(photos[1:9], folder, photos_per_shard=4)
    >>> index = index_from_features(folder)
    >>> [matches] = index.query(photos[:1], k=2)
    >>> len(index.ids_), len(matches)
    (8, 2)
    """
    extracted = ExtractedFeatures(folder)
    features = extracted.extractor()
    index = ProductIndex(features.branch, block_weights=tuple(features.block_weights), **params)
    return index.fit_extracted(features, *extracted.stacked())
