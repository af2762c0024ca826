"""Tests for sip.message: parse_message, serialisation, StreamParser, make_response.

In the manner of h11's ``test_io.py``: tables of literal bytes drive both the parser and the
serialiser, and stream input is fed whole, byte by byte and with trailing data.
"""

from __future__ import annotations

import pytest

from sip.errors import ParseError
from sip.headers import CSeq, Headers, NameAddr, Via
from sip.message import (
    DEFAULT_LIMITS,
    MAX_STREAM_BUFFER_BYTES,
    ParserLimits,
    Request,
    Response,
    StreamParser,
    make_response,
    parse_message,
    reason_phrase,
)
from sip.uri import SipURI, TelURI, parse_uri

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 136\r\n"
    b"\r\n" + SDP
)

RINGING = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.101\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@192.0.2.4>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

ACK = (
    b"ACK sip:bob@192.0.2.4 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP pc33.atlanta.example.com;branch=z9hG4bKnashds9\r\n"
    b"Route: <sip:ss1.example.com;lr>, <sip:ss2.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 ACK\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def _headers(*items: tuple[str, str]) -> Headers:
    return Headers(items)


INVITE_OBJECT = Request(
    method="INVITE",
    uri=SipURI(user="bob", host="biloxi.example.com"),
    headers=_headers(
        ("Via", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport"),
        ("Max-Forwards", "70"),
        ("To", "Bob <sip:bob@biloxi.example.com>"),
        ("From", '"Alice" <sip:alice@atlanta.example.com>;tag=1928301774'),
        ("Call-ID", "a84b4c76e66710@pc33.atlanta.example.com"),
        ("CSeq", "314159 INVITE"),
        ("Contact", "<sip:alice@pc33.atlanta.example.com>"),
        ("Content-Type", "application/sdp"),
        ("Content-Length", "136"),
    ),
    body=SDP,
)

RINGING_OBJECT = Response(
    status=180,
    reason="Ringing",
    headers=_headers(
        (
            "Via",
            "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.101",
        ),
        ("To", "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"),
        ("From", '"Alice" <sip:alice@atlanta.example.com>;tag=1928301774'),
        ("Call-ID", "a84b4c76e66710@pc33.atlanta.example.com"),
        ("CSeq", "314159 INVITE"),
        ("Contact", "<sip:bob@192.0.2.4>"),
        ("Content-Length", "0"),
    ),
)

# (object, exact bytes): parse(bytes) == object and bytes(object) == bytes.
SYMMETRIC: list[tuple[Request | Response, bytes]] = [
    (INVITE_OBJECT, INVITE),
    (RINGING_OBJECT, RINGING),
]


@pytest.mark.parametrize(("message", "data"), SYMMETRIC)
def test_parse_and_serialize_table(message: Request | Response, data: bytes) -> None:
    assert parse_message(data) == message
    assert message.serialize() == data
    assert bytes(message) == data


@pytest.mark.parametrize("data", [INVITE, RINGING, ACK])
def test_round_trip_is_byte_exact_for_canonical_input(data: bytes) -> None:
    assert bytes(parse_message(data)) == data


def test_typed_accessors_of_a_request() -> None:
    request = parse_message(INVITE)
    assert isinstance(request, Request)
    assert request.method == "INVITE"
    assert request.uri == SipURI(user="bob", host="biloxi.example.com")
    assert request.top_via == Via(
        "SIP/2.0",
        "UDP",
        "pc33.atlanta.example.com",
        None,
        (("branch", "z9hG4bK776asdhds"), ("rport", None)),
    )
    assert request.top_via.branch == "z9hG4bK776asdhds"
    assert request.top_via.rport is True
    assert request.from_.display_name == "Alice"
    assert request.from_.tag == "1928301774"
    assert request.to.display_name == "Bob"
    assert request.to.tag is None
    assert request.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert request.cseq == CSeq(314159, "INVITE")
    assert request.max_forwards == 70
    assert request.content_type == "application/sdp"
    assert [str(c.uri) for c in request.contacts] == ["sip:alice@pc33.atlanta.example.com"]
    assert request.route == []
    assert request.record_route == []
    assert request.body == SDP


def test_typed_accessors_of_a_response() -> None:
    response = parse_message(RINGING)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.top_via.received == "192.0.2.101"
    assert response.to.tag == "a6c85cf"
    assert response.cseq.method == "INVITE"
    assert response.max_forwards is None


def test_route_list_is_split_in_order() -> None:
    ack = parse_message(ACK)
    assert [str(r.uri) for r in ack.route] == ["sip:ss1.example.com;lr", "sip:ss2.example.com;lr"]
    assert ack.headers.get_all("route") == ["<sip:ss1.example.com;lr>", "<sip:ss2.example.com;lr>"]


def test_accessors_follow_header_changes() -> None:
    request = parse_message(INVITE)
    assert request.top_via.host == "pc33.atlanta.example.com"
    request.headers.prepend("Via", "SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bKp1")
    assert request.top_via.host == "proxy.example.com"
    assert request.top_via.port == 5061
    assert len(request.vias) == 2
    request.headers.set("CSeq", "314160 INVITE")
    assert request.cseq.seq == 314160


def test_accessor_of_a_missing_or_broken_header_raises_parse_error() -> None:
    request = Request("OPTIONS", parse_uri("sip:a@example.com"), Headers())
    with pytest.raises(ParseError):
        _ = request.call_id
    with pytest.raises(ParseError):
        _ = request.top_via
    with pytest.raises(ParseError):
        _ = request.cseq
    assert request.max_forwards is None
    request.headers.add("From", "not a name-addr")
    with pytest.raises(ParseError):
        _ = request.from_


# --- Content-Length -------------------------------------------------------------------------


def test_serialize_writes_content_length_matching_the_body() -> None:
    request = Request("MESSAGE", parse_uri("sip:a@example.com"), Headers(), body=b"hello")
    assert request.serialize().endswith(b"Content-Length: 5\r\n\r\nhello")
    request.headers.add("l", "999")
    request.headers.add("Content-Length", "7")
    data = request.serialize()
    assert b"l: 5\r\n" in data
    assert b"999" not in data
    assert data.count(b"Content-Length") == 0


def test_equality_ignores_content_length_fields() -> None:
    a = Request("MESSAGE", parse_uri("sip:a@example.com"), Headers([("X-A", "1")]), b"hi")
    b = Request(
        "MESSAGE", parse_uri("sip:a@example.com"), Headers([("X-A", "1"), ("l", "2")]), b"hi"
    )
    assert a == b
    b.headers.add("X-B", "2")
    assert a != b


def _request(*, content_length: str | None, body: bytes) -> bytes:
    head = (
        b"MESSAGE sip:a@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
        b"From: <sip:b@example.com>;tag=1\r\n"
        b"To: <sip:a@example.com>\r\n"
        b"Call-ID: cl@192.0.2.1\r\n"
        b"CSeq: 1 MESSAGE\r\n"
    )
    if content_length is not None:
        head += b"Content-Length: " + content_length.encode() + b"\r\n"
    return head + b"\r\n" + body


def test_datagram_body_longer_than_content_length_is_truncated() -> None:
    assert parse_message(_request(content_length="5", body=b"hello, world")).body == b"hello"


def test_datagram_body_shorter_than_content_length_is_an_error() -> None:
    with pytest.raises(ParseError, match="shorter than Content-Length"):
        parse_message(_request(content_length="50", body=b"hello"))


def test_datagram_without_content_length_takes_the_rest() -> None:
    assert parse_message(_request(content_length=None, body=b"all of it")).body == b"all of it"


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "", "1 2", "99999999999999999999"])
def test_malformed_content_length(value: str) -> None:
    with pytest.raises(ParseError):
        parse_message(_request(content_length=value, body=b""))


