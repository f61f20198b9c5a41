import json

import numpy as np
import pytest
from PIL import Image

from fusionrec.evaluation import evaluate


def test_numbers_match_a_hand_count():
    truth = ["milk", "milk", "milk", "kiwi", "kiwi", "lemon"]
    predicted = ["milk", "milk", "kiwi", "kiwi", "lemon", "lemon"]
    report = evaluate(truth, predicted)
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.labels == ["kiwi", "lemon", "milk"]
    assert report.per_class["milk"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    assert report.per_class["kiwi"]["precision"] == pytest.approx(0.5)
    assert report.macro_recall == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    assert report.confusion == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_dropped_predictions_count_as_wrong():
    report = evaluate(np.array([1, 2, 2]), np.array([1, None, 2], dtype=object))
    assert report.accuracy == pytest.approx(2 / 3)
    assert report.per_class[2]["recall"] == pytest.approx(0.5)
    assert report.labels == [1, 2]


def test_integer_labels_sort_as_numbers():
    assert evaluate([10, 2, 1], [10, 2, 1]).labels == [1, 2, 10]


def test_writes_json_and_a_png(tmp_path):
    report = evaluate(["a", "b", "b"], ["a", "b", "a"], output_dir=tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["accuracy"] == pytest.approx(report.accuracy)
    assert saved["confusion"] == [[1, 0], [1, 1]]
    with Image.open(tmp_path / "out" / "confusion_matrix.png") as plot:
        assert plot.format == "PNG"
        assert min(plot.size) > 300


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="equally long"):
        evaluate([1, 2], [1])
    with pytest.raises(ValueError, match="empty"):
        evaluate([], [])
