"""Property tests (hypothesis) for the message layer.

- Generated requests and responses survive ``parse_message(bytes(m)) == m``.
- Random bytes, and mutations of valid messages (byte flips, truncations, insertions, deleted or
  repeated lines), never raise anything but ParseError; whatever the parser accepts has working
  typed accessors and round-trips.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sip.errors import ParseError
from sip.headers import CSeq, Headers, NameAddr, Via
from sip.message import Request, Response, StreamParser, parse_message
from sip.uri import URI, SipURI, TelURI

FIXTURES = Path(__file__).parent / "fixtures" / "rfc4475"
SEEDS = [
    path.read_bytes()
    for folder in ("valid", "semantic")
    for path in sorted((FIXTURES / folder).glob("*.dat"))
]

SETTINGS = settings(
    # SIP_HYPOTHESIS_EXAMPLES=5000 for a longer local run
    max_examples=int(os.environ.get("SIP_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
UNRESERVED = string.ascii_letters + string.digits + "-_.!~*'()"

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\Z")
top_labels = st.from_regex(r"\A[a-z]([a-z0-9-]{0,8}[a-z0-9])?\Z")
hostnames = st.builds(
    lambda parts, top: ".".join([*parts, top]), st.lists(labels, max_size=3), top_labels
)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
escaped = st.integers(0, 255).map(lambda n: f"%{n:02X}")
users = st.lists(
    st.one_of(st.sampled_from(UNRESERVED + "&=+$,;?/"), escaped), min_size=1, max_size=10
).map("".join)
passwords = st.lists(st.one_of(st.sampled_from(UNRESERVED + "&=+$,"), escaped), max_size=6).map(
    "".join
)
param_texts = st.lists(
    st.one_of(st.sampled_from(UNRESERVED + "[]/:&+$"), escaped), min_size=1, max_size=8
).map("".join)
uri_params = st.lists(st.tuples(param_texts, st.none() | param_texts), max_size=3).map(tuple)
header_texts = st.lists(
    st.one_of(st.sampled_from(UNRESERVED + "[]/?:+$"), escaped), min_size=1, max_size=8
).map("".join)


@st.composite
def sip_uris(draw: st.DrawFn, *, with_headers: bool = True) -> SipURI:
    user = draw(st.none() | users)
    return SipURI(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=draw(passwords) if user is not None and draw(st.booleans()) else None,
        host=draw(hosts),
        port=draw(st.none() | st.integers(0, 65535)),
        params=draw(uri_params),
        headers=draw(
            st.lists(st.tuples(header_texts, header_texts), max_size=2).map(tuple)
            if with_headers
            else st.just(())
        ),
    )


tel_uris = st.builds(
    TelURI,
    st.from_regex(r"\A\+?[0-9][0-9\-.()]{0,14}\Z"),
    uri_params,
)
display_names = st.none() | st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20
)
gen_values = st.one_of(
    tokens,
    st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=10).map(
        lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
)
header_params = st.lists(st.tuples(tokens, st.none() | gen_values), max_size=3).map(tuple)


@st.composite
def name_addrs(draw: st.DrawFn) -> NameAddr:
    uri: URI = draw(st.one_of(sip_uris(), tel_uris))
    params = tuple((k, v) for k, v in draw(header_params) if k.lower() not in ("q", "expires"))
    return NameAddr(draw(display_names), uri, params)


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params: list[tuple[str, str | None]] = [("branch", "z9hG4bK" + draw(tokens))]
    if draw(st.booleans()):
        params.append(("rport", None))
    if draw(st.booleans()):
        params.append(("received", draw(st.ip_addresses(v=4).map(str))))
    return Via(
        transport=draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"])),
        host=draw(hosts),
        port=draw(st.none() | st.integers(1, 65535)),
        params=tuple(params),
    )


call_ids = st.text(TOKEN_CHARS + '()<>:\\"/[]?{}', min_size=1, max_size=20)
extension_values = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"]) | st.just("\t"), max_size=30
).map(lambda v: v.strip(" \t"))
extension_headers = st.lists(
    st.tuples(tokens.map(lambda t: "X-" + t), extension_values), max_size=4
)


@st.composite
def common_headers(draw: st.DrawFn, method: str) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = [
        (draw(st.sampled_from(["Via", "v", "VIA"])), str(via))
        for via in draw(st.lists(vias(), min_size=1, max_size=3))
    ]
    fields += [
        (draw(st.sampled_from(["From", "f"])), str(draw(name_addrs()))),
        (draw(st.sampled_from(["To", "t"])), str(draw(name_addrs()))),
        (draw(st.sampled_from(["Call-ID", "i"])), draw(call_ids)),
        ("CSeq", str(CSeq(draw(st.integers(0, 2**31 - 1)), method))),
    ]
    if draw(st.booleans()):
        fields.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    if draw(st.booleans()):
        fields.append(
            (
                "Contact",
                ", ".join(str(a) for a in draw(st.lists(name_addrs(), min_size=1, max_size=2))),
            )
        )
    if draw(st.booleans()):
        fields.append(("Content-Length", str(draw(st.integers(0, 99)))))  # rewritten anyway
    fields += draw(extension_headers)
    return draw(st.permutations(fields))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"]) | tokens)
    uri: URI = draw(st.one_of(sip_uris(with_headers=False), tel_uris))
    return Request(
        method,
        uri,
        Headers(draw(common_headers(method))),
        draw(st.binary(max_size=300)),
    )


@st.composite
def responses(draw: st.DrawFn) -> Response:
    reason = draw(
        st.text(
            st.characters(codec="utf-8", exclude_categories=["Cc"]) | st.just("\t"), max_size=30
        )
    )
    return Response(
        draw(st.integers(100, 699)),
        reason,
        Headers(draw(common_headers(draw(tokens)))),
        draw(st.binary(max_size=300)),
    )


@SETTINGS
@given(requests())
def test_generated_requests_round_trip(request: Request) -> None:
    parsed = parse_message(bytes(request))
    assert parsed == request
    assert bytes(parsed) == bytes(request)
    assert parsed.vias == request.vias
    assert parsed.from_ == request.from_
    assert parsed.to == request.to


@SETTINGS
@given(responses())
def test_generated_responses_round_trip(response: Response) -> None:
    parsed = parse_message(bytes(response))
    assert parsed == response
    assert parsed.cseq == response.cseq


def _typed(message: Request | Response) -> tuple[object, ...]:
    return (
        message.vias,
        message.from_,
        message.to,
        message.call_id,
        message.cseq,
        message.contacts,
        message.route,
        message.record_route,
        message.max_forwards,
    )


def _check_accepted(message: Request | Response) -> None:
    """What the parser accepts has working accessors and round-trips; the typed values read
    from the parser's checked fields (fast extraction) equal those read from the same fields
    built by hand (full grammar check, then extraction)."""
    typed = _typed(message)
    assert message.top_via == message.vias[0]
    rebuilt = Response(200, "OK", Headers(message.headers.fields()))
    assert not rebuilt.headers.validated
    assert _typed(rebuilt) == typed
    assert parse_message(bytes(message)) == message


def _parse_or_parse_error(data: bytes) -> None:
    try:
        message = parse_message(data)
    except ParseError as exc:
        assert 400 <= exc.status_hint <= 599
        assert str(exc)
        return
    _check_accepted(message)


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_parse_error(data: bytes) -> None:
    _parse_or_parse_error(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_after_a_valid_start_line_raise_only_parse_error(data: bytes) -> None:
    _parse_or_parse_error(b"INVITE sip:a@example.com SIP/2.0\r\n" + data)
    _parse_or_parse_error(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + data)


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("drop-line"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("repeat-line"), st.integers(0, 10**6), st.just(0)),
)
_INTERESTING = b'\r\n :;,<>"\\@=/%[]?\x00\t0'


def _mutate(data: bytes, op: str, where: int, arg: int) -> bytes:
    pos = where % (len(data) + 1)
    if op == "flip" and data:
        pos %= len(data)
        byte = _INTERESTING[arg % len(_INTERESTING)] if arg < 128 else arg
        return data[:pos] + bytes([byte]) + data[pos + 1 :]
    if op == "truncate":
        return data[:pos]
    if op == "insert":
        return data[:pos] + bytes([_INTERESTING[arg % len(_INTERESTING)]]) + data[pos:]
    if op == "delete":
        return data[:pos] + data[pos + arg :]
    lines = data.split(b"\r\n")
    index = where % len(lines)
    if op == "drop-line":
        return b"\r\n".join(lines[:index] + lines[index + 1 :])
    if op == "repeat-line":
        return b"\r\n".join(lines[: index + 1] + lines[index:])
    return data


@SETTINGS
@given(st.sampled_from(SEEDS), st.lists(mutations, min_size=1, max_size=4))
def test_mutated_valid_messages_raise_only_parse_error(
    seed: bytes, ops: list[tuple[str, int, int]]
) -> None:
    data = seed
    for op, where, arg in ops:
        data = _mutate(data, op, where, arg)
    _parse_or_parse_error(data)


@SETTINGS
@given(
    st.lists(st.sampled_from(SEEDS[:6]), min_size=1, max_size=3),
    st.lists(mutations, max_size=2),
    st.lists(st.integers(1, 200), min_size=1, max_size=20),
)
def test_stream_parser_on_arbitrary_chunks(
    seeds: list[bytes], ops: list[tuple[str, int, int]], sizes: list[int]
) -> None:
    data = b"".join(seeds)
    for op, where, arg in ops:
        data = _mutate(data, op, where, arg)
    parser = StreamParser()
    pos = 0
    index = 0
    try:
        while pos < len(data):
            size = sizes[index % len(sizes)]
            parser.feed(data[pos : pos + size])
            pos += size
            index += 1
            while (message := parser.next_message()) is not None:
                _check_accepted(message)
    except ParseError:
        return
