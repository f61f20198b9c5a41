"""The console script end to end, on a few demo photos, and its one-line errors."""

import io
import json
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import fusionrec
from fusionrec import FusedClassifier, ProductIndex, __version__, evaluate
from fusionrec.cli import COMMANDS, build_parser, main
from fusionrec.cli.demo import Result, demo_split, explain_table
from fusionrec.cli.errors import CommandError
from fusionrec.cli.model_file import load
from fusionrec.cli.options import extractors
from fusionrec.files import FORMAT_VERSION

REPO = Path(__file__).resolve().parents[1]
PRODUCTS = ("Arla-Standard-Milk", "Granny-Smith", "Tropicana-Apple-Juice")
TINY = ["--n-words", "4", "--pca", "8", "--max-descriptors", "2000"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def folders(tmp_path_factory, demo):
    """Training (6 photos a product, plus one broken file) and test (3 a product) folders."""
    root = tmp_path_factory.mktemp("photos")
    for product in PRODUCTS:
        photos = demo.data[demo.target == demo.target_names.index(product)]
        for part, chosen in (("train", photos[:6]), ("test", photos[6:9])):
            (root / part / product).mkdir(parents=True)
            for photo in chosen:
                shutil.copy(photo, root / part / product)
    (root / "train" / "Granny-Smith" / "broken.jpg").write_text("not a photo")
    return root / "train", root / "test"


@pytest.fixture(scope="module")
def trained(folders, tmp_path_factory):
    """A fused model trained by the CLI with unreadable photos skipped, and its output."""
    path = tmp_path_factory.mktemp("model") / "model.fusionrec"
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["train", str(folders[0]), "-o", str(path), "--on-error", "skip", *TINY])
    assert status == 0
    return path, out.getvalue()


