"""Decode one image, whatever form it comes in, to an RGB ``uint8`` array.

This is the only place in fusionrec where pixels enter. Every branch calls
:func:`load_image`, so they all see the same colours, orientation and size.
"""

from __future__ import annotations

import math
import os
from io import BytesIO
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageOps

from .errors import ImageReadError

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def load_image(
    image: Any, *, max_side: int | None = None, min_side: int | None = None
) -> np.ndarray:
    """Read one image as a ``(height, width, 3)`` RGB ``uint8`` array.

    Parameters
    ----------
    image : str, os.PathLike, bytes, numpy.ndarray or PIL.Image.Image
        A path to an image file; the encoded bytes of one; a ``(H, W)`` gray,
        ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA array of ``uint8``, ``uint16``,
        integers in [0, 255] or floats in [0, 1]; or a Pillow image.
    max_side : int, optional
        Shrink the image (never enlarge it) so that its longer side is at most
        this many pixels. JPEG files are then decoded at reduced scale, which
        is several times faster than decoding at full size.
    min_side : int, optional
        The caller will resize the image so that its shorter side is this many
        pixels (the deep branch's preprocessing does). A JPEG file at least
        twice that size is decoded at a reduced scale by the decoder itself
        (libjpeg's DCT scaling by 1/2, 1/4 or 1/8), never below ``min_side``;
        the image is otherwise returned at the size decoded. A 12-megapixel
        phone photo decodes several times faster; ignored with ``max_side``.

    Returns
    -------
    numpy.ndarray
        C-contiguous ``uint8`` array of shape ``(height, width, 3)``, RGB. It
        may share memory with an input array.

    Raises
    ------
    ImageReadError
        If the input cannot be read; the message names it and says why.

    Notes
    -----
    Files are recognised by their content, not their extension. EXIF
    orientation is applied. Transparent pixels are composited onto white.
    Palette, gray, CMYK and 16-bit images are converted to 8-bit RGB; of an
    animated or multi-page file, the first frame is read. Files whose header
    declares more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` are refused before
    any pixel is decoded.

    Examples
    --------
    >>> import numpy as np
    >>> load_image(np.zeros((4, 6), dtype=np.uint8)).shape
    (4, 6, 3)
    >>> load_image(np.ones((400, 200, 3)), max_side=100).shape
    (100, 50, 3)
    """
    for name, value in (("max_side", max_side), ("min_side", min_side)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int or None; got {value!r}")
    draft = _Draft(max_side, min_side)
    if isinstance(image, (str, os.PathLike)):
        return _decode_file(image, draft)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(image), draft)
    if isinstance(image, Image.Image):
        source = _describe_pil(image)
        _refuse_bombs(image, source)
        return _read_opened(image, source, _Draft(max_side, None))
    if isinstance(image, np.ndarray):
        return _shrink(_array_to_rgb(image), max_side)
    raise ImageReadError(
        f"object of type {type(image).__name__}",
        "unsupported input; expected a path, encoded bytes, a numpy array or a PIL image",
    )


def _decode_file(path: str | os.PathLike, draft: _Draft) -> np.ndarray:
    source = f"file {os.fspath(path)!r}"
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(source, "is a directory, not an image file")
    if not path.exists():
        raise ImageReadError(source, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(source, "file is empty (0 bytes)")
    return _decode(path, source, draft)


def _decode_bytes(data: bytes, draft: _Draft) -> np.ndarray:
    source = f"{len(data)} bytes"
    if not data:
        raise ImageReadError(source, "no data (0 bytes)")
    return _decode(BytesIO(data), source, draft)


def _decode(file: Path | BytesIO, source: str, draft: _Draft) -> np.ndarray:
    try:
        opened = Image.open(file)
    except Image.DecompressionBombError as error:
        raise ImageReadError(source, f"refused as a decompression bomb: {error}") from None
    except Exception as error:  # any decoder failure means the same thing here
        raise ImageReadError(source, f"not a readable image ({_explain(error)})") from None
    with opened:
        _refuse_bombs(opened, source)
        if opened.format == "JPEG":
            draft.apply(opened)
        return _read_opened(opened, source, draft)


class _Draft(NamedTuple):
    """The size a decoded image is needed at, which lets a JPEG decoder skip detail."""

    max_side: int | None
    min_side: int | None

    def apply(self, image: Image.Image) -> None:
        """Ask the JPEG decoder for the smallest DCT scale that still gives the size needed."""
        if self.max_side is not None:
            image.draft("RGB", _size_within(image.size, self.max_side))
        elif self.min_side is not None and min(image.size) >= 2 * self.min_side:
            scale = self.min_side / min(image.size)
            image.draft("RGB", tuple(math.ceil(side * scale) for side in image.size))


def _read_opened(image: Image.Image, source: str, draft: _Draft) -> np.ndarray:
    """Decode an opened image whose size has been checked against decompression bombs."""
    try:
        rgb = _pil_to_rgb(ImageOps.exif_transpose(image), source)
    except ImageReadError:
        raise
    except Exception as error:  # any decoder failure means the same thing here
        raise ImageReadError(source, f"decoding failed ({_explain(error)})") from None
    return _shrink(rgb, draft.max_side)


def _refuse_bombs(image: Image.Image, source: str) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    width, height = image.size
    if limit is not None and width * height > limit:
        raise ImageReadError(
            source,
            f"declares {width} x {height} pixels ({width * height / 1e6:.0f} megapixels), "
            f"more than PIL.Image.MAX_IMAGE_PIXELS ({limit / 1e6:.0f} megapixels), so it is "
            "refused as a possible decompression bomb; raise that limit only for files you trust",
        )


def _explain(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _describe_pil(image: Image.Image) -> str:
    return f"PIL image, mode {image.mode}, size {image.width} x {image.height}"


def _pil_to_rgb(image: Image.Image, source: str) -> np.ndarray:
    if image.width == 0 or image.height == 0:
        raise ImageReadError(source, "image has no pixels")
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode == "F":
        return _array_to_rgb(np.asarray(image), source)
    if mode in _SIXTEEN_BIT_MODES:
        return _array_to_rgb(_as_uint16(np.asarray(image), source), source)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return _composite_on_white(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"))


def _describe_array(array: np.ndarray) -> str:
    return f"numpy array of shape {array.shape} and dtype {array.dtype}"


def _array_to_rgb(array: np.ndarray, source: str | None = None) -> np.ndarray:
    source = source or _describe_array(array)
    if array.size == 0:
        raise ImageReadError(source, "image is empty (no pixels)")
    pixels = _as_uint8(array, source)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return np.ascontiguousarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        return _composite_on_white(pixels)
    raise ImageReadError(
        source,
        "expected shape (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA",
    )


def _as_uint8(array: np.ndarray, source: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageReadError(source, "contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageReadError(
                source,
                f"float pixel values must lie in [0, 1]; got [{low:g}, {high:g}] "
                "(divide 0-255 data by 255)",
            )
        return np.rint(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageReadError(
                source, f"integer pixel values must lie in [0, 255]; got [{low}, {high}]"
            )
        return array.astype(np.uint8)
    raise ImageReadError(source, f"unsupported pixel dtype {array.dtype}")


def _as_uint16(array: np.ndarray, source: str) -> np.ndarray:
    if array.min() < 0 or array.max() > 65535:
        raise ImageReadError(source, "32-bit integer pixels outside the 16-bit range")
    return array.astype(np.uint16)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.ascontiguousarray(np.rint(rgb).astype(np.uint8))


def _size_within(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(size))
    return max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale))


def _shrink(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    height, width = rgb.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
