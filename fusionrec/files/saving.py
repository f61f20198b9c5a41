"""``save`` and ``load``: one estimator per file, written atomically, opened without pickle."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from .._storage import write_atomically
from ..deep import CNNEmbedder
from ..search import ProductIndex
from .allowed import ESTIMATORS, name_of
from .archive import ZIP_MAGIC, ArchiveReader, ArchiveWriter
from .errors import ModelFileError
from .manifest import NAME, manifest, read_manifest
from .networks import EmbedderCodec
from .pickles import looks_pickled, refusal, unpickled
from .search_index import IndexCodec
from .values import Codec, Decoder, Encoder


@cache
def codecs() -> dict[type, Codec]:
    """The estimator classes whose state needs more than the generic rules."""
    return {CNNEmbedder: EmbedderCodec(), ProductIndex: IndexCodec()}


class LoadedFile(NamedTuple):
    """What :func:`load_file` read."""

    estimator: Any
    about: dict
    """The facts saved with it (``about=`` of :func:`fusionrec.save`)."""
    manifest: dict | None
    """The file's manifest; ``None`` for a pickle."""


def kind_of(estimator: Any) -> str:
    """``"index"`` for a ProductIndex, ``"model"`` for anything else."""
    return "index" if isinstance(estimator, ProductIndex) else "model"


def save(estimator: Any, path: str | os.PathLike, *, about: Mapping | None = None) -> Path:
    """Write a fitted (or unfitted) estimator to one file that opens without running code.

    The file is a zip archive: ``manifest.json`` (format version, versions,
    classes from an allow-list, parameters as JSON), arrays as ``.npy``, network
    weights as safetensors, a faiss inverted file by faiss's writer. It is
    written beside ``path`` and renamed over it once complete, so a crash never
    leaves half a file where a good one was. See ``docs/files.md``.

    Parameters
    ----------
    estimator : BagOfVisualWords, CNNEmbedder, FusedFeatures, FusedClassifier or ProductIndex
        Or a scikit-learn ``LogisticRegression``/``LinearSVC``.
    path : str or path
        The file to write (conventionally ``*.fusionrec``); its folder is created.
    about : mapping, optional
        Facts to keep with it (JSON-like: strings, numbers, lists, dicts).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TypeError
        If the estimator's class, or a value it holds, has no safe form.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import fusionrec
    >>> from fusionrec import BagOfVisualWords
    >>> from fusionrec.datasets import load_demo_products
    >>> photos = load_demo_products().data[:6]
    >>> bovw = BagOfVisualWords(n_words=8, random_state=0).fit(photos)
    >>> path = fusionrec.save(bovw, Path(tempfile.mkdtemp()) / "words.fusionrec")
    >>> bool((fusionrec.load(path).transform(photos) == bovw.transform(photos)).all())
    True
    """
    name = name_of(type(estimator))
    if name not in ESTIMATORS:
        raise TypeError(
            f"fusionrec.save writes fusionrec estimators; got a {type(estimator).__name__}"
        )
    path = Path(path)

    def write(file: BinaryIO) -> None:
        with ArchiveWriter(file) as archive:
            encoder = Encoder(archive, codecs())
            tree = encoder.encode(estimator, type(estimator).__name__)
            encoded_about = encoder.encode(dict(about or {}), "about")
            archive.write_json(NAME, manifest(kind_of(estimator), name, encoded_about, tree))
        file.flush()
        os.fsync(file.fileno())

    write_atomically(path, write)
    return path


def load(
    path: str | os.PathLike,
    *,
    modules: Mapping[str, Any] | None = None,
    allow_pickle: bool = False,
) -> Any:
    """Read an estimator that :func:`save` wrote, running no code from the file.

    Classes come from fusionrec's allow-list, arrays are read without pickle,
    weights with safetensors. Large arrays (a ProductIndex's vectors) are
    memory-mapped, read-only: opening a big index reads none of them.

    Parameters
    ----------
    path : str or path
    modules : mapping of str to torch.nn.Module, optional
        For a CNNEmbedder whose backbone is a network of your own class: an
        instance of that class by its name (``{"MyNet": MyNet()}``), which a
        copy of receives the stored weights. A file holds no code, so cannot
        rebuild your class itself.
    allow_pickle : bool, default=False
        Also open a pickle (a ``.joblib`` file from an earlier fusionrec).
        Unpickling runs any code the file holds: only for files you trust.
        Better, convert such a file once with :func:`fusionrec.files.convert`.

    Returns
    -------
    estimator

    Raises
    ------
    ModelFileError
        If the file is not one fusionrec wrote, is damaged or truncated, comes
        from a newer fusionrec, names a class outside the allow-list, or is a
        pickle (without ``allow_pickle``). The message says what to do.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import fusionrec
    >>> from fusionrec import FusedClassifier
    >>> from fusionrec.datasets import load_demo_products
    >>> demo = load_demo_products()
    >>> model = FusedClassifier("deep").fit(demo.data[::5], demo.target[::5])
    >>> path = fusionrec.save(model, Path(tempfile.mkdtemp()) / "model.fusionrec")
    >>> photos = demo.data[1::50]
    >>> bool((fusionrec.load(path).predict_proba(photos) == model.predict_proba(photos)).all())
    True
    """
    return load_file(path, modules=modules, allow_pickle=allow_pickle).estimator


