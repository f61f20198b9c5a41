"""The reject option: a photo of a product not in the training photos can be answered "unknown"."""

import io
import json
import shutil
from contextlib import redirect_stdout

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

import fusionrec
from fusionrec import CNNEmbedder, FusedClassifier, ProductIndex
from fusionrec.cli import main
from fusionrec.deep import FineTuning
from fusionrec.evaluation import evaluate
from fusionrec.fusion import RejectsUnknown, threshold_for
from fusionrec.fusion.rejection import class_groups, known_scores, with_unknown

HELD_OUT = ["Golden-Delicious", "Granny-Smith"]  # a whole family: no look-alike is known
RATE = 0.05


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def open_set(demo):
    """Every other photo of eight products trains; the rest, and two unseen products, test."""
    photos = np.asarray(demo.data, dtype=object)
    names = np.asarray(demo.target_names, dtype=object)[demo.target]
    unknown = np.isin(names, HELD_OUT)
    train = np.zeros(len(photos), dtype=bool)
    train[::2] = True
    return {
        "train": (photos[train & ~unknown], names[train & ~unknown]),
        "test": (photos[~train], names[~train]),
        "test_unknown": unknown[~train],
    }


@pytest.fixture(scope="module")
def rejecting(open_set, memory):
    photos, names = open_set["train"]
    return FusedClassifier("deep", false_accept_rate=RATE, memory=memory, random_state=0).fit(
        photos, names
    )


# --- the calibration, on synthetic scores


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2, 0.5])
def test_the_threshold_accepts_at_most_the_rate_and_no_stricter_than_needed(rate):
    scores = np.random.default_rng(0).random(1000)
    threshold = threshold_for(scores, rate)
    accepted = np.sum(scores > threshold)
    assert accepted / len(scores) <= rate
    assert (accepted + 1) / len(scores) > rate  # one more accepted would break the rate


def test_ties_at_the_threshold_are_all_rejected():
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    assert threshold_for(scores, 0.4) == 0.5
    assert np.sum(scores > threshold_for(scores, 0.4)) == 1


def test_every_product_is_left_out_exactly_once():
    target = np.repeat(np.arange(13), 4)
    groups = class_groups(target, random_state=0)
    assert len(groups) == 5
    assert sorted(np.concatenate(groups).tolist()) == list(range(13))
    assert all(len(group) <= 13 - 2 for group in groups)


def test_three_products_are_needed_to_stand_some_in_for_unknown_ones():
    with pytest.raises(ValueError, match="at least three products"):
        class_groups(np.array([0, 0, 1, 1]))


def test_known_scores_are_the_highest_probabilities_and_keep_nan_rows():
    log_probabilities = np.log([[0.2, 0.8], [np.nan, np.nan]])
    np.testing.assert_allclose(known_scores(log_probabilities), [0.8, np.nan])


def test_integer_labels_stay_integers_unless_the_unknown_label_is_not_one():
    predicted = np.array([3, 4, 5])
    rejected = np.array([False, True, False])
    assert with_unknown(predicted, rejected, -1).dtype.kind == "i"
    mixed = with_unknown(predicted, rejected, "none")
    assert mixed.tolist() == [3, "none", 5]
    assert isinstance(mixed[0], (int, np.integer))


class BlobClassifier(RejectsUnknown):
    """The smallest host of the reject option: a logistic regression on feature rows."""

    def __init__(self, false_accept_rate=None, unknown_label="auto", n_jobs=None, random_state=0):
        self.false_accept_rate = false_accept_rate
        self.unknown_label = unknown_label
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y):
        self.classes_, target = np.unique(y, return_inverse=True)
        self.classifiers_ = self._fitted_classifiers({"rows": X}, target)
        self._fit_rejection({"rows": X}, target)
        return self

    def predict(self, X):
        log_probabilities, _ = self._log_probabilities(X)
        predicted = self.classes_[log_probabilities.argmax(axis=1)]
        return self._rejected_as_unknown(predicted, log_probabilities)

    def _fitted_classifiers(self, blocks, target):
        return {"rows": LogisticRegression().fit(blocks["rows"], target)}

    def _combined_log_probabilities(self, blocks, classifiers=None):
        classifier = (classifiers or self.classifiers_)["rows"]
        return classifier.predict_log_proba(blocks["rows"])

    def _log_probabilities(self, X):
        return self._combined_log_probabilities({"rows": X}), np.zeros(len(X), dtype=bool)


def blobs(centres, per_blob, seed):
    """``per_blob`` points round each centre (unit spread), labelled by the centre's position."""
    rng = np.random.default_rng(seed)
    points = [centre + rng.normal(size=(per_blob, len(centre))) for centre in centres]
    return np.concatenate(points), np.repeat(np.arange(len(centres)), per_blob)


