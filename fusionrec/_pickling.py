"""Load estimators pickled before some of their parameters existed."""

from __future__ import annotations

from typing import ClassVar


class NewParameterDefaults:
    """Mixin: give parameters missing from an older pickle their defaults on load.

    A model saved by an earlier fusionrec then still answers ``get_params``,
    ``clone`` and everything built on them. List each parameter added after a
    release in ``_added_parameters``, with its default.
    """

    _added_parameters: ClassVar[dict] = {}

    def __setstate__(self, state: dict) -> None:
        super().__setstate__({**self._added_parameters, **state})
