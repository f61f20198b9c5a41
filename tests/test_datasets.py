"""Photo folders in, paths and labels out; and the bundled demo products."""

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from fusionrec.datasets import load_demo_products, load_image_folder
from fusionrec.images import load_image


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def shop(tmp_path):
    for relative in [
        "milk/b.jpg",
        "milk/a.JPG",
        "milk/notes.txt",
        "milk/.hidden.jpg",
        "banana/shelf-2/c.png",
        "banana/d.webp",
        ".thumbnails/e.jpg",
        "stray.jpg",
    ]:
        touch(tmp_path / relative)
    return tmp_path


def test_classes_are_sorted_folders_and_photos_sorted_within(shop):
    bunch = load_image_folder(shop)
    assert bunch.target_names == ["banana", "milk"]
    names = [Path(path).relative_to(shop).as_posix() for path in bunch.data]
    assert names == ["banana/d.webp", "banana/shelf-2/c.png", "milk/a.JPG", "milk/b.jpg"]
    np.testing.assert_array_equal(bunch.target, [0, 0, 1, 1])
    assert bunch.data.dtype == object
    assert bunch.root == str(shop)


def test_return_x_y(shop):
    data, target = load_image_folder(shop, return_X_y=True)
    assert len(data) == len(target) == 4


def test_extensions_can_be_narrowed(shop):
    bunch = load_image_folder(shop, extensions=(".jpg", ".PNG"))
    assert [Path(path).name for path in bunch.data] == ["c.png", "a.JPG", "b.jpg"]


@pytest.mark.parametrize(
    ("make", "error", "fragment"),
    [
        (lambda root: root / "nowhere", FileNotFoundError, "no such folder"),
        (lambda root: touch(root / "file.jpg"), NotADirectoryError, "is a file"),
        (lambda root: root, FileNotFoundError, "no class sub-folders"),
        (lambda root: touch(root / "empty" / "readme.txt").parents[1], FileNotFoundError, "empty"),
    ],
)
def test_folder_errors_name_the_problem(tmp_path, make, error, fragment):
    with pytest.raises(error, match=fragment):
        load_image_folder(make(tmp_path))


def test_demo_products_are_bundled_and_readable(demo):
    assert len(demo.data) == 150
    assert len(demo.target_names) == 10
    np.testing.assert_array_equal(np.bincount(demo.target), [15] * 10)
    assert "MIT" in demo.DESCR
    assert "Klasson" in demo.DESCR
    for path in demo.data[::15]:
        image = load_image(path)
        assert min(image.shape[:2]) == 256


def test_demo_licence_ships_with_the_photos():
    folder = resources.files("fusionrec.datasets") / "data" / "demo_products"
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert "Klasson" in (folder / "README.md").read_text()


def test_demo_return_x_y():
    data, target = load_demo_products(return_X_y=True)
    assert data.shape == target.shape == (150,)
