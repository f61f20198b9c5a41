"""Hostile and damaged files: each gives a clear error, and none runs any code.

Every hostile payload would create the file ``canary`` if any of it ran (a shell command,
a pickled call); each test checks that it was not created.
"""

import io
import json
import os
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

import fusionrec
from fusionrec import BagOfVisualWords, CNNEmbedder
from fusionrec.files import FORMAT_VERSION, ModelFileError


class Canary:
    """Pickles to a call that creates the canary file when unpickled."""

    def __init__(self, path):
        self.path = Path(path)

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "code from a hostile file ran"


@pytest.fixture(scope="module")
def words_file(demo, tmp_path_factory):
    """A valid file: a small fitted BagOfVisualWords."""
    words = BagOfVisualWords(n_words=4, max_side=128, random_state=0).fit(demo.data[:3])
    return fusionrec.save(words, tmp_path_factory.mktemp("valid") / "words.fusionrec")


@pytest.fixture(scope="module")
def network_file(demo, tmp_path_factory):
    """A valid file holding network weights: a small CNN."""
    torch.manual_seed(0)
    embedder = CNNEmbedder("small_cnn", weights=None, runtime="torch").fit(demo.data[:1])
    return fusionrec.save(embedder, tmp_path_factory.mktemp("valid") / "cnn.fusionrec")


def rebuilt(source, target, *, manifest=None, replace=None, drop=(), add=()):
    """A copy of the zip ``source`` with its manifest changed, entries replaced or dropped."""
    replace = replace or {}
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            if info.filename in drop:
                continue
            data = replace.get(info.filename, old.read(info.filename))
            if info.filename == "manifest.json" and manifest is not None:
                data = json.dumps(manifest(json.loads(data)))
            new.writestr(info.filename, data)
        for info, data in add:
            new.writestr(info, data)
    return target


def first_entry(path, folder):
    with zipfile.ZipFile(path) as archive:
        return next(name for name in archive.namelist() if name.startswith(folder))


def opening_fails(path, *expected):
    with pytest.raises(ModelFileError) as error:
        fusionrec.load(path)
    for phrase in expected:
        assert phrase in str(error.value)
    assert str(path) in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("name", ["os.system", "subprocess.Popen", "builtins.eval"])
@pytest.mark.parametrize("kind", ["estimator", "record", "object"])
def test_a_class_outside_the_allow_list(name, kind, words_file, canary, tmp_path):
    command = f"touch {canary}"
    hostile = {"type": kind, "class": name, "params": {"args": command}, "state": {}}
    hostile["fields"] = {"args": command}

    def planted(manifest):
        manifest["estimator"]["state"]["codebook_"] = hostile
        return manifest

    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", manifest=planted)
    opening_fails(path, f"names the class {name!r}", "not on fusionrec's allow-list")


def test_a_top_level_class_outside_the_allow_list(words_file, canary, tmp_path):
    def planted(manifest):
        manifest["class"] = "os.system"
        manifest["estimator"] = {
            "type": "estimator",
            "class": "os.system",
            "params": {"command": f"touch {canary}"},
        }
        return manifest

    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", manifest=planted)
    opening_fails(path, "'os.system'", "allow-list")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": "eval", "code": "open('canary', 'w')"}, "unknown type 'eval'"),
        ({"type": "ref", "id": 99}, "not read before it"),
        ({"type": "numpy", "dtype": "O", "value": "x"}, "is not a numpy number"),
        ({"weird": 1}, "is not a value fusionrec writes"),
    ],
    ids=["unknown-type", "dangling-reference", "object-scalar", "untyped"],
)
def test_a_value_of_no_known_type(change, expected, words_file, canary, tmp_path):
    def planted(manifest):
        manifest["estimator"]["state"]["n_descriptors_"] = change
        return manifest

    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", manifest=planted)
    opening_fails(path, expected)


@pytest.mark.parametrize(
    ("section", "name", "expected"),
    [
        ("state", "transform", "would replace BagOfVisualWords's own attributes ['transform']"),
        ("state", "__dict__", "would replace BagOfVisualWords's own attributes ['__dict__']"),
        ("state", "a.b", "names the attribute 'a.b', not a plain name"),
        ("params", "command", "parameters it does not have: ['command']"),
    ],
)
def test_an_attribute_that_is_not_the_estimators(section, name, expected, words_file, tmp_path):
    def planted(manifest):
        manifest["estimator"][section][name] = "touch canary"
        return manifest

    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", manifest=planted)
    opening_fails(path, expected)


def test_an_object_dtype_array(words_file, canary, tmp_path):
    payload = io.BytesIO()
    np.save(payload, np.array([Canary(canary)], dtype=object), allow_pickle=True)
    entry = first_entry(words_file, "arrays/")
    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", replace={entry: payload.getvalue()})
    opening_fails(path, f"array {entry!r} of Python objects", "only pickle can read")


def test_an_array_header_that_lies_about_its_size(words_file, tmp_path):
    entry = first_entry(words_file, "arrays/")
    with zipfile.ZipFile(words_file) as archive:
        data = archive.read(entry)
    array = np.load(io.BytesIO(data))
    lying = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        lying, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)}
    )
    lying.write(array.tobytes())
    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", replace={entry: lying.getvalue()})
    opening_fails(path, "claims shape (1000000000,)")


@pytest.mark.parametrize("name", ["../escaped.npy", "/etc/escaped.npy", "arrays/../../x.npy"])
def test_an_entry_named_outside_the_archive(name, words_file, tmp_path):
    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", add=[(name, b"x")])
    opening_fails(path, f"an entry named {name!r}, a path outside the archive")


