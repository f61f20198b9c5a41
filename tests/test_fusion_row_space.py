"""Logistic regression solved in the row space of wide features: the same model, fewer columns."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from fusionrec.fusion.row_space import fit_in_row_space, row_space, solves_in_row_space


@pytest.fixture
def wide():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 900))  # float64, so both fits converge tightly
    target = rng.integers(0, 4, size=60)
    return features, target, rng.normal(size=(25, 900)).astype(np.float32)


@pytest.fixture
def widths_seen(monkeypatch):
    widths = []
    fit = LogisticRegression.fit

    def recording_fit(self, X, y, sample_weight=None):
        widths.append(X.shape[1])
        return fit(self, X, y, sample_weight)

    monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
    return widths


@pytest.mark.parametrize("n_classes", [2, 4])
def test_the_row_space_fit_is_the_plain_fit(wide, widths_seen, n_classes, monkeypatch):
    monkeypatch.setattr("fusionrec.fusion.row_space._COLUMNS_AT_ONCE", 256)  # 3 and a part
    features, target, new = wide
    target = target % n_classes
    plain = LogisticRegression(C=10, tol=1e-10, max_iter=5000).fit(features, target)
    narrow = fit_in_row_space(LogisticRegression(C=10, tol=1e-10, max_iter=5000), features, target)
    assert widths_seen == [900, 60]  # solved on one column per training row
    assert narrow.coef_.shape == plain.coef_.shape
    assert narrow.n_features_in_ == 900
    np.testing.assert_allclose(narrow.coef_, plain.coef_, atol=1e-4)
    np.testing.assert_allclose(narrow.predict_proba(new), plain.predict_proba(new), atol=1e-4)


def test_the_coordinates_are_those_in_an_orthonormal_basis_of_the_rows(wide):
    features = wide[0][:10].astype(np.float32)
    features[9] = features[0] + features[1]  # rank 9
    coordinates, to_rows = row_space(features)
    assert coordinates.shape == (10, 9)
    assert to_rows.shape == (9, 10)
    basis = (to_rows @ features).T
    np.testing.assert_allclose(basis.T @ basis, np.eye(9), atol=1e-8)
    np.testing.assert_allclose(coordinates @ basis.T, features, atol=1e-5)
    np.testing.assert_allclose(features @ basis, coordinates, atol=1e-5)


@pytest.mark.parametrize(
    "classifier",
    [
        LogisticRegression(l1_ratio=1.0, solver="saga"),
        LogisticRegression(solver="liblinear"),
        LogisticRegression(C=np.inf),
        LogisticRegression(warm_start=True),
        LinearSVC(),
    ],
)
def test_other_classifiers_are_fitted_plainly(wide, classifier):
    assert not solves_in_row_space(classifier)
    assert solves_in_row_space(LogisticRegression(C=3.0, solver="newton-cg"))


def test_features_not_much_wider_than_their_rows_are_fitted_plainly(wide, widths_seen):
    features, target, _ = wide
    fit_in_row_space(LogisticRegression(), features[:, :400], target)  # 6.7 times wider
    assert widths_seen == [400]


def test_all_zero_features_are_fitted_plainly(wide, widths_seen):
    _, target, new = wide
    fitted = fit_in_row_space(LogisticRegression(), np.zeros((60, 900), np.float32), target)
    assert widths_seen == [900]
    assert fitted.predict(new).shape == (25,)
