"""Reading an uploaded photo: the checks that turn bad uploads into 4xx answers.

:class:`BodyLimit` bounds a request as a whole before it is parsed; then the
photo part is checked for its type, size and content. Its pixels are decoded
once, small, to name the problem of a photo that cannot be read (not an
image, cut short, a decompression bomb) before it joins a batch, where the
index reads it again as it always does.

(FastAPI's own ``max_body_size`` answers a declared oversized body in plain
text whatever the app's error handlers say; the service answers JSON.)
"""

from __future__ import annotations

from fastapi import Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..images import ImageReadError, load_image
from .errors import ServiceError, error_response

CHECK_SIDE = 64  # a JPEG decodes at 1/8 scale to check it, still reading every byte
ACCEPTED_TYPES = ("image/", "application/octet-stream")
"""Content types of the photo part: any image, or bytes whose type the client did not know."""


def require_multipart(request: Request) -> None:
    """Refuse (415) a request to an upload endpoint that is not a multipart form."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        received = content_type.split(";")[0] or "no content type"
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"expected multipart/form-data with the photo in the field 'file'; got {received}",
        )


async def read_photo(file: UploadFile, max_bytes: int) -> bytes:
    """The uploaded photo's bytes, once they are known to be a readable image.

    Raises
    ------
    ServiceError
        415 for a part that is not declared an image, 413 for a photo over
        ``max_bytes`` or with more pixels than Pillow's limit, 400 for an empty
        upload or bytes that do not decode to an image.
    """
    content_type = (file.content_type or "").lower()
    if not content_type.startswith(ACCEPTED_TYPES):
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"the field 'file' has the content type {content_type or 'none'}; expected an image"
            " (image/jpeg, image/png, ...)",
        )
    data = await file.read(max_bytes + 1)
    if not data:
        raise ServiceError(400, "empty_upload", "the field 'file' holds no bytes")
    if len(data) > max_bytes:
        raise ServiceError(
            413, "too_large", f"the photo is larger than the upload limit ({max_bytes} bytes)"
        )
    await run_in_threadpool(check_readable, data)
    return data


def check_readable(data: bytes) -> None:
    """Raise :class:`ServiceError` naming why ``data`` is not a readable image."""
    try:
        load_image(data, max_side=CHECK_SIDE)
    except ImageReadError as error:
        if "decompression bomb" in error.reason:
            raise ServiceError(413, "too_many_pixels", error.reason) from None
        raise ServiceError(400, "unreadable_image", error.reason) from None


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413, and is read no further.

    A declared ``Content-Length`` over the limit is refused before the app
    runs; a body streamed without one is cut off when it passes the limit.

    Parameters
    ----------
    app : ASGI app
    max_bytes : int
        Largest body accepted.
    upload_limit : int
        The photo size limit, named in the answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_limit: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            detail = f"the request is larger than the upload limit ({self.upload_limit} bytes)"
            await error_response(413, "too_large", detail)(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413)  # answered by the app's handler, in JSON
            return message

        await self.app(scope, receive_within_limit, send)