def test_content_length_with_leading_zeros() -> None:
    assert parse_message(_request(content_length="0003", body=b"abcdef")).body == b"abc"


# --- header syntax --------------------------------------------------------------------------

BASE_HEADERS = [
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx",
    b"From: <sip:b@example.com>;tag=1",
    b"To: <sip:a@example.com>",
    b"Call-ID: h@192.0.2.1",
    b"CSeq: 1 OPTIONS",
]


def _options(*extra: bytes, start: bytes = b"OPTIONS sip:a@example.com SIP/2.0") -> bytes:
    return b"\r\n".join([start, *BASE_HEADERS, *extra]) + b"\r\n\r\n"


def test_folded_header_is_unfolded_with_one_space() -> None:
    message = parse_message(_options(b"Subject: first part", b"   second part", b"\tthird"))
    assert message.headers.get("subject") == "first part second part third"


def test_header_names_are_case_insensitive_and_compact_forms_known() -> None:
    data = (
        b"OPTIONS sip:a@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"
        b"f: <sip:b@example.com>;tag=1\r\n"
        b"t: <sip:a@example.com>\r\n"
        b"i: h@192.0.2.1\r\n"
        b"cSeQ: 1 OPTIONS\r\n"
        b"m: <sip:b@192.0.2.1>\r\n"
        b"k: 100rel\r\n"
        b"s: hi\r\n"
        b"c: text/plain\r\n"
        b"l: 2\r\n"
        b"\r\nhi"
    )
    message = parse_message(data)
    assert message.headers.get("Via") == "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx"
    assert message.headers.get("CALL-ID") == "h@192.0.2.1"
    assert message.headers.get("Supported") == "100rel"
    assert message.headers.get("subject") == "hi"
    assert message.content_type == "text/plain"
    assert message.from_.tag == "1"
    assert message.contacts[0].uri == SipURI(user="b", host="192.0.2.1")
    # names are kept as received
    assert bytes(message) == data


