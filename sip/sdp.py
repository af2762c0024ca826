"""SDP (RFC 8866, formerly RFC 4566) parsing and serialisation, plus the RFC 3264 helpers a
third-party call controller (RFC 3725) needs.

The controller relays session descriptions between two parties, so what matters is that a
description survives parse → serialise unchanged, and that the few edits a controller makes
(bump the version, change the direction, put a stream on hold) are correct. No offer/answer
negotiation of codecs happens here: the two endpoints do that between themselves.

Pure: no I/O, no clock. Text is decoded as UTF-8 with ``surrogateescape`` so that any byte the
peer sent comes back out unchanged.

Grammar (RFC 8866 §9), the order this parser enforces::

    session-description = version-field origin-field session-name-field
                          [information-field] [uri-field] *email-field *phone-field
                          [connection-field] *bandwidth-field
                          1*time-description [key-field] *attribute-field
                          *media-description
    time-description    = time-field [repeat-description]  ; t= then *r=, optional z= after
    media-description   = media-field [information-field] *connection-field
                          *bandwidth-field [key-field] *attribute-field
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sip.errors import ParseError

__all__ = [
    "Bandwidth",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "SessionDescription",
    "TimeDescription",
    "make_hold",
    "make_inactive",
    "make_inactive_offer",
]

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"

# token = 1*(token-char); token-char = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" /
#         "*" / "+" / "-" / "." / "^" / "_" / "`" / "{" / "|" / "}" / "~"   (RFC 8866 §9)
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+")
# non-ws-string = 1*(VCHAR/%x80-FF): here anything but whitespace and the forbidden controls.
_NON_WS = re.compile(r"[^\x00-\x20\x7f]+")
# byte-string = 1*(%x01-09/%x0B-0C/%x0E-FF)  (no NUL, CR or LF)
_FORBIDDEN_IN_TEXT = re.compile(r"[\x00\r\n]")
_DIGITS = re.compile(r"[0-9]+")
# fmt = token; port = 1*DIGIT; "m=" media SP port ["/" integer] SP proto 1*(SP fmt)
_PORT = re.compile(r"([0-9]+)(?:/([0-9]+))?")
# proto = token *("/" token)
_PROTO = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+(?:/[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+)*")

_MAX_PORT = 65535
#: Longest number accepted (NTP times are 10 digits, session versions are 64-bit in practice).
_MAX_DIGITS = 20


class Direction(enum.StrEnum):
    """Media direction attributes of RFC 3264 §5.1 (RFC 8866 §6.7)."""

    #: Send and receive: the default when no direction attribute is present.
    SENDRECV = "sendrecv"
    #: Send only (what a party that puts the other on hold offers, RFC 3264 §8.4).
    SENDONLY = "sendonly"
    #: Receive only.
    RECVONLY = "recvonly"
    #: Neither send nor receive: the modern "black hole" (RFC 3264 §8.4 replaces c=0.0.0.0).
    INACTIVE = "inactive"


_DIRECTIONS = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``o=`` line: who made the description and which version of it this is."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """A ``c=`` line; ``address`` is kept as written (may carry ``/ttl/count`` for multicast)."""

    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A ``b=<bwtype>:<bandwidth>`` line (kbit/s for CT and AS)."""

    bwtype: str
    bandwidth: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class TimeDescription:
    """A ``t=`` line with the ``r=`` lines that follow it (kept verbatim)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


Attribute = tuple[str, str | None]
"""``a=name`` is ``(name, None)``; ``a=name:value`` is ``(name, value)`` (value may be "")."""


def _attribute_lookup(attributes: tuple[Attribute, ...], name: str) -> str | None:
    for key, value in attributes:
        if key == name:
            return value if value is not None else ""
    return None


def _direction_of(attributes: tuple[Attribute, ...]) -> Direction | None:
    for key, value in attributes:
        if value is None and key in _DIRECTIONS:
            return Direction(key)
    return None


def _with_direction_attribute(
    attributes: tuple[Attribute, ...], direction: Direction
) -> tuple[Attribute, ...]:
    """Replace the first direction attribute in place (drop the others), or append one."""
    result: list[Attribute] = []
    placed = False
    for key, value in attributes:
        if value is None and key in _DIRECTIONS:
            if not placed:
                result.append((direction.value, None))
                placed = True
            continue
        result.append((key, value))
    if not placed:
        result.append((direction.value, None))
    return tuple(result)


def _without_direction_attribute(attributes: tuple[Attribute, ...]) -> tuple[Attribute, ...]:
    return tuple((k, v) for k, v in attributes if not (v is None and k in _DIRECTIONS))


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section and the lines under it."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    title: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()

    @property
    def connection(self) -> Connection | None:
        """The media-level ``c=`` that overrides the session-level one, if any."""
        return self.connections[0] if self.connections else None

    @property
    def direction(self) -> Direction | None:
        """The direction attribute written in this section, or None (see the session's)."""
        return _direction_of(self.attributes)

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name`` ("" for a property attribute), or None when absent."""
        return _attribute_lookup(self.attributes, name)

    def attribute_values(self, name: str) -> list[str]:
        """Values of every ``a=name:value`` (e.g. all ``rtpmap`` lines), in order."""
        return [v for k, v in self.attributes if k == name and v is not None]

    def with_direction(self, direction: Direction) -> MediaDescription:
        """A copy whose direction attribute is ``direction``."""
        return replace(self, attributes=_with_direction_attribute(self.attributes, direction))

    def _lines(self) -> Iterable[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        yield f"m={self.media} {port} {self.proto} {' '.join(self.formats)}"
        if self.title is not None:
            yield f"i={self.title}"
        for connection in self.connections:
            yield f"c={connection}"
        for bandwidth in self.bandwidths:
            yield f"b={bandwidth}"
        if self.key is not None:
            yield f"k={self.key}"
        for name, value in self.attributes:
            yield f"a={name}" if value is None else f"a={name}:{value}"


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole session description (RFC 8866 §5). Immutable: edits return copies."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[TimeDescription, ...] = (TimeDescription(),)
    zone_adjustments: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()

    # -- parsing / serialising -------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse a session description; raise :class:`~sip.errors.ParseError` when malformed.

        Lines may end in CRLF or a bare LF (RFC 8866 §5 asks parsers to accept LF); the last
        line may lack its terminator.
        """
        return _Parser(data).parse()

    def serialize(self) -> bytes:
        """The description as bytes, CRLF line endings (exactly what :meth:`parse` read)."""
        return ("\r\n".join(self._lines()) + "\r\n").encode(_ENCODING, _ERRORS)

    def __bytes__(self) -> bytes:
        return self.serialize()

    def _lines(self) -> Iterable[str]:
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.session_name}"
        if self.information is not None:
            yield f"i={self.information}"
        if self.uri is not None:
            yield f"u={self.uri}"
        for email in self.emails:
            yield f"e={email}"
        for phone in self.phones:
            yield f"p={phone}"
        if self.connection is not None:
            yield f"c={self.connection}"
        for bandwidth in self.bandwidths:
            yield f"b={bandwidth}"
        for time in self.times:
            yield f"t={time.start} {time.stop}"
            for repeat in time.repeats:
                yield f"r={repeat}"
        if self.zone_adjustments is not None:
            yield f"z={self.zone_adjustments}"
        if self.key is not None:
            yield f"k={self.key}"
        for name, value in self.attributes:
            yield f"a={name}" if value is None else f"a={name}:{value}"
        for media in self.media:
            yield from media._lines()

    # -- queries ---------------------------------------------------------------------------

    @property
    def direction(self) -> Direction:
        """The session-level direction: the default for every media section without one."""
        return _direction_of(self.attributes) or Direction.SENDRECV

    def attribute(self, name: str) -> str | None:
        """Value of the first session-level ``a=name`` ("" for a flag), or None when absent."""
        return _attribute_lookup(self.attributes, name)

    def media_direction(self, index: int = 0) -> Direction:
        """Effective direction of media section ``index`` (its own, else the session's)."""
        return self.media[index].direction or self.direction

    def media_address(self, index: int = 0) -> tuple[str, int]:
        """``(connection address, port)`` of media ``index``: media-level ``c=`` wins.

        Raises IndexError when there is no such media section and ValueError when neither
        level has a ``c=`` line (which :meth:`parse` never lets through).
        """
        media = self.media[index]
        connection = media.connection or self.connection
        if connection is None:
            raise ValueError(f"media {index} has no connection address")
        return connection.address, media.port

    # -- edits (each returns a new description) --------------------------------------------

    def with_bumped_version(self) -> SessionDescription:
        """A copy whose ``o=`` version is one more: required for every changed offer
        (RFC 3264 §8: "the version in the origin field MUST increment by one")."""
        return replace(self, origin=replace(self.origin, sess_version=self.origin.sess_version + 1))

    def with_direction(self, direction: Direction, index: int | None = None) -> SessionDescription:
        """A copy with ``direction`` on media section ``index``, or on every section when
        ``index`` is None (the session-level direction attribute is then removed, so the
        media-level ones are the only statement). The version is not bumped: chain
        :meth:`with_bumped_version` when this becomes a new offer."""
        if index is not None:
            media = list(self.media)
            media[index] = media[index].with_direction(direction)
            return replace(self, media=tuple(media))
        return replace(
            self,
            attributes=_without_direction_attribute(self.attributes),
            media=tuple(m.with_direction(direction) for m in self.media),
        )

    def with_media(self, media: Iterable[MediaDescription]) -> SessionDescription:
        """A copy with these media sections."""
        return replace(self, media=tuple(media))


