"""The service's HTTP API, in process: every endpoint, every bad input, batching and the backlog."""

import asyncio
import copy
import io
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_helpers import catalogue_of, demo_root, fit_index, fit_model

import fusionrec
from fusionrec.serve import Batcher, ChangeLog, Overloaded, ServeSettings, create_app
from fusionrec.serve.catalogue import Catalogue

TOKEN = "a-token-of-twenty-chars"
WRITE = {"Authorization": f"Bearer {TOKEN}"}
UPLOAD_LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def catalogue(demo):
    return catalogue_of(demo)


@pytest.fixture(scope="module")
def index(catalogue, memory):
    """Fitted once; no test changes it (apps get a copy)."""
    photos, ids, _, _ = catalogue
    return fit_index(photos, ids, memory)


@pytest.fixture(scope="module")
def model(catalogue, memory):
    photos, ids, _, _ = catalogue
    return fit_model(photos, ids, memory)


@pytest.fixture(scope="module")
def client(index, model, demo):
    """A read-mostly server with a classifier, a token and a small upload limit."""
    settings = ServeSettings(
        photo_folder=demo_root(demo), token=TOKEN, max_upload_bytes=UPLOAD_LIMIT, batch_window=0
    )
    app = create_app(copy.deepcopy(index), model=model, settings=settings)
    with TestClient(app) as client:
        yield client


def writable_app(index, folder):
    """A server of its own, with a change log in ``folder``, no token, no classifier."""
    return create_app(copy.deepcopy(index), settings=ServeSettings(state_folder=folder))


@pytest.fixture
def writable(index, tmp_path):
    with TestClient(writable_app(index, tmp_path)) as client:
        yield client


def upload(path_or_bytes, content_type="image/jpeg", name="photo.jpg"):
    if isinstance(path_or_bytes, bytes):
        return {"file": (name, path_or_bytes, content_type)}
    return {"file": (name, Path(path_or_bytes).read_bytes(), content_type)}


def product(item_id):
    return item_id.split("/")[0]


def test_search_finds_what_the_index_finds_and_the_right_product(client, catalogue, index):
    _, _, queries, products = catalogue
    found = [
        client.post("/search", params={"k": 3}, files=upload(query)).json() for query in queries
    ]
    direct = copy.copy(index).query(queries, k=3)
    assert [[hit["id"] for hit in answer["results"]] for answer in found] == [
        matches.ids.tolist() for matches in direct
    ]
    right = [
        product(answer["results"][0]["id"]) == name
        for answer, name in zip(found, products, strict=True)
    ]
    assert np.mean(right) >= 0.8  # chance is 0.1


def test_reranked_hits_carry_verified_matches_to_draw(client, catalogue):
    photos, ids, _, _ = catalogue
    answer = client.post("/search?k=2&rerank=true", files=upload(photos[0])).json()
    assert answer["reranked"] is True
    best = answer["results"][0]
    assert best["id"] == ids[0]
    assert best["inliers"] == len(best["matches"]) > 0
    matches = np.array(best["matches"])
    assert matches.shape[1] == 4
    assert matches.min() >= 0
    assert matches.max() <= 1
    np.testing.assert_allclose(matches[:, :2], matches[:, 2:], atol=2e-3)  # the photo itself


def test_search_without_reranking_has_no_matches(client, catalogue):
    answer = client.post("/search?rerank=false&k=4", files=upload(catalogue[2][0])).json()
    assert answer["reranked"] is False
    assert len(answer["results"]) == 4
    assert all("matches" not in hit for hit in answer["results"])


def test_hits_link_to_their_photos(client, catalogue):
    photos, ids, _, _ = catalogue
    [hit] = client.post("/search?k=1", files=upload(photos[5])).json()["results"]
    assert hit["id"] == ids[5]
    photo = client.get(hit["photo"])
    assert photo.status_code == 200
    assert photo.headers["content-type"] == "image/jpeg"
    width, height = Image.open(photos[5]).size
    thumbnail = Image.open(io.BytesIO(photo.content)).size
    assert max(thumbnail) == min(max(width, height), ServeSettings().thumbnail_side)
    assert thumbnail[0] / thumbnail[1] == pytest.approx(width / height, rel=0.01)


