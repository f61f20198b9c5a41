"""How the console script stores what it trains: a labelled dictionary in a joblib file.

A file holds ``{"format": "fusionrec-model", "version": 1, "fusionrec": <version>,
"model": <fitted estimator>, "about": {...}}``, so in Python
``joblib.load(path)["model"]`` gives the estimator back. Loading unpickles the file, and
unpickling can run code: load only files you made or trust.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib

from .. import __version__
from .._pickling import moved_modules_resolved
from .errors import CommandError

FORMAT_VERSION = 1


def save(estimator: Any, path: str | os.PathLike, kind: str = "model", **about: Any) -> Path:
    """Write a fitted estimator and what it was trained on to ``path``.

    Parameters
    ----------
    estimator : fitted estimator
    path : str or path
        The file to write; its folder is created if needed.
    kind : str, default="model"
        What the file holds, checked by :func:`load` (e.g. ``"model"``, ``"index"``).
    **about
        Facts worth showing later (the photo folder, the number of photos, ...).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": f"fusionrec-{kind}",
        "version": FORMAT_VERSION,
        "fusionrec": __version__,
        "model": estimator,
        "about": about,
    }
    joblib.dump(payload, path)
    return path


def load(path: str | os.PathLike, kind: str = "model") -> tuple[Any, dict]:
    """Read a file written by :func:`save`; return the estimator and its ``about`` facts.

    Raises
    ------
    CommandError
        If ``path`` is missing, a folder, or not a fusionrec file of this ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        reason = "is a folder" if path.is_dir() else "does not exist"
        raise CommandError(f"{kind} file {str(path)!r} {reason}")
    try:
        with moved_modules_resolved():
            payload = joblib.load(path)
    except Exception as error:  # any bytes can reach the unpickler: every failure means the same
        raise CommandError(
            f"{str(path)!r} is not a fusionrec {kind} file (it cannot be unpickled: "
            f"{type(error).__name__}: {error})"
        ) from error
    return _checked(payload, path, kind)


def _checked(payload: Any, path: Path, kind: str) -> tuple[Any, dict]:
    expected = f"fusionrec-{kind}"
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != expected or "model" not in payload:
        holds = f"is a {found} file" if found else f"holds a {type(payload).__name__}"
        raise CommandError(f"{str(path)!r} is not a {expected} file: it {holds}")
    if payload.get("version") != FORMAT_VERSION:
        raise CommandError(
            f"{str(path)!r} is a {expected} file of format version {payload.get('version')!r}, "
            f"written by fusionrec {payload.get('fusionrec')}; this fusionrec "
            f"({__version__}) reads version {FORMAT_VERSION}"
        )
    return payload["model"], dict(payload.get("about", {}))
