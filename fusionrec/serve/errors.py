"""Errors as JSON that names the problem: ``{"error": code, "detail": sentence}``.

Every answer the service gives for a bad request has this shape, whichever
layer refused it (the framework's validation, the upload checks, the
catalogue). Unexpected failures answer 500 with no detail of the server's
insides (no file system path, no traceback); the log has them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

logger = logging.getLogger("fusionrec.serve")

_HTTP_CODES = {
    400: "bad_request",
    401: "token_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}

_PLACES = {"query": "query parameter", "path": "path parameter", "body": "form field"}


class ServiceError(Exception):
    """A request the service refuses, with the status, a short code and a sentence.

    Parameters
    ----------
    status : int
        The HTTP status (4xx for the client's mistakes, 503 when overloaded).
    code : str
        A stable name for the problem, for programs (``"unreadable_image"``).
    detail : str
        What is wrong, for people.
    headers : mapping or None
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).

    Examples
    --------
    >>> error = ServiceError(404, "unknown_id", "no item has the id 'tea'")
    >>> error.status, error.code
    (404, 'unknown_id')
    """

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The JSON answer."""
        return error_response(self.status, self.code, self.detail, self.headers)


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``{"error": code, "detail": detail}`` with ``status``."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, max_upload_bytes: int) -> None:
    """Answer every refusal and failure of ``app`` in the service's JSON shape."""

    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return error.response()

    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        detail = str(error.detail)
        if error.status_code == 404:
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif error.status_code == 405:
            detail = f"{request.url.path} does not answer {request.method}"
        elif error.status_code == 413:
            detail = f"the request is larger than the upload limit ({max_upload_bytes} bytes)"
        return error_response(error.status_code, code, detail, error.headers)

    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(describe_validation_error(item) for item in error.errors())
        return error_response(422, "invalid_request", problems)

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("failed: %s %s", request.method, request.url.path)
        return error_response(
            500, "internal_error", "the server failed on this request; its log says why"
        )

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected)


def describe_validation_error(error: Mapping) -> str:
    """One sentence for one of the framework's validation errors.

    Examples
    --------
    >>> describe_validation_error({"loc": ("body", "file"), "type": "missing", "msg": "x"})
    "form field 'file' is missing (send the photo as multipart/form-data)"
    >>> describe_validation_error(
    ...     {"loc": ("query", "k"), "type": "int_parsing", "msg": "Input should be a valid integer"}
    ... )
    "query parameter 'k': input should be a valid integer"
    """
    place, *names = error.get("loc", ("request",))
    field = f"{_PLACES.get(place, place)} {'.'.join(map(str, names))!r}" if names else place
    if error.get("type") == "missing":
        hint = " (send the photo as multipart/form-data)" if place == "body" else ""
        return f"{field} is missing{hint}"
    message = str(error.get("msg", "is invalid"))
    return f"{field}: {message[:1].lower()}{message[1:]}"
