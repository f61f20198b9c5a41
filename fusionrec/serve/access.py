"""Who may change the catalogue: a bearer token, when one is configured.

Reading (search, classify, photos, health, metrics, the page) is open;
``POST /items`` and ``DELETE /items/{id}`` need ``Authorization: Bearer
<token>``. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Request

from .errors import ServiceError
from .settings import TOKEN_PATTERN


def token_check(token: str | None) -> Callable[[Request], None]:
    """A dependency that lets a request through only with ``token`` (anything if ``None``)."""

    def check(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization")
        if header is None:
            raise ServiceError(
                401,
                "token_required",
                "changing the catalogue needs the token: send 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": "Bearer"},
            )
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not TOKEN_PATTERN.fullmatch(given):
            raise ServiceError(
                400,
                "malformed_token",
                "the Authorization header must read 'Bearer <token>', the token being 16 to 512"
                " printable ASCII characters without spaces",
            )
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ServiceError(403, "wrong_token", "the token is not the one this server accepts")

    return check
