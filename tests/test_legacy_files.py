"""Model files written before the features layer (fusionrec 0.1.0.dev0) still load and answer.

``tests/data/old_*.joblib`` were written by the code of commit 103e962 (a late-fused
FusedClassifier and a fused ProductIndex on 30 demo photos, with ``weights=(0.7, 1.0)``
and ``CNNEmbedder(n_jobs=2)``), with their answers to six demo photos in ``old_answers.npz``.
"""

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from fusionrec.cli import model_file

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def answers():
    return np.load(DATA / "old_answers.npz")


@pytest.fixture(scope="module")
def queries(demo):
    return demo.data[1::25]


def test_an_old_classifier_loads_with_renamed_parameters_and_answers_alike(answers, queries):
    model, _ = model_file.load(DATA / "old_model.joblib")
    assert model.get_params()["block_weights"] == (0.7, 1.0)
    assert "weights" not in model.get_params(deep=False)
    deep = model.features_.fitted_extractor("deep")
    assert deep.n_threads == 2
    np.testing.assert_allclose(model.predict_proba(queries), answers["proba"], atol=1e-6)
    assert clone(model).get_params(deep=False)["block_weights"] == (0.7, 1.0)


def test_an_old_index_loads_and_finds_the_same_items(answers, queries):
    index, _ = model_file.load(DATA / "old_index.joblib", kind="index")
    matches = index.query(queries, k=3)
    np.testing.assert_array_equal([m.ids.astype(int) for m in matches], answers["ids"])
    np.testing.assert_allclose([m.scores for m in matches], answers["scores"], atol=1e-6)
    assert index.dropped_indices_.tolist() == []
