"""A corpus of broken inputs: each gets an error that names it and says why."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from fusionrec.images import ImageReadError, load_image


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG that declares absurd dimensions but holds almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    idat_data = zlib.compress(b"\x00" * 16)
    idat = b"IDAT" + idat_data
    idat_chunk = struct.pack(">I", len(idat_data)) + idat + struct.pack(">I", zlib.crc32(idat))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat_chunk + iend


def _jpeg_with_header(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose start-of-frame claims another size."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


def _files(tmp: Path, demo_photo: str) -> dict[str, tuple[Path, str]]:
    """name -> (file, a fragment the error must contain)."""
    real = Path(demo_photo).read_bytes()
    png = tmp / "real.png"
    Image.open(demo_photo).save(png)
    cases = {
        "zero-byte": (b"", "empty"),
        "truncated-jpeg": (real[: len(real) // 3], "truncated"),
        "truncated-png": (png.read_bytes()[:200], "decoding failed"),
        "header-only-jpeg": (real[:20], "not a readable image"),
        "text-named-jpg": (b"this is not an image\n" * 10, "not a readable image"),
        "html-named-png": (b"<html><body>404</body></html>", "not a readable image"),
        "absurd-png-header": (_png_with_header(100_000, 100_000), "decompression bomb"),
        "absurd-jpeg-header": (_jpeg_with_header(real, 65_000, 65_000), "decompression bomb"),
        "above-limit-png-header": (_png_with_header(10_000, 9_000), "decompression bomb"),
        "random-bytes": (np.random.default_rng(0).bytes(5000), "not a readable image"),
    }
    files = {}
    for name, (data, fragment) in cases.items():
        path = tmp / f"{name}.{'png' if 'png' in name else 'jpg'}"
        path.write_bytes(data)
        files[name] = (path, fragment)
    folder = tmp / "a-folder.jpg"
    folder.mkdir()
    files["directory"] = (folder, "directory")
    files["missing"] = (tmp / "missing.jpg", "no such file")
    return files


FILE_CASES = [
    "zero-byte",
    "truncated-jpeg",
    "truncated-png",
    "header-only-jpeg",
    "text-named-jpg",
    "html-named-png",
    "absurd-png-header",
    "absurd-jpeg-header",
    "above-limit-png-header",
    "random-bytes",
    "directory",
    "missing",
]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", FILE_CASES)
def test_bad_file_raises_an_error_naming_it(tmp_path, demo_photo, case):
    path, fragment = _files(tmp_path, demo_photo)[case]
    with pytest.raises(ImageReadError) as caught:
        load_image(path)
    message = str(caught.value)
    assert str(path) in message
    assert fragment in message


def count_pixel_decodes(monkeypatch) -> list:
    """From now on: the size of each image whose pixels Pillow decodes."""
    decoded = []
    load = ImageFile.ImageFile.load

    def counting_load(self):
        if self.tile:  # pixels not decoded yet
            decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return decoded


BOMB_CASES = ["absurd-png-header", "absurd-jpeg-header", "above-limit-png-header"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("case", BOMB_CASES)
def test_a_bomb_header_is_refused_before_any_pixel_is_decoded(
    tmp_path, demo_photo, monkeypatch, case
):
    path, _ = _files(tmp_path, demo_photo)[case]
    pixels_decoded = count_pixel_decodes(monkeypatch)
    for form in (path, path.read_bytes()):
        with pytest.raises(ImageReadError, match="decompression bomb"):
            load_image(form)
    assert pixels_decoded == []


def test_the_decode_counter_sees_a_photo_decoded(demo_photo, monkeypatch):
    """The counter the bomb test relies on sees an ordinary photo's pixels decoded once."""
    pixels_decoded = count_pixel_decodes(monkeypatch)
    load_image(demo_photo)
    load_image(Path(demo_photo).read_bytes())
    assert pixels_decoded == [Image.open(demo_photo).size] * 2


def test_every_file_case_is_exercised(tmp_path, demo_photo):
    assert sorted(_files(tmp_path, demo_photo)) == sorted(FILE_CASES)


OBJECT_CASES = [
    (None, "type NoneType", "unsupported input"),
    (42, "type int", "unsupported input"),
    ({"path": "x.jpg"}, "type dict", "unsupported input"),
    ([[0, 1], [2, 3]], "type list", "unsupported input"),
    (b"", "0 bytes", "no data"),
    (b"GIF89a-not-really", "bytes", "not a readable image"),
    (np.full((4, 4), np.nan), "shape (4, 4)", "NaN"),
    (np.full((4, 4, 3), np.inf, dtype=np.float32), "float32", "infinite"),
    (np.full((4, 4), 2.0), "float64", "[0, 1]"),
    (np.full((4, 4), -3, dtype=np.int16), "int16", "[0, 255]"),
    (np.full((4, 4), 300), "int64", "[0, 255]"),
    (np.zeros(16, dtype=np.uint8), "shape (16,)", "expected shape"),
    (np.zeros((2, 4, 4, 3), dtype=np.uint8), "shape (2, 4, 4, 3)", "expected shape"),
    (np.zeros((4, 4, 5), dtype=np.uint8), "shape (4, 4, 5)", "expected shape"),
    (np.zeros((4, 4, 2), dtype=np.uint8), "shape (4, 4, 2)", "expected shape"),
    (np.zeros((0, 0, 3), dtype=np.uint8), "shape (0, 0, 3)", "empty"),
    (np.zeros((4, 0), dtype=np.uint8), "shape (4, 0)", "empty"),
    (np.zeros((4, 4), dtype=bool), "dtype bool", "unsupported pixel dtype"),
    (np.zeros((4, 4), dtype=np.complex64), "complex64", "unsupported pixel dtype"),
    (np.array(["a", "b"]), "<U1", "unsupported pixel dtype"),
    (Image.new("RGB", (0, 0)), "size 0 x 0", "no pixels"),
]


@pytest.mark.parametrize(
    ("bad", "source", "reason"), OBJECT_CASES, ids=[repr(case[1]) for case in OBJECT_CASES]
)
def test_bad_object_raises_an_error_naming_it(bad, source, reason):
    with pytest.raises(ImageReadError) as caught:
        load_image(bad)
    assert source in caught.value.source
    assert reason in caught.value.reason


def test_tiny_images_are_valid():
    assert load_image(np.zeros((1, 1), dtype=np.uint8)).shape == (1, 1, 3)
    assert load_image(Image.new("L", (1, 1))).shape == (1, 1, 3)
