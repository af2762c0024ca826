"""The JSON error body of every API failure, and the middleware that produces it.

Body (DESIGN §6): ``{"error": {"code": "...", "message": "...", "field": "..." | null}}``.
Typed errors (:class:`ApiError`, :class:`dialer.intake.ValidationError`) and aiohttp's own HTTP
exceptions (404, 405, 413 ...) all become that body; bad input is always a 4xx. A database that
cannot be reached is a ``503 unavailable`` with ``Retry-After`` (the lead was not acknowledged,
so the client retries). Anything else is a bug: logged with its traceback, answered ``500``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from dialer.intake import ValidationError
from dialer.logs import get_logger
from dialer.store import StoreUnavailableError

__all__ = ["ApiError", "error_middleware", "error_response"]

_log = get_logger("dialer.api")

#: HTTP status of each validation code raised by ``dialer.intake``.
_VALIDATION_STATUS: Final = {
    "invalid_body": 400,
    "invalid_header": 400,
}

#: Codes for aiohttp's HTTP exceptions, by status.
_HTTP_CODES: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error with its HTTP answer: ``status``, machine ``code``, human ``message``, ``field``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON error response in the DESIGN §6 shape."""
    return web.json_response(
        {"error": {"code": code, "message": message, "field": field}},
        status=status,
        headers=headers,
    )


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal")
    message = exc.reason
    if status == 413:
        message = "request body too large"
    headers = {
        name: value
        for name, value in exc.headers.items()
        if name.lower() in ("allow", "www-authenticate", "retry-after")
    }
    return error_response(status, code, message, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn typed errors into JSON 4xx answers; unexpected exceptions into a logged 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(
            exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers
        )
    except ValidationError as exc:
        status = _VALIDATION_STATUS.get(exc.code, 422)
        return error_response(status, exc.code, exc.message, field=exc.field)
    except StoreUnavailableError as exc:
        # Retryable: the client keeps the lead and tries again; nothing was acknowledged.
        _log.warning(
            "database unavailable", method=request.method, path=request.path, error=str(exc)
        )
        return error_response(
            503, "unavailable", "database unavailable, retry", headers={"Retry-After": "1"}
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and 2xx raised as exceptions pass through untouched
        return _from_http_exception(exc)
    except Exception:
        _log.exception("unhandled error", method=request.method, path=request.path)
        return error_response(500, "internal", "internal server error")
