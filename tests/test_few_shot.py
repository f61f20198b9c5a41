"""Few-shot recognition: fusion from one or a few photos per product (issue #22)."""

import numpy as np
import pytest

from fusionrec import BagOfVisualWords, FusedClassifier
from fusionrec.fusion.few_shot import (
    FEW_SHOT_LATE_WEIGHT,
    HELD_OUT_PHOTOS,
    late_weight_choice,
)

SMALL_TRADITIONAL = BagOfVisualWords(
    "rootsift", n_words=16, encoding="vlad", max_side=160, random_state=0
)


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


def shots(demo, k: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``k`` photos of each demo product, from its ``offset``-th photo on."""
    chosen = np.concatenate(
        [np.flatnonzero(demo.target == label)[offset : offset + k] for label in range(10)]
    )
    return demo.data[chosen], demo.target[chosen]


def late_model(memory) -> FusedClassifier:
    return FusedClassifier(
        fusion="late", traditional=SMALL_TRADITIONAL, memory=memory, random_state=0
    )


def test_the_late_weight_is_chosen_on_held_out_folds_from_enough_photos_only():
    assert late_weight_choice(1) == "few-shot"
    assert late_weight_choice(HELD_OUT_PHOTOS - 1) == "few-shot"
    assert late_weight_choice(HELD_OUT_PHOTOS) == "held-out"
    assert late_weight_choice(100) == "held-out"


def test_late_fusion_learns_from_one_photo_per_product(demo, memory):
    photos, labels = shots(demo, 1)
    model = late_model(memory).fit(photos, labels)
    assert model.late_weight_choice_ == "few-shot"
    assert model.late_weight_ == FEW_SHOT_LATE_WEIGHT
    queries, truth = shots(demo, 5, offset=1)
    probabilities = model.predict_proba(queries)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert model.score(queries, truth) > 0.5  # chance is 0.1


def test_the_rarest_product_decides_how_the_late_weight_is_set(demo, memory):
    photos, labels = shots(demo, HELD_OUT_PHOTOS)
    assert late_model(memory).fit(photos, labels).late_weight_choice_ == "held-out"
    one_photo_fewer = np.delete(np.arange(len(labels)), np.flatnonzero(labels == 0)[0])
    rarest = late_model(memory).fit(photos[one_photo_fewer], labels[one_photo_fewer])
    assert rarest.late_weight_choice_ == "few-shot"
    assert rarest.late_weight_ == FEW_SHOT_LATE_WEIGHT
