"""Files from before this format: pickles, opened only when the user says they trust them.

Unpickling runs whatever code a file names, so fusionrec opens a pickle only with an
explicit opt-in (``allow_pickle=True``, the command line's ``--allow-pickle``), or to
convert it once into the format of :mod:`fusionrec.files` (:func:`convert`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib

from .._pickling import moved_modules_resolved
from .errors import ModelFileError

_PICKLE_STARTS = (
    b"\x80",  # pickle protocol 2 and later
    b"ZF",  # joblib's own zlib container
    b"\x78",  # zlib
    b"\x1f\x8b",  # gzip
    b"BZh",  # bz2
    b"\xfd7zXZ",  # xz
    b"\x5d\x00\x00",  # lzma
    b"\x04\x22\x4d\x18",  # lz4
)
"""How a pickle, as ``pickle.dump`` or ``joblib.dump`` writes it (compressed or not), starts."""


def looks_pickled(start: bytes) -> bool:
    """Whether a file starting with ``start`` is probably a (joblib) pickle."""
    return start.startswith(_PICKLE_STARTS)


def refusal(path: Path) -> ModelFileError:
    """The error for a pickle opened without the opt-in: what it risks, and what to do."""
    return ModelFileError(
        f"{str(path)!r} is a pickle (a .joblib file from an earlier fusionrec, or "
        "joblib.dump): opening it runs whatever code it holds. If you trust where it came "
        f"from, convert it once: fusionrec convert {path} NEW.fusionrec (in Python: "
        "fusionrec.files.convert), or open it anyway with allow_pickle=True (--allow-pickle)"
    )


def unpickled(path: Path) -> tuple[Any, dict]:
    """The estimator in a pickle the user trusts, and the facts a fusionrec command kept.

    Files that ``fusionrec train`` or ``index`` wrote before this format hold a labelled
    dictionary (``{"format": "fusionrec-model", "model": ..., "about": {...}}``); any other
    pickle is taken to be the estimator itself.
    """
    try:
        with moved_modules_resolved():
            payload = joblib.load(path)
    except Exception as error:  # any bytes can reach the unpickler: every failure means the same
        raise ModelFileError(
            f"{str(path)!r} cannot be unpickled ({type(error).__name__}: {error})"
        ) from error
    if isinstance(payload, dict) and str(payload.get("format", "")).startswith("fusionrec-"):
        if "model" not in payload:
            raise ModelFileError(f"{str(path)!r} is a {payload['format']} file without a model")
        return payload["model"], dict(payload.get("about", {}))
    return payload, {}
