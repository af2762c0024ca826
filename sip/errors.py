"""Errors raised by the SIP stack.

Every error that comes from the network says what a UAS should answer (``status_hint``), in the
manner of h11's ``RemoteProtocolError(error_status_hint=...)`` and h2's exceptions.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ParseError", "RemoteProtocolError", "SipError"]


class SipError(Exception):
    """Base class of every error raised by the :mod:`sip` package."""


class ParseError(SipError, ValueError):
    """Bytes or text that are not valid SIP.

    ``str(error)`` is a short human reason, usable as the reason phrase of the error response;
    ``status_hint`` is the status code a UAS answers with (400 unless the grammar says otherwise,
    e.g. 505 for an unsupported SIP-Version, 513 for an oversized message).
    """

    def __init__(self, message: str, *, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, status_hint={self.status_hint})"


class LocalProtocolError(SipError):
    """Our own code used the stack wrongly (e.g. answered a request twice)."""


class RemoteProtocolError(SipError):
    """The peer broke the protocol; ``status_hint`` is what to answer if it can be answered."""

    def __init__(self, message: str, *, status_hint: int = 400) -> None:
        super().__init__(message)
        self.status_hint = status_hint