def test_separable_products_are_kept_and_a_product_never_seen_is_rejected():
    centres = 8.0 * np.eye(10)  # ten products, each far along its own axis
    known_rows, known_labels = blobs(centres[:8], 40, seed=0)
    model = BlobClassifier(false_accept_rate=RATE).fit(known_rows, known_labels)
    test_rows, test_labels = blobs(centres, 40, seed=1)  # two products the model never saw
    predicted = model.predict(test_rows)
    unknown = test_labels >= 8
    assert np.mean(predicted[unknown] != -1) <= 2 * RATE
    np.testing.assert_array_equal(predicted[~unknown], test_labels[~unknown])


# --- FusedClassifier on the demo photos


def test_photos_of_products_held_out_of_training_are_rejected(rejecting, open_set):
    photos, names = open_set["test"]
    unknown = open_set["test_unknown"]
    predicted = rejecting.predict(photos)
    assert rejecting.unknown_label_ == "unknown"
    assert np.mean(predicted[unknown] == "unknown") >= 0.8
    assert np.mean(predicted[unknown] == "unknown") > np.mean(predicted[~unknown] == "unknown")
    accepted = ~unknown & (predicted != "unknown")
    assert np.mean(predicted[accepted] == names[accepted]) >= 0.9


def test_the_known_score_ranks_known_photos_above_unknown_ones(rejecting, open_set):
    photos, _ = open_set["test"]
    scores = rejecting.known_score(photos)
    assert np.all((scores > 0) & (scores <= 1))
    assert roc_auc_score(~open_set["test_unknown"], scores) >= 0.8
    rejected = rejecting.predict(photos) == "unknown"
    np.testing.assert_array_equal(rejected, scores <= rejecting.known_threshold_)


def test_without_a_rate_nothing_is_rejected_and_probabilities_do_not_change(
    rejecting, open_set, memory
):
    train, names = open_set["train"]
    photos, _ = open_set["test"]
    plain = FusedClassifier("deep", memory=memory, random_state=0).fit(train, names)
    assert plain.known_threshold_ is None
    assert set(plain.predict(photos)) <= set(plain.classes_)
    np.testing.assert_allclose(plain.predict_proba(photos), rejecting.predict_proba(photos))


def test_a_network_fine_tuned_on_the_labels_is_warned_about(open_set):
    settings = FineTuning(epochs=1, trainable_blocks=1, batch_size=16, validation_fraction=0)
    tuned = CNNEmbedder("small_cnn", weights=None, fine_tune=settings, random_state=0)
    photos, names = open_set["train"]
    model = FusedClassifier("deep", deep=tuned, false_accept_rate=RATE, random_state=0)
    with pytest.warns(UserWarning, match="fine-tuned on these labels"):
        model.fit(photos, names)


def test_a_frozen_network_is_not_warned_about(open_set, memory, recwarn):
    photos, names = open_set["train"]
    FusedClassifier("deep", false_accept_rate=RATE, memory=memory, random_state=0).fit(
        photos, names
    )
    assert not [w for w in recwarn if "fine-tuned" in str(w.message)]


def test_late_fusion_rejects_a_held_out_product_too(open_set, memory):
    train, names = open_set["train"]
    model = FusedClassifier(
        "deep", false_accept_rate=RATE, memory=memory, random_state=0
    ).set_params(branch="fused", fusion="late", traditional=_small_traditional())
    model.fit(train, names)
    photos, _ = open_set["test"]
    unknown = open_set["test_unknown"]
    assert np.mean(model.predict(photos)[unknown] == "unknown") >= 0.8


def _small_traditional():
    return fusionrec.BagOfVisualWords(
        "rootsift", n_words=16, encoding="vlad", max_side=160, random_state=0
    )


def test_integer_labels_get_minus_one_and_keep_their_dtype(open_set, memory, demo):
    train, names = open_set["train"]
    codes = np.searchsorted(np.asarray(demo.target_names), names.astype(str))
    model = FusedClassifier("deep", false_accept_rate=RATE, memory=memory, random_state=0)
    predicted = model.fit(train, codes).predict(open_set["test"][0])
    assert model.unknown_label_ == -1
    assert predicted.dtype.kind == "i"
    assert np.any(predicted == -1)


def test_an_unknown_label_that_names_a_product_is_refused(open_set, memory):
    train, names = open_set["train"]
    model = FusedClassifier("deep", unknown_label="Arla-Standard-Milk", memory=memory)
    model.fit(train, names)  # never rejecting, it never answers the label
    assert model.unknown_label_ is None
    with pytest.raises(ValueError, match="'Arla-Standard-Milk' is also the label of a product"):
        model.set_params(false_accept_rate=RATE).fit(train, names)


