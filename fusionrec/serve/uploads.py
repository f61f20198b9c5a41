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

import re

from fastapi import Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..images import ImageReadError, load_image
from .errors import ServiceError

_INTERNAL_OBJECT = re.compile(r" ?<[^<>]* at 0x[0-9a-fA-F]+>")
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
    """Raise :class:`ServiceError` naming why ``data`` is not a readable image.

    Examples
    --------
    >>> try:
    ...     check_readable(b"plain text")
    ... except ServiceError as error:
    ...     print(error.status, error.detail)
    400 not a readable image (UnidentifiedImageError: cannot identify image file)
    """
    try:
        load_image(data, max_side=CHECK_SIDE)
    except ImageReadError as error:
        reason = _INTERNAL_OBJECT.sub("", error.reason)  # "<_io.BytesIO object at 0x...>"
        if "decompression bomb" in reason:
            raise ServiceError(413, "too_many_pixels", reason) from None
        raise ServiceError(400, "unreadable_image", reason) from None


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413, and is read no further.

    A body declared (``Content-Length``) over the limit is refused at the
    first read; one streamed without a declared length, when it passes the
    limit. Either way the app's handlers answer, in JSON, and the request is
    counted under its route.

    Parameters
    ----------
    app : ASGI app
    max_bytes : int
        Largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        received = int(declared) if declared.isdigit() else 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if received > self.max_bytes:
                raise HTTPException(413)
            message = await receive()
            if not declared.isdigit():
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413)
            return message

        await self.app(scope, receive_within_limit, send)
