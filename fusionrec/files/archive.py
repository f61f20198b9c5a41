"""The container: one zip file of uncompressed entries, each aligned for memory mapping.

A zip is one file that users can copy, mail and list with any zip tool. Its entries are
stored, not compressed (``ZIP_STORED``), and each one's data starts at a multiple of
:data:`ALIGNMENT` bytes (padding goes in the entry's extra field, as Android's zipalign
does), so a ``.npy`` entry can be used straight from the file: the reader maps the whole
file once and hands out arrays that are views of it. Nothing is extracted to disk, and
every entry is checked before it is read: its name, kind, size and place in the file.
"""

from __future__ import annotations

import io
import json
import mmap
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import ModelFileError

ALIGNMENT = 64
"""Entry data starts at a multiple of this many bytes: what numpy and BLAS align to."""

MAPPED_FROM_BYTES = 1 << 20
"""Arrays at least this large stay in the file, memory-mapped and read-only; smaller ones are
copied into memory (and their checksum checked)."""

ZIP_MAGIC = b"PK\x03\x04"
_PADDING_FIELD = 0xD935  # the extra-field id zipalign uses for its padding
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_ZIP64_EXTRA_BYTES = 20  # zipfile adds a zip64 extra field to a local header written with it
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")
_NPY_VERSIONS = ((1, 0), (2, 0))
_MAX_NPY_HEADER = 10_000


