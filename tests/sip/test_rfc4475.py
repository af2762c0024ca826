"""RFC 4475 (SIP torture test messages) against sip.parse_message.

The fixtures in ``fixtures/rfc4475`` are the RFC's messages as bytes on the wire (rebuilt by
``fixtures/make_rfc4475.py``):

- ``valid``: §3.1.1, must parse and round-trip;
- ``invalid``: §3.1.2, must be refused with ParseError (DESIGN §3);
- ``semantic``: §3.2-3.4 messages that are well formed, so the parser accepts them and a higher
  layer decides;
- ``rejected``: §3.3 messages that break rules this parser enforces (mandatory and single-valued
  headers).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from sip.errors import ParseError
from sip.headers import Headers
from sip.message import Request, Response, StreamParser, parse_message
from sip.uri import AbsoluteURI, SipURI

FIXTURES = Path(__file__).parent / "fixtures" / "rfc4475"


def _load(folder: str) -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in sorted((FIXTURES / folder).glob("*.dat"))}


VALID = _load("valid")
INVALID = _load("invalid")
SEMANTIC = _load("semantic")
REJECTED = _load("rejected")

# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
REASON_PHRASE = re.compile(r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,% \t\u0080-\U0010ffff]*")


def test_every_message_of_the_rfc_is_here() -> None:
    assert set(VALID) == {
        "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq",
        "dblreq", "semiuri", "transports", "mpart01", "unreason", "noreason",
    }  # fmt: skip
    assert set(INVALID) == {
        "badinv01", "clerr", "ncl", "scalar02", "scalarlg", "quotbal", "ltgtruri",
        "lwsruri", "lwsstart", "trws", "escruri", "baddate", "regbadct", "badaspec",
        "baddn", "badvers", "mismatch01", "mismatch02", "bigcode",
    }  # fmt: skip
    for data in [*VALID.values(), *INVALID.values()]:
        head = data.split(b"\r\n\r\n")[0]
        assert b"\n" not in head.replace(b"\r\n", b"")  # every line ends in CRLF


def test_fixture_files_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_rfc4475", FIXTURES.parent / "make_rfc4475.py"
    )
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.VALID == VALID
    assert generator.INVALID == INVALID
    assert generator.SEMANTIC == SEMANTIC
    assert generator.REJECTED == REJECTED


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_messages_parse_and_round_trip(name: str) -> None:
    message = parse_message(VALID[name])
    again = parse_message(bytes(message))
    assert again == message
    assert bytes(again) == bytes(message)
    # the typed values of a message the parser accepted are always available
    assert message.vias
    assert message.from_.uri is not None
    assert message.to.uri is not None
    assert message.call_id
    assert message.cseq.seq >= 0
    _ = message.contacts, message.route, message.record_route, message.max_forwards
    # the parser's fast extraction agrees with a full parse of the same fields
    rebuilt = Response(200, "OK", Headers(message.headers.fields()))
    for name in ("vias", "from_", "to", "contacts", "route", "record_route", "cseq"):
        assert getattr(rebuilt, name) == getattr(message, name), name


@pytest.mark.parametrize("name", sorted(SEMANTIC))
def test_semantically_wrong_but_well_formed_messages_parse(name: str) -> None:
    message = parse_message(SEMANTIC[name])
    assert parse_message(bytes(message)) == message
    _ = message.vias, message.from_, message.to, message.contacts, message.route


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_are_refused(name: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(INVALID[name])
    reason = str(info.value)
    assert reason
    assert REASON_PHRASE.fullmatch(reason), reason


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_messages_breaking_enforced_rules_are_refused(name: str) -> None:
    with pytest.raises(ParseError):
        parse_message(REJECTED[name])


@pytest.mark.parametrize(
    ("name", "reason", "status_hint"),
    [
        ("badinv01", "Via", 400),
        ("clerr", "Content-Length", 400),
        ("ncl", "Content-Length", 400),
        ("scalar02", "Max-Forwards", 400),
        ("scalarlg", "Retry-After", 400),
        ("quotbal", "To", 400),
        ("ltgtruri", "Request-URI", 400),
        ("lwsruri", "Request-Line", 400),
        ("lwsstart", "Request-Line", 400),
        ("trws", "Request-Line", 400),
        ("escruri", "Request-URI", 400),
        ("baddate", "Date", 400),
        ("regbadct", "Contact", 400),
        ("badaspec", "To", 400),
        ("baddn", "From", 400),
        ("badvers", "version", 505),
        ("mismatch01", "CSeq", 400),
        ("mismatch02", "CSeq", 400),
        ("bigcode", "status code", 400),
    ],
)
def test_invalid_messages_are_refused_for_the_right_reason(
    name: str, reason: str, status_hint: int
) -> None:
    with pytest.raises(ParseError, match=reason) as info:
        parse_message(INVALID[name])
    assert info.value.status_hint == status_hint


def test_scalar02_cseq_alone_is_refused() -> None:
    data = INVALID["scalar02"].replace(b"Max-Forwards: 300", b"Max-Forwards: 70")
    data = re.sub(rb"Expires: 10+", b"Expires: 10", data).replace(
        b"expires=2802975966", b"expires="
    )
    with pytest.raises(ParseError, match="CSeq"):
        parse_message(data)


def test_wsinv_details() -> None:
    message = parse_message(VALID["wsinv"])
    assert isinstance(message, Request)
    assert message.uri == SipURI(
        user="vivekg", host="chair-dnrc.example.com", params=(("unknownparam", None),)
    )
    assert message.to.tag == "1918181833n"
    assert message.from_.display_name == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    assert message.max_forwards == 68
    assert (message.cseq.seq, message.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in message.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert all(v.protocol == "SIP/2.0" for v in message.vias)
    assert message.headers.get("subject") == ""
    assert message.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = message.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    (route,) = message.route
    assert isinstance(route.uri, SipURI)
    assert route.uri.has_param("lr")
    assert route.uri.param("unknownwith") == "value"
    assert len(message.body) == 150


def test_intmeth_details() -> None:
    message = parse_message(VALID["intmeth"])
    assert isinstance(message, Request)
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(message.uri, SipURI)
    assert message.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert message.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert message.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert message.from_.param("fromParam''~+*_!.-%") == '"работающий"'
    assert message.from_.tag == "_token~1'+`*%!-."
    assert message.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert message.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_escapes_are_kept_as_received() -> None:
    esc01 = parse_message(VALID["esc01"])
    assert isinstance(esc01, Request)
    assert isinstance(esc01.uri, SipURI)
    assert esc01.uri.user == "sips%3Auser%40example.com"
    (contact,) = esc01.contacts
    assert isinstance(contact.uri, SipURI)
    assert contact.uri.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    escnull = parse_message(VALID["escnull"])
    assert [str(c.uri) for c in escnull.contacts] == [
        "sip:%00@host5.example.com",
        "sip:%00%00@host5.example.com",
    ]
    esc02 = parse_message(VALID["esc02"])
    assert isinstance(esc02, Request)
    assert esc02.method == "RE%47IST%45R"
    assert esc02.to.display_name == "%Z%45"
    assert esc02.top_via.branch == "z9hG4bK209%fzsnel234"
    # C%6Fntact is an unknown header, not a Contact
    assert [str(c.uri) for c in esc02.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_semiuri_transports() -> None:
    assert parse_message(VALID["lwsdisp"]).from_.display_name == "caller"
    semiuri = parse_message(VALID["semiuri"])
    assert isinstance(semiuri, Request)
    assert isinstance(semiuri.uri, SipURI)
    assert semiuri.uri.user == "user;par=u%40example.net"
    assert semiuri.uri.host == "example.com"
    assert len(semiuri.headers.get_all("Accept")) == 6
    transports = parse_message(VALID["transports"])
    assert [v.transport for v in transports.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_longreq_details() -> None:
    message = parse_message(VALID["longreq"])
    assert len(message.vias) == 34
    assert message.vias[-1].received == "192.0.2.5"
    assert isinstance(message.to.uri, SipURI)
    assert message.to.uri.port == 6000
    assert message.from_.tag is not None
    assert len(message.from_.tag) == 2 + 150 + 3


def test_dblreq_keeps_only_the_first_message() -> None:
    message = parse_message(VALID["dblreq"])
    assert isinstance(message, Request)
    assert message.method == "REGISTER"
    assert message.body == b""
    # the bare addr-spec Contact
    assert str(message.contacts[0].uri) == "sip:j.user@host.example.com"


def test_mpart01_binary_body() -> None:
    message = parse_message(VALID["mpart01"])
    assert len(message.body) == 553
    assert b"\x00" in message.body
    assert message.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert message.top_via.rport is True


def test_responses_with_unusual_reason_phrases() -> None:
    unreason = parse_message(VALID["unreason"])
    assert isinstance(unreason, Response)
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse_message(VALID["noreason"])
    assert isinstance(noreason, Response)
    assert (noreason.status, noreason.reason) == (100, "")
    assert bytes(noreason).startswith(b"SIP/2.0 100 \r\n")


def test_other_uri_schemes() -> None:
    unkscm = parse_message(SEMANTIC["unkscm"])
    assert isinstance(unkscm, Request)
    assert unkscm.uri == AbsoluteURI("nobodyKnowsThisScheme", "totallyopaquecontent")
    unksm2 = parse_message(SEMANTIC["unksm2"])
    assert unksm2.to.uri == AbsoluteURI("isbn", "2983792873")
    assert unksm2.from_.uri == AbsoluteURI("http", "//www.example.com")


def test_inv2543_without_content_length_takes_the_rest_of_the_datagram() -> None:
    message = parse_message(SEMANTIC["inv2543"])
    assert message.body.startswith(b"v=0\r\n")
    assert message.max_forwards is None
    assert message.top_via.branch is None


@pytest.mark.parametrize("name", sorted(set(VALID) - {"dblreq"}))
def test_valid_messages_through_a_stream_parser(name: str) -> None:
    data = VALID[name]
    if parse_message(data).headers.get("content-length") is None:
        pytest.skip("a stream needs Content-Length")
    parser = StreamParser()
    for i in range(0, len(data), 7):
        parser.feed(data[i : i + 7])
    assert parser.next_message() == parse_message(data)
    assert parser.next_message() is None
