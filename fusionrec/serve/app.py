"""``create_app``: the HTTP API and the page, over a ProductIndex and, optionally, a classifier."""

import logging
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .._parallel import single_threaded_blas
from ..fusion import FusedClassifier
from ..search import Matches, ProductIndex
from . import classification
from .access import token_check
from .batching import Batcher, Overloaded
from .catalogue import Catalogue
from .change_log import ChangeLog
from .errors import ServiceError, install_error_handlers
from .metrics import CONTENT_TYPE, RequestMetrics, ServiceMetrics
from .photos import CataloguePhotos
from .settings import ServeSettings
from .uploads import BodyLimit, read_photo, require_multipart

logger = logging.getLogger("fusionrec.serve")

MULTIPART_ALLOWANCE = 64 * 1024
"""Bytes a request may hold beyond the photo: the form's boundaries, headers and id."""
MAX_ID_LENGTH = 256
DECIMALS = 4
CHANGES = ("add", "remove")

_DESCRIPTION = """\
Search a product catalogue by photo, recognise products, and change the catalogue.

Uploads are `multipart/form-data` with the photo in the field `file`. Errors are JSON:
`{"error": "<code>", "detail": "<what is wrong>"}`. `POST /items` and `DELETE /items/{id}`
need `Authorization: Bearer <token>` when the server has a token. The page is at `/`.
"""


def create_app(
    index: ProductIndex,
    *,
    model: FusedClassifier | None = None,
    settings: ServeSettings | None = None,
    save_index: Callable[[ProductIndex], None] | None = None,
) -> FastAPI:
    """The search-by-photo service as an ASGI app (run it with uvicorn, or ``fusionrec serve``).

    Parameters
    ----------
    index : ProductIndex
        Fitted. The app owns it from now on: catalogue changes are made to it.
    model : FusedClassifier or None, default=None
        Fitted; adds ``POST /classify``.
    settings : ServeSettings or None, default=None
        ``None``: ``ServeSettings()`` (no persistence, no token).
    save_index : callable or None, default=None
        ``save_index(index)`` writes the index file. When given, changes
        replayed from the log at start are folded into that file and the log
        starts empty (compaction); use :func:`fusionrec.serve.replace_durably`
        so a crash cannot leave half a file.

    Returns
    -------
    fastapi.FastAPI
        Catalogue changes are replayed, and every step run once, at startup
        (the ASGI lifespan), before the first request is answered.

    Raises
    ------
    RuntimeError
        If another process holds the change log in ``settings.state_folder``.

    Examples
    --------
    >>> from fastapi.testclient import TestClient
    >>> from fusionrec import CNNEmbedder, ProductIndex
    >>> from fusionrec.datasets import load_demo_products
    >>> photos = load_demo_products().data[:12]
    >>> index = ProductIndex(deep=CNNEmbedder(runtime="torch"))  # few photos: no ONNX export
    >>> app = create_app(index.fit(photos[1:], ids=[f"p{i}" for i in range(11)]))
    >>> with TestClient(app) as client, open(photos[1], "rb") as photo:
    ...     answer = client.post("/search?k=2", files={"file": photo}).json()
    >>> answer["results"][0]["id"]
    'p0'
    """
    settings = settings or ServeSettings()
    service = _Service(index, model, settings, save_index)
    app = FastAPI(
        title="fusionrec",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=service.lifespan,
    )
    install_error_handlers(app, settings.max_upload_bytes)
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes + MULTIPART_ALLOWANCE)
    app.add_middleware(RequestMetrics, metrics=service.metrics)
    app.mount("/static", StaticFiles(packages=[("fusionrec.serve", "static")]), name="static")
    _add_routes(app, service)
    return app


