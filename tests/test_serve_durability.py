"""Acknowledged catalogue changes survive a crash: the change log, replay, compaction, SIGKILL.

The last test starts the real server (``python -m fusionrec serve``), streams adds, kills it
with SIGKILL in the middle, restarts it and finds every acknowledged change.
"""

import copy
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_helpers import catalogue_of, fit_index, free_port, start_server, wait_until_healthy

from fusionrec.cli import main
from fusionrec.cli.model_file import load, save
from fusionrec.serve import Change, ChangeLog, replace_durably
from fusionrec.serve.catalogue import Catalogue
from fusionrec.serve.photos import CataloguePhotos


@pytest.fixture(scope="module")
def catalogue(demo):
    return catalogue_of(demo)


@pytest.fixture(scope="module")
def index(catalogue, tmp_path_factory):
    """Fitted once, without re-ranking keypoints; no test changes it."""
    photos, ids, _, _ = catalogue
    return fit_index(photos, ids, tmp_path_factory.mktemp("features"), rerank=None)


@pytest.fixture
def index_file(index, tmp_path):
    return save(index, tmp_path / "index" / "shop.idx", kind="index")


def test_a_change_log_reads_back_what_was_appended(tmp_path):
    with ChangeLog(tmp_path / "log") as log:
        log.append([Change("add", "tea", b"\x00photo\n\xff"), Change("remove", 7)])
        log.append([Change("add", "milk", b"")])
    with ChangeLog(tmp_path / "log") as log:
        assert log.changes == [
            Change("add", "tea", b"\x00photo\n\xff"),
            Change("remove", 7),
            Change("add", "milk", b""),
        ]


@pytest.mark.parametrize("damage", ["cut short", "flipped byte"])
def test_an_unfinished_last_record_is_dropped_and_later_ones_follow_the_last_whole_one(
    tmp_path, damage
):
    path = tmp_path / "log"
    with ChangeLog(path) as log:
        log.append([Change("add", "tea", b"photo-1")])
    whole = path.stat().st_size
    record = Change("add", "milk", b"photo-2").encode()
    record = record[:-3] if damage == "cut short" else record[:-1] + bytes([record[-1] ^ 1])
    with open(path, "ab") as file:
        file.write(record)
    with ChangeLog(path) as log:
        assert [change.item_id for change in log.changes] == ["tea"]
        assert path.stat().st_size == whole
        log.append([Change("remove", "tea")])
    with ChangeLog(path) as log:
        assert [(c.action, c.item_id) for c in log.changes] == [("add", "tea"), ("remove", "tea")]


def test_one_process_at_a_time_holds_a_change_log(tmp_path):
    with ChangeLog(tmp_path / "log"), pytest.raises(RuntimeError, match="another process"):
        ChangeLog(tmp_path / "log").open()


def test_a_file_that_is_not_a_change_log_is_refused(tmp_path):
    (tmp_path / "log").write_bytes(b"something else entirely\n")
    with pytest.raises(ValueError, match="not a fusionrec change log"):
        ChangeLog(tmp_path / "log").open()


def test_replace_durably_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "index"
    target.write_bytes(b"old")
    replace_durably(target, lambda partial: partial.write_bytes(b"new"))
    assert target.read_bytes() == b"new"

    def fail(partial):
        partial.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_durably(target, fail)
    assert target.read_bytes() == b"new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["index"]


def test_replaying_onto_an_index_that_holds_the_changes_changes_nothing(index, catalogue, tmp_path):
    """The log can outlive a compaction (a crash between the two): replaying it must be safe."""
    _, ids, queries, _ = catalogue
    changes = [
        Change("add", "new/a", Path(queries[0]).read_bytes()),
        Change("remove", ids[0]),
        Change("add", "new/b", Path(queries[1]).read_bytes()),
        Change("remove", "new/a"),
    ]
    with ChangeLog(tmp_path / "log") as log:
        log.append(changes)
    photos = CataloguePhotos(None, tmp_path / "photos", side=64)
    with ChangeLog(tmp_path / "log") as log:
        replayed = Catalogue(copy.deepcopy(index), photos=photos, log=log)
        once = replayed.index.ids_.tolist()
        twice = Catalogue(replayed.index, photos=photos, log=log).index.ids_.tolist()
    assert once == [*ids[1:], "new/b"]
    assert twice == once
    assert photos.has("new/b")
    assert not photos.has("new/a")


