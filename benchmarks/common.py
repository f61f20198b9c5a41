"""What the benchmarks share: the Grocery Store splits, timing and memory helpers."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "grocery_store"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "fusionrec-bench"
"""Where the benchmarks keep the photos' features between runs (``--cache``)."""


def add_data_arguments(parser: argparse.ArgumentParser, *, cache: bool = False) -> None:
    """``--root``, the Grocery Store folder, and with ``cache`` the features cache, ``--cache``."""
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    if cache:
        parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)


def load_split(root: str | Path = DEFAULT_ROOT, split: str = "train", labels: str = "fine"):
    """Paths (object array) and integer labels of one official split."""
    root = Path(root)
    column = {"fine": 1, "coarse": 2}[labels]
    paths, target = [], []
    for line in (root / f"{split}.txt").read_text().splitlines():
        if line.strip():
            fields = [field.strip() for field in line.split(",")]
            paths.append(str(root / fields[0]))
            target.append(int(fields[column]))
    return np.array(paths, dtype=object), np.array(target)


def best_of(repeats: int, function, *args):
    """Shortest wall time of ``repeats`` calls, and the last call's result."""
    timings, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(*args)
        timings.append(time.perf_counter() - started)
    return min(timings), result


def child_command(script: str, part: str, root: Path, n_images: int, *more: object) -> list[str]:
    """The command running ``script part --root ROOT -n N_IMAGES *more`` in a fresh Python."""
    command = [sys.executable, script, part, "--root", str(root), "-n", str(n_images)]
    return command + [str(argument) for argument in more]


def peak_memory_in_children(script: str, part: str, root: Path, sizes: tuple[int, ...]) -> None:
    """Run ``script part -n SIZE`` in a fresh process per size, so each peak RSS is its own."""
    for size in sizes:
        subprocess.run(child_command(script, part, root, size), check=True)


def current_rss_mib() -> float:
    """Resident memory of this process now, in MiB (Linux's /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
