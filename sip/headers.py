"""Header fields: the ordered :class:`Headers` collection and typed values (RFC 3261 §7.3, §20).

:class:`Headers` keeps every field as received (name spelling, order, raw value), so a parsed
message re-serialises faithfully; look-ups are case-insensitive and understand compact forms.
Typed values (:class:`Via`, :class:`NameAddr`, :class:`CSeq`) are parsed from those raw values on
demand by the functions below, each of which raises :class:`~sip.errors.ParseError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

from . import _abnf
from .errors import LocalProtocolError, ParseError
from .uri import URI, Params, format_params, param_lookup, parse_uri, with_param

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "CallInfo",
    "Headers",
    "NameAddr",
    "Reason",
    "Via",
    "canonical_name",
    "parse_auth_params",
    "parse_call_info",
    "parse_cseq",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_reason",
    "parse_via",
    "quote",
    "split_header_values",
    "unquote",
]

T = TypeVar("T")

#: Largest delta-seconds value (RFC 3261 §20.19: 0 to (2**32)-1).
MAX_DELTA_SECONDS = 2**32 - 1

#: Compact header names (RFC 3261 §7.3.3 and the RFCs that registered the others).
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

#: Headers whose grammar is a comma-separated list, so that several fields may be combined into
#: one (RFC 3261 §7.3.1). Authentication headers, Date and the like are *not* lists even though
#: their values contain commas.
LIST_HEADERS: frozenset[str] = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "allow-events",
        "content-encoding",
        "content-language",
        "in-reply-to",
        "warning",
        "alert-info",
        "call-info",
        "error-info",
        "path",
        "service-route",
        "p-asserted-identity",
        "p-preferred-identity",
        "accept-contact",
        "reject-contact",
        "request-disposition",
        "security-client",
        "security-server",
        "security-verify",
        "history-info",
        "reason",
    }
)

_name_cache: dict[str, str] = {}
_NAME_CACHE_MAX = 512


def canonical_name(name: str) -> str:
    """The look-up key of a header name: lower case, compact form expanded (``v`` -> ``via``)."""
    key = _name_cache.get(name)
    if key is None:
        lname = name.lower()
        key = COMPACT_FORMS.get(lname, lname)
        if len(_name_cache) < _NAME_CACHE_MAX:
            _name_cache[name] = key
    return key


def _check_field(name: str, value: str) -> None:
    if _abnf.header_name_re.fullmatch(name) is None:
        raise LocalProtocolError(f"invalid header name {name!r}")
    if "\r" in value or "\n" in value:
        raise LocalProtocolError(f"CR or LF in the value of header {name!r}")
    if (
        _abnf.forbidden_head_char_re.search(value) is not None
        and _abnf.line_with_quoted_controls_re.fullmatch(value) is None
    ):
        # control characters are legal only as quoted-pairs inside quoted strings
        raise LocalProtocolError(f"control character in the value of header {name!r}")


class Headers:
    """An ordered list of header fields with case-insensitive, compact-form-aware look-up.

    Names are kept as given (``"v"`` stays ``"v"`` on the wire); equality compares canonical names
    and values, in order. Typed values parsed from the fields are memoised until the next change.
    """

    __slots__ = ("_cache", "_fields", "_validated")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []
        self._cache: dict[str, object] = {}
        # True while every field is as the message parser checked it against the grammar.
        self._validated = False
        for name, value in items:
            _check_field(name, value)
            self._fields.append((name, canonical_name(name), value))

    @classmethod
    def _trusted(cls, fields: list[tuple[str, str, str]], *, validated: bool = False) -> Headers:
        """Build from ``(name, key, value)`` triples whose names are known to be tokens;
        ``validated`` when the message parser also checked every value it knows."""
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._cache = {}
        headers._validated = validated
        return headers

    @property
    def validated(self) -> bool:
        """Whether these are a parsed message's fields, unchanged since they were checked."""
        return self._validated

    # --- reading ---

    def get(self, name: str) -> str | None:
        """Value of the first field called ``name``, or ``None``."""
        key = canonical_name(name)
        for _, k, value in self._fields:
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Values of every field called ``name``; list-valued headers are split on top-level
        commas (one item per value), other headers give one item per field."""
        key = canonical_name(name)
        values = [value for _, k, value in self._fields if k == key]
        if key in LIST_HEADERS:
            out: list[str] = []
            for value in values:
                out.extend(split_header_values(value))
            return out
        return values

    def get_raw_values(self, name: str) -> list[str]:
        """Values of every field called ``name``, one per field, never split."""
        key = canonical_name(name)
        return [value for _, k, value in self._fields if k == key]

    def fields(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, in order, names as given."""
        return [(name, value) for name, _, value in self._fields]

    def count(self, name: str) -> int:
        """How many fields are called ``name``."""
        key = canonical_name(name)
        return sum(1 for _, k, _ in self._fields if k == key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name)
        return any(k == key for _, k, _ in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for name, _, value in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for _, k, v in self._fields] == [(k, v) for _, k, v in other._fields]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self.fields()!r})"

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers._trusted(list(self._fields), validated=self._validated)

    def equal_except(self, other: Headers, skip: str) -> bool:
        """Equality ignoring every field whose canonical name is ``skip``."""
        mine = [(k, v) for _, k, v in self._fields if k != skip]
        theirs = [(k, v) for _, k, v in other._fields if k != skip]
        return mine == theirs

    def typed(self, key: str, parse: Callable[[Headers], T]) -> T:
        """``parse(self)``, memoised under ``key`` until the headers change."""
        try:
            return self._cache[key]  # type: ignore[return-value]
        except KeyError:
            value = parse(self)
            self._cache[key] = value
            return value

    def _memo(self, key: str, value: object) -> None:
        self._cache[key] = value

    def _raw(self) -> list[tuple[str, str, str]]:
        return self._fields

    # --- changing ---

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        _check_field(name, value)
        self._cache.clear()
        self._validated = False
        self._fields.append((name, canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before every other (e.g. a new top Via)."""
        _check_field(name, value)
        self._cache.clear()
        self._validated = False
        self._fields.insert(0, (name, canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by one field, where the first one was (or at the
        end)."""
        _check_field(name, value)
        self._cache.clear()
        self._validated = False
        key = canonical_name(name)
        out: list[tuple[str, str, str]] = []
        placed = False
        for field in self._fields:
            if field[1] == key:
                if not placed:
                    out.append((name, key, value))
                    placed = True
                continue
            out.append(field)
        if not placed:
            out.append((name, key, value))
        self._fields = out

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; returns how many were removed."""
        key = canonical_name(name)
        before = len(self._fields)
        self._fields = [field for field in self._fields if field[1] != key]
        removed = before - len(self._fields)
        if removed:
            self._cache.clear()
            self._validated = False
        return removed


# --- splitting and quoting ---------------------------------------------------------------------


def split_header_values(value: str) -> list[str]:
    """Split a list-valued header on top-level commas (commas inside ``"..."`` and ``<...>`` are
    kept); items are stripped and empty items dropped."""
    if '"' not in value and "<" not in value:
        return [item for item in (part.strip(" \t") for part in value.split(",")) if item]
    items: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    escaped = False
    for i, ch in enumerate(value):
        if in_quotes:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif in_angle:
            if ch == ">":
                in_angle = False
        elif ch == "<":
            in_angle = True
        elif ch == ",":
            items.append(value[start:i])
            start = i + 1
    items.append(value[start:])
    return [item for item in (part.strip(" \t") for part in items) if item]


def unquote(text: str) -> str:
    """The content of a quoted-string, quoted pairs resolved; other text is returned as is."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" in inner:
            return _abnf.quoted_pair_re.sub(r"\1", inner)
        return inner
    return text


def quote(text: str) -> str:
    """``text`` as a quoted-string: ``"``, ``\\`` and control characters become quoted-pairs.

    Raises :class:`~sip.errors.LocalProtocolError` for CR or LF, which no quoted-string can
    carry.
    """
    if "\r" in text or "\n" in text:
        raise LocalProtocolError("CR or LF cannot be quoted")
    return '"' + _QUOTE_RE.sub(r"\\\g<0>", text) + '"'


_QUOTE_RE = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def _params_at(value: str, pos: int) -> tuple[Params, int]:
    """Parameters starting at ``pos`` of a validated value; returns them and where they end."""
    params: list[tuple[str, str | None]] = []
    match = _abnf.param_extract_re.match
    while True:
        m = match(value, pos)
        if m is None:
            return tuple(params), pos
        params.append((m.group(1), m.group(2)))
        pos = m.end()


def _next_item(value: str, pos: int) -> int | None:
    """After an item of a validated list: ``None`` at the end, else where the next starts."""
    m = _abnf.comma_re.match(value, pos)
    if m is None:
        return None
    return m.end()


# --- Via ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Via:
    """One ``via-parm`` (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...``."""

    protocol: str = "SIP/2.0"
    transport: str = "UDP"
    host: str = ""
    port: int | None = None
    params: Params = ()

    def param(self, name: str) -> str | None:
        """Value of parameter ``name`` (case-insensitive), ``None`` if absent or valueless."""
        return param_lookup(self.params, name)

    def has_param(self, name: str) -> bool:
        """Whether parameter ``name`` is present."""
        lname = name.lower()
        return any(key.lower() == lname for key, _ in self.params)

    def with_param(self, name: str, value: str | None = None) -> Via:
        """A copy with parameter ``name`` set (replaced where it was, or appended)."""
        return replace(self, params=with_param(self.params, name, value))

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter."""
        return self.param("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (RFC 3261 §18.2.1)."""
        return self.param("received")

    @property
    def rport(self) -> int | bool | None:
        """RFC 3581 ``rport``: the port number if it has one, ``True`` if present without a
        value, ``None`` if absent."""
        lname = "rport"
        for key, value in self.params:
            if key.lower() == lname:
                if value is None or value == "":
                    return True
                if not (value.isascii() and value.isdigit()):
                    raise ParseError("malformed Via rport parameter")
                return int(value)
        return None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """``(host, port)`` of the sent-by."""
        return self.host, self.port

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def parse_via(value: str, *, validated: bool = False) -> list[Via]:
    """Parse a Via header value (one or more comma-separated via-parms).

    ``validated``: the value already matched the Via grammar (skips that check).
    """
    if not validated and _abnf.via_value_re.fullmatch(value) is None:
        raise ParseError("malformed Via header")
    vias: list[Via] = []
    pos = 0
    match = _abnf.via_extract_re.match
    while True:
        m = match(value, pos)
        assert m is not None  # validated above
        name, version, transport, host, port_text = m.groups()
        params, pos = _params_at(value, m.end())
        protocol = "SIP/2.0" if name == "SIP" and version == "2.0" else f"{name}/{version}"
        port = int(port_text.lstrip("0") or "0") if port_text is not None else None
        vias.append(Via(protocol, transport, host, port, params))
        next_pos = _next_item(value, pos)
        if next_pos is None:
            return vias
        pos = next_pos


# --- name-addr ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A ``name-addr`` or ``addr-spec`` with header parameters (From, To, Contact, Route …).

    ``display_name`` is the unquoted text (``None`` when absent); ``str()`` always writes the URI
    in angle brackets.
    """

    display_name: str | None
    uri: URI
    params: Params = ()

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (From/To)."""
        return param_lookup(self.params, "tag")

    def param(self, name: str) -> str | None:
        """Value of header parameter ``name`` (case-insensitive), or ``None``."""
        return param_lookup(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``;tag=`` set."""
        return replace(self, params=with_param(self.params, "tag", tag))

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        """A copy with header parameter ``name`` set."""
        return replace(self, params=with_param(self.params, name, value))

    def __str__(self) -> str:
        display = f"{quote(self.display_name)} " if self.display_name is not None else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


def _name_addr_at(value: str, pos: int) -> tuple[NameAddr, int]:
    """One name-addr / addr-spec with its parameters, from a validated value."""
    m = _abnf.name_addr_extract_re.match(value, pos)
    assert m is not None  # validated by the caller
    quoted, tokens, bracketed, bare = m.groups()
    display = unquote(quoted) if quoted is not None else (tokens or None)
    uri = parse_uri(bracketed if bracketed is not None else bare, validated=True)
    params, end = _params_at(value, m.end())
    return NameAddr(display, uri, params), end


def _check_special_params(addr: NameAddr, what: str) -> None:
    for key, param in addr.params:
        lkey = key.lower()
        if lkey == "q":
            if param is None or _abnf.qvalue_re.fullmatch(param) is None:
                raise ParseError(f"malformed q parameter in {what} header")
        elif lkey == "expires" and (
            param is None
            or _abnf.digits_re.fullmatch(param) is None
            or len(param.lstrip("0")) > 10
            or int(param) > MAX_DELTA_SECONDS
        ):
            raise ParseError(f"malformed expires parameter in {what} header")


def parse_name_addr(value: str, what: str = "name-addr", *, validated: bool = False) -> NameAddr:
    """Parse a single ``(name-addr / addr-spec) *(SEMI param)`` value (From, To, Refer-To …).

    ``validated``: the value already matched the grammar (skips that check).
    """
    if not validated and _abnf.name_addr_value_re.fullmatch(value) is None:
        raise ParseError(f"malformed {what} header")
    return _name_addr_at(value, 0)[0]


def parse_name_addr_list(
    value: str, what: str = "name-addr", *, validated: bool = False
) -> list[NameAddr]:
    """Parse a comma-separated list of name-addrs (Contact, Route, Record-Route …).

    The ``q`` and ``expires`` header parameters are checked against their grammar (RFC 3261
    §20.10). ``validated``: the value already matched the grammar (skips that check).
    """
    if not validated and _abnf.name_addr_list_re.fullmatch(value) is None:
        raise ParseError(f"malformed {what} header")
    out: list[NameAddr] = []
    pos = 0
    while True:
        addr, pos = _name_addr_at(value, pos)
        if addr.params:
            _check_special_params(addr, what)
        out.append(addr)
        next_pos = _next_item(value, pos)
        if next_pos is None:
            return out
        pos = next_pos


# --- CSeq --------------------------------------------------------------------------------------

_MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class CSeq:
    """The CSeq header (RFC 3261 §20.16): sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value; the number must be below 2**31 (RFC 3261 §8.1.1.5)."""
    m = _abnf.cseq_re.fullmatch(value)
    if m is None:
        raise ParseError("malformed CSeq header")
    digits, method = m.groups()
    if len(digits) > 10:
        digits = digits.lstrip("0")
        if len(digits) > 10:
            raise ParseError("CSeq number out of range")
    seq = int(digits or "0")
    if seq > _MAX_CSEQ:
        raise ParseError("CSeq number out of range")
    return CSeq(seq, method)


# --- Reason (RFC 3326) and Call-Info (RFC 3261 §20.9) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Reason:
    """One ``reason-value`` (RFC 3326 §2): ``SIP;cause=200;text="Call completed elsewhere"``."""

    protocol: str
    cause: int | None = None
    text: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        return f"{self.protocol}{format_params(self.params)}"


def parse_reason(value: str) -> list[Reason]:
    """Parse a Reason header value (one or more comma-separated reason-values).

    ``cause`` must be digits and ``text`` a quoted string (RFC 3326 §2); other parameters are
    kept in ``params`` with every parameter as written.
    """
    out: list[Reason] = []
    for item in split_header_values(value):
        m = _abnf.reason_value_re.fullmatch(item)
        if m is None:
            raise ParseError("malformed Reason header")
        params, _ = _params_at(m.group(2), 0)
        cause: int | None = None
        text: str | None = None
        for name, param in params:
            lname = name.lower()
            if lname == "cause":
                if param is None or not (param.isascii() and param.isdigit()) or len(param) > 9:
                    raise ParseError("malformed Reason cause parameter")
                cause = int(param)
            elif lname == "text":
                if param is None or not param.startswith('"'):
                    raise ParseError("Reason text parameter must be a quoted string")
                text = unquote(param)
        out.append(Reason(m.group(1), cause, text, params))
    if not out:
        raise ParseError("empty Reason header")
    return out


@dataclass(frozen=True, slots=True)
class CallInfo:
    """One ``info`` of Call-Info (RFC 3261 §20.9): ``<https://crm/lead/7>;purpose=info``."""

    uri: str
    params: Params = ()

    @property
    def purpose(self) -> str | None:
        """The ``purpose`` parameter (``icon``, ``info``, ``card`` or an extension token)."""
        return param_lookup(self.params, "purpose")

    def __str__(self) -> str:
        return f"<{self.uri}>{format_params(self.params)}"


def parse_call_info(value: str) -> list[CallInfo]:
    """Parse a Call-Info header value: absolute URIs in angle brackets, each with parameters."""
    out: list[CallInfo] = []
    for item in split_header_values(value):
        m = _abnf.call_info_value_re.fullmatch(item)
        if m is None:
            raise ParseError("malformed Call-Info header")
        params, _ = _params_at(m.group(2), 0)
        out.append(CallInfo(m.group(1), params))
    if not out:
        raise ParseError("empty Call-Info header")
    return out


# --- authentication ----------------------------------------------------------------------------


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Parse a challenge or credentials value: ``Digest realm="x", nonce="y", ...``.

    Returns the scheme and the parameters, names lower-cased and quotes removed.
    """
    m = _abnf.auth_scheme_re.match(value)
    if m is None:
        raise ParseError("malformed authentication header")
    scheme = m.group(1)
    params: dict[str, str] = {}
    pos = m.end()
    if pos == len(value):
        return scheme, params
    while True:
        p = _abnf.auth_param_re.match(value, pos)
        if p is None:
            raise ParseError("malformed authentication parameter")
        params[p.group(1).lower()] = unquote(p.group(2))
        pos = p.end()
        if pos == len(value):
            return scheme, params
        if value[pos] != ",":
            raise ParseError("malformed authentication parameter")
        comma = _abnf.comma_re.match(value, pos)
        assert comma is not None
        pos = comma.end()