def test_classify_answers_as_the_model_with_shares_that_add_up(client, catalogue, model):
    _, _, queries, _ = catalogue
    answer = client.post("/classify?top=3", files=upload(queries[2])).json()
    probabilities = model.predict_proba([queries[2]])[0]
    best = int(np.argmax(probabilities))
    assert answer["products"][0]["label"] == model.classes_[best]
    assert answer["products"][0]["probability"] == pytest.approx(probabilities[best], abs=1e-4)
    assert len(answer["products"]) == 3
    shares = answer["shares"]
    assert shares["fusion"] == "early"
    assert sum(shares["parts"].values()) == pytest.approx(shares["decision"], abs=1e-3)
    decision = model.decision_function([queries[2]])[0, best]
    assert shares["decision"] == pytest.approx(decision, abs=1e-3)


def test_late_fusion_shares_are_each_branch_probabilities_and_weight(catalogue, index, memory):
    photos, ids, queries, _ = catalogue
    late = fit_model(photos, ids, memory, fusion="late")
    with TestClient(create_app(copy.copy(index), model=late)) as client:
        answer = client.post("/classify?top=2", files=upload(queries[0])).json()
    shares = answer["shares"]
    assert shares["fusion"] == "late"
    assert shares["weights"]["traditional"] == pytest.approx(late.late_weight_, abs=1e-4)
    assert sum(shares["weights"].values()) == pytest.approx(1.0)
    for branch, weight in shares["weights"].items():
        expected = weight * np.log(shares["probabilities"][branch])
        assert shares["scores"][branch] == pytest.approx(expected, abs=1e-3)


def test_health_says_what_the_server_offers(client, catalogue):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["items"] == len(catalogue[1])
    assert health["rerank"] is True
    assert health["classify"] is True


def test_metrics_count_requests_and_batches(client, catalogue):
    client.post("/search?k=1", files=upload(catalogue[2][0]))
    text = client.get("/metrics").text
    assert 'fusionrec_requests_total{method="POST",route="/search",status="200"}' in text
    assert 'fusionrec_batch_size_count{kind="search"}' in text
    assert f"fusionrec_catalogue_items {float(len(catalogue[1]))}" in text


def test_the_page_and_the_api_description_are_served(client):
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="file-input"' in page.text
    assert client.get("/static/page.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/search", "/classify", "/items", "/items/{item_id}", "/health"} <= set(paths)


def test_add_search_photo_delete_without_a_rebuild(index, catalogue, tmp_path):
    _, ids, queries, _ = catalogue
    with TestClient(writable_app(index, tmp_path)) as client:
        added = client.post("/items", files=upload(queries[3]), data={"id": "new/shelf-1"})
        assert added.status_code == 201
        assert added.json() == {"id": "new/shelf-1", "items": len(ids) + 1}
        [hit] = client.post("/search?k=1", files=upload(queries[3])).json()["results"]
        assert hit["id"] == "new/shelf-1"
        assert hit["score"] == pytest.approx(1.0, abs=1e-3)
        assert client.get("/items/new/shelf-1/photo").headers["content-type"] == "image/jpeg"
        removed = client.delete("/items/new/shelf-1")
        assert removed.json() == {"id": "new/shelf-1", "items": len(ids)}
        [hit] = client.post("/search?k=1", files=upload(queries[3])).json()["results"]
        assert hit["id"] != "new/shelf-1"
        assert client.get("/items/new/shelf-1/photo").status_code == 404
    with ChangeLog(tmp_path / "changes.log") as log:
        assert [(c.action, c.item_id) for c in log.changes] == [
            ("add", "new/shelf-1"),
            ("remove", "new/shelf-1"),
        ]


def test_a_catalogue_item_can_be_removed_and_its_id_reused(writable, catalogue):
    _, ids, queries, _ = catalogue
    assert writable.delete(f"/items/{ids[0]}").status_code == 200
    assert writable.post("/items", files=upload(queries[0]), data={"id": ids[0]}).status_code == 201


def test_behind_a_path_prefix_photo_paths_carry_it(index, catalogue, demo):
    photos, ids, _, _ = catalogue
    app = create_app(copy.copy(index), settings=ServeSettings(photo_folder=demo_root(demo)))
    with TestClient(app, root_path="/search-by-photo") as client:
        [hit] = client.post("/search?k=1", files=upload(photos[3])).json()["results"]
        page = client.get("/").text
    assert hit["photo"] == f"/search-by-photo/items/{ids[3]}/photo"
    assert 'src="static/page.js"' in page  # relative: found under any prefix


