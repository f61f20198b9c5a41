"""The Grocery Store dataset's official splits, for the benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "grocery_store"


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