def test_serve_refuses_a_missing_index_or_a_bad_token_in_one_line(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.idx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    assert main(["serve", str(tmp_path / "missing.idx"), "--token-file", str(token_file)]) == 1
    error = capsys.readouterr().err
    assert "token must be 16 to 512 printable ASCII characters" in error
    assert "s3cret" not in error
    with pytest.raises(SystemExit):
        main(["serve", "index", "--port", "0"])
    assert "port number" in capsys.readouterr().err


def stream_adds(url: str, photos: list[str], acknowledged: list[str], failures: list[str]):
    """Add photos under new ids until the server stops answering; note each acknowledged id."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for number in range(10_000):
            item_id = f"stream/{threading.get_ident()}/{number}"
            photo = Path(photos[number % len(photos)]).read_bytes()
            try:
                answer = client.post(
                    "/items", files={"file": ("p.jpg", photo)}, data={"id": item_id}
                )
            except httpx.TransportError:  # the server is gone
                return
            if answer.status_code != 201:
                failures.append(answer.text)
                return
            acknowledged.append(item_id)


def test_acknowledged_changes_survive_sigkill_and_the_index_file_stays_readable(
    index_file, catalogue, tmp_path
):
    _, ids, queries, _ = catalogue
    log, port = tmp_path / "server.log", free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(str(index_file), "--no-access-log", port=port, log=log)
    try:
        wait_until_healthy(server, url, log)
        assert httpx.delete(f"{url}/items/{ids[0]}").status_code == 200
        acknowledged: list[str] = []
        failures: list[str] = []
        streams = [
            threading.Thread(target=stream_adds, args=(url, queries, acknowledged, failures))
            for _ in range(2)
        ]
        for stream in streams:
            stream.start()
        while len(acknowledged) < 8 and not failures and server.poll() is None:
            time.sleep(0.01)
        server.kill()  # SIGKILL: no chance to flush, close or clean up
        server.wait()
        for stream in streams:
            stream.join()
    finally:
        server.kill()
    assert failures == []
    assert len(acknowledged) >= 8

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    restarted = start_server(str(index_file), "--no-access-log", port=port, log=log)
    try:
        wait_until_healthy(restarted, url, log)
        items = httpx.get(f"{url}/health").json()["items"]
        missing = [
            item_id
            for item_id in acknowledged
            if httpx.get(f"{url}/items/{item_id}/photo").status_code != 200
        ]
        removed = httpx.get(f"{url}/items/{ids[0]}/photo").status_code
    finally:
        restarted.terminate()
        restarted.wait(30)
    assert missing == []
    assert removed == 404
    in_flight = 2  # one unacknowledged add per stream may have reached the log
    assert len(ids) - 1 + len(acknowledged) <= items <= len(ids) - 1 + len(acknowledged) + in_flight
    compacted, _ = load(index_file, kind="index")
    held = set(compacted.ids_.tolist())
    assert set(acknowledged) <= held
    assert ids[0] not in held
    assert len(held) == items
    leftovers = [
        path.name for path in index_file.parent.iterdir() if path.name.endswith(".partial")
    ]
    assert leftovers == []


def test_catalogue_photos_remembered_where_they_are_follow_keep_and_forget(tmp_path, demo):
    folder = tmp_path / "catalogue"
    folder.mkdir()
    (folder / "shelf.jpg").write_bytes(Path(demo.data[0]).read_bytes())
    photos = CataloguePhotos(folder, tmp_path / "added", side=64)
    photo = Path(demo.data[1]).read_bytes()
    assert [photos.has("shelf.jpg") for _ in range(2)] == [True, True]  # then remembered
    (tmp_path / "outside.jpg").write_bytes(Path(demo.data[0]).read_bytes())
    assert not photos.has("../outside.jpg")
    assert not photos.has("new")
    photos.keep("new", photo)
    assert photos.has("new")
    photos.forget("new")
    assert not photos.has("new")
    assert photos.thumbnail("new") is None
    photos.keep("new", photo)
    assert photos.thumbnail("new") is not None