def test_an_emptied_catalogue_answers_no_matches(writable, catalogue):
    _, ids, queries, _ = catalogue
    for item_id in ids:
        assert writable.delete(f"/items/{item_id}").status_code == 200
    answer = writable.post("/search", files=upload(queries[0]))
    assert answer.status_code == 200
    assert answer.json()["results"] == []
    assert writable.post("/items", files=upload(queries[0]), data={"id": "only"}).status_code == 201
    [hit] = writable.post("/search", files=upload(queries[0])).json()["results"]
    assert hit["id"] == "only"


def test_a_second_app_on_the_same_state_folder_is_refused(index, tmp_path):
    with ChangeLog(tmp_path / "changes.log"), pytest.raises(RuntimeError, match="one server"):
        create_app(copy.copy(index), settings=ServeSettings(state_folder=tmp_path))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def jpeg_bytes(catalogue) -> bytes:
    return Path(catalogue[2][0]).read_bytes()


BAD_UPLOADS = {
    "not an image": (lambda c: upload(b"hello, I am text"), 400, "unreadable_image", "not a"),
    "truncated jpeg": (
        lambda c: upload(jpeg_bytes(c)[: len(jpeg_bytes(c)) // 2]),
        400,
        "unreadable_image",
        "truncated",
    ),
    "decompression bomb": (
        lambda c: upload(png_declaring(30_000, 30_000), "image/png", "bomb.png"),
        413,
        "too_many_pixels",
        "decompression bomb",
    ),
    "empty upload": (lambda c: upload(b""), 400, "empty_upload", "no bytes"),
    "photo over the limit": (
        lambda c: upload(b"\xff\xd8" + bytes(UPLOAD_LIMIT + 10)),
        413,
        "too_large",
        str(UPLOAD_LIMIT),
    ),
    "body over the limit": (
        lambda c: upload(bytes(2 * UPLOAD_LIMIT)),
        413,
        "too_large",
        str(UPLOAD_LIMIT),
    ),
    "wrong content type": (
        lambda c: upload(jpeg_bytes(c), "text/plain"),
        415,
        "unsupported_media_type",
        "text/plain",
    ),
    "missing field": (
        lambda c: {"photo": ("photo.jpg", jpeg_bytes(c), "image/jpeg")},
        422,
        "invalid_request",
        "form field 'file' is missing",
    ),
}


@pytest.mark.parametrize("endpoint", ["/search", "/classify"])
@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_a_bad_upload_gets_a_4xx_that_names_the_problem(client, catalogue, endpoint, case):
    files, status, code, words = BAD_UPLOADS[case]
    answer = client.post(endpoint, files=files(catalogue))
    assert answer.status_code == status
    assert answer.json()["error"] == code
    assert words in answer.json()["detail"]
    assert client.post("/search?k=1", files=upload(catalogue[2][0])).status_code == 200


def test_a_body_streamed_past_the_limit_is_cut_off_with_413(client):
    def chunks():
        for _ in range(8):
            yield bytes(UPLOAD_LIMIT // 2)

    answer = client.post(
        "/search", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"] == "too_large"
    assert client.get("/health").status_code == 200


def test_a_body_that_is_not_a_form_gets_415(client):
    answer = client.post("/search", json={"file": "photo.jpg"})
    assert answer.status_code == 415
    assert "multipart/form-data" in answer.json()["detail"]


@pytest.mark.parametrize("k", ["0", "-3", "1000000000", "many"])
def test_a_bad_k_gets_422_naming_k(client, catalogue, k):
    answer = client.post(f"/search?k={k}", files=upload(catalogue[2][0]))
    assert answer.status_code == 422
    assert "query parameter 'k'" in answer.json()["detail"]


def test_reranking_an_index_without_keypoints_is_refused(catalogue, index):
    plain = copy.copy(index).set_params(rerank=None)
    plain.keypoints_ = None
    with TestClient(create_app(plain)) as client:
        answer = client.post("/search?rerank=true", files=upload(catalogue[2][0]))
        assert client.get("/health").json()["rerank"] is False
    assert answer.status_code == 400
    assert answer.json()["error"] == "cannot_rerank"


def test_explain_draws_the_explanation_of_the_product_classify_names(client, catalogue, model):
    _, _, queries, _ = catalogue
    answer = client.post("/explain", files=upload(queries[2]))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(answer.content))
    expected = Image.open(io.BytesIO(fusionrec.explain(model, queries[2]).to_png()))
    assert picture.size == expected.size
    assert np.abs(np.asarray(picture, float) - np.asarray(expected, float)).mean() < 1.0


def test_explain_refuses_what_is_not_a_photo_and_a_server_without_a_model(
    client, writable, catalogue
):
    answer = client.post("/explain", files=upload(b"not a photo"))
    assert answer.status_code == 400
    assert "error" in answer.json()
    assert writable.post("/explain", files=upload(catalogue[2][0])).json()["error"] == "no_model"


def test_classify_without_a_model_is_404(writable, catalogue):
    answer = writable.post("/classify", files=upload(catalogue[2][0]))
    assert answer.status_code == 404
    assert answer.json()["error"] == "no_model"


def test_unknown_and_duplicate_ids(writable, catalogue):
    _, ids, queries, _ = catalogue
    unknown = writable.delete("/items/no/such/item.jpg")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": "unknown_id",
        "detail": "no item has the id 'no/such/item.jpg'",
    }
    duplicate = writable.post("/items", files=upload(queries[0]), data={"id": ids[1]})
    assert duplicate.status_code == 409
    assert ids[1] in duplicate.json()["detail"]
    assert writable.get("/items/no/such/item.jpg/photo").status_code == 404
    assert writable.get("/items/../../etc/passwd/photo").status_code == 404


@pytest.mark.parametrize("item_id", [" padded", "tab\there", "x" * 300])
def test_a_bad_new_id_is_refused(writable, catalogue, item_id):
    answer = writable.post("/items", files=upload(catalogue[2][0]), data={"id": item_id})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_id"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "token_required"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 400, "malformed_token"),
        ({"Authorization": "Bearer short"}, 400, "malformed_token"),
        ({"Authorization": "Bearer"}, 400, "malformed_token"),
        ({"Authorization": "Bearer another-token-of-twenty"}, 403, "wrong_token"),
    ],
)
def test_changes_need_the_token(client, catalogue, headers, status, code):
    _, ids, queries, _ = catalogue
    added = client.post("/items", files=upload(queries[0]), data={"id": "x"}, headers=headers)
    removed = client.delete(f"/items/{ids[0]}", headers=headers)
    for answer in (added, removed):
        assert answer.status_code == status
        assert answer.json()["error"] == code
    assert client.get("/health").json()["items"] == len(ids)