def test_multi_valued_headers_combine_fields_and_commas() -> None:
    message = parse_message(
        _options(
            b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK2, SIP/2.0/TCP p2.example.com",
            b'Contact: "A, B" <sip:a@example.com>, <sip:b,c@example.com;x=1>',
            b"Allow: INVITE, ACK,CANCEL",
        )
    )
    assert [v.host for v in message.vias] == ["192.0.2.1", "p1.example.com", "p2.example.com"]
    assert message.headers.get_all("allow") == ["INVITE", "ACK", "CANCEL"]
    contacts = message.contacts
    assert [c.display_name for c in contacts] == ["A, B", None]
    assert message.headers.get_all("Contact") == [
        '"A, B" <sip:a@example.com>',
        "<sip:b,c@example.com;x=1>",
    ]


def test_authorization_and_date_are_never_split() -> None:
    message = parse_message(
        _options(
            b'Authorization: Digest username="a", realm="b", nonce="c"',
            b"Date: Sat, 13 Nov 2010 23:29:00 GMT",
        )
    )
    assert message.headers.get_all("Authorization") == ['Digest username="a", realm="b", nonce="c"']
    assert message.headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_ipv6_references_everywhere() -> None:
    data = (
        b"OPTIONS sip:[2001:db8::10]:5070;transport=tcp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3;received=2001:db8::9:255\r\n"
        b"From: <sip:b@[::1]>;tag=1\r\n"
        b"To: <sip:[2001:db8::10]:5070>\r\n"
        b"Call-ID: v6@[::1]\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"\r\n"
    )
    message = parse_message(data)
    assert isinstance(message, Request)
    assert isinstance(message.uri, SipURI)
    assert message.uri.host_port == ("[2001:db8::10]", 5070)
    assert message.top_via.host == "[2001:db8::9:1]"
    assert message.top_via.received == "2001:db8::9:255"
    assert message.from_.uri == SipURI(user="b", host="[::1]")


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ((b"Via: SIP/2.0/UDP [2001:db8:::1]",), "Via"),
        ((b"Via: SIP/2.0/UDP host:70000",), "Via"),
        ((b"Via: SIP/2.0/UDP host;ttl=256",), "Via"),
        ((b"Via: SIP/2.0/UDP host;received=example.com",), "Via"),
        ((b"Via: SIP/2.0 host",), "Via"),
        ((b"Via: SIP/2.0/UDP host,",), "Via"),
        ((b"Contact: <sip:a@example.com>;expires=4294967296",), "Contact"),
        ((b"Contact: <sip:a@example.com>;q=1.5",), "Contact"),
        ((b"Contact: sip:a@example.com?subject=x",), "Contact"),
        ((b"Contact: <sip:a@example.com",), "Contact"),
        ((b"Route: sip:a@example.com;lr, <>",), "Route"),
        ((b"Expires: 4294967296",), "Expires"),
        ((b"Max-Forwards: 256",), "Max-Forwards"),
        ((b"Max-Forwards: -1",), "Max-Forwards"),
        ((b"Content-Type: text",), "Content-Type"),
        ((b"Date: Sat, 13 Nov 2010 23:29:00 PST",), "Date"),
        ((b'Warning: 30 example.com "x"',), "Warning"),
        ((b"Retry-After: soon",), "Retry-After"),
        ((b"X-Bad Name: 1",), "header name"),
        ((b"NoColonHere",), "colon"),
        ((b"To: <sip:other@example.com>",), "more than one To"),
        ((b"Max-Forwards: 1", b"Max-Forwards: 2"), "more than one Max-Forwards"),
    ],
)
def test_malformed_headers_are_refused(extra: tuple[bytes, ...], reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as info:
        parse_message(_options(*extra))
    assert info.value.status_hint == 400


@pytest.mark.parametrize(
    "extra",
    [
        (b"Retry-After: 120 (I'm in a meeting);duration=3600",),
        (b'Warning: 370 devnull "Choose a bigger pipe", 307 192.0.2.1:5060 "x"',),
        (b"Contact: *",),
        (b"Contact: <sip:a@example.com>;expires=4294967295;q=0.7",),
        (b"Expires: 0",),
        (b'Content-Type: multipart/mixed ; boundary="a b"',),
        (b"Via: SIP/2.0/UDP host;ttl=16;maddr=224.2.0.1;rport=5060",),
        (b"Via: SIP/2.0/UDP host:05060",),
        (b"X-Empty:",),
    ],
)
def test_well_formed_optional_headers_are_accepted(extra: tuple[bytes, ...]) -> None:
    data = _options(*extra)
    assert parse_message(parse_message(data).serialize()) == parse_message(data)


@pytest.mark.parametrize("missing", range(len(BASE_HEADERS)))
def test_requests_missing_a_mandatory_header_are_refused(missing: int) -> None:
    lines = [h for i, h in enumerate(BASE_HEADERS) if i != missing]
    data = b"\r\n".join([b"OPTIONS sip:a@example.com SIP/2.0", *lines]) + b"\r\n\r\n"
    with pytest.raises(ParseError, match="missing"):
        parse_message(data)


def test_max_forwards_is_optional() -> None:
    assert parse_message(_options()).max_forwards is None


def test_cseq_method_must_match() -> None:
    with pytest.raises(ParseError, match="CSeq"):
        parse_message(_options(start=b"INFO sip:a@example.com SIP/2.0"))


@pytest.mark.parametrize(
    "cseq", [b"CSeq: 2147483648 OPTIONS", b"CSeq: x OPTIONS", b"CSeq: 1", b"CSeq: 1OPTIONS"]
)
def test_malformed_cseq(cseq: bytes) -> None:
    data = _options().replace(b"CSeq: 1 OPTIONS", cseq)
    with pytest.raises(ParseError):
        parse_message(data)


def test_largest_cseq() -> None:
    data = _options().replace(b"CSeq: 1 OPTIONS", b"CSeq: 2147483647 OPTIONS")
    assert parse_message(data).cseq.seq == 2**31 - 1


# --- start lines ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "status_hint"),
    [
        (b"OPTIONS sip:a@example.com SIP/3.0", 505),
        (b"OPTIONS sip:a@example.com SIP/2", 400),
        (b"OPTIONS sip:a@example.com HTTP/1.1", 400),
        (b"OPTIONS  sip:a@example.com SIP/2.0", 400),
        (b"OPTIONS sip:a@example.com SIP/2.0 ", 400),
        (b"OPTIONS sip:a@example.com", 400),
        (b"OPT(IONS sip:a@example.com SIP/2.0", 400),
        (b"OPTIONS <sip:a@example.com> SIP/2.0", 400),
        (b"OPTIONS sip:a@example.com?X=1 SIP/2.0", 400),
        (b"OPTIONS sip:a@exa_mple.com SIP/2.0", 400),
        (b"", 400),
    ],
)
def test_bad_request_lines(start: bytes, status_hint: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(_options(start=start))
    assert info.value.status_hint == status_hint


def _response(start: bytes) -> bytes:
    return b"\r\n".join([start, *BASE_HEADERS]) + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("start", "status", "reason"),
    [
        (b"SIP/2.0 200 OK", 200, "OK"),
        (b"SIP/2.0 100 ", 100, ""),
        (b"SIP/2.0 100", 100, ""),
        (b"SIP/2.0 699 Whatever it is", 699, "Whatever it is"),
        ("SIP/2.0 486 Занято".encode(), 486, "Занято"),
    ],
)
def test_status_lines(start: bytes, status: int, reason: str) -> None:
    response = parse_message(_response(start))
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (status, reason)


