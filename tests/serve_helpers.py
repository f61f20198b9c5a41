"""What the service's tests share: a small catalogue of demo photos, and a real server process."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from fusionrec import BagOfVisualWords, CNNEmbedder, FusedClassifier, ProductIndex

REPOSITORY = Path(__file__).resolve().parents[1]
PHOTOS_PER_PRODUCT = 3
# PyTorch, not ONNX Runtime: exporting the network would cost more than these tests embed.
DEEP = CNNEmbedder(crop_fraction=0.75, runtime="torch")
SMALL_TRADITIONAL = BagOfVisualWords(
    "rootsift", n_words=8, encoding="vlad", max_side=160, random_state=0
)


def demo_root(demo) -> Path:
    """The folder of the demo photos, in which their ids are relative paths."""
    return Path(demo.data[0]).parents[1]


def catalogue_of(demo) -> tuple[list[str], list[str], list[str], list[str]]:
    """``(photos, ids, queries, query_products)``: three photos of each product, and one more.

    Ids are paths relative to the demo folder, as ``fusionrec index`` makes them.
    """
    root = demo_root(demo)
    photos, queries, products = [], [], []
    for label, name in enumerate(demo.target_names):
        paths = demo.data[np.flatnonzero(demo.target == label)]
        photos += list(paths[1 : 1 + PHOTOS_PER_PRODUCT])
        queries.append(paths[0])
        products.append(name)
    ids = [Path(path).relative_to(root).as_posix() for path in photos]
    return photos, ids, queries, products


def fit_index(photos, ids, memory, rerank="ransac") -> ProductIndex:
    return ProductIndex(deep=DEEP, rerank=rerank, memory=memory).fit(photos, ids)


def fit_model(photos, ids, memory, fusion="early") -> FusedClassifier:
    labels = [item_id.split("/")[0] for item_id in ids]
    model = FusedClassifier(
        traditional=SMALL_TRADITIONAL, deep=DEEP, fusion=fusion, memory=memory, random_state=0
    )
    return model.fit(photos, labels)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(*arguments: str, port: int, log: Path) -> subprocess.Popen:
    """``python -m fusionrec serve ARGUMENTS`` on ``port``, this checkout first on the path."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "fusionrec", "serve", *arguments, "--port", str(port)]
    with open(log, "ab") as output:
        return subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)


def wait_until_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float = 120):
    """Wait for ``GET /health`` to answer 200; fail with the server's log if it dies or hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the server did not start in {timeout} s:\n{log.read_text()}")
