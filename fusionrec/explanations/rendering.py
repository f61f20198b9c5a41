"""Explanations as PNG pictures: what every explanation does with the figure it draws.

Figures are drawn with Matplotlib's object API (no ``pyplot``), so drawing
changes no global state and works in threads and on servers without a display.
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..features import write_atomically

DPI = 100


class DrawsPNG:
    """``to_png`` and ``save_png`` for a class whose ``render()`` returns a Matplotlib figure.

    Both pass their keyword arguments (a ``title``, say) on to ``render``.
    """

    def render(self, **options: Any) -> Figure:
        """The explanation drawn as one figure."""
        raise NotImplementedError

    def to_png(self, **options: Any) -> bytes:
        """The picture :meth:`render` draws, as PNG bytes (for a web page or a notebook)."""
        buffer = BytesIO()
        self.render(**options).savefig(buffer, format="png", dpi=DPI)
        return buffer.getvalue()

    def save_png(self, path: str | os.PathLike, **options: Any) -> Path:
        """Write the picture :meth:`render` draws to ``path`` as a PNG; return the path.

        A file appears complete or not at all; its folder is created if needed.
        Anything else already at ``path`` (``/dev/stdout``, a named pipe) is
        written to as it is, never replaced.
        """
        path = Path(path)
        figure = self.render(**options)

        def write(file: BinaryIO) -> None:
            figure.savefig(file, format="png", dpi=DPI)

        if path.exists() and not path.is_file():
            with open(path, "wb") as file:
                write(file)
        else:
            write_atomically(path, write)
        return path

    def _repr_png_(self) -> bytes:
        """Jupyter shows an explanation as its picture."""
        return self.to_png()


def show_photo(axes: Axes, image: np.ndarray, title: str) -> None:
    """``image`` on ``axes`` without ticks, under ``title``."""
    axes.imshow(image)
    axes.set_title(title, fontsize=9)
    axes.set_axis_off()


def short_id(item: object, length: int = 40) -> str:
    """``item`` as text, only its last ``length`` characters (after "...") when longer.

    Examples
    --------
    >>> short_id("catalogue/juice/tropicana-apple.jpg", 12)
    '...-apple.jpg'
    """
    name = str(item)
    return "..." + name[-length:] if len(name) > length else name