# RFC 3264 §8.4: "If the stream to be placed on hold was previously a sendrecv media stream,
# it is placed on hold by marking it sendonly. If the stream to be placed on hold was previously
# a recvonly media stream, it is placed on hold by marking it inactive."
_HOLD = {
    Direction.SENDRECV: Direction.SENDONLY,
    Direction.SENDONLY: Direction.SENDONLY,
    Direction.RECVONLY: Direction.INACTIVE,
    Direction.INACTIVE: Direction.INACTIVE,
}


def make_hold(description: SessionDescription, index: int | None = None) -> SessionDescription:
    """The re-offer that puts media ``index`` (or every section) on hold, RFC 3264 §8.4.

    sendrecv becomes sendonly and recvonly becomes inactive; the ``o=`` version is bumped. The
    connection address is left alone: RFC 3264 §8.4 deprecates ``c=0.0.0.0`` for hold.
    """
    indexes = range(len(description.media)) if index is None else (index,)
    media = list(description.media)
    for i in indexes:
        media[i] = media[i].with_direction(_HOLD[description.media_direction(i)])
    return description.with_media(media).with_bumped_version()


def make_inactive(description: SessionDescription) -> SessionDescription:
    """The "black hole" re-offer of RFC 3725 written the modern way: every stream inactive.

    RFC 3725 (§4.2, Flow II and III) uses a connection address of 0.0.0.0 so that a party's
    media goes nowhere while the controller rearranges the call; RFC 3264 §8.4 deprecates that
    address and recommends ``a=inactive``, which keeps each party's real address. The ``o=``
    version is bumped.
    """
    return description.with_direction(Direction.INACTIVE).with_bumped_version()


