"""X as a sequence of images, read lazily, under the shared on_error policy."""

import itertools
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from fusionrec.images import (
    ImageReadError,
    UnreadableImageWarning,
    as_image_sequence,
    check_on_error,
    iter_images,
    report_unreadable,
    unreadable_rows,
)


class CountingSequence(Sequence):
    """A long sequence of paths that counts how many items were fetched."""

    def __init__(self, path, length):
        self.path, self.length, self.fetched = path, length, 0

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        self.fetched += 1
        return self.path


def test_reading_is_lazy_over_100000_paths(demo_photo):
    paths = CountingSequence(demo_photo, 100_000)
    first_three = list(itertools.islice(iter_images(paths), 3))
    assert [position for position, _ in first_three] == [0, 1, 2]
    assert paths.fetched == 3


def test_object_array_of_paths_as_cross_validation_indexes_it(demo):
    folds = demo.data[np.array([3, 0, 7])]
    assert folds.dtype == object
    read = list(iter_images(folds))
    assert [position for position, _ in read] == [0, 1, 2]
    assert all(image.shape[2] == 3 for _, image in read)


def test_four_d_batch_yields_each_image():
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 5, 6, 3), dtype=np.uint8)
    for position, image in iter_images(batch):
        np.testing.assert_array_equal(image, batch[position])


def test_mixed_list_of_forms(demo_photo):
    gray = np.zeros((8, 8), dtype=np.uint8)
    encoded = Path(demo_photo).read_bytes()
    images = [image for _, image in iter_images([demo_photo, gray, encoded])]
    assert [image.shape[2] for image in images] == [3, 3, 3]


@pytest.mark.parametrize(
    ("X", "error", "fragment"),
    [
        ("photo.jpg", TypeError, "Wrap it in a list"),
        (b"\xff\xd8", TypeError, "single bytes"),
        (np.zeros((4, 4)), ValueError, "shape (4, 4)"),
        (np.zeros((4, 4, 3)), ValueError, "shape (4, 4, 3)"),
        (np.zeros((1, 2, 3, 4, 5)), ValueError, "4-D"),
        (np.array("photo.jpg"), ValueError, "shape ()"),
        ((path for path in ["a.jpg"]), TypeError, "list(...)"),
        ({"a.jpg"}, TypeError, "got set"),
        (42, TypeError, "got int"),
    ],
)
def test_x_that_is_not_a_sequence_of_images(X, error, fragment):
    with pytest.raises(error) as caught:
        as_image_sequence(X)
    assert fragment in str(caught.value)


def test_series_like_is_converted_to_an_object_array(demo):
    class SeriesLike:
        ndim = 1

        def to_numpy(self, dtype=None):
            return np.asarray(demo.data[:2], dtype=dtype)

    sequence = as_image_sequence(SeriesLike())
    assert sequence.dtype == object
    assert len(sequence) == 2


def test_raise_names_the_position_in_x(demo_photo):
    with pytest.raises(ImageReadError, match=r"at position 1 \(file 'missing.jpg'\)"):
        list(iter_images([demo_photo, "missing.jpg", demo_photo]))


def test_start_offsets_the_positions_of_a_chunk():
    with pytest.raises(ImageReadError) as caught:
        list(iter_images([None], start=40))
    assert caught.value.position == 40


@pytest.mark.parametrize("on_error", ["warn", "skip"])
def test_dropped_inputs_keep_their_place_and_are_recorded(demo_photo, on_error):
    failures = []
    X = [demo_photo, "missing.jpg", np.full((2, 2), np.nan), demo_photo]
    read = list(iter_images(X, on_error=on_error, failures=failures))
    assert [position for position, _ in read] == [0, 1, 2, 3]
    assert [image is None for _, image in read] == [False, True, True, False]
    assert [failure.position for failure in failures] == [1, 2]
    assert "no such file" in failures[0].reason
    assert "NaN" in failures[1].reason


def test_skip_without_a_failures_list_is_refused():
    with pytest.raises(ValueError, match="failures list"):
        list(iter_images(["a.jpg"], on_error="skip"))


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="on_error must be one of"):
        check_on_error("ignore")


def test_warn_lists_every_dropped_input_in_one_warning():
    failures = [ImageReadError("file 'a.jpg'", "no such file", 1), ImageReadError("x", "y", 7)]
    with pytest.warns(UnreadableImageWarning) as record:
        report_unreadable(failures, "warn")
    assert len(record) == 1
    message = str(record[0].message)
    assert "dropped 2 unreadable input(s)" in message
    assert "position 1 (file 'a.jpg')" in message
    assert "position 7" in message


def test_skip_reports_nothing_and_raise_raises_the_first():
    failures = [ImageReadError("x", "bad", 3)]
    report_unreadable(failures, "skip")
    report_unreadable([], "warn")
    with pytest.raises(ImageReadError, match="position 3"):
        report_unreadable(failures, "raise")


def test_read_error_survives_pickling_for_worker_processes():
    error = ImageReadError("file 'a.jpg'", "no such file", 5)
    restored = pickle.loads(pickle.dumps(error))
    assert str(restored) == str(error)
    assert restored.source == "file 'a.jpg'"
    assert restored.reason == "no such file"
    assert restored.position == 5


def test_unreadable_rows_finds_all_nan_rows_only():
    features = np.array([[1.0, np.nan], [np.nan, np.nan], [0.0, 0.0], [np.nan, np.nan]])
    np.testing.assert_array_equal(unreadable_rows(features), [1, 3])
    assert unreadable_rows(np.zeros((3, 0))).size == 0
    with pytest.raises(ValueError, match="2-D"):
        unreadable_rows(np.zeros(3))
