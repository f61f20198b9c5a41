"""The served catalogue: a ProductIndex, its durable changes and its photos.

What ``/search`` and ``/items`` do, as batches: each method takes the jobs of
one batch and returns one result per job (an exception fails that job alone).
The index does every piece of the work (reading photos, extracting, searching,
re-ranking); this module only decides what is asked of it and keeps the log.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..search import Matches, ProductIndex
from .change_log import Change, ChangeLog
from .errors import ServiceError
from .photos import CataloguePhotos, noise_photo


class Catalogue:
    """A fitted :class:`~fusionrec.ProductIndex` served to many clients.

    The server owns the index from now on: searches run on shallow views of
    it (one per re-ranking choice), changes on the index itself, which batches
    of changes get alone (see :class:`fusionrec.serve.batching.Batcher`).

    Parameters
    ----------
    index : ProductIndex
        Fitted.
    photos : CataloguePhotos
    log : ChangeLog or None
        Opened; each change is appended to it before it is acknowledged.
        ``None``: changes are not kept beyond the process.

    Attributes
    ----------
    replayed : int
        Changes of the log applied when the catalogue was opened.
    """

    def __init__(
        self, index: ProductIndex, *, photos: CataloguePhotos, log: ChangeLog | None = None
    ) -> None:
        if not hasattr(index, "vectors_"):
            raise ValueError("the index is not fitted: fit it, or build one with 'fusionrec index'")
        self.index = index
        self.photos = photos
        self.log = log
        self._saved_on_error = index.on_error
        index.set_params(on_error="skip")  # one unreadable photo must not fail its whole batch
        self._refresh()
        self.replayed = self._replay(log.changes) if log is not None else 0

    @property
    def size(self) -> int:
        """Items in the catalogue."""
        return len(self.index.ids_)

    @property
    def can_rerank(self) -> bool:
        """Whether the index kept the keypoints that re-ranking needs."""
        return self.index.keypoints_ is not None

    def find(self, text: str) -> Any:
        """The id written ``text`` (ids are compared as text: ``"7"`` finds ``7``), or ``None``."""
        return self._ids_by_text.get(text)

    def search(self, photos: Sequence[bytes], k: int, rerank: bool) -> list[Matches | None]:
        """The ``k`` best matches of each photo (``None`` for an unreadable one)."""
        if self.size == 0:
            empty = Matches(np.empty(0, dtype=object), np.empty(0, dtype=np.float32))
            return [empty] * len(photos)
        return self._views[rerank].query(list(photos), k=k)

    def add(self, items: Sequence[tuple[str, bytes]]) -> list[dict | ServiceError]:
        """Add ``(id, photo)`` items; kept on disk before this returns."""
        results: list[dict | ServiceError] = [
            ServiceError(409, "duplicate_id", f"the id {item_id!r} is already in the catalogue")
            for item_id, _ in items
        ]
        fresh = _first_of_each([item_id for item_id, _ in items], self._ids_by_text)
        if fresh:
            added = self._add_to_index([items[position] for position in fresh])
            for position, was_added in zip(fresh, added, strict=True):
                results[position] = (
                    {"id": items[position][0]}
                    if was_added
                    else ServiceError(400, "unreadable_image", "the photo could not be read")
                )
        return results

    def remove(self, texts: Sequence[str]) -> list[dict | ServiceError]:
        """Remove the items with these ids; kept on disk before this returns."""
        results: list[dict | ServiceError] = [
            ServiceError(404, "unknown_id", f"no item has the id {text!r}") for text in texts
        ]
        known = [
            position
            for position in _first_of_each(texts, {})
            if self.find(texts[position]) is not None
        ]
        ids = [self.find(texts[position]) for position in known]
        if ids:
            self._keep([Change("remove", item_id) for item_id in ids])
            self.index.remove(ids)
            for item_id in ids:
                self.photos.forget(item_id)
            self._refresh()
        for position in known:
            results[position] = {"id": texts[position]}
        return results

    def compact(self, save: Callable[[ProductIndex], None]) -> None:
        """Have ``save(index)`` write the index with every change in it, then empty the log.

        A crash between the two is harmless: replaying changes the index
        already holds changes nothing (see :meth:`_replay`).
        """
        saved = copy.copy(self.index).set_params(on_error=self._saved_on_error)
        save(saved)
        if self.log is not None:
            self.log.clear()

    def warm_up(self) -> None:
        """Run one photo through every step, so that the first client does not wait for it."""
        if self.size == 0:
            return
        for view in self._views.values():
            view.query([noise_photo()], k=1)

    def _add_to_index(self, items: list[tuple[str, bytes]]) -> list[bool]:
        """Add to the index, then keep photos and log; undo the index change if keeping fails."""
        ids = [item_id for item_id, _ in items]
        self.index.add([photo for _, photo in items], ids)
        dropped = set(self.index.dropped_indices_.tolist())
        added = [position not in dropped for position in range(len(items))]
        kept = [item for item, was_added in zip(items, added, strict=True) if was_added]
        try:
            for item_id, photo in kept:
                self.photos.keep(item_id, photo)
            self._keep([Change("add", item_id, photo) for item_id, photo in kept])
        except Exception:
            self.index.remove([item_id for item_id, _ in kept])
            raise
        finally:
            self._refresh()
        return added

    def _keep(self, changes: list[Change]) -> None:
        if self.log is not None:
            self.log.append(changes)

    def _replay(self, changes: Sequence[Change]) -> int:
        """Apply logged changes; runs of adds are embedded together.

        Changes the index already holds are skipped (an add of an id it has, a
        removal of one it lacks): the log may outlive a compaction by a crash,
        and replaying it onto the compacted index must change nothing.
        """
        present = set(self.index.ids_.tolist())
        run: list[Change] = []
        for change in changes:
            if change.action == "add":
                if change.item_id not in present:
                    run.append(change)
                    present.add(change.item_id)
                continue
            self._add_replayed(run)
            run = []
            if change.item_id in present:
                self.index.remove([change.item_id])
                self.photos.forget(change.item_id)
                present.discard(change.item_id)
        self._add_replayed(run)
        self._refresh()
        return len(changes)

    def _add_replayed(self, adds: list[Change]) -> None:
        if adds:
            self.index.add([add.photo for add in adds], [add.item_id for add in adds])
            for add in adds:
                self.photos.keep(add.item_id, add.photo)

    def _refresh(self) -> None:
        """Rebuild what is derived from the index after it changed."""
        self._ids_by_text = {str(item_id): item_id for item_id in self.index.ids_.tolist()}
        views = {False: copy.copy(self.index).set_params(rerank=None)}
        if self.can_rerank:
            views[True] = copy.copy(self.index).set_params(rerank="ransac")
        self._views = views


def _first_of_each(texts: Sequence[str], taken: dict) -> list[int]:
    """Positions of the first occurrence of each text that is not in ``taken``."""
    seen: set[str] = set()
    positions = []
    for position, text in enumerate(texts):
        if text not in seen and text not in taken:
            positions.append(position)
        seen.add(text)
    return positions
