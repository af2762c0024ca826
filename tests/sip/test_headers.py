"""Tests for sip.headers: the Headers collection and the typed header values."""

from __future__ import annotations

import pytest

from sip.errors import LocalProtocolError, ParseError
from sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    parse_auth_params,
    parse_call_info,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_reason,
    parse_via,
    quote,
    split_header_values,
    unquote,
)
from sip.message import parse_message
from sip.uri import AbsoluteURI, SipURI, TelURI, parse_uri

# --- Headers -----------------------------------------------------------------------------------


def test_lookup_is_case_insensitive_and_knows_compact_forms() -> None:
    headers = Headers(
        [("v", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b"), ("i", "x@y"), ("CONTENT-TYPE", "a/b")]
    )
    assert headers.get("VIA") == "SIP/2.0/UDP a"
    assert headers.get_all("via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert headers.get("Call-ID") == "x@y"
    assert headers.get("c") == "a/b"
    assert "call-id" in headers
    assert "I" in headers
    assert "To" not in headers
    assert 5 not in headers
    assert headers.get("To") is None
    assert headers.get_all("To") == []
    assert len(headers) == 4
    assert list(headers) == [
        ("v", "SIP/2.0/UDP a"),
        ("Via", "SIP/2.0/UDP b"),
        ("i", "x@y"),
        ("CONTENT-TYPE", "a/b"),
    ]
    assert headers.count("via") == 2


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("i", "call-id"), ("m", "contact"), ("e", "content-encoding"), ("l", "content-length"),
        ("c", "content-type"), ("f", "from"), ("s", "subject"), ("k", "supported"), ("t", "to"),
        ("v", "via"), ("o", "event"), ("r", "refer-to"), ("b", "referred-by"),
        ("u", "allow-events"), ("x", "session-expires"), ("a", "accept-contact"),
        ("j", "reject-contact"), ("d", "request-disposition"), ("y", "identity"),
        ("n", "identity-info"),
    ],
)  # fmt: skip
def test_every_compact_form(compact: str, full: str) -> None:
    assert canonical_name(compact) == full
    assert canonical_name(compact.upper()) == full
    assert canonical_name(full.title()) == full


def test_changes() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a"), ("To", "<sip:t@h>"), ("v", "SIP/2.0/UDP b")])
    headers.prepend("Via", "SIP/2.0/UDP top")
    assert headers.get("via") == "SIP/2.0/UDP top"
    headers.add("Route", "<sip:r@h;lr>")
    assert headers.fields()[-1] == ("Route", "<sip:r@h;lr>")
    headers.set("v", "SIP/2.0/UDP only")
    assert headers.fields() == [
        ("v", "SIP/2.0/UDP only"),
        ("To", "<sip:t@h>"),
        ("Route", "<sip:r@h;lr>"),
    ]
    headers.set("Max-Forwards", "70")
    assert headers.fields()[-1] == ("Max-Forwards", "70")
    assert headers.remove("ROUTE") == 1
    assert headers.remove("Route") == 0
    assert "route" not in headers


def test_list_headers_split_other_headers_do_not() -> None:
    headers = Headers(
        [
            ("Allow", "INVITE, ACK ,BYE"),
            ("Allow", "OPTIONS"),
            ("Contact", '"Doe, J" <sip:j@h>;q=0.5, <sip:k@h>'),
            ("WWW-Authenticate", 'Digest realm="a", nonce="b"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Subject", "a, b"),
        ]
    )
    assert headers.get_all("allow") == ["INVITE", "ACK", "BYE", "OPTIONS"]
    assert headers.get_all("m") == ['"Doe, J" <sip:j@h>;q=0.5', "<sip:k@h>"]
    assert headers.get_all("www-authenticate") == ['Digest realm="a", nonce="b"']
    assert headers.get_all("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("subject") == ["a, b"]
    assert headers.get_raw_values("allow") == ["INVITE, ACK ,BYE", "OPTIONS"]


def test_equality_by_canonical_name_and_value_in_order() -> None:
    a = Headers([("v", "SIP/2.0/UDP a"), ("To", "<sip:t@h>")])
    assert a == Headers([("Via", "SIP/2.0/UDP a"), ("t", "<sip:t@h>")])
    assert a != Headers([("To", "<sip:t@h>"), ("Via", "SIP/2.0/UDP a")])
    assert a != Headers([("Via", "SIP/2.0/UDP A"), ("To", "<sip:t@h>")])
    assert a != "not headers"


def test_copy_is_independent() -> None:
    a = Headers([("To", "<sip:t@h>")])
    b = a.copy()
    b.add("From", "<sip:f@h>")
    assert "From" not in a
    assert b != a


@pytest.mark.parametrize(
    ("name", "value"),
    [("Bad Name", "x"), ("", "x"), ("X:Y", "x"), ("X", "a\r\nInjected: yes"), ("X", "nul\x00")],
)
def test_invalid_fields_are_refused(name: str, value: str) -> None:
    with pytest.raises(LocalProtocolError):
        Headers([(name, value)])
    with pytest.raises(LocalProtocolError):
        Headers().add(name, value)


def test_typed_values_are_memoised_until_a_change() -> None:
    headers = Headers([("CSeq", "1 INVITE")])
    calls: list[int] = []

    def parse(h: Headers) -> CSeq:
        calls.append(1)
        value = h.get("cseq")
        assert value is not None
        return parse_cseq(value)

    assert headers.typed("cseq", parse) == CSeq(1, "INVITE")
    assert headers.typed("cseq", parse) == CSeq(1, "INVITE")
    assert len(calls) == 1
    headers.set("CSeq", "2 INVITE")
    assert headers.typed("cseq", parse) == CSeq(2, "INVITE")
    assert len(calls) == 2


# --- splitting and quoting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("a, b,c", ["a", "b", "c"]),
        ("a,,b, ", ["a", "b"]),
        ('"x, \\"y" <sip:a>, b', ['"x, \\"y" <sip:a>', "b"]),
        ("<sip:a,b@h>;p=1, <sip:c@h>", ["<sip:a,b@h>;p=1", "<sip:c@h>"]),
        ("", []),
    ],
)
def test_split_header_values(value: str, items: list[str]) -> None:
    assert split_header_values(value) == items


def test_quote_and_unquote() -> None:
    for text in ["plain", 'with "quotes"', "back\\slash", "bel\x07 nul\x00 del\x7f", ""]:
        assert unquote(quote(text)) == text
    assert quote('a"b') == '"a\\"b"'
    assert unquote("token") == "token"
    with pytest.raises(LocalProtocolError):
        quote("line\r\nbreak")


# --- Via ---------------------------------------------------------------------------------------

VIA_TABLE: list[tuple[str, list[Via]]] = [
    (
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        [
            Via(
                "SIP/2.0",
                "UDP",
                "pc33.atlanta.example.com",
                None,
                (("branch", "z9hG4bK776asdhds"),),
            )
        ],
    ),
    (
        "SIP/2.0/TCP 192.0.2.1:5060;rport=5061;received=192.0.2.99;branch=z9hG4bKx",
        [
            Via(
                "SIP/2.0",
                "TCP",
                "192.0.2.1",
                5060,
                (("rport", "5061"), ("received", "192.0.2.99"), ("branch", "z9hG4bKx")),
            )
        ],
    ),
    (
        "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TLS [2001:db8::1]:5061",
        [
            Via("SIP/2.0", "UDP", "a", None, (("branch", "z9hG4bK1"),)),
            Via("SIP/2.0", "TLS", "[2001:db8::1]", 5061, ()),
        ],
    ),
    (
        "SIP / 2.0 / UDP  h ; branch = z9hG4bKq ; rport",
        [Via("SIP/2.0", "UDP", "h", None, (("branch", "z9hG4bKq"), ("rport", None)))],
    ),
]


@pytest.mark.parametrize(("value", "vias"), VIA_TABLE)
def test_parse_via_table(value: str, vias: list[Via]) -> None:
    assert parse_via(value) == vias


def test_via_accessors_and_formatting() -> None:
    (via,) = parse_via("SIP/2.0/UDP h:5060;Branch=z9hG4bKa;RPORT;received=192.0.2.1")
    assert via.branch == "z9hG4bKa"
    assert via.rport is True
    assert via.received == "192.0.2.1"
    assert via.sent_by == ("h", 5060)
    answered = via.with_param("rport", "5070").with_param("received", "192.0.2.2")
    assert answered.rport == 5070
    assert str(answered) == "SIP/2.0/UDP h:5060;Branch=z9hG4bKa;RPORT=5070;received=192.0.2.2"
    assert parse_via(str(answered)) == [answered]
    assert Via(host="h").rport is None
    assert str(Via(transport="TCP", host="h", port=5060)) == "SIP/2.0/TCP h:5060"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 h",
        "SIP/2.0/UDP h;",
        "SIP/2.0/UDP h;;branch=x",
        "SIP/2.0/UDP h,",
        "SIP/2.0/UDP h;branch",
        'SIP/2.0/UDP h;branch="q"',
        "SIP/2.0/UDP h;ttl=1000",
        "SIP/2.0/UDP h;received=host.example.com",
        "SIP/2.0/UDP h;rport=99999",
        "SIP/2.0/UDP h;maddr=[::1::1]",
        "SIP/2.0/UDP h:99999",
        "SIP/2.0/UDP h extra",
    ],
)
def test_malformed_via(value: str) -> None:
    with pytest.raises(ParseError):
        parse_via(value)


