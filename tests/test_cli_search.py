"""``fusionrec index`` and ``fusionrec search``: a folder of photos in, matches out."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import fusionrec
from fusionrec import BagOfVisualWords, FusedClassifier
from fusionrec.cli import main
from fusionrec.cli.model_file import load, save
from fusionrec.search.inverted_file import faiss_available


@pytest.fixture(scope="module")
def catalogue(demo, tmp_path_factory):
    """Twenty demo photos, two products' folders nested one level deep."""
    folder = tmp_path_factory.mktemp("catalogue")
    for label in (0, 5):
        name = demo.target_names[label]
        (folder / name).mkdir()
        for path in [p for p, t in zip(demo.data, demo.target, strict=True) if t == label][:10]:
            shutil.copy(path, folder / name / Path(path).name)
    (folder / ".hidden.jpg").write_bytes(b"ignored")
    return folder


@pytest.fixture(scope="module")
def index_file(catalogue, tmp_path_factory):
    path = tmp_path_factory.mktemp("index") / "index.fusionrec"
    assert main(["index", str(catalogue), "-o", str(path), "--rerank"]) == 0
    return path


def test_index_then_search_finds_the_photo_itself(catalogue, index_file, capsys):
    product = sorted(path.name for path in catalogue.iterdir() if path.is_dir())[0]
    photo = sorted((catalogue / product).iterdir())[0]
    capsys.readouterr()
    assert main(["search", str(index_file), str(photo), "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(photo)
    assert lines[1].split()[1] == f"{product}/{photo.name}"
    assert "verified matches" in lines[1]
    assert len(lines) == 4


def test_search_prints_json(catalogue, index_file, capsys):
    photos = sorted(path for path in catalogue.glob("*/*"))[-2:]
    capsys.readouterr()
    assert main(["search", str(index_file), *map(str, photos), "-k", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    expected = [path.relative_to(catalogue).as_posix() for path in photos]
    assert [result["ids"][0] for result in results] == expected
    assert all(len(result["scores"]) == 2 and "inliers" in result for result in results)


@pytest.mark.skipif(not faiss_available(), reason="--search ivf needs faiss-cpu")
def test_index_with_an_inverted_file_finds_the_photo_itself(catalogue, tmp_path, capsys):
    path = tmp_path / "ivf.fusionrec"
    assert main(["index", str(catalogue), "-o", str(path), "--search", "ivf"]) == 0
    index = load(path, kind="index")[0]
    assert index.search == "ivf"
    assert len(index.centroids_) == 1  # 20 photos: too few to learn two lists of 39 items
    photo = sorted((catalogue / "Granny-Smith").iterdir())[0]
    capsys.readouterr()
    assert main(["search", str(path), str(photo), "-k", "1"]) == 0
    assert f"1. Granny-Smith/{photo.name}" in capsys.readouterr().out


def test_index_says_what_it_did(catalogue, tmp_path, capsys):
    assert main(["index", str(catalogue), "-o", str(tmp_path / "i.fusionrec")]) == 0
    out = capsys.readouterr().out
    assert f"indexed 20 photos of {catalogue}" in out
    assert (tmp_path / "i.fusionrec").is_file()


def _fails_with(capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_errors_are_one_line(catalogue, index_file, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails_with(capsys, ["index", str(empty)], "holds no photos")
    _fails_with(capsys, ["index", str(tmp_path / "nowhere")], "does not exist")
    _fails_with(capsys, ["search", str(tmp_path / "missing.fusionrec"), "x.jpg"], "does not exist")
    model = fusionrec.save(FusedClassifier(), tmp_path / "model.fusionrec")
    _fails_with(capsys, ["search", str(model), "x.jpg"], "not a fusionrec index file")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    _fails_with(capsys, ["search", str(index_file), str(broken)], "broken.jpg")


@pytest.fixture(scope="module")
def tuned_model(catalogue, tmp_path_factory):
    """A deep classifier whose CNN the CLI fine-tuned for one epoch on the catalogue's folders."""
    path = tmp_path_factory.mktemp("tuned") / "tuned.fusionrec"
    argv = ["train", str(catalogue), "-o", str(path), "--branch", "deep", "--fine-tune", "1"]
    assert main(argv) == 0
    return path


def test_a_network_fine_tuned_by_train_serves_the_index(catalogue, tuned_model, tmp_path):
    tuned = load(tuned_model)[0].features_.fitted_extractor("deep")
    assert len(tuned.fine_tuning_history_.epochs) == 1
    index_path = tmp_path / "index.fusionrec"
    argv = ["index", str(catalogue), "-o", str(index_path), "--deep-from", str(tuned_model)]
    assert main(argv) == 0
    index = load(index_path, kind="index")[0]
    photos = sorted(str(path) for path in catalogue.rglob("*.jpg") if path.name[0] != ".")
    served = index.features_.fitted_extractor("deep")
    np.testing.assert_array_equal(served.transform(photos[:2]), tuned.transform(photos[:2]))
    assert index.query(photos[:1], k=1)[0].best == Path(photos[0]).relative_to(catalogue).as_posix()


def test_fine_tuning_and_borrowed_networks_are_checked(catalogue, tuned_model, tmp_path, capsys):
    keypoints_only = ["train", str(catalogue), "--branch", "traditional", "--fine-tune", "1"]
    _fails_with(capsys, keypoints_only, "--fine-tune trains the CNN")
    borrowed = ["index", str(catalogue), "--deep-from", str(tuned_model), "--backbone", "resnet18"]
    _fails_with(capsys, borrowed, "leave out --backbone and --weights")
    photos = sorted(str(path) for path in catalogue.rglob("*.jpg") if path.name[0] != ".")
    keypoints = FusedClassifier("traditional", traditional=BagOfVisualWords(n_words=4))
    labels = [Path(photo).parent.name for photo in photos]
    keypoint_model = save(keypoints.fit(photos, labels), tmp_path / "keypoints.fusionrec")
    no_network = ["index", str(catalogue), "--deep-from", str(keypoint_model)]
    _fails_with(capsys, no_network, "classifies by keypoints alone")
