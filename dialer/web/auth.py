"""Who is looking at a page: signed console links for reps, the API token for the dashboard.

Rep console. A manager hands each rep a link ``/console?rep=alice&sig=<hex>`` where ``sig`` is
HMAC-SHA256 of the rep id under the console secret (:func:`console_link`). Opening it checks
the signature in constant time, sets a session cookie and redirects to ``/console`` (so the
signature does not stay in the address bar or the history). The cookie is
``<rep>.<issued>.<hmac>``: HttpOnly, ``SameSite=Strict``, ``Path=/console``, ``Secure`` when the
request came over HTTPS, valid for :data:`SESSION_TTL_S`.

Dashboard. ``/dashboard?token=<API token>`` (or ``Authorization: Bearer``) checks the token like
the API does, then sets a dashboard cookie signed the same way and redirects to ``/dashboard``.
The token itself is never stored in a cookie, never rendered into a page.

Secret. ``DIALER_CONSOLE_SECRET`` (or the value the composition root passes); without one, a
key derived from the API tokens, so links survive a restart; without tokens either (``dialer
demo``), a random key per process.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from aiohttp import web

__all__ = [
    "CONSOLE_COOKIE",
    "CONSOLE_SECRET_ENV",
    "DASHBOARD_COOKIE",
    "SESSION_TTL_S",
    "console_link",
    "console_signature",
    "issue_session",
    "read_session",
    "resolve_secret",
    "set_session_cookie",
    "verify_console_signature",
]

#: Environment variable holding the console secret.
CONSOLE_SECRET_ENV: Final = "DIALER_CONSOLE_SECRET"  # noqa: S105 (a variable name)
#: Cookie of a rep's console session.
CONSOLE_COOKIE: Final = "dialer_console"
#: Cookie of a manager's dashboard session.
DASHBOARD_COOKIE: Final = "dialer_dashboard"
#: How long a page session lasts before the link (or token) is needed again.
SESSION_TTL_S: Final = 12 * 3600

#: Rep ids as config allows them in a cookie (no dots: the cookie's separator).
_REP_ID: Final = re.compile(r"^[A-Za-z0-9_@+-]{1,64}$")
#: Subject of dashboard sessions (not a valid rep id, so the two cookies never mix).
_DASHBOARD_SUBJECT: Final = "~dashboard"


def resolve_secret(
    explicit: str | bytes | None = None,
    *,
    api_tokens: Sequence[str] = (),
    env: Mapping[str, str] = os.environ,
) -> bytes:
    """The key that signs console links and page sessions (module docstring for the order)."""
    if explicit:
        return explicit.encode() if isinstance(explicit, str) else explicit
    from_env = env.get(CONSOLE_SECRET_ENV, "")
    if from_env:
        return from_env.encode()
    if api_tokens:
        material = "\n".join(sorted(api_tokens)).encode()
        return hmac.new(material, b"dialer console sessions v1", hashlib.sha256).digest()
    return secrets.token_bytes(32)


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def console_signature(secret: str | bytes, rep_id: str) -> str:
    """HMAC-SHA256 (hex) of ``rep_id``: the ``sig`` of the rep's console link."""
    key = secret.encode() if isinstance(secret, str) else secret
    return _mac(key, f"console-link:{rep_id}")


def verify_console_signature(secret: bytes, rep_id: str, signature: str) -> bool:
    """True when ``signature`` is the link signature of ``rep_id`` (constant-time compare)."""
    expected = console_signature(secret, rep_id)
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape"))


def console_link(secret: str | bytes, rep_id: str, base_url: str = "") -> str:
    """The login link a rep opens: ``<base_url>/console?rep=<id>&sig=<hex>``."""
    query = urlencode({"rep": rep_id, "sig": console_signature(secret, rep_id)})
    return f"{base_url.rstrip('/')}/console?{query}"


@dataclass(frozen=True, slots=True)
class _Session:
    subject: str
    issued_at: int


def issue_session(secret: bytes, subject: str, *, now: float | None = None) -> str:
    """A signed session value for ``subject`` (a rep id, or the dashboard)."""
    issued = int(time.time() if now is None else now)
    body = f"{subject}.{issued}"
    return f"{body}.{_mac(secret, 'session:' + body)}"


def read_session(secret: bytes, value: str | None, *, now: float | None = None) -> str | None:
    """The subject of a valid, unexpired session value; None otherwise."""
    if not value:
        return None
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    subject, issued_text, mac = parts
    expected = _mac(secret, f"session:{subject}.{issued_text}")
    if not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "surrogateescape")):
        return None
    current = time.time() if now is None else now
    if not 0 <= current - int(issued_text) <= SESSION_TTL_S:
        return None
    return subject


def valid_rep_id(rep_id: str) -> bool:
    """True for ids that can be carried in a session cookie."""
    return bool(_REP_ID.match(rep_id))


def dashboard_subject() -> str:
    """The subject of dashboard sessions."""
    return _DASHBOARD_SUBJECT


def set_session_cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, path: str
) -> None:
    """Set a page session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=SESSION_TTL_S,
        path=path,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
