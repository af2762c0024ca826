"""SIP requests and responses: parsing, validation and serialisation (RFC 3261 §7, §25).

:func:`parse_message` takes one whole message (a UDP datagram) and either returns a
:class:`Request` / :class:`Response` or raises :class:`~sip.errors.ParseError` carrying the status
a UAS should answer. :class:`StreamParser` frames messages on a stream transport by
Content-Length (RFC 3261 §18.3). Serialisation always writes a Content-Length that matches the
body, so ``parse_message(bytes(m)) == m`` for every message this module produces or accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import _abnf
from .errors import ParseError
from .headers import (
    MAX_DELTA_SECONDS,
    CallInfo,
    CSeq,
    Headers,
    NameAddr,
    Reason,
    Via,
    canonical_name,
    parse_call_info,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_reason,
    parse_via,
)
from .uri import URI, SipURI, parse_uri

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_STREAM_BUFFER_BYTES",
    "Message",
    "ParserLimits",
    "Request",
    "Response",
    "StreamParser",
    "make_response",
    "parse_message",
    "reason_phrase",
]

SIP_VERSION = "SIP/2.0"


#: Default reason phrases (RFC 3261 §21 and later registrations).
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

_CLASS_PHRASES = {
    1: "Trying",
    2: "OK",
    3: "Redirection",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


def reason_phrase(status: int) -> str:
    """The default reason phrase of ``status`` (the class's generic phrase if unknown)."""
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    return _CLASS_PHRASES.get(status // 100, "Unknown")


@dataclass(frozen=True)
class ParserLimits:
    """Hard limits applied while parsing untrusted input (DESIGN §3: "hard limits on message
    size and header count")."""

    #: Largest whole message, head and body, in bytes. The default is the largest UDP payload;
    #: a larger message is refused with 513 (Message Too Large).
    max_message_bytes: int = 65535
    #: Most header fields (after unfolding) in one message.
    max_headers: int = 256
    #: Longest physical line of the head, in octets.
    max_line_bytes: int = 8192


DEFAULT_LIMITS = ParserLimits()

#: The most a :class:`StreamParser` holds before it gives up on the connection.
MAX_STREAM_BUFFER_BYTES = 4 * 65535


# --- typed accessors shared by requests and responses ------------------------------------------


def _single(headers: Headers, key: str, what: str) -> str:
    value = headers.get(key)
    if value is None:
        raise ParseError(f"missing {what} header")
    return value


def _vias(headers: Headers) -> list[Via]:
    validated = headers.validated
    out: list[Via] = []
    for value in headers.get_raw_values("via"):
        out.extend(parse_via(value, validated=validated))
    return out


def _name_addrs(headers: Headers, key: str, what: str) -> list[NameAddr]:
    validated = headers.validated
    out: list[NameAddr] = []
    for value in headers.get_raw_values(key):
        if key == "contact" and value.strip(" \t") == "*":
            continue
        out.extend(parse_name_addr_list(value, what, validated=validated))
    return out


def _contacts(headers: Headers) -> list[NameAddr]:
    return _name_addrs(headers, "contact", "Contact")


def _route(headers: Headers) -> list[NameAddr]:
    return _name_addrs(headers, "route", "Route")


def _record_route(headers: Headers) -> list[NameAddr]:
    return _name_addrs(headers, "record-route", "Record-Route")


def _from(headers: Headers) -> NameAddr:
    return parse_name_addr(_single(headers, "from", "From"), "From", validated=headers.validated)


def _to(headers: Headers) -> NameAddr:
    return parse_name_addr(_single(headers, "to", "To"), "To", validated=headers.validated)


def _cseq(headers: Headers) -> CSeq:
    return parse_cseq(_single(headers, "cseq", "CSeq"))


def _max_forwards(headers: Headers) -> int | None:
    value = headers.get("max-forwards")
    if value is None:
        return None
    if _abnf.max_forwards_re.fullmatch(value) is None:
        raise ParseError("malformed Max-Forwards header")
    return int(value.lstrip("0") or "0")


def _reasons(headers: Headers) -> list[Reason]:
    return [reason for value in headers.get_raw_values("reason") for reason in parse_reason(value)]


def _call_info(headers: Headers) -> list[CallInfo]:
    return [
        info for value in headers.get_raw_values("call-info") for info in parse_call_info(value)
    ]


class Message:
    """Accessors shared by :class:`Request` and :class:`Response`.

    Typed values are parsed from :attr:`headers` on first access (and memoised until the headers
    change); each raises :class:`~sip.errors.ParseError` when its header is malformed or missing.
    """

    headers: Headers
    body: bytes

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        return list(self.headers.typed("vias", _vias))

    @property
    def top_via(self) -> Via:
        """The first Via value."""
        vias = self.headers.typed("vias", _vias)
        if not vias:
            raise ParseError("missing Via header")
        return vias[0]

    @property
    def from_(self) -> NameAddr:
        """The From header."""
        return self.headers.typed("from", _from)

    @property
    def to(self) -> NameAddr:
        """The To header."""
        return self.headers.typed("to", _to)

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return _single(self.headers, "call-id", "Call-ID")

    @property
    def cseq(self) -> CSeq:
        """The CSeq header."""
        return self.headers.typed("cseq", _cseq)

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value (``[]`` when absent, and for the ``*`` of a REGISTER)."""
        return list(self.headers.typed("contacts", _contacts))

    @property
    def contact_is_wildcard(self) -> bool:
        """Whether the message has ``Contact: *`` (RFC 3261 §10.2.2)."""
        return any(v.strip(" \t") == "*" for v in self.headers.get_raw_values("contact"))

    @property
    def route(self) -> list[NameAddr]:
        """Every Route value, in order."""
        return list(self.headers.typed("route", _route))

    @property
    def record_route(self) -> list[NameAddr]:
        """Every Record-Route value, in order."""
        return list(self.headers.typed("record-route", _record_route))

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or ``None`` when absent."""
        return self.headers.typed("max-forwards", _max_forwards)

    @property
    def reasons(self) -> list[Reason]:
        """Every Reason value (RFC 3326), in order; ``[]`` when absent."""
        return list(self.headers.typed("reason", _reasons))

    @property
    def call_info(self) -> list[CallInfo]:
        """Every Call-Info value (RFC 3261 §20.9), in order; ``[]`` when absent."""
        return list(self.headers.typed("call-info", _call_info))

    @property
    def content_type(self) -> str | None:
        """The Content-Type value as written (``application/sdp``), or ``None``."""
        return self.headers.get("content-type")

    def serialize(self) -> bytes:
        """The message on the wire; Content-Length is (re)written to match the body."""
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        return self.serialize()


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    parts = [start_line]
    append = parts.append
    length_written = False
    for name, key, value in headers._raw():
        if key == "content-length":
            if length_written:
                continue
            length_written = True
            append(f"{name}: {len(body)}\r\n")
            continue
        append(f"{name}: {value}\r\n")
    if not length_written:
        append(f"Content-Length: {len(body)}\r\n")
    append("\r\n")
    return "".join(parts).encode("utf-8") + body


@dataclass(eq=True)
class Request(Message):
    """A SIP request. ``uri`` is the Request-URI; ``headers`` and ``body`` as on the wire.

    Equality ignores Content-Length fields: serialisation derives them from ``body``.
    """

    method: str
    uri: URI
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (
            self.method == other.method
            and self.uri == other.uri
            and self.version == other.version
            and self.body == other.body
            and self.headers.equal_except(other.headers, "content-length")
        )

    __hash__ = None  # type: ignore[assignment]

    def serialize(self) -> bytes:
        """The request on the wire; Content-Length is (re)written to match the body."""
        return _serialize(f"{self.method} {self.uri} {self.version}\r\n", self.headers, self.body)


@dataclass(eq=True)
class Response(Message):
    """A SIP response.

    Equality ignores Content-Length fields: serialisation derives them from ``body``.
    """

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (
            self.status == other.status
            and self.reason == other.reason
            and self.version == other.version
            and self.body == other.body
            and self.headers.equal_except(other.headers, "content-length")
        )

    __hash__ = None  # type: ignore[assignment]

    def serialize(self) -> bytes:
        """The response on the wire; Content-Length is (re)written to match the body."""
        return _serialize(
            f"{self.version} {self.status} {self.reason}\r\n", self.headers, self.body
        )


# --- parsing -----------------------------------------------------------------------------------


def _delta_seconds_ok(digits: str) -> bool:
    digits = digits.lstrip("0")
    return len(digits) <= 10 and int(digits or "0") <= MAX_DELTA_SECONDS


def _check_expires(value: str) -> bool | None:
    return (_abnf.digits_re.fullmatch(value) is not None and _delta_seconds_ok(value)) or None


def _check_retry_after(value: str) -> bool | None:
    m = _abnf.retry_after_re.fullmatch(value)
    return (m is not None and _delta_seconds_ok(m.group(1))) or None


def _check_contact(value: str) -> bool | None:
    if value == "*":
        return True
    if _abnf.name_addr_list_re.fullmatch(value) is None:
        return None
    if _abnf.contact_special_param_re.search(value) is not None:
        parse_name_addr_list(value, "Contact", validated=True)  # checks q= and expires=
    return True


#: What :func:`parse_message` checks in the value of each field it knows, by canonical name:
#: the headers a UAS relies on, and those RFC 4475 §3.1.2 shows broken. Each check returns
#: ``None`` for a malformed value (most are a compiled pattern's ``fullmatch``).
_VALIDATORS: dict[str, Callable[[str], object]] = {
    "via": _abnf.via_value_re.fullmatch,
    "from": _abnf.name_addr_value_re.fullmatch,
    "to": _abnf.name_addr_value_re.fullmatch,
    "call-id": _abnf.call_id_re.fullmatch,
    "cseq": _abnf.cseq_re.fullmatch,
    "max-forwards": _abnf.max_forwards_re.fullmatch,
    "content-length": _abnf.digits_re.fullmatch,
    "contact": _check_contact,
    "route": _abnf.name_addr_list_re.fullmatch,
    "record-route": _abnf.name_addr_list_re.fullmatch,
    "expires": _check_expires,
    "min-expires": _check_expires,
    "retry-after": _check_retry_after,
    "date": _abnf.sip_date_re.fullmatch,
    "warning": _abnf.warning_re.fullmatch,
    "content-type": _abnf.media_type_re.fullmatch,
}

#: The usual spelling of each checked header, for error messages.
_DISPLAY_NAMES = {
    "via": "Via",
    "from": "From",
    "to": "To",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "max-forwards": "Max-Forwards",
    "content-length": "Content-Length",
    "content-type": "Content-Type",
    "contact": "Contact",
    "route": "Route",
    "record-route": "Record-Route",
    "expires": "Expires",
    "min-expires": "Min-Expires",
    "retry-after": "Retry-After",
    "date": "Date",
    "warning": "Warning",
}

#: Headers that may appear once only (RFC 3261 §7.3.1: only list-valued headers may repeat);
#: each has an entry in ``_VALIDATORS``.
_SINGLE = frozenset(
    {"to", "from", "call-id", "cseq", "max-forwards", "content-length", "content-type"}
)
#: Headers every request and response carries (RFC 3261 §8.1.1), besides Via.
_REQUIRED = frozenset({"to", "from", "call-id", "cseq"})

#: Header names already seen to be valid tokens (as written, trailing white space included):
#: the name without that white space, and its canonical key.
_parsed_names: dict[str, tuple[str, str]] = {}
_PARSED_NAME_CACHE_MAX = 512

# a line folded onto the next: "CRLF 1*WSP" and the white space before it become one SP
_FOLD_RE = re.compile(r"[ \t]*\r\n[ \t]+")

_line_too_long: dict[int, re.Pattern[bytes]] = {}


def _long_line_re(limit: int) -> re.Pattern[bytes]:
    """A pattern that finds a line longer than ``limit`` octets."""
    pattern = _line_too_long.get(limit)
    if pattern is None:
        pattern = re.compile(b"[^\\r\\n]{%d}" % (limit + 1))
        if len(_line_too_long) < 16:
            _line_too_long[limit] = pattern
    return pattern


#: Every octet but the control characters a header may not carry raw (HTAB, CR and LF are
#: handled elsewhere): ``raw.translate(None, _NOT_CONTROL)`` keeps only the forbidden ones.
_NOT_CONTROL = bytes(b for b in range(256) if not (b < 0x20 or b == 0x7F) or b in (9, 10, 13))


def _check_quoted_controls(head: str) -> None:
    """Control characters are legal only as quoted-pairs inside quoted strings."""
    for line in head.split("\r\n"):
        if (
            _abnf.forbidden_head_char_re.search(line) is not None
            and _abnf.line_with_quoted_controls_re.fullmatch(line) is None
        ):
            raise ParseError("control character in the message head")


def _parse_head(head: str, limits: ParserLimits) -> tuple[Request | Response, int | None]:
    """Parse the start line and header fields; returns the message and its Content-Length."""
    # The start line first, so that an unsupported version is answered with 505.
    start, _, block = head.partition("\r\n")
    is_response = start[:4].upper() == "SIP/"
    if is_response:
        version, status, reason = _parse_status_line(start)
    else:
        method, uri, version = _parse_request_line(start)

    fields: list[tuple[str, str, str]] = []
    append = fields.append
    # value of each checked header; only those may be single-valued or required
    found: dict[str, str] = {}
    if block:
        if block[0] in " \t":
            raise ParseError("continuation line before the first header")
        if "\r\n " in block or "\r\n\t" in block:
            block = _FOLD_RE.sub(" ", block)
        lines = block.split("\r\n")
        if len(lines) > limits.max_headers:
            raise ParseError("too many header fields")
        name_cache = _parsed_names
        validators = _VALIDATORS
        for line in lines:
            written, colon, value = line.partition(":")
            if not colon:
                raise ParseError("header line without a colon")
            known = name_cache.get(written)
            if known is None:
                known = _check_name(written)
                if len(name_cache) < _PARSED_NAME_CACHE_MAX:
                    name_cache[written] = known
            key = known[1]
            value = value.strip(" \t")
            append((known[0], key, value))
            check = validators.get(key)
            if check is not None:
                if check(value) is None:
                    raise ParseError(f"malformed {_DISPLAY_NAMES[key]} header")
                if key in found and key in _SINGLE:
                    raise ParseError(f"more than one {_DISPLAY_NAMES[key]} header")
                found[key] = value
    if "via" not in found:
        raise ParseError("missing Via header")
    if not found.keys() >= _REQUIRED:
        missing = sorted(_DISPLAY_NAMES[key] for key in _REQUIRED - found.keys())
        raise ParseError(f"missing {', '.join(missing)} header")
    cseq_value = found["cseq"]
    length_value = found.get("content-length")

    headers = Headers._trusted(fields, validated=True)
    cseq = parse_cseq(cseq_value)
    headers._memo("cseq", cseq)
    content_length: int | None = None
    if length_value is not None:
        digits = length_value.lstrip("0")
        if len(digits) > 10:
            raise ParseError("Content-Length out of range")
        content_length = int(digits or "0")

    if is_response:
        return Response(status, reason, headers, b"", version), content_length
    if cseq.method != method:
        raise ParseError("CSeq method does not match the request method")
    return Request(method, uri, headers, b"", version), content_length


def _check_name(written: str) -> tuple[str, str]:
    """A header name as written before HCOLON (trailing LWS allowed): the name and its key."""
    name = written.rstrip(" \t")
    if _abnf.header_name_re.fullmatch(name) is None:
        raise ParseError("malformed header name")
    return name, canonical_name(name)


def _check_version(version: str) -> None:
    if version != SIP_VERSION and version.upper() != SIP_VERSION:
        if _abnf.sip_version_re.fullmatch(version):
            raise ParseError("SIP version not supported", status_hint=505)
        raise ParseError("malformed SIP version")


#: Methods known to be tokens without asking the grammar.
_COMMON_METHODS = frozenset(
    {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
        "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
    }
)  # fmt: skip


def _parse_request_line(line: str) -> tuple[str, URI, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise ParseError("malformed Request-Line")
    method, uri_text, version = parts
    if method not in _COMMON_METHODS and _abnf.method_re.fullmatch(method) is None:
        raise ParseError("malformed method")
    if version != SIP_VERSION:
        _check_version(version)
    try:
        uri = parse_uri(uri_text)
    except ParseError:
        raise ParseError("malformed Request-URI") from None
    if isinstance(uri, SipURI) and uri.headers:
        # RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI.
        raise ParseError("header fields in the Request-URI")
    return method, uri, version


def _parse_status_line(line: str) -> tuple[str, int, str]:
    version, _, rest = line.partition(" ")
    _check_version(version)
    code, _, reason = rest.partition(" ")
    if _abnf.status_code_re.fullmatch(code) is None:
        raise ParseError("malformed status code")
    return version, int(code), reason


def parse_message(data: bytes, limits: ParserLimits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one whole message (a datagram).

    Content-Length rules for datagrams (RFC 3261 §18.3): octets beyond Content-Length are
    discarded; fewer octets than Content-Length is an error; without Content-Length the body is
    the rest of the datagram. CRLFs before the start line are ignored.

    Raises :class:`~sip.errors.ParseError` for anything a conforming UAS answers with 400 (or
    with the error's ``status_hint``: 505 for another SIP version, 513 for an oversized message).
    """
    if len(data) > limits.max_message_bytes:
        raise ParseError("message too large", status_hint=513)
    start = 0
    while data.startswith(b"\r\n", start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise ParseError("no empty line after the header fields")
    raw = data[start:end]
    if len(raw) > limits.max_line_bytes and _long_line_re(limits.max_line_bytes).search(raw):
        raise ParseError("header line too long")
    crlf_count = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf_count or raw.count(b"\n") != crlf_count:
        raise ParseError("bare CR or LF in the message head")
    try:
        head = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("message head is not UTF-8") from None
    if raw.translate(None, _NOT_CONTROL):
        _check_quoted_controls(head)
    message, content_length = _parse_head(head, limits)
    body_start = end + 4
    if content_length is None:
        message.body = data[body_start:]
    else:
        body_end = body_start + content_length
        if body_end > len(data):
            raise ParseError("body shorter than Content-Length")
        message.body = data[body_start:body_end]
    return message


class StreamParser:
    """Frames messages on a stream transport (TCP/TLS) by Content-Length (RFC 3261 §18.3).

    :meth:`feed` only buffers; :meth:`next_message` parses one message when a whole one is
    buffered and returns ``None`` when it needs more data. CRLF keep-alives between messages
    (RFC 5626 §4.4.1) are skipped. A :class:`~sip.errors.ParseError` means the stream cannot be
    resynchronised: the transport closes the connection.
    """

    def __init__(
        self,
        limits: ParserLimits = DEFAULT_LIMITS,
        *,
        max_buffer_bytes: int = MAX_STREAM_BUFFER_BYTES,
    ) -> None:
        self._buffer = bytearray()
        self._limits = limits
        self._max_buffer_bytes = max_buffer_bytes

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes. Raises :class:`~sip.errors.ParseError` (513) if the unparsed
        buffer would exceed its cap."""
        if len(self._buffer) + len(data) > self._max_buffer_bytes:
            raise ParseError("stream buffer limit exceeded", status_hint=513)
        self._buffer += data

    def next_message(self) -> Request | Response | None:
        """The next whole message, or ``None`` if more data is needed."""
        buf = self._buffer
        start = 0
        while buf.startswith(b"\r\n", start):
            start += 2
        if start:
            del buf[:start]
        if not buf:
            return None
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self._limits.max_message_bytes:
                raise ParseError("message head too large", status_hint=513)
            return None
        m = _abnf.stream_content_length_re.search(buf, 0, end + 2)
        if m is None:
            raise ParseError("missing Content-Length on a stream transport")
        digits = m.group(1).lstrip(b"0") or b"0"
        if len(digits) > 10:
            raise ParseError("Content-Length out of range")
        total = end + 4 + int(digits)
        if total > self._limits.max_message_bytes:
            raise ParseError("message too large", status_hint=513)
        if len(buf) < total:
            return None
        data = bytes(buf[:total])
        del buf[:total]
        return parse_message(data, self._limits)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response to ``request`` (RFC 3261 §8.2.6.2).

    Copies every Via (in order), From, To (adding ``;tag=to_tag`` when given and the To has no
    tag), Call-ID and CSeq; for 100 (Trying) also Timestamp (§8.2.6.1). ``headers`` are
    appended. Record-Route for dialog-creating 2xx responses is the UAS's job, not done here.
    """
    out: list[tuple[str, str, str]] = []
    for name, key, value in request.headers._raw():
        if key in ("via", "from", "call-id", "cseq") or (key == "timestamp" and status == 100):
            out.append((name, key, value))
        elif key == "to":
            tagged = value
            if to_tag is not None and request.to.tag is None:
                tagged = f"{value};tag={to_tag}"
            out.append((name, key, tagged))
    response_headers = Headers._trusted(out)
    for name, value in headers:
        response_headers.add(name, value)
    return Response(
        status, reason if reason is not None else reason_phrase(status), response_headers, body
    )