# --- name-addr ---------------------------------------------------------------------------------

TCP = (("transport", "tcp"),)
NAME_ADDR_TABLE: list[tuple[str, NameAddr]] = [
    ("<sip:a@h>", NameAddr(None, SipURI(user="a", host="h"))),
    ("sip:a@h;tag=1", NameAddr(None, SipURI(user="a", host="h"), (("tag", "1"),))),
    ('"Alice" <sip:a@h>;tag=x', NameAddr("Alice", SipURI(user="a", host="h"), (("tag", "x"),))),
    ('"" <sip:a@h>', NameAddr("", SipURI(user="a", host="h"))),
    ("Alice Smith <sip:a@h>", NameAddr("Alice Smith", SipURI(user="a", host="h"))),
    ("caller<sip:a@h>", NameAddr("caller", SipURI(user="a", host="h"))),
    ('"Quote \\" and \\\\" <sip:a@h>', NameAddr('Quote " and \\', SipURI(user="a", host="h"))),
    (
        "<sip:a@h;transport=tcp>;expires=60",
        NameAddr(None, SipURI(user="a", host="h", params=TCP), (("expires", "60"),)),
    ),
    ("<tel:+15551234567>", NameAddr(None, TelURI("+15551234567"))),
    ("tel:+15551234567;tag=9", NameAddr(None, TelURI("+15551234567"), (("tag", "9"),))),
    ("<urn:service:sos>", NameAddr(None, AbsoluteURI("urn", "service:sos"))),
    ('"Ünïcödé" <sip:a@h>', NameAddr("Ünïcödé", SipURI(user="a", host="h"))),
    ("<sip:a@h> ; p = \"x;y\"", NameAddr(None, SipURI(user="a", host="h"), (("p", '"x;y"'),))),
]  # fmt: skip


