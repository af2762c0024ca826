"""Bearer-token authentication of the ``/v1/`` API.

Tokens come from ``[api] tokens`` (or ``DIALER_API_TOKENS``). Each presented token is compared
with every configured one in constant time (``hmac.compare_digest``), so the response time says
nothing about how much of a token was right, nor which token matched. Health, readiness and
metrics endpoints stay open: probes and scrapers carry no tokens.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from dialer.api.errors import ApiError
from dialer.api.keys import ALLOW_ANONYMOUS_KEY, CONFIG_KEY

__all__ = ["PROTECTED_PREFIX", "auth_middleware", "token_matches"]

#: Paths under this prefix need a token.
PROTECTED_PREFIX: Final = "/v1/"


def token_matches(presented: str, tokens: Sequence[str]) -> bool:
    """True when ``presented`` equals one of ``tokens`` (every token compared, constant time)."""
    presented_bytes = presented.encode("utf-8", "surrogateescape")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented_bytes, token.encode("utf-8"))
    return matched


def _unauthorized(message: str, *, invalid: bool) -> ApiError:
    challenge = 'Bearer realm="dialer"'
    if invalid:
        challenge += ', error="invalid_token"'
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` on ``/v1/`` unless the app is anonymous."""
    if not request.path.startswith(PROTECTED_PREFIX) or request.app[ALLOW_ANONYMOUS_KEY]:
        return await handler(request)
    header = request.headers.get("Authorization")
    if header is None:
        raise _unauthorized("missing bearer token", invalid=False)
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized("expected 'Authorization: Bearer <token>'", invalid=True)
    if not token_matches(presented.strip(), request.app[CONFIG_KEY].api.tokens):
        raise _unauthorized("invalid bearer token", invalid=True)
    return await handler(request)
