"""scikit-learn's own estimator checks, where they apply to estimators that take images.

X is a sequence of images, not a 2-D numeric matrix, so the data-based checks of
``check_estimator`` do not apply (the estimators declare ``two_d_array=False``, and
scikit-learn skips them for that reason). Every check that needs no tabular data runs
here; the properties the data-based checks would test (fit returns self, idempotent fit,
order and subset invariance, persistence) are tested on real photos in each estimator's
own test module.
"""

import pytest
from sklearn.utils import estimator_checks

from fusionrec import BagOfVisualWords, CNNEmbedder, FusedClassifier, FusedFeatures, ProductIndex

DATA_FREE_CHECKS = [
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_do_not_raise_errors_in_init_or_set_params,
    estimator_checks.check_mixin_order,
    estimator_checks.check_estimators_unfitted,
]
ESTIMATORS = [
    BagOfVisualWords(),
    CNNEmbedder(),
    FusedFeatures(),
    FusedClassifier(),
    ProductIndex(),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda estimator: type(estimator).__name__)
@pytest.mark.parametrize("check", DATA_FREE_CHECKS, ids=lambda check: check.__name__)
def test_checks_that_need_no_tabular_data(estimator, check):
    check(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda estimator: type(estimator).__name__)
def test_tags_say_the_input_is_not_a_matrix(estimator):
    assert estimator.__sklearn_tags__().input_tags.two_d_array is False


@pytest.mark.parametrize(
    "estimator",
    [BagOfVisualWords(), CNNEmbedder(), FusedFeatures()],
    ids=lambda e: type(e).__name__,
)
def test_unfitted_transformers_refuse_to_transform(estimator):
    estimator_checks.check_transformers_unfitted(type(estimator).__name__, estimator)
