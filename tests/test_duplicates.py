"""Duplicates: planted copies of catalogue photos are grouped, distinct products are not."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusionrec import ProductIndex
from fusionrec.cli import main
from fusionrec.explanations import duplicate_sheet
from fusionrec.search import DuplicateGroup

PLANTED = (0, 21, 47, 63)  # positions (in the demo set) of the photos copied


def planted_copy(photo, crop: float = 0.88, scale: float = 0.9, quality: int = 80) -> bytes:
    """``photo`` cropped to ``crop`` of each side, resized by ``scale``, saved as a JPEG."""
    image = Image.open(photo).convert("RGB")
    width, height = image.size
    box = (int(width * (1 - crop) / 2), int(height * (1 - crop) / 3))
    image = image.crop((*box, box[0] + int(width * crop), box[1] + int(height * crop)))
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def product(item_id: str) -> str:
    return item_id.split("/")[0]


@pytest.fixture(scope="module")
def catalogue(demo):
    """Five demo photos per product, and copies of four of them, under ids product/name."""
    chosen = [i for i in range(len(demo.data)) if i % 3 == 0 or i in PLANTED]
    names = [demo.target_names[demo.target[i]] for i in chosen]
    photos = [demo.data[i] for i in chosen] + [planted_copy(demo.data[i]) for i in PLANTED]
    ids = [f"{name}/{i}" for name, i in zip(names, chosen, strict=True)]
    ids += [f"{demo.target_names[demo.target[i]]}/copy-of-{i}" for i in PLANTED]
    return photos, ids


@pytest.fixture(scope="module")
def index(catalogue, tmp_path_factory):
    photos, ids = catalogue
    memory = tmp_path_factory.mktemp("features")
    return ProductIndex(rerank="ransac", memory=memory).fit(photos, ids)


@pytest.fixture(scope="module")
def groups(index):
    return index.duplicates()


def test_each_planted_copy_is_grouped_with_its_original(demo, groups):
    for position in PLANTED:
        name = demo.target_names[demo.target[position]]
        original, copy = f"{name}/{position}", f"{name}/copy-of-{position}"
        assert any({original, copy} <= set(group.ids.tolist()) for group in groups)


def test_no_group_mixes_two_products(groups):
    assert groups
    for group in groups:
        assert len({product(item) for item in group.ids}) == 1


def test_groups_are_joined_by_their_verified_pairs(groups):
    for group in groups:
        assert len(group) >= 2
        assert set(group.pairs.ravel().tolist()) == set(group.ids.tolist())
        assert np.all(group.inliers >= 20)
        assert np.all(group.similarities >= 0.6)
    members = [item for group in groups for item in group.ids.tolist()]
    assert len(members) == len(set(members))  # every item is in one group at most
    sizes = [len(group) for group in groups]
    assert sizes == sorted(sizes, reverse=True)


def test_stricter_thresholds_keep_fewer_pairs(index, groups):
    strict = index.duplicates(min_inliers=int(max(g.inliers.max() for g in groups)) + 1)
    assert strict == []
    loose = index.duplicates(max_descriptor_distance=None, min_inlier_share=0)
    assert sum(len(g.pairs) for g in loose) >= sum(len(g.pairs) for g in groups)


def test_groups_convert_to_json(groups):
    decoded = json.loads(json.dumps([group.to_dict() for group in groups]))
    assert decoded[0]["ids"] == groups[0].ids.tolist()
    assert decoded[0]["pairs"][0]["inliers"] == int(groups[0].inliers[0])


def test_an_index_without_keypoints_is_refused(catalogue, index):
    plain = ProductIndex(memory=index.memory).fit(*catalogue)
    with pytest.raises(ValueError, match="rerank='ransac'"):
        plain.duplicates()


@pytest.mark.parametrize(
    ("option", "value"),
    [("n_neighbors", 0), ("min_inliers", 3), ("min_similarity", 1.5), ("min_inlier_share", 2)],
)
def test_an_option_out_of_range_is_named(index, option, value):
    with pytest.raises(ValueError, match=f"{option} must be"):
        index.duplicates(**{option: value})


def test_a_contact_sheet_shows_every_member(catalogue, groups):
    photos, ids = catalogue
    group = groups[0]
    members = [photos[ids.index(item)] for item in group.ids]
    sheet = duplicate_sheet(group, members)
    assert len(sheet.images) == len(group)
    assert sheet.to_png().startswith(b"\x89PNG")
    figure = sheet.render(columns=2)
    assert len(figure.axes) == len(group)
    with pytest.raises(ValueError, match="need one each"):
        duplicate_sheet(group, members[:1])


def test_a_group_without_pairs_is_empty_json():
    group = DuplicateGroup(
        np.array([], dtype=object),
        np.empty((0, 2), dtype=object),
        np.empty(0, np.float32),
        np.empty(0, np.int64),
    )
    assert group.to_dict() == {"ids": [], "pairs": []}


@pytest.fixture(scope="module")
def folder(demo, tmp_path_factory):
    """Two products' first four photos, and a copy of the first under another name."""
    root = tmp_path_factory.mktemp("catalogue")
    for label in (0, 3):
        name = demo.target_names[label]
        (root / name).mkdir()
        for path in demo.data[demo.target == label][:4]:
            shutil.copy(path, root / name / Path(path).name)
    first = demo.data[demo.target == 0][0]
    (root / demo.target_names[0] / "copy.jpg").write_bytes(planted_copy(first))
    return root


def test_the_command_prints_groups_and_draws_sheets(demo, folder, tmp_path, capsys):
    index_file = tmp_path / "index.fusionrec"
    assert main(["index", str(folder), "-o", str(index_file), "--rerank"]) == 0
    out = tmp_path / "sheets"
    capsys.readouterr()
    assert main(["duplicates", str(index_file), "--out", str(out), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    name = demo.target_names[0]
    original = f"{name}/{Path(demo.data[demo.target == 0][0]).name}"
    assert any({original, f"{name}/copy.jpg"} <= set(result["ids"]) for result in results)
    drawn = sorted(out.glob("*.png"))
    expected = [f"group-{number:03d}.png" for number in range(1, len(results) + 1)]
    assert [path.name for path in drawn] == expected
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in drawn)
    assert main(["duplicates", str(index_file), "--no-sheets"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("of 9 photos)")


def test_the_command_explains_a_missing_keypoints_or_photo_folder(folder, tmp_path, capsys):
    plain = tmp_path / "plain.fusionrec"
    assert main(["index", str(folder), "-o", str(plain)]) == 0
    capsys.readouterr()
    assert main(["duplicates", str(plain)]) == 1
    assert "fusionrec index --rerank" in capsys.readouterr().err
    reranked = tmp_path / "reranked.fusionrec"
    assert main(["index", str(folder), "-o", str(reranked), "--rerank"]) == 0
    capsys.readouterr()
    assert main(["duplicates", str(reranked), "--photos", str(tmp_path / "gone")]) == 1
    assert "--photos" in capsys.readouterr().err