def _fails(capsys, argv):
    """Run a command that must fail; return its one stderr line."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"fusionrec {argv[0]}: error: ")
    return lines[0]


def test_info_lists_versions_detectors_defaults_and_demo_classes(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"fusionrec {__version__}" in out
    assert "scikit-learn" in out
    assert "rootsift" in out
    assert "CNNEmbedder(" in out
    assert "Granny-Smith" in out
    assert "15 photos" in out


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_command_exits_non_zero():
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


# A phrase each command's help must hold; commands added later need at least a usage line.
HELP = {
    "info": "keypoint detectors",
    "demo": "--per-product",
    "train": "--branch",
    "evaluate": "--report",
    "predict": "--top",
    "convert": "NEW",
    "explain": "--label",
}
REGISTERED = [module.__name__.rsplit(".", 1)[1] for module in COMMANDS]


def test_help_lists_every_command(capsys):
    assert set(HELP) <= set(REGISTERED)
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    listed = re.findall(r"^    (\w+)\s", out, flags=re.M)  # a long name's help wraps below it
    assert set(REGISTERED) <= set(listed)


@pytest.mark.parametrize("command", REGISTERED)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: fusionrec {command}")
    assert HELP.get(command, "options:") in out


def test_option_values_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "model.fusionrec", "photo.jpg", "--top", "0"])
    assert exit_info.value.code == 2
    assert "expected a whole number from 1 up; got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--test-size", "1.5"])
    assert "expected a fraction between 0 and 1; got 1.5" in capsys.readouterr().err


def test_demo_split_is_stratified_and_repeatable():
    train, test, y_train, y_test = demo_split(0.3, seed=0, per_product=10)
    assert len(train) == 70
    assert len(test) == 30
    assert set(np.unique(y_test, return_counts=True)[1]) == {3}
    assert set(np.unique(y_train, return_counts=True)[1]) == {7}
    assert not set(train) & set(test)
    again = demo_split(0.3, seed=0, per_product=10)
    assert list(again[1]) == list(test)
    assert list(demo_split(0.3, seed=1, per_product=10)[1]) != list(test)


def test_demo_compares_four_classifiers_and_writes_reports(tmp_path, capsys):
    output = tmp_path / "demo"
    argv = ["demo", "-o", str(output), "--per-product", "4", "--test-size", "0.5", *TINY]
    assert main(argv) == 0
    captured = capsys.readouterr()
    single, fused = captured.err.split("[3/4] fused early")
    assert "[4/4] fused late" in fused
    # progress bars while the single-branch models extract features, none once both are cached
    assert "describing photos" in single
    assert "embedding" in single
    assert "describing photos" not in fused
    assert "embedding" not in fused
    summary = json.loads((output / "comparison.json").read_text())
    lines = captured.out.splitlines()
    for name in ("traditional", "deep", "fused early", "fused late"):
        row = next(line for line in lines if line.startswith(f"{name} "))
        scores = [float(value) for value in row[len(name) :].split()]
        assert len(scores) == 6
        folder = output / name.replace(" ", "-")
        report = json.loads((folder / "report.json").read_text())
        assert report["n_photos"] == 20
        columns = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
        assert scores[:4] == pytest.approx([report[column] for column in columns], abs=5e-4)
        assert summary[name]["accuracy"] == report["accuracy"]
        assert (folder / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)
    explanation = " ".join(captured.out.split())
    assert "20 to train on, 20 held out to test" in explanation
    assert "one photo is worth 0.050 of accuracy" in explanation
    missed = {name: round((1 - summary[name]["accuracy"]) * 20) for name in summary}
    assert f"The traditional branch missed {missed['traditional']} test photo" in explanation
    assert f"and the deep branch {missed['deep']}, " in explanation
    assert f"missed {min(missed['fused early'], missed['fused late'])}: " in explanation


def _row(name: str, missed: set) -> Result:
    return Result(name, evaluate(["a", "b"], ["a", "b"]), 0.0, 0.0, frozenset(missed))


@pytest.mark.parametrize(
    ("early", "late", "verdict"),
    [
        ({3}, {4, 5}, "fewer than either branch alone"),
        ({1, 3}, {4, 5}, "as many as the better branch alone"),
        ({1, 3, 5}, {1, 2, 4}, "more than the better branch alone"),
    ],
)
def test_demo_explanation_compares_the_better_fusion_with_the_better_branch(early, late, verdict):
    results = [
        _row("traditional", {1, 2}),
        _row("deep", {2, 3, 4}),
        _row("fused early", early),
        _row("fused late", late),
    ]
    explanation = " ".join(explain_table(results, n_train=10, n_test=8).split())
    assert (
        "The traditional branch missed 2 test photos and the deep branch 3, 1 of them"
        in explanation
    )
    best = "fused early" if len(early) <= len(late) else "fused late"
    assert (
        f"The better fusion, {best}, missed {min(len(early), len(late))}: {verdict}" in explanation
    )


def test_train_saves_a_model_that_names_the_products(trained, folders):
    path, out = trained
    model, about = load(path)
    assert isinstance(model, FusedClassifier)
    assert list(model.classes_) == list(PRODUCTS)
    assert about["photos"] == 18
    assert f"left out unreadable photo: {folders[0] / 'Granny-Smith' / 'broken.jpg'}" in out
    assert "on 18 photos of 3 products" in out
    plain = fusionrec.load(path)
    photos = sorted(str(photo) for photo in folders[1].rglob("*.jpg"))
    assert list(plain.predict(photos)) == list(model.predict(photos))


def test_evaluate_prints_scores_and_writes_the_report(trained, folders, tmp_path, capsys):
    report_dir = tmp_path / "report"
    assert main(["evaluate", str(trained[0]), str(folders[1]), "--report", str(report_dir)]) == 0
    out = capsys.readouterr().out
    report = json.loads((report_dir / "report.json").read_text())
    assert report["n_photos"] == 9
    assert f"accuracy         {report['accuracy']:.3f}" in out
    assert f"macro F1         {report['macro_f1']:.3f}" in out
    for product in PRODUCTS:
        assert any(line.startswith(product) for line in out.splitlines())
    assert (report_dir / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)


def test_predict_prints_label_and_probability_per_image(trained, folders, capsys):
    photos = sorted(str(photo) for photo in folders[1].rglob("*.jpg"))[:4]
    assert main(["predict", str(trained[0]), *photos]) == 0
    lines = capsys.readouterr().out.splitlines()
    model = load(trained[0])[0]
    probabilities = model.predict_proba(photos)
    labels = model.classes_[probabilities.argmax(axis=1)]
    assert len(lines) == len(photos)
    for line, photo, label, row in zip(lines, photos, labels, probabilities, strict=True):
        image, predicted, probability = line.split()
        assert (image, predicted) == (photo, label)
        # rounded to 4 places, then printed to 3: off by up to 5e-4 + 5e-5
        assert float(probability) == pytest.approx(row.max(), abs=5.5e-4)


def test_predict_json_with_top_k(trained, folders, capsys):
    photos = sorted(str(photo) for photo in folders[1].rglob("*.jpg"))[:2]
    assert main(["predict", str(trained[0]), *photos, "--top", "5", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [result["image"] for result in results] == photos
    for result in results:
        predictions = result["predictions"]
        assert sorted(p["label"] for p in predictions) == sorted(PRODUCTS)  # K capped at 3
        probabilities = [p["probability"] for p in predictions]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1, abs=1e-3)


def test_missing_model_file(capsys, demo_photo):
    line = _fails(capsys, ["predict", "no-such-model.fusionrec", demo_photo])
    assert "'no-such-model.fusionrec' does not exist" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "is not a fusionrec file"),  # a photo given where the model belongs
        (b"", "is not a fusionrec file"),
        (b"model: fused\n", "is not a fusionrec file"),
        ({"weights": [1, 2]}, "is a pickle"),
        (LogisticRegression(), "holds a LogisticRegression, not the FusedClassifier"),
        (ProductIndex(), "holds a ProductIndex, not the FusedClassifier"),
    ],
    ids=["photo", "empty", "text", "pickle", "estimator", "index"],
)
def test_a_file_that_is_not_a_model(content, expected, tmp_path, capsys, demo_photo):
    path = tmp_path / "model.fusionrec"
    if content is None:
        shutil.copy(demo_photo, path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        joblib.dump(content, path)
    else:
        fusionrec.save(content, path)
    line = _fails(capsys, ["predict", str(path), demo_photo])
    assert str(path) in line
    assert expected in line


def test_a_pickled_model_opens_only_with_the_opt_in_or_once_converted(
    trained, folders, tmp_path, capsys
):
    model, about = load(trained[0])
    old = tmp_path / "model.joblib"
    joblib.dump({"format": "fusionrec-model", "version": 1, "model": model, "about": about}, old)
    photo = str(sorted(folders[1].rglob("*.jpg"))[0])
    line = _fails(capsys, ["predict", str(old), photo])
    assert "is a pickle" in line
    assert f"fusionrec convert {old} NEW.fusionrec" in line
    assert main(["predict", str(old), photo, "--allow-pickle"]) == 0
    allowed = capsys.readouterr().out
    new = tmp_path / "model.fusionrec"
    assert main(["convert", str(old), str(new)]) == 0
    assert f"to {new}: a FusedClassifier" in capsys.readouterr().out
    assert load(new)[1] == about
    assert main(["predict", str(new), photo]) == 0
    assert capsys.readouterr().out == allowed


def test_info_describes_a_model_file(trained, capsys):
    assert main(["info", str(trained[0])]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = f"{trained[0]}: a FusedClassifier (model), fusionrec file format {FORMAT_VERSION}"
    assert lines[0] == expected
    assert lines[1].startswith(f"  written by fusionrec {__version__} with numpy ")
    assert "  photos: 18" in lines
    assert f"  products: {', '.join(PRODUCTS)}" in lines


def test_unreadable_image(trained, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    line = _fails(capsys, ["predict", str(trained[0]), str(broken)])
    assert "cannot read image" in line
    assert str(broken) in line


def test_missing_image(trained, tmp_path, capsys):
    line = _fails(capsys, ["predict", str(trained[0]), str(tmp_path / "gone.jpg")])
    assert str(tmp_path / "gone.jpg") in line


def test_unreadable_photo_stops_training_by_default(folders, tmp_path, capsys):
    line = _fails(capsys, ["train", str(folders[0]), "-o", str(tmp_path / "m.fusionrec"), *TINY])
    assert "broken.jpg" in line
    assert not (tmp_path / "m.fusionrec").exists()


def test_folder_without_class_subfolders(tmp_path, capsys, demo_photo):
    shutil.copy(demo_photo, tmp_path)
    line = _fails(capsys, ["train", str(tmp_path), "-o", str(tmp_path / "m.fusionrec")])
    assert f"{str(tmp_path)!r} holds no class sub-folders" in line


def test_missing_folder(trained, tmp_path, capsys):
    line = _fails(capsys, ["evaluate", str(trained[0]), str(tmp_path / "nowhere")])
    assert f"no such folder: {str(tmp_path / 'nowhere')!r}" in line


def test_traceback_flag_shows_the_error_itself(demo_photo):
    with pytest.raises(CommandError, match="does not exist"):
        main(["--traceback", "predict", "no-such-model.fusionrec", demo_photo])


def test_console_errors_are_one_line_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fusionrec", "train", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"fusionrec train: error: no such folder: {str(tmp_path / 'missing')!r}"
    )


def test_help_does_not_load_pytorch():
    """Every command's options are listed without importing PyTorch (seconds of start-up)."""
    script = (
        "import sys\n"
        "from fusionrec.cli import build_parser\n"
        "parser = build_parser()\n"
        "for command in ('train', 'index', 'demo', 'evaluate', 'predict', 'explain', 'search',"
        " 'info',"
        " 'convert'):\n"
        "    parser.parse_known_args([command, 'x', 'y'])\n"
        "sys.exit('torch' in sys.modules)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 0


@pytest.mark.parametrize("command", ["train", "index"])
def test_precision_option_sets_the_deep_branch_precision(command):
    args = build_parser().parse_args([command, "photos/", "--precision", "int8"])
    assert extractors(args)["deep"].precision == "int8"
    default = build_parser().parse_args([command, "photos/"])
    assert extractors(default)["deep"].precision == "float32"