def make_inactive_offer(
    address: str,
    *,
    sess_id: str,
    sess_version: int = 0,
    username: str = "-",
    port: int = 9,
    formats: tuple[str, ...] = ("0", "8"),
) -> SessionDescription:
    """A fresh audio offer that neither sends nor receives, for a controller that must offer
    something before it has the other party's description (RFC 3725 Flow II/III).

    ``address`` is the controller's own address (IPv4 or IPv6 literal or host name); port 9
    (discard) is the conventional placeholder of RFC 8840 §4.1 / RFC 6544 for "no media yet".
    The payload types are the static G.711 ones (PCMU 0, PCMA 8) with their rtpmap lines.
    """
    addrtype = "IP6" if ":" in address else "IP4"
    rtpmaps = {"0": "PCMU/8000", "8": "PCMA/8000"}
    attributes: list[Attribute] = [
        ("rtpmap", f"{fmt} {rtpmaps[fmt]}") for fmt in formats if fmt in rtpmaps
    ]
    attributes.append((Direction.INACTIVE.value, None))
    return SessionDescription(
        origin=Origin(username, sess_id, sess_version, "IN", addrtype, address),
        session_name="-",
        connection=Connection("IN", addrtype, address),
        media=(
            MediaDescription(
                media="audio",
                port=port,
                proto="RTP/AVP",
                formats=formats,
                attributes=tuple(attributes),
            ),
        ),
    )