def test_a_symbolic_link_pointing_outside_the_archive(words_file, tmp_path):
    link = zipfile.ZipInfo("arrays/link.npy")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", add=[(link, "../../etc/passwd")])
    opening_fails(path, "'arrays/link.npy' as a symbolic link")


def test_a_compressed_entry(words_file, tmp_path):
    target = tmp_path / "deflated.fusionrec"
    with zipfile.ZipFile(words_file) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info.filename), zipfile.ZIP_DEFLATED)
    opening_fails(target, "compressed or encrypted")


def lying_safetensors(data: bytes, grow: int) -> bytes:
    """``data`` with its first tensor's shape (and so its size) grown ``grow`` times."""
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    name = next(key for key, tensor in header.items() if key != "__metadata__" and tensor["shape"])
    header[name]["shape"][0] *= grow
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + length :]


@pytest.mark.parametrize("grow", [2, 10**6])
def test_a_safetensors_header_that_lies_about_sizes(grow, network_file, tmp_path):
    entry = first_entry(network_file, "networks/")
    with zipfile.ZipFile(network_file) as archive:
        data = archive.read(entry)
    path = rebuilt(
        network_file, tmp_path / "hostile.fusionrec", replace={entry: lying_safetensors(data, grow)}
    )
    opening_fails(path, "has unreadable weights (safetensors:")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_file(keep, network_file, tmp_path):
    data = network_file.read_bytes()
    path = tmp_path / "truncated.fusionrec"
    path.write_bytes(data[: int(len(data) * keep)])
    opening_fails(path, "is damaged or incomplete (truncated?)")


def test_a_missing_part(words_file, tmp_path):
    entry = first_entry(words_file, "arrays/")
    path = rebuilt(words_file, tmp_path / "missing.fusionrec", drop=[entry])
    opening_fails(path, f"lacks the part {entry!r}", "Save the model again")


def test_a_file_from_a_newer_fusionrec(words_file, tmp_path):
    def future(manifest):
        manifest["format_version"] = FORMAT_VERSION + 1
        manifest["fusionrec"] = "9.0"
        manifest["estimator"] = {"type": "from-the-future"}
        return manifest

    path = rebuilt(words_file, tmp_path / "future.fusionrec", manifest=future)
    opening_fails(
        path,
        f"fusionrec 9.0 in file format {FORMAT_VERSION + 1}",
        "pip install --upgrade fusionrec",
    )


def paths(value, prefix=()):
    """The path (keys and indices) of every value inside a JSON value."""
    yield prefix
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        yield from paths(item, (*prefix, key))


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def test_every_manifest_value_changed_opens_or_gives_a_clear_error(words_file, tmp_path):
    """Each value of a real manifest, replaced by a value of another kind: the file opens, or
    ModelFileError says why; nothing else escapes."""
    with zipfile.ZipFile(words_file) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    tree = manifest["estimator"]
    substitutes = [None, 7, "x", [], {}, {"type": "ref", "id": []}, {"type": "array", "part": 3}]
    outcomes = {"opened": 0, "refused": 0}
    for path in paths(tree):
        for substitute in substitutes:
            changed = {**manifest, "estimator": replaced(tree, path, substitute)}
            target = rebuilt(
                words_file, tmp_path / "changed.fusionrec", manifest=lambda _, new=changed: new
            )
            try:
                fusionrec.load(target)
                outcomes["opened"] += 1
            except ModelFileError:
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0
    assert outcomes["opened"] > 0


def test_values_nested_too_deeply(words_file, tmp_path):
    def planted(manifest):
        manifest["estimator"]["state"]["n_descriptors_"] = json.loads("[" * 700 + "]" * 700)
        return manifest

    path = rebuilt(words_file, tmp_path / "nested.fusionrec", manifest=planted)
    opening_fails(path, "nested too deeply")


def test_a_zip_that_fusionrec_did_not_write(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    opening_fails(path, "without manifest.json")


def test_a_pickle_is_not_opened_without_the_opt_in(canary, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump({"format": "fusionrec-model", "model": Canary(canary)}, path)
    opening_fails(path, "is a pickle", "runs whatever code it holds", "fusionrec convert")


def test_a_photo_is_not_a_model(demo_photo):
    opening_fails(Path(demo_photo), "is not a fusionrec file")


def test_untrusted_types_in_a_classifier(words_file, canary, tmp_path):
    skops = pytest.importorskip("skops.io")
    from sklearn.preprocessing import FunctionTransformer

    payload = skops.dumps(FunctionTransformer(func=os.system, kw_args={"command": "x"}))

    def planted(manifest):
        manifest["estimator"]["state"]["codebook_"] = {"type": "skops", "part": "c/1.skops"}
        return manifest

    path = rebuilt(
        words_file, tmp_path / "hostile.fusionrec", manifest=planted, add=[("c/1.skops", payload)]
    )
    message = opening_fails(path, "which fusionrec does not trust")
    assert "system" in message


def test_opening_a_hostile_file_on_the_command_line_is_one_line(words_file, canary, tmp_path):
    def planted(manifest):
        manifest["estimator"]["class"] = "subprocess.Popen"
        manifest["estimator"]["params"] = {"args": ["touch", str(canary)]}
        return manifest

    path = rebuilt(words_file, tmp_path / "hostile.fusionrec", manifest=planted)
    done = subprocess.run(
        [sys.executable, "-m", "fusionrec", "predict", str(path), "photo.jpg"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "'subprocess.Popen', which is not on fusionrec's allow-list" in done.stderr
