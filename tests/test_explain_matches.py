"""Explaining a re-ranked search match: the verified keypoint matches, drawn one line each."""

import os
import stat
import threading

import numpy as np
import pytest
from matplotlib.collections import LineCollection

from fusionrec import BagOfVisualWords, ProductIndex, explain_match
from fusionrec.images import load_image
from fusionrec.search import Keypoints, count_inliers, verified_matches

SHIFT = (30, 20)  # the query is a catalogue photo without its first 30 columns and 20 rows
# A Tropicana apple juice photo: no near-duplicate of it is in the catalogue (the first two
# photos of some products are two shots of one carton, which a crop may match better).
CROPPED = 12


@pytest.fixture(scope="module")
def catalogue(demo):
    """Two photos of each product, with their paths as ids."""
    chosen = np.concatenate([np.flatnonzero(demo.target == label)[:2] for label in range(10)])
    return demo.data[chosen]


@pytest.fixture(scope="module")
def index(catalogue):
    """Keypoint features (cheap), re-ranked by RANSAC; never mutated."""
    keypoints = BagOfVisualWords("rootsift", n_words=8, max_side=160, random_state=0)
    index = ProductIndex("traditional", traditional=keypoints, rerank="ransac", rerank_depth=3)
    return index.fit(catalogue, ids=catalogue)


@pytest.fixture(scope="module")
def query(catalogue):
    """A crop of the catalogue photo ``CROPPED``, whose keypoints move by ``SHIFT``."""
    return load_image(catalogue[CROPPED])[SHIFT[1] :, SHIFT[0] :]


@pytest.fixture(scope="module")
def matches(index, query):
    [found] = index.query([query], k=4)
    return found


def drawn_lines(explanation) -> np.ndarray:
    figure = explanation.render()
    [collection] = [c for c in figure.axes[0].collections if isinstance(c, LineCollection)]
    return np.asarray(collection.get_segments()).reshape(-1, 2, 2)


def test_the_cropped_photo_is_found_with_verified_matches(matches, catalogue):
    assert matches.best == catalogue[CROPPED]
    assert matches.inliers[0] >= 10
    assert [len(pairs) for pairs in matches.inlier_positions] == matches.inliers.tolist()


def test_a_match_drawing_has_one_line_per_reported_inlier(matches, query, catalogue):
    photos = {path: path for path in catalogue}
    for rank, item in enumerate(matches.ids):
        why = explain_match(query, photos[item], matches, rank)
        lines = drawn_lines(why)
        assert len(lines) == why.n_inliers == matches.inliers[rank]
    assert matches.inliers[-1] == 0  # beyond rerank_depth: nothing verified, nothing drawn


def test_each_line_joins_the_same_spot_of_the_product(matches, query, catalogue):
    why = explain_match(query, catalogue[CROPPED], matches)
    moved = why.query_points + np.array(SHIFT, np.float32)
    assert np.abs(moved - why.item_points).max() < 6.0  # pixels of a 256-pixel photo
    lines = drawn_lines(why)
    query_width = why.query_image.shape[1] * why.item_image.shape[0] / why.query_image.shape[0]
    assert (lines[:, 0, 0] <= query_width).all()
    assert (lines[:, 1, 0] >= query_width).all()


def test_a_match_drawing_is_a_png_and_names_the_match(matches, query, catalogue, tmp_path):
    why = explain_match(query, catalogue[CROPPED], matches)
    assert f"{why.n_inliers} verified" in why.render().axes[0].get_title()
    assert why.save_png(tmp_path / "match.png").read_bytes().startswith(b"\x89PNG")


def test_matches_of_an_index_without_reranking_are_refused(index, query, catalogue):
    plain = ProductIndex("traditional", traditional=index.traditional).fit(catalogue)
    [found] = plain.query([query], k=2)
    with pytest.raises(ValueError, match="rerank='ransac'"):
        explain_match(query, catalogue[0], found)


def test_verified_matches_are_what_count_inliers_counts(demo):
    describer = BagOfVisualWords("rootsift", max_keypoints=500)
    pairs = describer.describe([demo.data[0], load_image(demo.data[0])[10:, 15:]])
    photo, crop = (Keypoints.from_pair(*pair) for pair in pairs)
    verified = verified_matches(crop, photo)
    assert len(verified) == count_inliers(crop, photo) >= 10
    assert ((verified >= 0) & (verified <= 1)).all()


def test_a_picture_written_to_a_pipe_leaves_the_pipe_in_place(matches, query, catalogue, tmp_path):
    """Writing to an existing non-file (a pipe, /dev/stdout) must not replace it with a file."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = {}
    reader = threading.Thread(target=lambda: received.update(data=pipe.read_bytes()), daemon=True)
    reader.start()
    explain_match(query, catalogue[CROPPED], matches).save_png(pipe)
    reader.join(timeout=30)
    assert received["data"].startswith(b"\x89PNG")
    assert stat.S_ISFIFO(pipe.stat().st_mode)
