"""Load estimators pickled by an earlier fusionrec, before some parameters existed or moved."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar


class NewParameterDefaults:
    """Mixin: bring an older pickle's state up to this version's names on load.

    A model saved by an earlier fusionrec then still answers ``get_params``,
    ``clone`` and everything built on them. List each parameter added after a
    release in ``_added_parameters``, with its default, and each parameter or
    fitted attribute renamed in ``_renamed``, old name to new; anything that
    needs more than a rename goes in an override of :meth:`_upgraded`.
    """

    _added_parameters: ClassVar[dict] = {}
    _renamed: ClassVar[dict] = {}

    def __setstate__(self, state: dict) -> None:
        renamed = {self._renamed.get(name, name): value for name, value in state.items()}
        super().__setstate__(self._upgraded({**self._added_parameters, **renamed}))

    def _upgraded(self, state: dict) -> dict:
        """The state with anything older than a rename brought up to date."""
        return state


MOVED_MODULES = {"fusionrec.fusion.branches": "fusionrec.features.branch"}
"""Modules whose classes moved, old dotted path to new: older pickles name the old one."""


@contextmanager
def moved_modules_resolved() -> Iterator[None]:
    """While it lasts, unpickling finds classes at the paths older fusionrec versions wrote.

    Examples
    --------
    >>> import pickle
    >>> from fusionrec.features import Branch
    >>> new_path, old_path = b"fusionrec.features.branch", b"fusionrec.fusion.branches"
    >>> old = pickle.dumps(Branch).replace(new_path, old_path)
    >>> with moved_modules_resolved():
    ...     pickle.loads(old) is Branch
    True
    """
    added = [old for old in MOVED_MODULES if old not in sys.modules]
    for old in added:
        sys.modules[old] = importlib.import_module(MOVED_MODULES[old])
    try:
        yield
    finally:
        for old in added:
            del sys.modules[old]
