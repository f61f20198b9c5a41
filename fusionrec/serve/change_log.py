"""Durability: an append-only log of catalogue changes, on disk before they are acknowledged.

Each ``POST /items`` and ``DELETE /items/{id}`` appends a record (the id and,
for an add, the photo's bytes) and waits for ``fsync`` before it answers. At
start the log is read back and replayed onto the index the server loaded, so a
crash, even ``kill -9`` in the middle of a write, loses nothing that was
acknowledged: a record cut short by the crash was never acknowledged, and is
dropped. The log knows nothing of the index's file format; folding it into the
index file (compaction) is the caller's choice, with :func:`replace_durably`.

The file is a header line, then records: a little-endian ``uint32`` length and
``uint32`` CRC-32 of the payload, then the payload: a JSON line
``{"action": ..., "id": ...}`` followed by the photo's bytes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEADER = b"fusionrec change log 1\n"
_FRAME = struct.Struct("<II")
ACTIONS = ("add", "remove")

logger = logging.getLogger("fusionrec.serve")


@dataclass(frozen=True)
class Change:
    """One change to the catalogue.

    Attributes
    ----------
    action : {"add", "remove"}
    item_id : str or int
        The item's id, as the index holds it.
    photo : bytes
        The added photo, encoded as uploaded (empty for a removal).
    """

    action: str
    item_id: Any
    photo: bytes = b""

    def encode(self) -> bytes:
        """The record: length, CRC-32, then the payload."""
        head = json.dumps({"action": self.action, "id": self.item_id}).encode()
        payload = head + b"\n" + self.photo
        return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload

    @classmethod
    def decode(cls, payload: bytes) -> Change:
        """The change a record's payload holds."""
        head, _, photo = payload.partition(b"\n")
        fields = json.loads(head)
        if fields.get("action") not in ACTIONS:
            raise ValueError(f"unknown action {fields.get('action')!r}")
        return cls(fields["action"], fields["id"], photo)


class ChangeLog:
    """An append-only file of :class:`Change` records, each synced to disk when appended.

    One process at a time may hold it: :meth:`open` takes an exclusive lock,
    which the system releases when the process ends, however it ends.

    Parameters
    ----------
    path : str or path
        The log file; created (with its folder) by :meth:`open` if missing.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with ChangeLog(f"{folder}/changes.log") as log:
    ...     log.append([Change("add", "tea", b"<photo>"), Change("remove", "milk")])
    >>> with ChangeLog(f"{folder}/changes.log") as log:
    ...     [(change.action, change.item_id) for change in log.changes]
    [('add', 'tea'), ('remove', 'milk')]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.changes: list[Change] = []
        self._file = None

    def open(self) -> list[Change]:
        """Lock the log and read its changes (also kept in ``changes``).

        A record cut short by a crash ends the log: it is cut off, so that
        later records follow the last whole one.

        Raises
        ------
        RuntimeError
            If another process holds the log.
        ValueError
            If the file is not a change log.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._file = open(self.path, "a+b", buffering=0)  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise RuntimeError(
                f"the change log {self.path.name} is held by another process: one server per index"
            ) from None
        if created:
            self._write(HEADER)
            sync_folder(self.path.parent)
        self.changes, intact = self._read()
        if intact < os.fstat(self._file.fileno()).st_size:
            logger.warning("change log: dropped an unfinished record at byte %d", intact)
            os.ftruncate(self._file.fileno(), intact)
            os.fsync(self._file.fileno())
        return self.changes

    def append(self, changes: Iterable[Change]) -> None:
        """Write the changes at the end of the log and wait until they are on disk."""
        self._write(b"".join(change.encode() for change in changes))

    def clear(self) -> None:
        """Forget every change (once the index file holds them)."""
        os.ftruncate(self._file.fileno(), len(HEADER))
        os.fsync(self._file.fileno())
        self.changes = []

    def close(self) -> None:
        """Release the log (and its lock)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ChangeLog:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]
        os.fsync(self._file.fileno())

    def _read(self) -> tuple[list[Change], int]:
        """The whole records, and the length of the file they fill."""
        self._file.seek(0)
        data = self._file.read()
        if not data.startswith(HEADER):
            self.close()
            raise ValueError(f"{self.path.name} is not a fusionrec change log")
        changes, offset = [], len(HEADER)
        while offset + _FRAME.size <= len(data):
            length, checksum = _FRAME.unpack_from(data, offset)
            payload = data[offset + _FRAME.size : offset + _FRAME.size + length]
            if len(payload) < length or zlib.crc32(payload) != checksum:
                break
            changes.append(Change.decode(payload))
            offset += _FRAME.size + length
        return changes, offset


def replace_durably(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Have ``write(partial_path)`` write a file, then put it in place of ``path`` atomically.

    The new file is synced before it replaces the old one and the folder after,
    so that after a crash ``path`` holds either the old file or the whole new
    one, never a part.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        with open(partial, "rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make a folder's entries (files created, renamed) durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
