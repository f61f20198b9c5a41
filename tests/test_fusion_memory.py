"""Fusion without copies: blocks fused once, a chunk of rows at a time, into one float32 array."""

import tracemalloc

import numpy as np
import pytest

from fusionrec import BagOfVisualWords, FusedClassifier, FusedFeatures
from fusionrec._vectors import l2_normalise
from fusionrec.fusion.features import ROWS_AT_ONCE, normalise_blocks

SMALL_TRADITIONAL = BagOfVisualWords(
    "rootsift", n_words=16, encoding="vlad", max_side=160, random_state=0
)


def random_blocks(n_rows):
    rng = np.random.default_rng(0)
    traditional = rng.standard_normal((n_rows, 300)).astype(np.float32)
    deep = rng.standard_normal((n_rows, 40))  # float64, as a caller's own block may be
    traditional[3] = np.nan  # a dropped photo
    deep[3] = np.nan
    traditional[5] = 0.0
    return [traditional, deep]


@pytest.mark.parametrize("weights", [(0.5, 1.0), (np.float64(0.35), np.float32(2.0))])
def test_blocks_fused_a_chunk_of_rows_at_a_time_equal_blocks_fused_at_once(weights):
    blocks = random_blocks(2 * ROWS_AT_ONCE + 7)
    at_once = np.hstack(
        [
            weight * l2_normalise(block.astype(np.float32))
            for block, weight in zip(blocks, weights, strict=True)
        ]
    ).astype(np.float32)
    fused = normalise_blocks(blocks, weights)
    assert fused.dtype == np.float32
    np.testing.assert_array_equal(fused, at_once)


def test_fusing_allocates_the_result_and_a_few_chunks_of_rows():
    blocks = random_blocks(16 * ROWS_AT_ONCE)
    widest_chunk = ROWS_AT_ONCE * max(block.shape[1] for block in blocks) * np.dtype(float).itemsize
    tracemalloc.start()
    try:
        fused = normalise_blocks(blocks, (0.5, 1.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Copying a whole block (casting, normalising, stacking) would cost 16 chunks each.
    assert peak <= fused.nbytes + 4 * widest_chunk


def test_normalise_blocks_names_blocks_of_different_lengths():
    with pytest.raises(ValueError, match=r"same number of rows; got \[2, 3\]"):
        normalise_blocks([np.ones((2, 4)), np.ones((3, 4))], (1.0, 1.0))


@pytest.mark.parametrize(
    ("params", "fused_per_fit"),
    [({}, 1), ({"false_accept_rate": 0.1}, 1), ({"fusion": "late"}, 2)],
)
def test_a_fit_fuses_the_branches_blocks_once_without_copying_them(
    demo, tmp_path, monkeypatch, params, fused_per_fit
):
    extracted, fused_from = [], []
    fit_blocks, fuse = FusedFeatures.fit_blocks, FusedFeatures.fuse

    def recording_fit_blocks(self, X, y=None):
        extracted.append(fit_blocks(self, X, y))
        return extracted[-1]

    def recording_fuse(self, blocks):
        fused_from.append(dict(blocks))
        return fuse(self, blocks)

    monkeypatch.setattr(FusedFeatures, "fit_blocks", recording_fit_blocks)
    monkeypatch.setattr(FusedFeatures, "fuse", recording_fuse)
    photos, labels = demo.data[::2], demo.target[::2]
    model = FusedClassifier(traditional=SMALL_TRADITIONAL, memory=tmp_path, random_state=0)
    model.set_params(**params).fit(photos, labels)
    assert len(fused_from) == fused_per_fit  # rejection and late fusion's folds reuse the rows
    for blocks in fused_from:
        for name, block in blocks.items():
            assert block is extracted[0][name]  # no photo dropped: the blocks as extracted
