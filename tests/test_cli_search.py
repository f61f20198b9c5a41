"""``fusionrec index`` and ``fusionrec search``: a folder of photos in, matches out."""

import json
import shutil
from pathlib import Path

import pytest

from fusionrec.cli import main
from fusionrec.cli.model_file import save


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
    path = tmp_path_factory.mktemp("index") / "index.joblib"
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


def test_index_says_what_it_did(catalogue, tmp_path, capsys):
    assert main(["index", str(catalogue), "-o", str(tmp_path / "i.joblib")]) == 0
    out = capsys.readouterr().out
    assert f"indexed 20 photos of {catalogue}" in out
    assert (tmp_path / "i.joblib").is_file()


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
    _fails_with(capsys, ["search", str(tmp_path / "missing.joblib"), "x.jpg"], "does not exist")
    model = save({"not": "an index"}, tmp_path / "model.joblib")
    _fails_with(capsys, ["search", str(model), "x.jpg"], "not a fusionrec-index file")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    _fails_with(capsys, ["search", str(index_file), str(broken)], "broken.jpg")
