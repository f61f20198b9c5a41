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


@pytest.fixture(scope="session", autouse=True)
def user_cache_folder(tmp_path_factory):
    """fusionrec's user cache folder (ONNX exports) in a temporary folder, for every test."""
    folder = tmp_path_factory.mktemp("user-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FUSIONREC_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """PyTorch held to one thread for a module's tests (small networks run faster so)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dask_client():
    """Two single-threaded Dask worker processes on loopback, and a client of them; always closed.

    One cluster per test module, so that a test that kills a worker leaves
    the other modules' clusters alone.
    """
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
