"""The image layer's contract: every accepted form comes out as the same RGB uint8 array."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusionrec.deep import Preprocessing
from fusionrec.images import ImageReadError, load_image

RED = (255, 0, 0)


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


@pytest.fixture
def red_left_png(tmp_path):
    """A 40 x 20 image whose left half is red and right half blue."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = RED
    pixels[:, 20:] = (0, 0, 255)
    return save(Image.fromarray(pixels), tmp_path / "halves.png")


def test_every_input_form_gives_the_same_rgb_array(red_left_png):
    expected = np.asarray(Image.open(red_left_png).convert("RGB"))
    forms = [
        str(red_left_png),
        red_left_png,
        red_left_png.read_bytes(),
        Image.open(red_left_png),
        expected.copy(),
        expected.astype(np.float64) / 255.0,
        expected.astype(np.int64),
    ]
    for form in forms:
        image = load_image(form)
        assert image.dtype == np.uint8
        assert image.shape == (20, 40, 3)
        assert image.flags.c_contiguous
        np.testing.assert_array_equal(image, expected)


def test_colour_order_is_rgb(red_left_png):
    assert tuple(load_image(red_left_png)[10, 5]) == RED


def test_gray_array_is_repeated_to_three_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    image = load_image(gray)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)
    np.testing.assert_array_equal(load_image(gray[:, :, None]), image)


def test_transparent_pixels_are_composited_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (255, 0, 0, 0)
    rgba[1, 0] = (0, 0, 0, 128)
    image = load_image(rgba)
    assert tuple(image[0, 0]) == RED
    assert tuple(image[0, 1]) == (255, 255, 255)
    assert tuple(image[1, 0]) == (127, 127, 127)


def test_float_and_sixteen_bit_arrays_are_scaled():
    assert load_image(np.ones((2, 2)))[0, 0, 0] == 255
    assert load_image(np.full((2, 2), 0.5, dtype=np.float32))[0, 0, 0] == 128
    assert load_image(np.full((2, 2, 3), 65535, dtype=np.uint16))[0, 0, 0] == 255
    assert load_image(np.full((2, 2, 3), 257 * 100, dtype=np.uint16))[0, 0, 0] == 100


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = RED
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    path = save(Image.fromarray(pixels), tmp_path / "sideways.jpg", exif=exif, quality=95)
    image = load_image(path)
    assert image.shape == (40, 20, 3)
    top, bottom = image[:15].mean(axis=(0, 1)), image[25:].mean(axis=(0, 1))
    assert top[0] > 200
    assert bottom[0] < 50


@pytest.mark.parametrize(
    ("mode", "suffix", "options", "expected"),
    [
        ("P", ".png", {"transparency": 0}, 204),  # the web palette's nearest gray
        ("LA", ".png", {}, 200),
        ("L", ".png", {}, 200),
        ("CMYK", ".jpg", {"quality": 100}, 200),
        ("CMYK", ".tif", {}, 200),
        ("I;16", ".png", {}, 200),
    ],
)
def test_file_modes_become_eight_bit_rgb(tmp_path, mode, suffix, options, expected):
    gray = np.full((6, 8, 3), 200, dtype=np.uint8)
    source = _sixteen_bit_gray(6, 8, 257 * 200) if mode == "I;16" else Image.fromarray(gray)
    converted = source if mode == "I;16" else source.convert(mode, dither=Image.Dither.NONE)
    path = save(converted, tmp_path / f"image{suffix}", **options)
    assert Image.open(path).mode == converted.mode
    image = load_image(path)
    assert image.shape == (6, 8, 3)
    assert image.dtype == np.uint8
    np.testing.assert_allclose(image, expected, atol=3)


def test_bilevel_file_is_black_and_white(tmp_path):
    pixels = np.zeros((4, 4), dtype=np.uint8)
    pixels[:2] = 255
    path = save(Image.fromarray(pixels).convert("1"), tmp_path / "bilevel.png")
    image = load_image(path)
    assert set(np.unique(image)) == {0, 255}
    assert image[0, 0, 0] == 255
    assert image[3, 3, 0] == 0


def _sixteen_bit_gray(height, width, value):
    return Image.fromarray(np.full((height, width), value, dtype=np.uint16))