@pytest.mark.parametrize("rate", [0.0, 1.5, "5%"])
def test_a_bad_rate_is_named(open_set, rate):
    train, names = open_set["train"]
    with pytest.raises(ValueError, match="false_accept_rate must be"):
        FusedClassifier("deep", false_accept_rate=rate).fit(train, names)


def test_the_threshold_survives_saving(rejecting, open_set, tmp_path):
    path = fusionrec.save(rejecting, tmp_path / "model.fusionrec")
    loaded = fusionrec.load(path)
    photos, _ = open_set["test"]
    assert loaded.known_threshold_ == rejecting.known_threshold_
    np.testing.assert_array_equal(loaded.predict(photos), rejecting.predict(photos))


def test_the_report_counts_rejected_photos_in_their_own_row(rejecting, open_set):
    photos, names = open_set["test"]
    truth = np.where(open_set["test_unknown"], "unknown", names)
    report = evaluate(truth, rejecting.predict(photos), unknown_label="unknown")
    assert report.labels[-1] == "unknown"
    assert report.n_rejected == np.sum(rejecting.predict(photos) == "unknown")
    assert report.per_class["unknown"]["support"] == np.sum(open_set["test_unknown"])
    assert sum(report.confusion[-1]) == np.sum(open_set["test_unknown"])


# --- ProductIndex


def test_an_index_query_below_the_minimum_score_has_no_match(open_set, memory):
    photos, _ = open_set["train"]
    index = ProductIndex(memory=memory).fit(photos, ids=list(range(len(photos))))
    query = open_set["test"][0][:3]
    [best, *_] = index.query(query, k=3)
    found = index.query(query, k=3, min_score=float(best.scores[0]) + 1e-6)
    assert len(found[0]) == 0
    assert found[0].best is None
    kept = index.query(query, k=3, min_score=float(best.scores[1]))[0]
    np.testing.assert_array_equal(kept.ids, best.ids[:2])


# --- the command line

CLI_PRODUCTS = (
    "Golden-Delicious",
    "Granny-Smith",
    "Tropicana-Apple-Juice",
    "Tropicana-Juice-Smooth",
)
CLI_UNSEEN = "Arla-Standard-Milk"  # no milk is known


@pytest.fixture(scope="module")
def cli_folders(tmp_path_factory, demo):
    """Training folders of four products; test folders of them and of one more."""
    root = tmp_path_factory.mktemp("photos")
    for product in (*CLI_PRODUCTS, CLI_UNSEEN):
        photos = demo.data[demo.target == demo.target_names.index(product)]
        parts = [("test", photos[8:12])]
        if product != CLI_UNSEEN:
            parts.append(("train", photos[:8]))
        for part, chosen in parts:
            (root / part / product).mkdir(parents=True)
            for photo in chosen:
                shutil.copy(photo, root / part / product)
    return root / "train", root / "test"


@pytest.fixture(scope="module")
def cli_model(cli_folders, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.fusionrec"
    out = io.StringIO()
    with redirect_stdout(out):
        argv = ["train", str(cli_folders[0]), "-o", str(path), "--branch", "deep"]
        assert main([*argv, "--false-accept-rate", "0.05", "--seed", "0"]) == 0
    assert "answered 'unknown' (not a known product)" in out.getvalue()
    return path


def test_cli_evaluate_shows_rejected_photos_as_their_own_row(cli_model, cli_folders, capsys):
    assert main(["evaluate", str(cli_model), str(cli_folders[1])]) == 0
    out = capsys.readouterr().out
    assert f"right only when rejected (row 'unknown'): {CLI_UNSEEN}" in out
    [rejected] = [line for line in out.splitlines() if line.startswith("rejected ")]
    [row] = [line for line in out.splitlines() if line.startswith("unknown ")]
    assert int(rejected.split()[1]) >= 1
    assert row.split()[-1] == "4"  # the four photos of the unseen product


def test_cli_predict_says_a_photo_is_of_no_known_product(cli_model, cli_folders, capsys):
    unseen = sorted(str(path) for path in (cli_folders[1] / CLI_UNSEEN).iterdir())
    assert main(["predict", str(cli_model), *unseen, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    model = fusionrec.load(cli_model)
    np.testing.assert_array_equal(
        [not result["known"] for result in results], model.predict(unseen) == "unknown"
    )
    assert main(["predict", str(cli_model), *unseen]) == 0
    out = capsys.readouterr().out
    rejected = sum(not result["known"] for result in results)
    assert out.count("not a known product; closest: ") == rejected
    assert out.strip().endswith(f"{rejected} of {len(unseen)} photos: not a known product")
