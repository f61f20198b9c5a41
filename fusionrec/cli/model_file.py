"""How the console script stores what it trains: a fusionrec file, with facts about it.

``train`` and ``index`` write what :func:`fusionrec.save` writes (see ``docs/files.md``),
with ``about`` facts: the photo folder, the number of photos, the products. So in Python
``fusionrec.load(path)`` gives the estimator back. Opening such a file runs no code from
it. Files written before this format are pickles: the commands open one only with
``--allow-pickle``, and ``fusionrec convert`` rewrites it once in the new format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import CommandError

HOLDS = {"model": "FusedClassifier", "index": "ProductIndex"}
"""What each kind of file holds, and which command writes it."""
WRITTEN_BY = {"model": "fusionrec train", "index": "fusionrec index"}


def save(estimator: Any, path: str | os.PathLike, kind: str = "model", **about: Any) -> Path:
    """Write a fitted estimator and what it was trained on to ``path``.

    Parameters
    ----------
    estimator : fitted estimator
    path : str or path
        The file to write; its folder is created if needed.
    kind : str, default="model"
        What the file holds, checked by :func:`load`: ``"model"`` (a
        FusedClassifier) or ``"index"`` (a ProductIndex).
    **about
        Facts worth showing later (the photo folder, the number of photos, ...).

    Returns
    -------
    pathlib.Path
    """
    from .. import files  # PyTorch loads when a command needs it, not for --help

    if files.kind_of(estimator) != kind:
        raise CommandError(f"a {type(estimator).__name__} is not a {kind}")
    return files.save(estimator, path, about=about)


def load(
    path: str | os.PathLike, kind: str = "model", *, allow_pickle: bool = False
) -> tuple[Any, dict]:
    """Read a file written by :func:`save`; return the estimator and its ``about`` facts.

    Parameters
    ----------
    path : str or path
    kind : {"model", "index"}, default="model"
    allow_pickle : bool, default=False
        Also open a pickle written by an earlier fusionrec (which runs any code it holds).

    Raises
    ------
    CommandError
        If ``path`` is missing, a folder, or holds no estimator of this ``kind``.
    fusionrec.files.ModelFileError
        If it is not a fusionrec file, is damaged, hostile, newer, or a pickle
        without ``allow_pickle``; the message says what to do.
    """
    from .. import files

    path = Path(path)
    if not path.is_file():
        reason = "is a folder" if path.is_dir() else "does not exist"
        raise CommandError(f"{kind} file {str(path)!r} {reason}")
    loaded = files.load_file(path, allow_pickle=allow_pickle)
    holds = type(loaded.estimator).__name__
    if holds != HOLDS[kind]:
        raise CommandError(
            f"{str(path)!r} is not a fusionrec {kind} file: it holds a {holds}, not the "
            f"{HOLDS[kind]} that '{WRITTEN_BY[kind]}' writes"
        )
    return loaded.estimator, loaded.about