def test_with_the_token_a_change_goes_through(client, catalogue):
    _, _, queries, _ = catalogue
    added = client.post("/items", files=upload(queries[1]), data={"id": "tok"}, headers=WRITE)
    assert added.status_code == 201
    assert client.delete("/items/tok", headers=WRITE).status_code == 200


def test_errors_never_show_a_file_system_path(client, catalogue, demo):
    root = str(demo_root(demo))
    answers = [
        client.post("/search", files=upload(b"\x89PNG\r\n\x1a\nbroken")),
        client.get(f"/items/{catalogue[1][0][:-4]}/photo"),
        client.get("/no/such/page"),
        client.post("/search?k=0", files=upload(catalogue[2][0])),
    ]
    for answer in answers:
        assert answer.status_code in (400, 404, 422)
        assert set(answer.json()) == {"error", "detail"}
        assert root not in answer.text
        assert "site-packages" not in answer.text


def blocked_search(monkeypatch):
    """Make searches wait for ``release``; ``started`` is set when one has begun."""
    started, release = threading.Event(), threading.Event()
    real_search = Catalogue.search

    def search(self, *args):
        started.set()
        assert release.wait(60)
        return real_search(self, *args)

    monkeypatch.setattr(Catalogue, "search", search)
    return started, release


def test_a_full_backlog_answers_503_with_retry_after(index, catalogue, monkeypatch):
    started, release = blocked_search(monkeypatch)
    settings = ServeSettings(max_batch=1, max_pending=1, batch_window=0)
    photo = upload(catalogue[2][0])
    with TestClient(create_app(copy.copy(index), settings=settings)) as client:
        answers = []

        def ask():
            answers.append(client.post("/search?k=1", files=photo).status_code)

        first = threading.Thread(target=ask)
        first.start()
        assert started.wait(60)
        second = threading.Thread(target=ask)
        second.start()
        # The event loop answers while a batch holds the worker: the work runs off the loop.
        while "fusionrec_pending_jobs 1.0" not in client.get("/metrics").text:
            time.sleep(0.01)
        refused = client.post("/search?k=1", files=photo)
        release.set()
        first.join()
        second.join()
        metrics = client.get("/metrics").text
    assert refused.status_code == 503
    assert refused.json()["error"] == "overloaded"
    assert int(refused.headers["Retry-After"]) >= 1
    assert answers == [200, 200]
    assert "fusionrec_overloaded_total 1.0" in metrics