def test_palette_transparency_is_white(tmp_path):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    path = save(palette, tmp_path / "palette.png", transparency=0)
    image = load_image(path)
    assert tuple(image[0, 0]) == (255, 255, 255)
    assert tuple(image[1, 1]) == RED


def test_multi_frame_file_reads_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, (0, 255, 0))]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert Image.open(path).n_frames == 2
    image = load_image(path)
    assert image[4, 4, 0] > 200
    assert image[4, 4, 1] < 50


def test_max_side_shrinks_but_never_enlarges(demo_photo, tmp_path):
    full = load_image(demo_photo)
    small = load_image(demo_photo, max_side=100)
    assert max(small.shape[:2]) == 100
    ratio = full.shape[1] / full.shape[0]
    assert small.shape[1] / small.shape[0] == pytest.approx(ratio, rel=0.02)
    assert load_image(demo_photo, max_side=5000).shape == full.shape
    png = save(Image.fromarray(full), tmp_path / "same.png")
    assert load_image(png, max_side=100).shape == small.shape


def test_max_side_is_validated():
    with pytest.raises(ValueError, match="max_side"):
        load_image(np.zeros((2, 2)), max_side=0)


def test_real_demo_photo_is_decoded_as_pillow_decodes_it(demo_photo):
    image = load_image(demo_photo)
    assert min(image.shape[:2]) == 256
    with Image.open(demo_photo) as opened:
        assert opened.getexif().get(0x0112) is None  # no orientation to apply
        np.testing.assert_array_equal(image, np.asarray(opened.convert("RGB")))


def test_png_named_jpg_is_read_by_content(tmp_path, red_left_png):
    renamed = tmp_path / "really_a_png.jpg"
    renamed.write_bytes(red_left_png.read_bytes())
    np.testing.assert_array_equal(load_image(renamed), load_image(red_left_png))


def test_bytes_input_from_a_buffer(red_left_png):
    buffer = io.BytesIO(red_left_png.read_bytes())
    assert load_image(buffer.getbuffer()).shape == (20, 40, 3)


def test_read_error_names_file_and_reason(tmp_path):
    with pytest.raises(ImageReadError) as caught:
        load_image(tmp_path / "nowhere.jpg")
    error = caught.value
    assert "nowhere.jpg" in str(error)
    assert error.reason == "no such file"
    assert error.position is None


@pytest.fixture
def phone_size_jpeg(demo_photo, tmp_path):
    """A demo photo enlarged to 2,048 x 1,536 and saved at quality 90, as phones save."""
    path = tmp_path / "phone.jpg"
    enlarged = Image.open(demo_photo).convert("RGB").resize((2048, 1536), Image.Resampling.BICUBIC)
    enlarged.save(path, quality=90)
    return path


def test_min_side_decodes_a_large_jpeg_at_reduced_scale_never_below_it(phone_size_jpeg):
    full = load_image(phone_size_jpeg)
    reduced = load_image(phone_size_jpeg, min_side=299)
    assert full.shape == (1536, 2048, 3)
    assert reduced.shape == (384, 512, 3)  # libjpeg's 1/4 scale: the smallest >= 299 px
    assert load_image(phone_size_jpeg.read_bytes(), min_side=299).shape == reduced.shape
    assert load_image(phone_size_jpeg, min_side=1000).shape == full.shape  # 1/2 would be < 1000


def test_min_side_still_applies_exif_orientation(phone_size_jpeg, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rotated = tmp_path / "rotated.jpg"
    Image.open(phone_size_jpeg).save(rotated, quality=90, exif=exif)
    assert load_image(rotated, min_side=299).shape == (512, 384, 3)


def test_min_side_leaves_what_the_network_sees_nearly_unchanged(phone_size_jpeg):
    prepare = Preprocessing(299, 224, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic")
    from_full = prepare(load_image(phone_size_jpeg)) * 127.5
    from_reduced = prepare(load_image(phone_size_jpeg, min_side=299)) * 127.5
    # mean error in grey levels (of 255): the order of a quality-90 JPEG's own quantisation
    assert np.abs(from_full - from_reduced).mean() < 2.0


def test_min_side_is_ignored_for_formats_without_dct_scaling(red_left_png):
    np.testing.assert_array_equal(load_image(red_left_png, min_side=1), load_image(red_left_png))
    with pytest.raises(ValueError, match="min_side must be a positive int"):
        load_image(red_left_png, min_side=0)
