"""The manifest: what a file holds, which versions wrote it, and its format version.

``manifest.json`` is the archive's table of contents::

    {"format": "fusionrec", "format_version": 2, "fusionrec": "0.1.0",
     "libraries": {"numpy": ..., "scikit-learn": ..., "torch": ...},
     "kind": "model" or "index", "class": "fusionrec.FusedClassifier",
     "about": {...}, "estimator": {...}}

``estimator`` is the tree :class:`fusionrec.files.values.Encoder` writes: parameters
as plain JSON, arrays and networks named by their entries. A reader refuses a
manifest of a newer format version, saying to upgrade fusionrec.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from .. import __version__
from .archive import ArchiveReader

NAME = "manifest.json"
FORMAT = "fusionrec"
FORMAT_VERSION = 2
"""Raised whenever a change means older fusionrec versions could misread a file.

1. The first format.
2. A ProductIndex's ids are a ``.npy`` array (``<U`` strings or ``int64``) when all are
   of one kind, opened memory-mapped, where version 1 always wrote them as JSON; its
   ``compression`` parameter and compressed faiss lists (``IndexIVFScalarQuantizer``,
   ``IndexIVFPQ``). Version 1 files still load (their ids made compact on loading).
"""

_LIBRARIES = ("numpy", "scikit-learn", "torch", "safetensors", "faiss-cpu", "skops")


def manifest(kind: str, class_name: str, about: Any, estimator: Any) -> dict:
    """The manifest of a file holding ``estimator`` (encoded), an estimator of ``class_name``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fusionrec": __version__,
        "libraries": {name: _version(name) for name in _LIBRARIES},
        "kind": kind,
        "class": class_name,
        "about": about,
        "estimator": estimator,
    }


def read_manifest(archive: ArchiveReader) -> dict:
    """The archive's manifest, checked to be one this fusionrec reads.

    Raises
    ------
    ModelFileError
        If there is none, it is not a fusionrec manifest, or a newer fusionrec wrote it.
    """
    if NAME not in archive:
        raise archive.error(f"is a zip file without {NAME}: not a file fusionrec.save wrote")
    content = archive.read_json(NAME)
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise archive.error(f"is a zip file whose {NAME} is not fusionrec's")
    version = content.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise archive.error(f"has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise archive.error(
            f"was written by fusionrec {content.get('fusionrec')} in file format {version}; "
            f"this fusionrec ({__version__}) reads format {FORMAT_VERSION} and older. "
            "Upgrade fusionrec to open it: pip install --upgrade fusionrec"
        )
    for key in ("kind", "class", "estimator"):
        if key not in content:
            raise archive.error(f"has a manifest without {key!r}: the file is damaged")
    return content


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
