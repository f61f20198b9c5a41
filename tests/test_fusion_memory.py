"""Fusion without copies: features written once, a chunk of rows at a time, into float32 rows."""

import tracemalloc

import numpy as np
import pytest
from sklearn.base import clone

from fusionrec import BagOfVisualWords, FusedClassifier, FusedFeatures
from fusionrec._vectors import l2_normalise
from fusionrec.features import branch as branch_module
from fusionrec.fusion import classifier as classifier_module
from fusionrec.fusion import features as features_module
from fusionrec.fusion.features import ROWS_AT_ONCE, normalise_blocks
from fusionrec.fusion.fitting import fit_cached

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


@pytest.mark.parametrize("params", [{}, {"false_accept_rate": 0.1}])
def test_an_early_fit_trains_on_the_rows_the_branches_wrote(demo, tmp_path, monkeypatch, params):
    fused_rows, trained_on = [], []
    fit_transform = FusedFeatures.fit_transform

    def recording_fit_transform(self, X, y=None):
        fused_rows.append(fit_transform(self, X, y))
        return fused_rows[-1]

    def refused(*args, **kwargs):
        raise AssertionError("an early fit holds no block of its own")

    def recording_fit_cached(classifier, features, target, location):
        trained_on.append(features)
        return fit_cached(classifier, features, target, location)

    monkeypatch.setattr(FusedFeatures, "fit_transform", recording_fit_transform)
    monkeypatch.setattr(FusedFeatures, "fit_blocks", refused)
    monkeypatch.setattr(FusedFeatures, "fuse", refused)
    monkeypatch.setattr(classifier_module, "fit_cached", recording_fit_cached)
    photos, labels = demo.data[::2], demo.target[::2]
    model = FusedClassifier(traditional=SMALL_TRADITIONAL, memory=tmp_path, random_state=0)
    model.set_params(**params).fit(photos, labels)
    assert len(fused_rows) == 1  # the reject option's classifiers train on rows of the same
    assert np.shares_memory(trained_on[0], fused_rows[0])  # the classifier, on the rows as written


def test_a_late_fit_fuses_each_block_once_without_copying_it(demo, tmp_path, monkeypatch):
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
    model = FusedClassifier(
        traditional=SMALL_TRADITIONAL, fusion="late", memory=tmp_path, random_state=0
    )
    model.fit(photos, labels)
    assert len(fused_from) == 2  # one per branch; the folds reuse the rows
    for blocks in fused_from:
        for name, block in blocks.items():
            assert block is extracted[0][name]  # no photo dropped: the blocks as extracted


def test_a_photo_dropped_mid_fit_leaves_the_fit_of_the_others(demo, tmp_path):
    photos, labels = list(demo.data[::3]), list(demo.target[::3])
    model = FusedClassifier(traditional=SMALL_TRADITIONAL, memory=tmp_path, random_state=0)
    reference = clone(model).fit(photos, labels)
    middle = len(photos) // 2
    with_missing = [*photos[:middle], "missing.jpg", *photos[middle:]]
    with_label = [*labels[:middle], labels[0], *labels[middle:]]
    skipping = clone(model).set_params(on_error="skip").fit(with_missing, with_label)
    assert skipping.dropped_indices_.tolist() == [middle]
    np.testing.assert_array_equal(
        skipping.classifiers_["fused"].coef_, reference.classifiers_["fused"].coef_
    )


def test_transform_writes_each_branch_into_the_fused_rows_a_chunk_at_a_time(
    demo, tmp_path, monkeypatch
):
    monkeypatch.setattr(branch_module, "PHOTOS_AT_ONCE", 8)
    monkeypatch.setattr(features_module, "ROWS_AT_ONCE", 8)
    photos = demo.data
    features = FusedFeatures(SMALL_TRADITIONAL, memory=tmp_path).fit(photos)
    blocks = features.transform_blocks(photos)  # every photo's features now cached
    tracemalloc.start()
    try:
        rows = features.transform(photos)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(rows, features.fuse(blocks))
    widest = max(block.nbytes for block in blocks.values())
    narrowest = min(block.nbytes for block in blocks.values())
    assert narrowest > widest / 2  # so holding either block beside the rows breaks the bound:
    assert peak <= rows.nbytes + widest / 2