def load_file(
    path: str | os.PathLike,
    *,
    modules: Mapping[str, Any] | None = None,
    allow_pickle: bool = False,
) -> LoadedFile:
    """As :func:`fusionrec.load`, with the facts saved beside the estimator and the manifest."""
    path = Path(path)
    start = _start_of(path)
    if start != ZIP_MAGIC:
        if not (allow_pickle and looks_pickled(start)):
            raise _not_an_archive(path, start)
        estimator, about = unpickled(path)
        return LoadedFile(estimator, about, None)
    archive = ArchiveReader(path)
    content = read_manifest(archive)
    libraries = content.get("libraries")
    sklearn_version = libraries.get("scikit-learn") if isinstance(libraries, dict) else None
    decoder = Decoder(archive, codecs(), str(sklearn_version), dict(modules or {}))
    try:
        estimator = decoder.decode(content["estimator"], str(content["class"]).rsplit(".", 1)[-1])
        about = decoder.decode(content.get("about", {}), "about")
    except ModelFileError:
        raise
    except RecursionError:
        raise archive.error("is nested too deeply to be a file fusionrec wrote") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
        raise archive.error(
            f"cannot be opened: it holds values fusionrec does not write ({type(error).__name__}:"
            f" {error}). Do not use this file"
        ) from error
    return LoadedFile(estimator, about if isinstance(about, dict) else {}, content)


class FileDescription(NamedTuple):
    """What :func:`describe_file` read from a file's manifest."""

    class_name: str
    """The estimator's allow-listed class, such as ``"fusionrec.FusedClassifier"``."""
    kind: str
    """``"model"`` or ``"index"``."""
    format_version: int
    fusionrec_version: str
    """The fusionrec that wrote it."""
    libraries: dict
    """Versions of the libraries that wrote it."""
    about: dict
    parts: dict
    """Size in bytes of each entry."""


def describe_file(path: str | os.PathLike) -> FileDescription:
    """What a fusionrec file holds, from its manifest: no estimator is built.

    Raises
    ------
    ModelFileError
        As :func:`fusionrec.load` does, for a file it would not open.
    """
    path = Path(path)
    start = _start_of(path)
    if start != ZIP_MAGIC:
        raise _not_an_archive(path, start)
    archive = ArchiveReader(path)
    content = read_manifest(archive)
    about = Decoder(archive, {}, "", {}).decode(content.get("about", {}), "about")
    return FileDescription(
        class_name=str(content["class"]),
        kind=str(content["kind"]),
        format_version=content["format_version"],
        fusionrec_version=str(content.get("fusionrec")),
        libraries=dict(content.get("libraries") or {}),
        about=about if isinstance(about, dict) else {},
        parts={name: info.file_size for name, (_, info) in archive.entries.items()},
    )


def convert(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Rewrite a pickled model or index that you trust in fusionrec's own format.

    Unpickling ``source`` runs any code it holds: convert only files you made
    or trust. The result opens with :func:`fusionrec.load` and on the command line with
    no opt-in. Files that ``fusionrec train`` and ``index`` wrote keep the
    facts they recorded.

    Parameters
    ----------
    source : str or path
        A pickle: a ``.joblib`` file of an earlier fusionrec, or ``joblib.dump`` output.
    destination : str or path

    Returns
    -------
    pathlib.Path
    """
    source = Path(source)
    if _start_of(source) == ZIP_MAGIC:
        raise ModelFileError(f"{str(source)!r} is a fusionrec file already: nothing to convert")
    estimator, about = unpickled(source)
    return save(estimator, destination, about=about)


def _not_an_archive(path: Path, start: bytes) -> ModelFileError:
    """The error for a file that is not a zip archive: a pickle, or something else."""
    if looks_pickled(start):
        return refusal(path)
    return ModelFileError(
        f"{str(path)!r} is not a fusionrec file (a zip archive fusionrec.save wrote) nor a "
        "pickle from an earlier fusionrec"
    )


def _start_of(path: Path) -> bytes:
    """The first bytes of ``path``, with errors that name it."""
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a folder, not a fusionrec file")
    if not path.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    with open(path, "rb") as file:
        return file.read(len(ZIP_MAGIC))
