"""Tests of sip.sdp: byte fixtures both ways, the RFC 3264 helpers, and property tests."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip.errors import ParseError
from sip.sdp import (
    Bandwidth,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SessionDescription,
    TimeDescription,
    make_hold,
    make_inactive,
    make_inactive_offer,
)


def crlf(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# RFC 8866 §5 example: every session-level field kind.
RFC8866_EXAMPLE = crlf(
    "v=0",
    "o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1",
    "s=Call to John Smith",
    "i=SDP Offer #1",
    "u=http://www.jdoe.example.com/home.html",
    "e=Jane Doe <jane@jdoe.example.com>",
    "p=+1 617 555-6011",
    "c=IN IP4 198.51.100.1",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0",
    "m=audio 49180 RTP/AVP 0",
    "m=video 51372 RTP/AVP 99",
    "c=IN IP6 2001:db8::2",
    "a=rtpmap:99 h263-1998/90000",
)

# RFC 3264 §10.1 offer: session-level c=, two media, rtpmap lines.
RFC3264_OFFER = crlf(
    "v=0",
    "o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com",
    "s=",
    "c=IN IP4 host.atlanta.example.com",
    "t=0 0",
    "m=audio 49170 RTP/AVP 0 8 97",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:97 iLBC/8000",
    "m=video 51372 RTP/AVP 31 32",
    "a=rtpmap:31 H261/90000",
    "a=rtpmap:32 MPV/90000",
)

# Less common lines: b=, r=, z=, k=, media i=, port count, session attributes, empty value.
UNUSUAL = crlf(
    "v=0",
    "o=- 0 1 IN IP4 10.0.0.1",
    "s=-",
    "c=IN IP4 224.2.17.12/127",
    "b=CT:128",
    "t=3034423619 3042462419",
    "r=604800 3600 0 90000",
    "r=7d 1h 0 25h",
    "t=0 0",
    "z=2882844526 -1h 2898848070 0",
    "k=prompt",
    "a=recvonly",
    "a=tool:",
    "m=audio 49230/2 RTP/AVP 96 97",
    "i=main audio",
    "c=IN IP4 10.0.0.2",
    "c=IN IP4 10.0.0.3",
    "b=AS:64",
    "k=clear:secret",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:97 0-15",
    "a=ptime:20",
    "m=application 0 UDP/TLS/RTP/SAVPF webrtc-datachannel",
)

ROUND_TRIP_FIXTURES = [RFC8866_EXAMPLE, RFC3264_OFFER, UNUSUAL]


@pytest.mark.parametrize("data", ROUND_TRIP_FIXTURES)
def test_round_trip_is_byte_exact(data: bytes) -> None:
    parsed = SessionDescription.parse(data)
    assert parsed.serialize() == data
    assert bytes(parsed) == data
    assert SessionDescription.parse(data.decode()) == parsed


@pytest.mark.parametrize("data", ROUND_TRIP_FIXTURES)
def test_bare_lf_and_missing_final_newline_are_accepted(data: bytes) -> None:
    expected = SessionDescription.parse(data)
    bare_lf = data.replace(b"\r\n", b"\n")
    assert SessionDescription.parse(bare_lf) == expected
    assert SessionDescription.parse(bare_lf.rstrip(b"\n")) == expected
    assert SessionDescription.parse(data[:-2]) == expected


def test_fields_are_parsed_into_their_parts() -> None:
    sdp = SessionDescription.parse(UNUSUAL)
    assert sdp.origin == Origin("-", "0", 1, "IN", "IP4", "10.0.0.1")
    assert sdp.connection == Connection("IN", "IP4", "224.2.17.12/127")
    assert sdp.bandwidths == (Bandwidth("CT", 128),)
    assert sdp.times == (
        TimeDescription(3034423619, 3042462419, ("604800 3600 0 90000", "7d 1h 0 25h")),
        TimeDescription(0, 0, ()),
    )
    assert sdp.zone_adjustments == "2882844526 -1h 2898848070 0"
    assert sdp.key == "prompt"
    assert sdp.attributes == (("recvonly", None), ("tool", ""))
    audio, data = sdp.media
    assert (audio.media, audio.port, audio.port_count, audio.proto) == (
        "audio",
        49230,
        2,
        "RTP/AVP",
    )
    assert audio.formats == ("96", "97")
    assert audio.title == "main audio"
    assert audio.connection == Connection("IN", "IP4", "10.0.0.2")
    assert len(audio.connections) == 2
    assert audio.bandwidths == (Bandwidth("AS", 64),)
    assert audio.key == "clear:secret"
    assert audio.attribute("ptime") == "20"
    assert audio.attribute("nosuch") is None
    assert audio.attribute_values("rtpmap") == ["96 opus/48000/2"]
    assert data.port == 0
    assert data.formats == ("webrtc-datachannel",)


def test_session_name_of_a_single_space_is_kept() -> None:
    data = RFC3264_OFFER.replace(b"s=\r\n", b"s= \r\n")
    parsed = SessionDescription.parse(data)
    assert parsed.session_name == " "
    assert parsed.serialize() == data


def test_non_utf8_bytes_survive_the_round_trip() -> None:
    data = RFC3264_OFFER.replace(b"s=\r\n", b"s=caf\xe9\r\n")
    assert SessionDescription.parse(data).serialize() == data


def test_leading_zeros_are_accepted_and_normalised() -> None:
    data = RFC3264_OFFER.replace(b"2890844526 IN", b"02890844526 IN")
    assert SessionDescription.parse(data).origin.sess_version == 2890844526


MALFORMED = {
    "empty": b"",
    "not v= first": crlf("o=- 0 0 IN IP4 1.2.3.4", "v=0", "s=-", "t=0 0"),
    "version 1": crlf("v=1", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "t=0 0"),
    "no origin": crlf("v=0", "s=-", "t=0 0"),
    "short origin": crlf("v=0", "o=- 0 0 IN IP4", "s=-", "t=0 0"),
    "origin version not numeric": crlf("v=0", "o=- 0 x IN IP4 1.2.3.4", "s=-", "t=0 0"),
    "double space": crlf("v=0", "o=-  0 0 IN IP4 1.2.3.4", "s=-", "t=0 0"),
    "no s=": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "t=0 0"),
    "no t=": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-"),
    "bad t=": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "t=0"),
    "unknown type letter": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "t=0 0", "x=1"),
    "upper-case type": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "T=0 0"),
    "space before =": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "t =0 0"),
    "misplaced c=": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "t=0 0", "c=IN IP4 1.2.3.4"),
    "a= before m= section lines": crlf(
        "v=0",
        "o=- 0 0 IN IP4 1.2.3.4",
        "s=-",
        "t=0 0",
        "m=audio 1 RTP/AVP 0",
        "a=sendrecv",
        "c=IN IP4 1.2.3.4",
    ),
    "no c= anywhere": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "t=0 0", "m=audio 1 RTP/AVP 0"),
    "m= without formats": crlf(
        "v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "c=IN IP4 1.2.3.4", "t=0 0", "m=audio 1 RTP/AVP"
    ),
    "m= port out of range": crlf(
        "v=0",
        "o=- 0 0 IN IP4 1.2.3.4",
        "s=-",
        "c=IN IP4 1.2.3.4",
        "t=0 0",
        "m=audio 70000 RTP/AVP 0",
    ),
    "m= port not numeric": crlf(
        "v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "c=IN IP4 1.2.3.4", "t=0 0", "m=audio x RTP/AVP 0"
    ),
    "b= without colon": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "b=AS64", "t=0 0"),
    "b= not numeric": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "b=AS:x", "t=0 0"),
    "bad attribute name": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "t=0 0", "a=bad name:1"),
    "NUL in value": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=a\x00b", "t=0 0"),
    "lone CR in value": crlf("v=0", "o=- 0 0 IN IP4 1.2.3.4", "s=a\rb", "t=0 0"),
    "blank line": crlf("v=0", "", "o=- 0 0 IN IP4 1.2.3.4", "s=-", "t=0 0"),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_descriptions_raise_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        SessionDescription.parse(data)


def test_parse_error_is_a_value_error_with_a_400_hint() -> None:
    with pytest.raises(ValueError, match="version") as info:
        SessionDescription.parse(MALFORMED["version 1"])
    assert isinstance(info.value, ParseError)
    assert info.value.status_hint == 400


# -- helpers ---------------------------------------------------------------------------------


def test_bumped_version_changes_only_the_origin_version() -> None:
    sdp = SessionDescription.parse(RFC3264_OFFER)
    bumped = sdp.with_bumped_version()
    assert bumped.origin.sess_version == sdp.origin.sess_version + 1
    assert bumped.origin.sess_id == sdp.origin.sess_id
    assert bumped.media == sdp.media
    assert bumped.serialize() == RFC3264_OFFER.replace(
        b"2890844526 2890844526", b"2890844526 2890844527"
    )


def test_direction_defaults_to_sendrecv_and_media_level_overrides_session_level() -> None:
    sdp = SessionDescription.parse(RFC3264_OFFER)
    assert sdp.direction is Direction.SENDRECV
    assert sdp.media_direction(0) is Direction.SENDRECV
    assert sdp.media[0].direction is None

    unusual = SessionDescription.parse(UNUSUAL)
    assert unusual.direction is Direction.RECVONLY
    assert unusual.media_direction(0) is Direction.RECVONLY
    sendonly_audio = unusual.with_direction(Direction.SENDONLY, 0)
    assert sendonly_audio.media_direction(0) is Direction.SENDONLY
    assert sendonly_audio.media_direction(1) is Direction.RECVONLY


def test_with_direction_replaces_in_place_and_on_all_media_drops_the_session_attribute() -> None:
    media = MediaDescription(
        media="audio",
        port=4000,
        proto="RTP/AVP",
        formats=("0",),
        attributes=(("rtpmap", "0 PCMU/8000"), ("sendonly", None), ("ptime", "20")),
    )
    changed = media.with_direction(Direction.INACTIVE)
    assert changed.attributes == (("rtpmap", "0 PCMU/8000"), ("inactive", None), ("ptime", "20"))

    sdp = SessionDescription.parse(UNUSUAL).with_direction(Direction.SENDRECV)
    assert ("recvonly", None) not in sdp.attributes
    assert all(m.direction is Direction.SENDRECV for m in sdp.media)
    assert sdp.origin == SessionDescription.parse(UNUSUAL).origin


def test_media_address_prefers_the_media_level_connection() -> None:
    sdp = SessionDescription.parse(RFC8866_EXAMPLE)
    assert sdp.media_address() == ("198.51.100.1", 49170)
    assert sdp.media_address(2) == ("2001:db8::2", 51372)
    with pytest.raises(IndexError):
        sdp.media_address(3)


def test_hold_follows_rfc3264_section_8_4() -> None:
    sdp = SessionDescription.parse(RFC3264_OFFER).with_direction(Direction.RECVONLY, 1)
    held = make_hold(sdp)
    assert held.media_direction(0) is Direction.SENDONLY  # was sendrecv
    assert held.media_direction(1) is Direction.INACTIVE  # was recvonly
    assert held.origin.sess_version == sdp.origin.sess_version + 1
    assert held.connection == sdp.connection  # no c=0.0.0.0
    only_first = make_hold(SessionDescription.parse(RFC3264_OFFER), 0)
    assert only_first.media_direction(0) is Direction.SENDONLY
    assert only_first.media_direction(1) is Direction.SENDRECV


def test_inactive_keeps_addresses_and_bumps_the_version() -> None:
    sdp = SessionDescription.parse(RFC3264_OFFER)
    black_hole = make_inactive(sdp)
    assert [black_hole.media_direction(i) for i in range(2)] == [Direction.INACTIVE] * 2
    assert black_hole.media_address(0) == sdp.media_address(0)
    assert black_hole.origin.sess_version == sdp.origin.sess_version + 1
    assert b"0.0.0.0" not in black_hole.serialize()


def test_inactive_offer_is_a_valid_description() -> None:
    offer = make_inactive_offer("192.0.2.10", sess_id="42")
    assert offer.serialize() == crlf(
        "v=0",
        "o=- 42 0 IN IP4 192.0.2.10",
        "s=-",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "m=audio 9 RTP/AVP 0 8",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=inactive",
    )
    assert SessionDescription.parse(offer.serialize()) == offer
    v6 = make_inactive_offer("::1", sess_id="1", formats=("0",))
    assert v6.connection == Connection("IN", "IP6", "::1")
    assert v6.media_direction() is Direction.INACTIVE


# -- properties ------------------------------------------------------------------------------

_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+~#$&'^`{|}",
    min_size=1,
    max_size=12,
)
_non_ws = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="\x7f"),
    min_size=1,
    max_size=16,
)
_text = st.text(
    alphabet=st.characters(min_codepoint=0x01, max_codepoint=0x2FF, exclude_characters="\r\n"),
    min_size=0,
    max_size=20,
)
_number = st.integers(min_value=0, max_value=2**40)
_attribute = st.tuples(_token, st.none() | _text)
_connection = st.builds(Connection, _token, _token, _non_ws)
_bandwidth = st.builds(Bandwidth, _token, _number)
_media = st.builds(
    MediaDescription,
    media=_token,
    port=st.integers(min_value=0, max_value=65535),
    proto=st.lists(_token, min_size=1, max_size=3).map("/".join),
    formats=st.lists(_token, min_size=1, max_size=5).map(tuple),
    port_count=st.none() | st.integers(min_value=0, max_value=8),
    title=st.none() | _text,
    connections=st.lists(_connection, min_size=1, max_size=2).map(tuple),
    bandwidths=st.lists(_bandwidth, max_size=2).map(tuple),
    key=st.none() | _text,
    attributes=st.lists(_attribute, max_size=5).map(tuple),
)
_session = st.builds(
    SessionDescription,
    origin=st.builds(Origin, _non_ws, _non_ws, _number, _token, _token, _non_ws),
    session_name=_text,
    information=st.none() | _text,
    uri=st.none() | _text,
    emails=st.lists(_text, max_size=2).map(tuple),
    phones=st.lists(_text, max_size=2).map(tuple),
    connection=st.none() | _connection,
    bandwidths=st.lists(_bandwidth, max_size=2).map(tuple),
    times=st.lists(
        st.builds(TimeDescription, _number, _number, st.lists(_text, max_size=2).map(tuple)),
        min_size=1,
        max_size=2,
    ).map(tuple),
    zone_adjustments=st.none() | _text,
    key=st.none() | _text,
    attributes=st.lists(_attribute, max_size=5).map(tuple),
    media=st.lists(_media, max_size=3).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(_session)
def test_generated_descriptions_round_trip(sdp: SessionDescription) -> None:
    data = sdp.serialize()
    parsed = SessionDescription.parse(data)
    assert parsed == sdp
    assert parsed.serialize() == data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    try:
        sdp = SessionDescription.parse(data)
    except ParseError:
        return
    assert SessionDescription.parse(sdp.serialize()) == sdp


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_descriptions_raise_only_parse_error(data: st.DataObject) -> None:
    original = bytearray(data.draw(st.sampled_from(ROUND_TRIP_FIXTURES)))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(original) - 1))
        original[position] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(ParseError):
        SessionDescription.parse(bytes(original))
