"""Model files written before the features layer (fusionrec 0.1.0.dev0) still load and answer.

``tests/data/old_*.joblib`` were written by the code of commit 103e962 (a late-fused
FusedClassifier and a fused ProductIndex on 30 demo photos, with ``weights=(0.7, 1.0)``
and ``CNNEmbedder(n_jobs=2)``), with their answers to six demo photos in ``old_answers.npz``.
Those six photos are kept in ``old_queries/``, as the demo products changed since (issue 19).
They are pickles: they open with the opt-in, and answer alike once converted.
"""

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

import fusionrec
from fusionrec.cli import model_file
from fusionrec.files import ModelFileError, convert

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def answers():
    return np.load(DATA / "old_answers.npz")


@pytest.fixture(scope="module")
def queries():
    """The demo photos the old files answered: ``demo.data[1::25]`` of the earlier products."""
    return np.array(
        sorted(str(path) for path in (DATA / "old_queries").glob("*.jpg")), dtype=object
    )


def test_an_old_classifier_loads_with_renamed_parameters_and_answers_alike(answers, queries):
    model, _ = model_file.load(DATA / "old_model.joblib", allow_pickle=True)
    assert model.get_params()["block_weights"] == (0.7, 1.0)
    assert "weights" not in model.get_params(deep=False)
    deep = model.features_.fitted_extractor("deep")
    assert deep.n_threads == 2
    np.testing.assert_allclose(model.predict_proba(queries), answers["proba"], atol=1e-6)
    assert clone(model).get_params(deep=False)["block_weights"] == (0.7, 1.0)


def test_an_old_index_loads_and_finds_the_same_items(answers, queries):
    index, _ = model_file.load(DATA / "old_index.joblib", kind="index", allow_pickle=True)
    matches = index.query(queries, k=3)
    np.testing.assert_array_equal([m.ids.astype(int) for m in matches], answers["ids"])
    np.testing.assert_allclose([m.scores for m in matches], answers["scores"], atol=1e-6)
    assert index.dropped_indices_.tolist() == []


def test_an_old_file_opens_only_with_the_opt_in():
    with pytest.raises(ModelFileError, match="is a pickle"):
        model_file.load(DATA / "old_model.joblib")


def test_converted_old_files_answer_as_the_pickles_do(queries, tmp_path):
    pickled, _ = model_file.load(DATA / "old_model.joblib", allow_pickle=True)
    model = fusionrec.load(convert(DATA / "old_model.joblib", tmp_path / "model.fusionrec"))
    np.testing.assert_array_equal(model.predict_proba(queries), pickled.predict_proba(queries))
    assert model.get_params()["block_weights"] == (0.7, 1.0)
    pickled_index, _ = model_file.load(DATA / "old_index.joblib", kind="index", allow_pickle=True)
    index_path = convert(DATA / "old_index.joblib", tmp_path / "index.fusionrec")
    index, _ = model_file.load(index_path, kind="index")
    answers = zip(index.query(queries, k=3), pickled_index.query(queries, k=3), strict=True)
    for got, expected in answers:
        assert got.ids.tolist() == expected.ids.tolist()
        np.testing.assert_array_equal(got.scores, expected.scores)