# -- parser ------------------------------------------------------------------------------


class _Parser:
    """One pass over the lines, enforcing the RFC 8866 §9 order."""

    def __init__(self, data: bytes | str) -> None:
        if isinstance(data, bytes):
            text = data.decode(_ENCODING, _ERRORS)
        elif isinstance(data, str):
            text = data
        else:
            raise ParseError("SDP must be bytes or str")
        if not text:
            raise ParseError("empty session description")
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        self._lines: list[tuple[str, str]] = []
        for number, raw in enumerate(lines, 1):
            line = raw.removesuffix("\r")
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise ParseError(f"SDP line {number} is not <type>=<value>")
            value = line[2:]
            if _FORBIDDEN_IN_TEXT.search(value):
                raise ParseError(f"SDP line {number} contains a control character")
            self._lines.append((line[0], value))
        self._pos = 0

    def _peek(self) -> str | None:
        return self._lines[self._pos][0] if self._pos < len(self._lines) else None

    def _take(self, kind: str) -> str | None:
        if self._peek() == kind:
            value = self._lines[self._pos][1]
            self._pos += 1
            return value
        return None

    def _take_all(self, kind: str) -> list[str]:
        values: list[str] = []
        while (value := self._take(kind)) is not None:
            values.append(value)
        return values

    def _require(self, kind: str, what: str) -> str:
        value = self._take(kind)
        if value is None:
            found = self._peek()
            where = f"'{found}=' found" if found else "end of description"
            raise ParseError(f"SDP: expected {what} ('{kind}='), {where}")
        return value

    def parse(self) -> SessionDescription:
        version = self._require("v", "version")
        if version != "0":
            raise ParseError(f"SDP: unsupported version {version!r}")
        origin = _parse_origin(self._require("o", "origin"))
        session_name = self._require("s", "session name")
        information = self._take("i")
        uri = self._take("u")
        emails = tuple(self._take_all("e"))
        phones = tuple(self._take_all("p"))
        connection_text = self._take("c")
        connection = _parse_connection(connection_text) if connection_text is not None else None
        bandwidths = tuple(_parse_bandwidth(v) for v in self._take_all("b"))
        times: list[TimeDescription] = []
        while (time_text := self._take("t")) is not None:
            start, stop = _parse_time(time_text)
            times.append(TimeDescription(start, stop, tuple(self._take_all("r"))))
        if not times:
            self._require("t", "timing")
        zone_adjustments = self._take("z")
        key = self._take("k")
        attributes = tuple(_parse_attribute(v) for v in self._take_all("a"))
        media: list[MediaDescription] = []
        while self._peek() == "m":
            media.append(self._parse_media())
        if self._pos != len(self._lines):
            kind = self._lines[self._pos][0]
            raise ParseError(f"SDP: unexpected or misplaced '{kind}=' line")
        if connection is None and any(not m.connections for m in media):
            # RFC 8866 §5.7: a c= line at session level or in every media description.
            raise ParseError("SDP: a media description has no connection address")
        return SessionDescription(
            version=0,
            origin=origin,
            session_name=session_name,
            information=information,
            uri=uri,
            emails=emails,
            phones=phones,
            connection=connection,
            bandwidths=bandwidths,
            times=tuple(times),
            zone_adjustments=zone_adjustments,
            key=key,
            attributes=attributes,
            media=tuple(media),
        )

    def _parse_media(self) -> MediaDescription:
        media, port, port_count, proto, formats = _parse_media_line(self._require("m", "media"))
        title = self._take("i")
        connections = tuple(_parse_connection(v) for v in self._take_all("c"))
        bandwidths = tuple(_parse_bandwidth(v) for v in self._take_all("b"))
        key = self._take("k")
        attributes = tuple(_parse_attribute(v) for v in self._take_all("a"))
        return MediaDescription(
            media=media,
            port=port,
            port_count=port_count,
            proto=proto,
            formats=formats,
            title=title,
            connections=connections,
            bandwidths=bandwidths,
            key=key,
            attributes=attributes,
        )


