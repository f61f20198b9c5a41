"""A cached keypoint branch: bounded photos at a time, and keys that follow the detector."""

import numpy as np
import pytest

from fusionrec import BagOfVisualWords
from fusionrec.features import branch as branch_module
from fusionrec.features.branch import Branch, CachedDescriptions
from fusionrec.traditional import DETECTORS


@pytest.fixture(scope="module")
def photos(demo):
    return demo.data[::6]


def extractor():
    return BagOfVisualWords(n_words=8, max_side=160, random_state=0)


@pytest.mark.parametrize("seeded", [True, False])
def test_a_cached_fit_describes_a_few_photos_at_a_time_and_learns_the_same_vocabulary(
    photos, tmp_path, monkeypatch, seeded
):
    monkeypatch.setattr(branch_module, "PHOTOS_AT_ONCE", 4)
    held = []
    described = Branch._described

    def recording(self, images, keys=None):
        held.append(len(images))
        return described(self, images, keys)

    monkeypatch.setattr(Branch, "_described", recording)
    random_state = 0 if seeded else np.random.RandomState(0)
    cached = Branch(extractor().set_params(random_state=random_state), tmp_path)
    features = cached.fit_transform(photos)
    assert features.dtype == np.float32
    uncached = extractor().set_params(random_state=np.random.RandomState(0) if not seeded else 0)
    np.testing.assert_allclose(features, uncached.fit(photos).transform(photos), atol=1e-6)
    assert held
    assert max(held) <= 4


def test_cached_descriptions_read_each_photo_when_asked(photos, tmp_path):
    branch = Branch(extractor(), tmp_path)
    branch.fit_transform(photos[:3])
    keys = [branch_module.content_key(photo) for photo in photos[:3]]
    lazy = CachedDescriptions(branch._description_cache(), keys)
    positions, descriptors = lazy[1]
    assert isinstance(descriptors, np.memmap)  # read from the file as used, not onto the heap
    expected_positions, expected_descriptors = extractor().describe([photos[1]])[0]
    np.testing.assert_array_equal(positions, expected_positions)
    np.testing.assert_array_equal(descriptors, expected_descriptors)
    lazy.cache.path(keys[2]).unlink()
    with pytest.raises(FileNotFoundError, match=keys[2]):
        lazy[2]


def test_memory_mapped_descriptions_reach_process_workers(photos, tmp_path):
    """Two joblib processes learn and encode from the cached descriptions as one process does."""
    Branch(extractor(), tmp_path).fit_transform(photos)  # describes the photos into the cache
    features = {}
    for n_jobs in (None, 2):  # unseeded: the vocabulary and encodings are not cached
        unseeded = extractor().set_params(random_state=np.random.RandomState(0), n_jobs=n_jobs)
        features[n_jobs] = Branch(unseeded, tmp_path).fit_transform(photos)
    np.testing.assert_array_equal(features[2], features[None])


def test_a_new_detector_revision_learns_a_new_vocabulary(photos, tmp_path, monkeypatch):
    first = Branch(extractor(), tmp_path)
    first.fit_transform(photos)
    monkeypatch.setattr(DETECTORS["sift"], "revision", DETECTORS["sift"].revision + 1)
    second = Branch(extractor(), tmp_path)
    second.fit_transform(photos)
    assert second.vocabulary_key != first.vocabulary_key


@pytest.mark.parametrize("cached", [True, False])
def test_transform_writes_into_the_columns_it_is_given(photos, tmp_path, cached):
    branch = Branch(extractor(), tmp_path if cached else None).fit(photos)
    expected = branch.transform(photos)
    width = expected.shape[1]
    wider = np.full((len(photos), width + 3), -1.0, np.float32)
    written = branch.transform(photos, out=wider[:, 1 : width + 1])
    assert np.shares_memory(written, wider)
    np.testing.assert_array_equal(wider[:, 1 : width + 1], expected)
    np.testing.assert_array_equal(wider[:, [0, width + 1, width + 2]], -1.0)
