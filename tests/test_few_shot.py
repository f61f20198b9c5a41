"""Few-shot recognition: fusion from one or a few photos per product (issue #22)."""

import numpy as np
import pytest

from fusionrec import BagOfVisualWords, CNNEmbedder, FusedClassifier
from fusionrec.deep import FineTuning
from fusionrec.fusion import DEFAULT_BLOCK_WEIGHTS
from fusionrec.fusion.few_shot import (
    FEW_PHOTOS,
    FEW_SHOT_BLOCK_WEIGHTS,
    FEW_SHOT_LATE_WEIGHT,
    HELD_OUT_PHOTOS,
    block_weights_for,
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
    assert late_weight_choice(HELD_OUT_PHOTOS, fine_tuned=True) == "fine-tuned"
    assert late_weight_choice(FEW_PHOTOS - 1, fine_tuned=True) == "fine-tuned"
    assert late_weight_choice(FEW_PHOTOS, fine_tuned=True) == "held-out"
    assert late_weight_choice(1, fine_tuned=True) == "few-shot"


def test_late_fusion_does_not_choose_its_weight_on_photos_its_network_was_tuned_on(demo):
    photos, labels = shots(demo, HELD_OUT_PHOTOS)
    settings = FineTuning(epochs=1, trainable_blocks=1, batch_size=16, validation_fraction=0)
    tuned = CNNEmbedder("small_cnn", weights=None, fine_tune=settings, random_state=0)
    model = FusedClassifier(
        fusion="late", traditional=SMALL_TRADITIONAL, deep=tuned, random_state=0
    ).fit(photos, labels)
    assert model.late_weight_choice_ == "fine-tuned"
    assert model.late_weight_ == FEW_SHOT_LATE_WEIGHT


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


def test_early_fusion_lengthens_the_keypoint_block_when_products_have_few_photos(demo, memory):
    photos, labels = shots(demo, 1)
    model = FusedClassifier(traditional=SMALL_TRADITIONAL, memory=memory, random_state=0)
    fitted = model.fit(photos, labels)
    assert fitted.block_weights_ == FEW_SHOT_BLOCK_WEIGHTS
    fused = fitted.features_.fuse(fitted.features_.transform_blocks(photos[:3]))
    width = fitted.features_.fitted_extractor("traditional").n_features_out_
    np.testing.assert_allclose(np.linalg.norm(fused[:, :width], axis=1), 1.0, rtol=1e-5)
    assert model.get_params()["block_weights"] == "auto"


def test_early_fusion_keeps_the_measured_lengths_with_many_photos_or_given_ones(demo, memory):
    photos, labels = shots(demo, FEW_PHOTOS)
    many = FusedClassifier(traditional=SMALL_TRADITIONAL, memory=memory, random_state=0)
    assert many.fit(photos, labels).block_weights_ == DEFAULT_BLOCK_WEIGHTS
    photos, labels = shots(demo, 1)
    given = FusedClassifier(
        traditional=SMALL_TRADITIONAL, block_weights=[0.25, 1.0], memory=memory, random_state=0
    )
    assert given.fit(photos, labels).block_weights_ == (0.25, 1.0)
    assert block_weights_for(FEW_PHOTOS - 1) == FEW_SHOT_BLOCK_WEIGHTS
