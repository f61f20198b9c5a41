"""The catalogue's photos, as thumbnails the page can show: never a file path.

A catalogue indexed by ``fusionrec index`` has ids that are photo paths
relative to its folder; photos added through the API are kept, as thumbnails,
in the server's state folder. Either way the service answers with a JPEG of
the photo as fusionrec reads it (EXIF orientation applied), so the keypoint
positions a search returns fall on the right pixels.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..images import ImageReadError, load_image
from .change_log import replace_durably

JPEG_QUALITY = 85
WARM_UP_SIDE = 256
REMEMBERED_SOURCES = 65_536  # items whose photo's whereabouts are kept, most recent first


def noise_photo() -> np.ndarray:
    """A photo of noise: runs once through every step at start, so no client waits for that."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (WARM_UP_SIDE, WARM_UP_SIDE, 3)).astype(np.uint8)


class CataloguePhotos:
    """Find, keep and forget the photo of each catalogue item.

    Parameters
    ----------
    catalogue_folder : str, path or None
        The folder an id is a relative path in (``fusionrec index`` ids).
    added_folder : str, path or None
        Where thumbnails of photos added through the API are kept.
    side : int
        Longer side of the thumbnails, in pixels.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> photos = CataloguePhotos(None, tempfile.mkdtemp(), side=32)
    >>> buffer = io.BytesIO()
    >>> Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(buffer, "PNG")
    >>> photos.keep("tea", buffer.getvalue())
    >>> Image.open(io.BytesIO(photos.thumbnail("tea"))).size
    (32, 16)
    """

    def __init__(
        self,
        catalogue_folder: str | os.PathLike | None,
        added_folder: str | os.PathLike | None,
        side: int,
    ) -> None:
        self.catalogue_folder = None if catalogue_folder is None else Path(catalogue_folder)
        self.added_folder = None if added_folder is None else Path(added_folder)
        self.side = side
        self._source = functools.lru_cache(REMEMBERED_SOURCES)(self._find_source)

    def keep(self, item_id: Any, photo: bytes) -> None:
        """Keep a thumbnail of an added item's photo, synced to disk."""
        if self.added_folder is None:
            return
        thumbnail = self._thumbnail_of(photo)
        self.added_folder.mkdir(parents=True, exist_ok=True)
        replace_durably(self._added_path(item_id), lambda path: path.write_bytes(thumbnail))
        self._source.cache_clear()

    def forget(self, item_id: Any) -> None:
        """Delete the thumbnail of a removed item, if one was kept."""
        if self.added_folder is not None:
            self._added_path(item_id).unlink(missing_ok=True)
            self._source.cache_clear()

    def has(self, item_id: Any) -> bool:
        """Whether there is a photo of the item.

        Where each item's photo is, is remembered (for the most recent
        :data:`REMEMBERED_SOURCES` items, until a photo is kept or forgotten):
        a search answers with ``has`` for every hit, and resolving each path
        again took 12% of a service's batch thread under 16 clients. A photo
        deleted from the catalogue folder behind the server's back stays
        "there" until then, and its thumbnail is not found.
        """
        return self._source(item_id) is not None

    def thumbnail(self, item_id: Any) -> bytes | None:
        """The item's photo as a JPEG thumbnail; ``None`` if there is none or it is unreadable."""
        source = self._source(item_id)
        if source is None:
            return None
        if source.parent == self.added_folder:
            return source.read_bytes()
        try:
            return self._thumbnail_of(source)
        except ImageReadError:
            return None

    def _find_source(self, item_id: Any) -> Path | None:
        if self.added_folder is not None and self._added_path(item_id).is_file():
            return self._added_path(item_id)
        if self.catalogue_folder is None or not isinstance(item_id, str):
            return None
        root = self.catalogue_folder.resolve()
        path = (root / item_id).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None

    def _added_path(self, item_id: Any) -> Path:
        name = hashlib.sha256(json.dumps(item_id).encode()).hexdigest()
        return self.added_folder / f"{name}.jpg"

    def _thumbnail_of(self, photo: bytes | Path) -> bytes:
        pixels = load_image(photo, max_side=self.side)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()