class _Service:
    """What the routes share: the catalogue, the model, the batcher and the metrics."""

    def __init__(
        self,
        index: ProductIndex,
        model: FusedClassifier | None,
        settings: ServeSettings,
        save_index: Callable[[ProductIndex], None] | None,
    ) -> None:
        self.index = index
        self.model = model
        self.settings = settings
        self.save_index = save_index
        self.catalogue: Catalogue | None = None
        state = settings.state_folder
        self.log = None if state is None else ChangeLog(Path(state) / "changes.log")
        if self.log is not None:
            self.log.open()  # now, so that a second server on the same index stops at once
        self.batcher = Batcher(
            self.run_batch,
            exclusive=lambda kind: kind[0] in CHANGES,
            window=settings.batch_window,
            max_batch=settings.max_batch,
            max_pending=settings.max_pending,
            workers=settings.workers,
        )
        self.metrics = ServiceMetrics(
            items=lambda: 0 if self.catalogue is None else self.catalogue.size,
            pending=lambda: self.batcher.pending,
        )
        self.batcher.on_batch = self.metrics.batch_done
        self._batch_runners = {
            "search": self._search,
            "classify": self._classify,
            "add": lambda _, items: self.catalogue.add(items),
            "remove": lambda _, texts: self.catalogue.remove(texts),
        }

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Replay the change log, warm up, then serve; release the log at the end."""
        try:
            await run_in_threadpool(self._open_catalogue, self.log)
            async with self.batcher.running():
                yield
        finally:
            if self.log is not None:
                self.log.close()

    def _open_catalogue(self, log: ChangeLog | None) -> None:
        state = self.settings.state_folder
        photos = CataloguePhotos(
            self.settings.photo_folder,
            None if state is None else Path(state) / "photos",
            self.settings.thumbnail_side,
        )
        catalogue = Catalogue(self.index, photos=photos, log=log)
        if catalogue.replayed:
            logger.info("replayed %d catalogue changes from the log", catalogue.replayed)
            if self.save_index is not None:
                catalogue.compact(self.save_index)
        catalogue.warm_up()
        if self.model is not None:
            classification.warm_up(self.model)
        self.catalogue = catalogue

    def run_batch(self, kind: tuple, payloads: list) -> Sequence:
        """Work on one batch (in a worker thread), BLAS held to one thread.

        The cores belong to ONNX Runtime's threads and to decoding: idle
        OpenBLAS threads spin after each search's product and take them
        (measured under 16 clients: 1.75 cores busy for 87 answers a second,
        against 1.30 cores for 98).
        """
        with single_threaded_blas():
            return self._batch_runners[kind[0]](kind, payloads)

    async def submit(self, kind: Hashable, payload: Any) -> Any:
        """Queue a job; 503 with ``Retry-After`` when the backlog is full."""
        try:
            return await self.batcher.submit(kind, payload)
        except Overloaded as busy:
            self.metrics.rejected.inc()
            raise ServiceError(
                503, "overloaded", str(busy), {"Retry-After": str(busy.retry_after)}
            ) from None

    def _search(self, kind: tuple, payloads: list[tuple[bytes, int]]) -> list:
        _, rerank = kind
        photos = [photo for photo, _ in payloads]
        widest = max(k for _, k in payloads)
        found = self.catalogue.search(photos, widest, rerank)
        return [
            _unreadable() if matches is None else self._hits(matches, k)
            for matches, (_, k) in zip(found, payloads, strict=True)
        ]

    def _hits(self, matches: Matches, k: int) -> list[dict]:
        hits = []
        for rank in range(min(k, len(matches))):
            item_id = matches.ids[rank]
            hit = {
                "id": item_id,
                "score": round(float(matches.scores[rank]), DECIMALS),
                "photo": _photo_path(item_id) if self.catalogue.photos.has(item_id) else None,
            }
            if matches.inliers is not None:
                hit["inliers"] = int(matches.inliers[rank])
                pairs = matches.inlier_positions[rank].astype(np.float64)
                hit["matches"] = np.round(pairs, DECIMALS).tolist()
            hits.append(hit)
        return hits

    def _classify(self, kind: tuple, photos: list[bytes]) -> list:
        _, top = kind
        return classification.classify(self.model, photos, top)


def _photo_path(item_id: Any) -> str:
    return f"/items/{quote(str(item_id))}/photo"


def _unreadable() -> ServiceError:
    return ServiceError(400, "unreadable_image", "the photo could not be read")


def _check_item_id(text: str) -> str:
    if not text or len(text) > MAX_ID_LENGTH:
        raise ServiceError(
            400, "invalid_id", f"an id has 1 to {MAX_ID_LENGTH} characters; got {len(text)}"
        )
    if not text.isprintable() or text != text.strip():
        raise ServiceError(
            400,
            "invalid_id",
            "an id is printable text without leading or trailing spaces; got " + repr(text),
        )
    return text


def _add_routes(app: FastAPI, service: _Service) -> None:
    settings = service.settings
    page = (resources.files("fusionrec.serve") / "static" / "index.html").read_text()
    may_change = [Depends(token_check(settings.token))]
    upload = [Depends(require_multipart)]
    photo_field = File(description="The photo: JPEG, PNG, WebP, ... (multipart field `file`).")
    k_field = Query(ge=1, le=settings.max_k, description="Matches to return.")
    top_field = Query(ge=1, le=settings.max_k, description="Products to return.")
    rerank_field = Query(
        description="Re-rank by verified keypoint matches (needs an index built with"
        " `--rerank`); default: as the index was built."
    )

    @app.get("/", include_in_schema=False)
    async def the_page() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", summary="Whether the service is up, and what it offers")
    async def health() -> dict:
        catalogue = service.catalogue
        return {
            "status": "ok",
            "version": __version__,
            "items": catalogue.size,
            "rerank": catalogue.can_rerank,
            "reranks_by_default": service.index.rerank == "ransac",
            "classify": service.model is not None,
            "max_k": settings.max_k,
        }

    @app.get("/metrics", summary="Request counts, latencies and batch sizes (Prometheus)")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/search", dependencies=upload, summary="The catalogue items most like a photo")
    async def search(
        request: Request,
        file: Annotated[UploadFile, photo_field],
        k: Annotated[int, k_field] = 10,
        rerank: Annotated[bool | None, rerank_field] = None,
    ) -> dict:
        catalogue = service.catalogue
        if rerank and not catalogue.can_rerank:
            raise ServiceError(
                400,
                "cannot_rerank",
                "this index keeps no keypoints to re-rank with: build it with"
                " 'fusionrec index --rerank'",
            )
        reranked = service.index.rerank == "ransac" if rerank is None else rerank
        photo = await read_photo(file, settings.max_upload_bytes)
        hits = await service.submit(("search", reranked), (photo, k))
        prefix = request.scope.get("root_path", "")
        for hit in hits:
            hit["photo"] = hit["photo"] and prefix + hit["photo"]
        return {"reranked": reranked, "results": hits}

    @app.post("/classify", dependencies=upload, summary="The products a photo most likely shows")
    async def classify(
        file: Annotated[UploadFile, photo_field],
        top: Annotated[int, top_field] = 5,
    ) -> dict:
        if service.model is None:
            raise ServiceError(
                404, "no_model", "this server has no classifier: start it with --model MODEL"
            )
        photo = await read_photo(file, settings.max_upload_bytes)
        return await service.submit(("classify", top), photo)

    @app.post(
        "/explain",
        dependencies=upload,
        summary="Why the classifier named a product: shares, heat map and keypoints, as a PNG",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def explain(file: Annotated[UploadFile, photo_field]) -> Response:
        if service.model is None:
            raise ServiceError(
                404, "no_model", "this server has no classifier: start it with --model MODEL"
            )
        photo = await read_photo(file, settings.max_upload_bytes)
        picture = await run_in_threadpool(classification.explanation_png, service.model, photo)
        return Response(picture, media_type="image/png")

    @app.post(
        "/items",
        dependencies=[*may_change, *upload],
        status_code=201,
        summary="Add a photo to the catalogue under a new id",
    )
    async def add_item(
        request: Request,
        file: Annotated[UploadFile, photo_field],
        item_id: Annotated[str, Form(alias="id", description="The new item's id.")],
    ) -> JSONResponse:
        item_id = _check_item_id(item_id)
        photo = await read_photo(file, settings.max_upload_bytes)
        added = await service.submit(("add",), (item_id, photo))
        return JSONResponse(
            {**added, "items": service.catalogue.size},
            status_code=201,
            headers={"Location": f"{request.scope.get('root_path', '')}{_photo_path(item_id)}"},
        )

    @app.delete(
        "/items/{item_id:path}",
        dependencies=may_change,
        summary="Remove an item from the catalogue",
    )
    async def remove_item(item_id: str) -> dict:
        removed = await service.submit(("remove",), item_id)
        return {**removed, "items": service.catalogue.size}

    @app.get(
        "/items/{item_id:path}/photo",
        summary="An item's photo, as a JPEG thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    async def item_photo(item_id: str) -> Response:
        found = service.catalogue.find(item_id)
        if found is None:
            raise ServiceError(404, "unknown_id", f"no item has the id {item_id!r}")
        thumbnail = await run_in_threadpool(service.catalogue.photos.thumbnail, found)
        if thumbnail is None:
            raise ServiceError(404, "no_photo", f"the server keeps no photo of {item_id!r}")
        return Response(thumbnail, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})
