"""Model and index files that open without running code, and load large indexes lazily.

One file per estimator: a zip archive of uncompressed entries holding a JSON manifest
(classes from an allow-list, parameters as JSON), ``.npy`` arrays read without pickle
and memory-mapped when large, network weights as safetensors, a faiss inverted file by
faiss's own writer. :func:`fusionrec.save` writes one atomically; :func:`fusionrec.load`
opens one; :func:`convert` turns a pickle from an earlier fusionrec, that you trust, into
one. See ``docs/files.md``.

One module per concept: ``archive`` (the zip and its safety checks), ``manifest``,
``allowed`` (the allow-list), ``values`` (any value as JSON and arrays), ``networks``
(CNNEmbedder weights), ``search_index`` (ProductIndex keypoints and inverted file),
``classifiers`` (skops), ``pickles`` (older files), ``saving`` (save, load, convert).
"""

from .errors import ModelFileError
from .manifest import FORMAT_VERSION
from .saving import (
    FileDescription,
    LoadedFile,
    convert,
    describe_file,
    kind_of,
    load,
    load_file,
    save,
)

__all__ = [
    "FORMAT_VERSION",
    "FileDescription",
    "LoadedFile",
    "ModelFileError",
    "convert",
    "describe_file",
    "kind_of",
    "load",
    "load_file",
    "save",
]
