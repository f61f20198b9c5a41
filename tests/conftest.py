import pytest

from fusionrec.datasets import load_demo_products


@pytest.fixture(scope="session")
def demo():
    """The bundled demo products (150 photos, 10 classes)."""
    return load_demo_products()


@pytest.fixture(scope="session")
def demo_photo(demo):
    """Path of one real demo photo."""
    return demo.data[0]
