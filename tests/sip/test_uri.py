"""Tests for sip.uri: parsing and serialising SIP, SIPS, tel and other URIs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sip.errors import ParseError
from sip.uri import AbsoluteURI, SipURI, TelURI, parse_uri

# (text, parsed): parse_uri(text) == parsed and str(parsed) == text
TABLE: list[tuple[str, SipURI | TelURI | AbsoluteURI]] = [
    ("sip:example.com", SipURI(host="example.com")),
    ("sip:alice@atlanta.example.com", SipURI(user="alice", host="atlanta.example.com")),
    (
        "sips:alice:secret@atlanta.example.com:5061;transport=tls",
        SipURI("sips", "alice", "secret", "atlanta.example.com", 5061, (("transport", "tls"),)),
    ),
    ("sip:192.0.2.4", SipURI(host="192.0.2.4")),
    ("sip:[2001:db8::10]:5070", SipURI(host="[2001:db8::10]", port=5070)),
    ("sip:[::ffff:192.0.2.1]", SipURI(host="[::ffff:192.0.2.1]")),
    ("sip:proxy.example.com;lr", SipURI(host="proxy.example.com", params=(("lr", None),))),
    (
        "sip:+12125551212@gw.example.com;user=phone",
        SipURI(user="+12125551212", host="gw.example.com", params=(("user", "phone"),)),
    ),
    (
        "sip:a@h?subject=project%20x&priority=urgent",
        SipURI(user="a", host="h", headers=(("subject", "project%20x"), ("priority", "urgent"))),
    ),
    ("sip:%61lice@example.com", SipURI(user="%61lice", host="example.com")),
    (
        "sip:user;par=u%40example.net@example.com",
        SipURI(user="user;par=u%40example.net", host="example.com"),
    ),
    ("sip:h.example.com.", SipURI(host="h.example.com.")),
    ("SIP:Alice@Example.COM", SipURI("SIP", "Alice", None, "Example.COM")),
    ("tel:+1-201-555-0123", TelURI("+1-201-555-0123")),
    ("tel:7042;phone-context=example.com", TelURI("7042", (("phone-context", "example.com"),))),
    ("http://www.example.com/a?b=c", AbsoluteURI("http", "//www.example.com/a?b=c")),
    ("urn:service:sos", AbsoluteURI("urn", "service:sos")),
    ("mailto:a@example.com", AbsoluteURI("mailto", "a@example.com")),
]


@pytest.mark.parametrize(("text", "uri"), TABLE)
def test_parse_and_format_table(text: str, uri: SipURI | TelURI | AbsoluteURI) -> None:
    assert parse_uri(text) == uri
    assert str(uri) == text
    assert str(parse_uri(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:@example.com",
        "<sip:a@example.com>",
        "sip:a@example.com>",
        "sip:a b@example.com",
        "sip:a@exa mple.com",
        "sip:a@exa_mple.com",
        "sip:a@-example.com",
        "sip:a@example.com:65536",
        "sip:a@example.com:port",
        "sip:a@[2001:db8::1::2]",
        "sip:a@[gggg::1]",
        "sip:a@2001:db8::1",
        "sip:a@example.com;",
        "sip:a@example.com;=x",
        "sip:a@example.com?",
        "sip:a@example.com?x",
        "sip:a%zz@example.com",
        "sip:a@1.2.3",
        "sips:a@b@c",
        "tel:",
        "tel:abc-xyz",
        "example.com",
        "1http:x",
        "http:",
        "http:a b",
        "http:<x>",
    ],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


def test_port_with_leading_zeros() -> None:
    uri = parse_uri("sip:h:05060")
    assert isinstance(uri, SipURI)
    assert uri.port == 5060
    assert str(uri) == "sip:h:05060"  # kept as received


def test_params_are_case_insensitive_and_ordered() -> None:
    uri = parse_uri("sip:a@h;Transport=TCP;lr;maddr=192.0.2.1")
    assert isinstance(uri, SipURI)
    assert uri.param("transport") == "TCP"
    assert uri.transport == "tcp"
    assert uri.has_param("LR")
    assert uri.param("lr") is None
    assert not uri.has_param("ttl")
    assert uri.host_port == ("h", None)


def test_with_and_without_param_return_new_uris() -> None:
    uri = parse_uri("sip:a@h;transport=udp;lr")
    assert isinstance(uri, SipURI)
    changed = uri.with_param("TRANSPORT", "tcp")
    assert str(changed) == "sip:a@h;transport=tcp;lr"
    assert str(uri) == "sip:a@h;transport=udp;lr"
    assert str(uri.with_param("ob")) == "sip:a@h;transport=udp;lr;ob"
    assert str(uri.without_param("lr")) == "sip:a@h;transport=udp"
    assert str(replace(uri, port=5080)) == "sip:a@h:5080;transport=udp;lr"


def test_built_uri_formats() -> None:
    uri = SipURI(scheme="sips", user="bob", host="[::1]", port=5061, params=(("ob", None),))
    assert str(uri) == "sips:bob@[::1]:5061;ob"
    assert uri.is_secure
    assert parse_uri(str(uri)) == uri


def test_equality_is_structural_not_textual() -> None:
    assert parse_uri("sip:a@h") == SipURI(user="a", host="h")
    assert parse_uri("sip:a@h") != parse_uri("sip:a@H")
    assert hash(parse_uri("sip:a@h")) == hash(SipURI(user="a", host="h"))


def test_tel_uri_params() -> None:
    uri = parse_uri("tel:+358-555-1234567;postd=pp22;isub=1411")
    assert isinstance(uri, TelURI)
    assert uri.number == "+358-555-1234567"
    assert uri.param("POSTD") == "pp22"
