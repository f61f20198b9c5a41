"""Writing files that readers never see half-written, and where fusionrec keeps its own files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHE_ENVIRONMENT_VARIABLE = "FUSIONREC_CACHE"


def write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write`` on a binary file that replaces ``path`` only once it is complete.

    The file is written beside ``path`` under a name of this process's own and
    renamed over it: readers, and other processes filling the same cache,
    never see half a file. If ``write`` fails, the partial file is removed and
    whatever was at ``path`` stays as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with open(partial, "wb") as file:
            write(file)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def user_cache_folder(*parts: str) -> Path:
    """fusionrec's folder in the user's cache: ``$FUSIONREC_CACHE``, else ``~/.cache/fusionrec``.

    ``$XDG_CACHE_HOME`` replaces ``~/.cache`` where it is set. Nothing in it is
    needed: deleting it only makes the next run redo what it held.
    """
    chosen = os.environ.get(CACHE_ENVIRONMENT_VARIABLE)
    if chosen:
        return Path(chosen).expanduser().joinpath(*parts)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser().joinpath("fusionrec", *parts)
