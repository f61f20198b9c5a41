"""Extraction at catalogue scale: a sharded, resumable job on Dask, and what reads its folder.

:func:`extract_features` cuts a photo list into shards, extracts each on a Dask
worker (or locally) and writes it where it was computed; running it again
finishes what a crash left. :class:`ExtractedFeatures` reads the folder shard
by shard, and :func:`index_from_features` builds a :class:`fusionrec.ProductIndex`
from it without the photos. See ``docs/extraction.md``.
"""

from .extractor import fitted_features
from .folder import ExtractedFeatures, index_from_features
from .job import extract_features

__all__ = [
    "ExtractedFeatures",
    "extract_features",
    "fitted_features",
    "index_from_features",
]