@pytest.mark.parametrize(("value", "addr"), NAME_ADDR_TABLE)
def test_parse_name_addr_table(value: str, addr: NameAddr) -> None:
    assert parse_name_addr(value) == addr
    assert parse_name_addr(str(addr)) == addr


@pytest.mark.parametrize(
    "value",
    [
        "",
        '"unterminated <sip:a@h>',
        "Bell, Alexander <sip:a@h>",
        "< sip:a@h >",
        "<sip:a@h",
        "sip:a@h>",
        "<>",
        "sip:a@h?subject=x",
        "sip:a@h;tag=1;",
        "<sip:a@h>;tag=1 junk",
        "<sip:a@h>, <sip:b@h>",
        "<sip:a b@h>",
    ],
)
def test_malformed_name_addr(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(value)


def test_name_addr_tag_and_formatting() -> None:
    addr = parse_name_addr("Bob <sip:bob@biloxi.example.com>")
    assert addr.tag is None
    tagged = addr.with_tag("a6c85cf")
    assert tagged.tag == "a6c85cf"
    assert str(tagged) == '"Bob" <sip:bob@biloxi.example.com>;tag=a6c85cf'
    assert str(tagged.with_tag("z")) == '"Bob" <sip:bob@biloxi.example.com>;tag=z'
    assert str(NameAddr(None, parse_uri("sip:a@h"))) == "<sip:a@h>"
    assert tagged.param("TAG") == "a6c85cf"
    assert str(addr.with_param("lr")) == '"Bob" <sip:bob@biloxi.example.com>;lr'


def test_parse_name_addr_list() -> None:
    addrs = parse_name_addr_list('<sip:a@h>;q=0.7, "B, b" <sip:b@h> ,sip:c@h;expires=0')
    assert [str(a.uri) for a in addrs] == ["sip:a@h", "sip:b@h", "sip:c@h"]
    assert addrs[0].param("q") == "0.7"
    assert addrs[1].display_name == "B, b"
    assert addrs[2].param("expires") == "0"


@pytest.mark.parametrize(
    "value",
    ["<sip:a@h>,", ",<sip:a@h>", "<sip:a@h>;q=2", "<sip:a@h>;q=0.1234", "<sip:a@h>;expires=x"],
)
def test_malformed_name_addr_list(value: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr_list(value)


# --- CSeq --------------------------------------------------------------------------------------


def test_cseq() -> None:
    assert parse_cseq("4711 INVITE") == CSeq(4711, "INVITE")
    assert parse_cseq("0009\t INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(1, "BYE")) == "1 BYE"
    for bad in ["", "INVITE", "1", "1 INVITE x", "-1 INVITE", "2147483648 INVITE", "1 IN(VITE"]:
        with pytest.raises(ParseError):
            parse_cseq(bad)


# --- authentication ----------------------------------------------------------------------------


def test_parse_auth_params() -> None:
    scheme, params = parse_auth_params(
        'Digest realm="atlanta.example.com", NONCE="ea9c8e88df84f1cec4341ae6cbe5a359",'
        ' qop="auth,auth-int", algorithm=SHA-256, stale=FALSE, opaque=""'
    )
    assert scheme == "Digest"
    assert params == {
        "realm": "atlanta.example.com",
        "nonce": "ea9c8e88df84f1cec4341ae6cbe5a359",
        "qop": "auth,auth-int",
        "algorithm": "SHA-256",
        "stale": "FALSE",
        "opaque": "",
    }
    assert parse_auth_params('Digest realm="a\\"b"')[1] == {"realm": 'a"b'}
    assert parse_auth_params("Basic") == ("Basic", {})
    for bad in ["", 'Digest realm="x" nonce="y"', "Digest realm=", 'Digest ,realm="x"']:
        with pytest.raises(ParseError):
            parse_auth_params(bad)


# --- Reason (RFC 3326) and Call-Info (RFC 3261 §20.9) -----------------------------------------


@pytest.mark.parametrize(
    ("value", "reasons"),
    [
        (
            'SIP;cause=200;text="Call completed elsewhere"',
            [("SIP", 200, "Call completed elsewhere")],
        ),
        # RFC 3326 §2 example: two reasons, one header
        (
            'SIP ;cause=580;text="Precondition Failure", Q.850 ; cause = 16 ;text="Terminated"',
            [("SIP", 580, "Precondition Failure"), ("Q.850", 16, "Terminated")],
        ),
        ('Q.850;cause=31;text="a \\"quoted\\", comma"', [("Q.850", 31, 'a "quoted", comma')]),
        ("preemption;cause=1;x-ext=yes", [("preemption", 1, None)]),
        ("SIP", [("SIP", None, None)]),
    ],
)
def test_parse_reason_table(value: str, reasons: list[tuple[str, int | None, str | None]]) -> None:
    parsed = parse_reason(value)
    assert [(r.protocol, r.cause, r.text) for r in parsed] == reasons


@pytest.mark.parametrize(
    "value",
    [
        "",
        ";cause=200",
        "SIP;cause=abc",
        "SIP;cause=",
        "SIP;cause=1234567890",
        "SIP;text=unquoted",
        'SIP;cause=200;text="unterminated',
        "SIP cause=200",
    ],
)
def test_malformed_reason(value: str) -> None:
    with pytest.raises(ParseError):
        parse_reason(value)


def test_reason_and_call_info_accessors_on_a_message() -> None:
    message = parse_message(
        b"CANCEL sip:rep@127.0.0.1:5062 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:d@127.0.0.1>;tag=1\r\nTo: <sip:rep@127.0.0.1>\r\n"
        b"Call-ID: c1\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\n"
        b'Reason: SIP;cause=200;text="Call completed elsewhere"\r\n'
        b"Call-Info: <http://127.0.0.1:8080/v1/leads/7>;purpose=info\r\n"
        b"Call-Info: <https://example.com/icon.png>;purpose=icon\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert [(r.protocol, r.cause, r.text) for r in message.reasons] == [
        ("SIP", 200, "Call completed elsewhere")
    ]
    assert [(i.uri, i.purpose) for i in message.call_info] == [
        ("http://127.0.0.1:8080/v1/leads/7", "info"),
        ("https://example.com/icon.png", "icon"),
    ]
    assert str(message.reasons[0]) == 'SIP;cause=200;text="Call completed elsewhere"'
    assert str(message.call_info[0]) == "<http://127.0.0.1:8080/v1/leads/7>;purpose=info"
    bare = parse_message(
        b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK2\r\n"
        b"From: <sip:d@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c2\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    assert bare.reasons == [] and bare.call_info == []


@pytest.mark.parametrize(
    "value",
    [
        "http://127.0.0.1/x;purpose=info",  # the URI must be in angle brackets
        "<>;purpose=info",
        "<no-scheme>",
        "<http://a/b>;purpose=",
        "<http://a/b> junk",
    ],
)
def test_malformed_call_info(value: str) -> None:
    with pytest.raises(ParseError):
        parse_call_info(value)


def test_empty_call_info_is_malformed() -> None:
    with pytest.raises(ParseError):
        parse_call_info(" ")