class ArchiveWriter:
    """Write entries one after another into a new zip file, each aligned.

    Parameters
    ----------
    file : binary file
        Open for writing, seekable, at position 0.
    """

    def __init__(self, file: BinaryIO) -> None:
        self.zip = zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True)

    def write(self, name: str, write: Callable[[BinaryIO], Any]) -> str:
        """Add the entry ``name``, whose bytes ``write`` writes to the file it is given."""
        if not _SAFE_NAME.fullmatch(name) or ".." in name.split("/"):
            raise ValueError(f"not a safe entry name: {name!r}")
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        header = _LOCAL_HEADER.size + len(name.encode()) + 4 + _ZIP64_EXTRA_BYTES
        padding = -(self.zip.start_dir + header) % ALIGNMENT
        info.extra = struct.pack("<HH", _PADDING_FIELD, padding) + bytes(padding)
        with self.zip.open(info, "w", force_zip64=True) as entry:
            write(entry)
        return name

    def write_bytes(self, name: str, data: bytes | memoryview | np.ndarray) -> str:
        """Add ``data`` as the entry ``name``."""
        return self.write(name, lambda entry: entry.write(memoryview(data).cast("B")))

    def write_array(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as a ``.npy`` entry (never pickled)."""
        return self.write(
            name, lambda entry: np.lib.format.write_array(entry, array, allow_pickle=False)
        )

    def write_json(self, name: str, value: Any) -> str:
        """Add ``value`` as a JSON entry."""
        return self.write_bytes(name, json.dumps(value, indent=1).encode())

    def close(self) -> None:
        """Write the zip's central directory."""
        self.zip.close()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ArchiveReader:
    """Read the entries of a file :class:`ArchiveWriter` wrote, checking each first.

    The file is mapped into memory once; an entry is a view of the mapping, so
    reading one reads only its pages, and a file replaced on disk after opening
    (by a later save) does not change what was opened.

    Parameters
    ----------
    path : str or path

    Raises
    ------
    ModelFileError
        If the file is not a complete zip archive, or an entry is unsafe: a name
        outside the archive (``../``, an absolute path), a symbolic link, a
        compressed or encrypted entry, or data beyond the end of the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as file:
            try:
                with zipfile.ZipFile(file) as archive:
                    infos = archive.infolist()
            except (zipfile.BadZipFile, ValueError, EOFError, struct.error) as error:
                raise self.error(f"is damaged or incomplete (truncated?): {error}") from None
            self.mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        self.entries = {}
        for info in infos:
            self._check(info)
            self.entries[info.filename] = (self._data_offset(info), info)

    def error(self, problem: str) -> ModelFileError:
        """A :class:`ModelFileError` that names this file."""
        return ModelFileError(f"{str(self.path)!r} {problem}")

    def _check(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        if not _SAFE_NAME.fullmatch(name) or ".." in name.split("/"):
            raise self.error(
                f"holds an entry named {name!r}, a path outside the archive (absolute, with "
                "'..', or not a plain name). fusionrec never writes one: do not use this file"
            )
        if name in self.entries:
            raise self.error(f"holds two entries named {name!r}: do not use this file")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise self.error(
                f"holds {name!r} as a symbolic link, which could point outside the archive. "
                "fusionrec never writes one: do not use this file"
            )
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise self.error(
                f"holds {name!r} compressed or encrypted; fusionrec writes every entry stored "
                "as it is. Was the file re-zipped? Save it again with fusionrec.save"
            )
        if info.compress_size != info.file_size:
            raise self.error(f"is damaged: entry {name!r} has two different sizes")

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        header_end = info.header_offset + _LOCAL_HEADER.size
        if header_end > len(self.mapped):
            raise self.error(f"is damaged or incomplete: entry {info.filename!r} is cut off")
        fields = _LOCAL_HEADER.unpack_from(self.mapped, info.header_offset)
        signature, name_length, extra_length = fields[0], fields[-2], fields[-1]
        start = header_end + name_length + extra_length
        if (
            signature != ZIP_MAGIC
            or bytes(self.mapped[header_end : header_end + name_length]) != info.filename.encode()
        ):
            raise self.error(f"is damaged: entry {info.filename!r} has no valid header")
        if start + info.file_size > len(self.mapped):
            raise self.error(f"is damaged or incomplete: entry {info.filename!r} is cut off")
        return start

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def view(self, name: str) -> memoryview:
        """The bytes of entry ``name``, as a view of the mapped file (nothing is copied)."""
        start, info = self._entry(name)
        return memoryview(self.mapped)[start : start + info.file_size]

    def read(self, name: str) -> bytes:
        """A copy of the bytes of entry ``name``, its checksum checked."""
        data = bytes(self.view(name))
        self._check_crc(name, data)
        return data

    def read_json(self, name: str) -> Any:
        """The JSON value in entry ``name``."""
        try:
            return json.loads(self.read(name))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise self.error(f"is damaged: entry {name!r} is not JSON ({error})") from None

    def array(self, name: str) -> np.ndarray:
        """The array in the ``.npy`` entry ``name``, read without pickle.

        Arrays of :data:`MAPPED_FROM_BYTES` or more are read-only views of the
        mapped file; smaller ones are copies.

        Raises
        ------
        ModelFileError
            If the entry is not a ``.npy`` array, holds Python objects, or its
            header does not match its size.
        """
        start, info = self._entry(name)
        header = io.BytesIO(self.mapped[start : start + min(info.file_size, _MAX_NPY_HEADER + 16)])
        shape, fortran_order, dtype = self._npy_header(name, header)
        count = int(np.prod(shape, dtype=np.int64))
        data_start = start + header.tell()
        if data_start + count * dtype.itemsize != start + info.file_size:
            raise self.error(
                f"is damaged or hostile: array {name!r} claims shape {shape} of {dtype}, "
                f"{count * dtype.itemsize} bytes, but the entry holds "
                f"{info.file_size - header.tell()}"
            )
        order = "F" if fortran_order else "C"
        if count == 0:
            return np.empty(shape, dtype=dtype, order=order)
        flat = np.frombuffer(self.mapped, dtype=dtype, count=count, offset=data_start)
        array = flat.reshape(shape, order=order)
        if array.nbytes >= MAPPED_FROM_BYTES:
            return array
        self._check_crc(name, self.mapped[start : start + info.file_size])
        return array.copy(order=order)

    def _npy_header(self, name: str, header: io.BytesIO) -> tuple[tuple, bool, np.dtype]:
        try:
            version = np.lib.format.read_magic(header)
            if version not in _NPY_VERSIONS:
                raise ValueError(f"unsupported .npy version {version}")
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read(header, max_header_size=_MAX_NPY_HEADER)
        except (ValueError, SyntaxError, TypeError) as error:
            raise self.error(f"is damaged: entry {name!r} is not a .npy array ({error})") from None
        if dtype.hasobject:
            raise self.error(
                f"holds array {name!r} of Python objects ({dtype}), which only pickle can "
                "read; fusionrec never writes one: do not use this file"
            )
        return shape, fortran_order, dtype

    def _entry(self, name: str) -> tuple[int, zipfile.ZipInfo]:
        if name not in self.entries:
            raise self.error(
                f"lacks the part {name!r} its manifest names: the file is damaged or was "
                "put together by hand. Save the model again"
            )
        return self.entries[name]

    def _check_crc(self, name: str, data: bytes | memoryview) -> None:
        if zlib.crc32(data) != self.entries[name][1].CRC:
            raise self.error(f"is damaged: entry {name!r} fails its checksum")
