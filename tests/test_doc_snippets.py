"""Every Python block in the README and the docs pages runs as written.

The blocks of a page run in order, in one namespace (later blocks build on earlier ones), in
a fresh folder laid out as the pages assume: ``my_products/`` and ``my_test_photos/`` with one
sub-folder of demo photos per product, ``catalogue/`` with photos named by SKU, and single
photos ``new_photo.jpg``, ``shopper_photo.jpg`` and ``new_product.jpg``. The user guide's
examples are run by tests/test_docs.py.
"""

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PRODUCTS = (3, 5, 6)  # three of the ten demo products: a milk, an apple and a juice


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.fixture(scope="module")
def photo_folder(demo, tmp_path_factory):
    """Train and test folders of demo photos, a SKU-named catalogue and single photos."""
    root = tmp_path_factory.mktemp("snippets")
    for label in PRODUCTS:
        name = demo.target_names[label]
        photos = list(demo.data[demo.target == label])
        for folder, chosen in (("my_products", photos[:6]), ("my_test_photos", photos[6:9])):
            (root / folder / name).mkdir(parents=True)
            for path in chosen:
                shutil.copy(path, root / folder / name / Path(path).name)
        for i, path in enumerate(photos[9:12]):
            (root / "catalogue").mkdir(exist_ok=True)
            shutil.copy(path, root / "catalogue" / f"sku-{label}{i}.jpg")
    for name, index in (("new_photo.jpg", 1), ("shopper_photo.jpg", 2), ("new_product.jpg", 4)):
        shutil.copy(demo.data[index], root / name)
    return root


def test_the_pages_have_python_blocks():
    assert sum(len(python_blocks(page)) for page in PAGES) >= 10


@pytest.mark.parametrize(
    "page", [page for page in PAGES if python_blocks(page)], ids=lambda page: page.name
)
def test_python_blocks_run_as_written(page, photo_folder, tmp_path, monkeypatch):
    own_folder = shutil.copytree(photo_folder, tmp_path / "photos")  # pages write files here
    monkeypatch.chdir(own_folder)
    namespace: dict = {"__name__": f"snippets_of_{page.stem}"}
    for number, block in enumerate(python_blocks(page), start=1):
        try:
            exec(compile(block, f"{page.name}, python block {number}", "exec"), namespace)
        except Exception as error:
            pytest.fail(f"{page.name}, python block {number} failed: {error!r}\n{block}")