@pytest.mark.parametrize(
    ("start", "status_hint"),
    [
        (b"SIP/2.0 2000 OK", 400),
        (b"SIP/2.0 099 Low", 400),
        (b"SIP/2.0 700 High", 400),
        (b"SIP/2.0 OK", 400),
        (b"SIP/1.0 200 OK", 505),
    ],
)
def test_bad_status_lines(start: bytes, status_hint: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(_response(start))
    assert info.value.status_hint == status_hint


# --- framing, characters and limits ---------------------------------------------------------


def test_leading_crlfs_are_ignored() -> None:
    assert parse_message(b"\r\n\r\n" + INVITE) == parse_message(INVITE)


@pytest.mark.parametrize(
    "data",
    [
        INVITE.replace(b"\r\n\r\n", b"\r\n"),  # no empty line
        INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n"),  # bare LF
        INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r"),  # bare CR
        INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\x000"),  # NUL
        INVITE.replace(b"Bob <sip", b"B\x07b <sip"),  # BEL outside quotes
        INVITE.replace(b"Bob", b"\xff\xfe"),  # not UTF-8
        b" " + INVITE,  # continuation before the start line
        INVITE.replace(b"Via:", b" Via:"),  # continuation as first header
        b"garbage",
        b"",
    ],
)
def test_malformed_framing(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(data)


def test_control_characters_are_allowed_as_quoted_pairs() -> None:
    data = _options(b'X-Test: "a\\\x07b"').replace(
        b"To: <sip:a@example.com>", b'To: "BEL:\\\x07 DEL:\\\x7f" <sip:a@example.com>'
    )
    assert parse_message(data).to.display_name == "BEL:\x07 DEL:\x7f"


def test_limits_on_size_header_count_and_line_length() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(INVITE, ParserLimits(max_message_bytes=len(INVITE) - 1))
    assert info.value.status_hint == 513
    assert parse_message(INVITE, ParserLimits(max_message_bytes=len(INVITE))) is not None

    with pytest.raises(ParseError, match="too many"):
        parse_message(INVITE, ParserLimits(max_headers=8))
    assert parse_message(INVITE, ParserLimits(max_headers=9)) is not None

    longest = max(len(line) for line in INVITE.split(b"\r\n\r\n")[0].split(b"\r\n"))
    with pytest.raises(ParseError, match="too long"):
        parse_message(INVITE, ParserLimits(max_line_bytes=longest - 1))
    assert parse_message(INVITE, ParserLimits(max_line_bytes=longest)) is not None


def test_default_limits_are_documented_values() -> None:
    assert ParserLimits(65535, 256, 8192) == DEFAULT_LIMITS


PATHOLOGICAL = [
    (b"From", b"a " * 3000),
    (b"From", b'"' + b"\\\\" * 3000),
    (b"From", b"<" * 6000),
    (b"From", b"sip:" + b"a;" * 3000),
    (b"Contact", b"<sip:a@h>, " * 600 + b","),
    (b"Contact", b'"a" <sip:a@h>;q=0.5, ' * 300 + b","),
    (b"Route", b"<tel:" + b"1-" * 3000 + b"x>"),
    (b"Route", b"<sip:a@[" + b"1:" * 3000 + b">"),
    (b"Via", b"SIP/2.0/UDP h, " * 500 + b"x"),
    (b"Via", b"SIP/2.0/UDP h" + b";a=b" * 1500 + b";"),
    (b"Warning", b'399 h "x", ' * 600 + b"x"),
    (b"Content-Type", b"a/b" + b" ; a = b" * 900 + b";"),
]


@pytest.mark.parametrize(("name", "value"), PATHOLOGICAL)
def test_backtracking_prone_values_are_refused(name: bytes, value: bytes) -> None:
    # A regular expression that backtracks exponentially would hang here (pytest-timeout).
    data = _options().replace(b"\r\n\r\n", b"\r\n" + name + b": " + value + b"\r\n\r\n")
    with pytest.raises(ParseError):
        parse_message(data)


def test_long_runs_of_white_space_are_accepted_and_read() -> None:
    # Valid, and the typed accessors must read it without backtracking.
    spaces = b" \t" * 1300
    data = _options().replace(
        b"From: <sip:b@example.com>;tag=1",
        b"From: a" + spaces + b"b" + spaces + b"<sip:b@example.com>" + spaces + b";tag=1",
    )
    message = parse_message(data)
    assert message.from_.tag == "1"
    assert message.from_.display_name == "a" + " \t" * 1300 + "b"


# --- StreamParser ---------------------------------------------------------------------------


def _drain(parser: StreamParser) -> list[Request | Response]:
    out: list[Request | Response] = []
    while (message := parser.next_message()) is not None:
        out.append(message)
    return out


STREAM = [INVITE, RINGING, ACK]


def test_stream_whole() -> None:
    parser = StreamParser()
    parser.feed(b"".join(STREAM))
    assert _drain(parser) == [parse_message(m) for m in STREAM]
    assert parser.buffered == 0


def test_stream_byte_by_byte() -> None:
    parser = StreamParser()
    got: list[Request | Response] = []
    data = b"".join(STREAM)
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        got.extend(_drain(parser))
    assert got == [parse_message(m) for m in STREAM]


def test_stream_with_trailing_data() -> None:
    parser = StreamParser()
    parser.feed(INVITE + RINGING[:30])
    assert _drain(parser) == [parse_message(INVITE)]
    assert parser.buffered == 30
    parser.feed(RINGING[30:])
    assert _drain(parser) == [parse_message(RINGING)]


def test_stream_skips_keepalive_crlfs() -> None:
    parser = StreamParser()
    parser.feed(b"\r\n\r\n" + ACK + b"\r\n\r\n\r\n" + ACK)
    assert len(_drain(parser)) == 2


def test_stream_needs_content_length() -> None:
    parser = StreamParser()
    parser.feed(_request(content_length=None, body=b""))
    with pytest.raises(ParseError, match="Content-Length"):
        parser.next_message()


def test_stream_refuses_oversized_messages() -> None:
    parser = StreamParser(ParserLimits(max_message_bytes=1000))
    parser.feed(b"OPTIONS sip:a@example.com SIP/2.0\r\nX-Pad: " + b"x" * 1000)
    with pytest.raises(ParseError) as info:
        parser.next_message()
    assert info.value.status_hint == 513

    parser = StreamParser(ParserLimits(max_message_bytes=1000))
    parser.feed(_request(content_length="5000", body=b""))
    with pytest.raises(ParseError, match="too large"):
        parser.next_message()


def test_stream_buffer_is_capped() -> None:
    parser = StreamParser(max_buffer_bytes=100)
    parser.feed(b"x" * 100)
    with pytest.raises(ParseError):
        parser.feed(b"x")
    assert DEFAULT_LIMITS.max_message_bytes <= MAX_STREAM_BUFFER_BYTES


def test_stream_garbage_is_an_error() -> None:
    parser = StreamParser()
    parser.feed(b"HELLO\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ParseError):
        parser.next_message()


# --- make_response --------------------------------------------------------------------------


def test_make_response_copies_the_dialog_headers() -> None:
    request = parse_message(
        _options(
            b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK2",
            b"Timestamp: 54",
            b"Max-Forwards: 70",
            b"Record-Route: <sip:p1.example.com;lr>",
        )
    )
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="xyz", headers=[("Contact", "<sip:a@h>")])
    assert (response.status, response.reason) == (200, "OK")
    assert [name for name, _ in response.headers] == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Via",
        "Contact",
    ]
    assert response.vias == request.vias
    assert response.to.tag == "xyz"
    assert response.from_ == request.from_
    assert response.cseq == request.cseq
    assert response.call_id == request.call_id
    assert parse_message(bytes(response)) == response


def test_make_response_keeps_an_existing_to_tag_and_copies_timestamp_to_100() -> None:
    request = parse_message(
        _options(b"Timestamp: 54").replace(b"To: <sip:a@example.com>", b"To: <sip:a@h>;tag=old")
    )
    assert isinstance(request, Request)
    trying = make_response(request, 100, to_tag="new")
    assert trying.to.tag == "old"
    assert trying.headers.get("Timestamp") == "54"
    assert trying.reason == "Trying"
    busy = make_response(request, 486, "Busy Here Now", body=b"x")
    assert busy.reason == "Busy Here Now"
    assert busy.body == b"x"


@pytest.mark.parametrize(
    ("status", "phrase"),
    [
        (100, "Trying"),
        (180, "Ringing"),
        (487, "Request Terminated"),
        (299, "OK"),
        (499, "Client Error"),
    ],
)
def test_reason_phrase(status: int, phrase: str) -> None:
    assert reason_phrase(status) == phrase


def test_request_and_response_built_by_hand() -> None:
    request = Request(
        "MESSAGE",
        TelURI("+15551234567"),
        Headers(
            [
                ("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"),
                ("From", str(NameAddr("Dialer", parse_uri("sip:d@example.com"), (("tag", "1"),)))),
                ("To", "<tel:+15551234567>"),
                ("Call-ID", "x@y"),
                ("CSeq", str(CSeq(1, "MESSAGE"))),
            ]
        ),
        body=b"hi",
    )
    data = bytes(request)
    assert data.startswith(b"MESSAGE tel:+15551234567 SIP/2.0\r\n")
    assert b'From: "Dialer" <sip:d@example.com>;tag=1\r\n' in data
    assert parse_message(data) == request