def _fields(value: str, count: int, what: str) -> list[str]:
    # Fields are separated by exactly one SP (RFC 8866 §9); anything else would not round-trip.
    parts = value.split(" ")
    if len(parts) != count or not all(_NON_WS.fullmatch(p) for p in parts):
        raise ParseError(f"SDP: malformed {what} line")
    return parts


def _parse_int(text: str, what: str) -> int:
    # Leading zeros are accepted (and not written back): rejecting a peer's call over them would
    # be worse than normalising them.
    if not _DIGITS.fullmatch(text) or len(text) > _MAX_DIGITS:
        raise ParseError(f"SDP: {what} is not a decimal number")
    return int(text)


def _parse_origin(value: str) -> Origin:
    # origin-field = %s"o" "=" username SP sess-id SP sess-version SP nettype SP addrtype SP
    #                unicast-address CRLF ;  sess-id = 1*DIGIT ; sess-version = 1*DIGIT
    username, sess_id, sess_version, nettype, addrtype, address = _fields(value, 6, "origin")
    # sess-id is 1*DIGIT in the grammar, but it is only ever compared, never computed with, so
    # any token a peer chose is kept as written.
    for part in (nettype, addrtype):
        if not _TOKEN.fullmatch(part):
            raise ParseError("SDP: malformed origin network or address type")
    return Origin(
        username,
        sess_id,
        _parse_int(sess_version, "origin version"),
        nettype,
        addrtype,
        address,
    )


def _parse_connection(value: str) -> Connection:
    # connection-field = %s"c" "=" nettype SP addrtype SP connection-address CRLF
    nettype, addrtype, address = _fields(value, 3, "connection")
    if not (_TOKEN.fullmatch(nettype) and _TOKEN.fullmatch(addrtype)):
        raise ParseError("SDP: malformed connection network or address type")
    return Connection(nettype, addrtype, address)


def _parse_bandwidth(value: str) -> Bandwidth:
    # bandwidth-field = %s"b" "=" bwtype ":" bandwidth CRLF ; bwtype = token ; bandwidth = 1*DIGIT
    bwtype, sep, amount = value.partition(":")
    if not sep or not _TOKEN.fullmatch(bwtype):
        raise ParseError("SDP: malformed bandwidth line")
    return Bandwidth(bwtype, _parse_int(amount, "bandwidth"))


def _parse_time(value: str) -> tuple[int, int]:
    # time-field = %s"t" "=" start-time SP stop-time ; start-time = time / "0"
    start, stop = _fields(value, 2, "timing")
    return _parse_int(start, "start time"), _parse_int(stop, "stop time")


def _parse_attribute(value: str) -> Attribute:
    # attribute = (attribute-name ":" attribute-value) / attribute-name ; attribute-name = token
    name, sep, rest = value.partition(":")
    if not _TOKEN.fullmatch(name):
        raise ParseError("SDP: malformed attribute name")
    return (name, rest if sep else None)


def _parse_media_line(value: str) -> tuple[str, int, int | None, str, tuple[str, ...]]:
    # media-field = %s"m" "=" media SP port ["/" integer] SP proto 1*(SP fmt) CRLF
    parts = value.split(" ")
    if len(parts) < 4 or not all(_TOKEN.fullmatch(p) for p in (parts[0], *parts[3:])):
        raise ParseError("SDP: malformed media line")
    port_match = _PORT.fullmatch(parts[1])
    if port_match is None or not _PROTO.fullmatch(parts[2]):
        raise ParseError("SDP: malformed media port or protocol")
    port = _parse_int(port_match.group(1), "media port")
    count_text = port_match.group(2)
    port_count = _parse_int(count_text, "port count") if count_text is not None else None
    if port > _MAX_PORT:
        raise ParseError("SDP: media port out of range")
    return parts[0], port, port_count, parts[2], tuple(parts[3:])
