"""``fusionrec explain`` and ``fusionrec search --explain``: the pictures, from the command line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fusionrec import BagOfVisualWords, FusedClassifier
from fusionrec.cli import main
from fusionrec.cli.model_file import load, save

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PRODUCTS = ("Arla-Standard-Milk", "Granny-Smith", "Tropicana-Apple-Juice")


@pytest.fixture(scope="module")
def model_path(demo, tmp_path_factory):
    """A fused model of three products, saved as 'fusionrec train' saves one."""
    chosen = np.isin(np.array(demo.target_names)[demo.target], PRODUCTS)
    photos, labels = demo.data[chosen], np.array(demo.target_names)[demo.target[chosen]]
    keypoints = BagOfVisualWords("rootsift", n_words=8, max_side=160, random_state=0)
    model = FusedClassifier(traditional=keypoints, random_state=0).fit(photos[::3], labels[::3])
    return save(model, tmp_path_factory.mktemp("model") / "model.joblib")


@pytest.fixture(scope="module")
def apple(demo):
    return demo.data[demo.target_names.index("Granny-Smith") * 15 + 1]


def test_explain_prints_the_shares_and_writes_the_picture(model_path, apple, tmp_path, capsys):
    output = tmp_path / "why.png"
    assert main(["explain", str(model_path), apple, "-o", str(output)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{apple}: Granny-Smith, probability ")
    assert lines[1].startswith("  score ")
    assert "traditional" in lines[1]
    assert "deep" in lines[1]
    assert lines[2] == f"picture: {output}"
    assert output.read_bytes().startswith(PNG_MAGIC)


def test_explain_another_product_as_json(model_path, apple, tmp_path, capsys):
    output = tmp_path / "why_not.png"
    assert (
        main(
            ["explain", str(model_path), apple, "-o", str(output), "--label", "Arla-Standard-Milk"]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "explain",
                str(model_path),
                apple,
                "-o",
                str(output),
                "--label",
                "Arla-Standard-Milk",
                "--json",
            ]
        )
        == 0
    )
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["label"] == "Arla-Standard-Milk"
    assert numbers["predicted"] == "Granny-Smith"
    [decision] = load(model_path)[0].decision_function([apple])
    score = sum(numbers["shares"].values()) + numbers["intercept"]
    assert score == pytest.approx(decision[PRODUCTS.index("Arla-Standard-Milk")], abs=1e-4)


def test_explain_names_an_unknown_product(model_path, apple, tmp_path, capsys):
    status = main(
        ["explain", str(model_path), apple, "-o", str(tmp_path / "x.png"), "--label", "Tea"]
    )
    assert status == 1
    assert "knows no product 'Tea'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def catalogue(demo, tmp_path_factory):
    """Five photos of each of two products."""
    folder = tmp_path_factory.mktemp("catalogue")
    for name in PRODUCTS[:2]:
        (folder / name).mkdir()
        for path in demo.data[demo.target == demo.target_names.index(name)][:5]:
            shutil.copy(path, folder / name / Path(path).name)
    return folder


def test_search_draws_each_verified_match(catalogue, tmp_path, capsys):
    index_path = tmp_path / "index.joblib"
    assert main(["index", str(catalogue), "-o", str(index_path), "--rerank"]) == 0
    photo = sorted((catalogue / "Granny-Smith").iterdir())[0]
    capsys.readouterr()
    drawn = tmp_path / "matches"
    status = main(
        ["search", str(index_path), str(photo), "-k", "3", "--explain", str(drawn), "--json"]
    )
    assert status == 0
    [result] = json.loads(capsys.readouterr().out)
    verified = [rank for rank, inliers in enumerate(result["inliers"]) if inliers]
    assert result["pictures"] == [
        str(drawn / f"01-{photo.stem}-{rank + 1}.png") for rank in verified
    ]
    assert verified[0] == 0  # the photo itself, with its keypoints verified
    assert all(Path(picture).read_bytes().startswith(PNG_MAGIC) for picture in result["pictures"])


def test_search_explain_needs_a_reranked_index(catalogue, tmp_path, capsys):
    index_path = tmp_path / "plain.joblib"
    assert main(["index", str(catalogue), "-o", str(index_path)]) == 0
    photo = sorted((catalogue / "Granny-Smith").iterdir())[0]
    capsys.readouterr()
    assert main(["search", str(index_path), str(photo), "--explain", str(tmp_path)]) == 1
    assert "--rerank" in capsys.readouterr().err