def test_photos_sent_together_are_embedded_in_one_batch_and_answered_apart(index, catalogue):
    photos, ids, _, _ = catalogue
    chosen = [0, 7, 14, 21]
    settings = ServeSettings(batch_window=60, max_batch=len(chosen))  # closes when full
    with TestClient(create_app(copy.copy(index), settings=settings)) as client:
        answers = {}

        def ask(position):
            found = client.post("/search?k=1&rerank=false", files=upload(photos[position]))
            answers[position] = found.json()["results"][0]["id"]

        threads = [threading.Thread(target=ask, args=(position,)) for position in chosen]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        metrics = client.get("/metrics").text
    assert answers == {position: ids[position] for position in chosen}
    assert 'fusionrec_batch_size_count{kind="search"} 1.0' in metrics
    assert f'fusionrec_batch_size_sum{{kind="search"}} {len(chosen)}.0' in metrics


def run(coroutine):
    return asyncio.run(coroutine)


def test_jobs_that_arrive_together_form_one_batch():
    sizes = []

    def square(kind, numbers):
        sizes.append(len(numbers))
        return [number * number for number in numbers]

    async def main():
        batcher = Batcher(square, exclusive=lambda kind: False, window=60, max_batch=4)
        async with batcher.running():
            return await asyncio.gather(*(batcher.submit("square", n) for n in range(4)))

    assert run(main()) == [0, 1, 4, 9]
    assert sizes == [4]  # closed by max_batch, long before the 60 s window


def test_kinds_are_batched_apart_and_one_failure_stays_with_its_job():
    seen = []

    def work(kind, payloads):
        seen.append((kind, list(payloads)))
        return [ValueError("odd") if p % 2 else p for p in payloads]

    async def main():
        batcher = Batcher(work, exclusive=lambda kind: False, window=60, max_batch=3)
        async with batcher.running():
            jobs = [batcher.submit(kind, p) for kind, p in (("a", 0), ("b", 2), ("a", 1))]
            return await asyncio.gather(*jobs, return_exceptions=True)

    first, second, third = run(main())
    assert (first, second) == (0, 2)
    assert isinstance(third, ValueError)
    assert seen == [("a", [0, 1]), ("b", [2])]


def test_reads_run_side_by_side_and_changes_alone():
    two_at_once = threading.Barrier(2, timeout=30)  # breaks unless two batches overlap
    active, most_beside_a_change = [0], [0]
    lock = threading.Lock()

    def work(kind, payloads):
        with lock:
            active[0] += 1
            if kind == "write":
                most_beside_a_change[0] = max(most_beside_a_change[0], active[0])
        if kind == "pair":
            two_at_once.wait()
        with lock:
            active[0] -= 1
        return payloads

    async def main():
        batcher = Batcher(
            work, exclusive=lambda kind: kind == "write", window=0, max_batch=1, workers=2
        )
        async with batcher.running():
            await asyncio.gather(*(batcher.submit("pair", n) for n in range(2)))
            kinds = ("read", "write", "read", "write", "read")
            return await asyncio.gather(*(batcher.submit(kind, 0) for kind in kinds))

    assert run(main()) == [0] * 5
    assert most_beside_a_change == [1]


def test_the_backlog_is_bounded():
    running, release = threading.Event(), threading.Event()

    def work(kind, payloads):
        running.set()
        release.wait(30)
        return payloads

    async def main():
        batcher = Batcher(work, exclusive=lambda kind: False, window=0, max_batch=1, max_pending=2)
        async with batcher.running():
            first = asyncio.ensure_future(batcher.submit("a", 1))
            await asyncio.to_thread(running.wait, 30)
            queued = [asyncio.ensure_future(batcher.submit("a", n)) for n in (2, 3)]
            await asyncio.sleep(0)
            with pytest.raises(Overloaded) as refused:
                await batcher.submit("a", 4)
            release.set()
            return await asyncio.gather(first, *queued), refused.value.retry_after

    results, retry_after = run(main())
    assert results == [1, 2, 3]
    assert retry_after >= 1
