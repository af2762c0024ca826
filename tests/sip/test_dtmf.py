"""RFC 4733 telephone events and INFO DTMF: byte fixtures of real key presses, delivered whole,
reordered, duplicated, partly lost, packed and redundant; each press must give one digit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sip.dtmf import (
    DtmfDetector,
    DtmfDigit,
    DtmfInfo,
    DtmfParseError,
    DtmfSource,
    RedundantBlock,
    TelephoneEvent,
    build_red,
    build_telephone_events,
    digit_to_event,
    event_payloads,
    event_to_digit,
    parse_dtmf_info,
    parse_red,
    parse_telephone_events,
)
from sip.rtp import RtpPacket, parse_packet

TE = 101  # telephone-event payload type of these fixtures
RED = 100  # RFC 2198 payload type of these fixtures

# One press of "1", as a phone sends it: 20 ms updates from timestamp 0x00001000, end at
# 640 units (80 ms), the end packet three times. Header: V=2, M on the first packet, PT 101,
# sequence 100.., SSRC 0x11223344. Payload: event 1, E bit, volume 10, duration.
PRESS_1 = [
    bytes.fromhex("80e5 0064 00001000 11223344  01 0a 00a0"),  # M, 160
    bytes.fromhex("8065 0065 00001000 11223344  01 0a 0140"),  # 320
    bytes.fromhex("8065 0066 00001000 11223344  01 0a 01e0"),  # 480
    bytes.fromhex("8065 0067 00001000 11223344  01 8a 0280"),  # E, 640
    bytes.fromhex("8065 0068 00001000 11223344  01 8a 0280"),  # E again
    bytes.fromhex("8065 0069 00001000 11223344  01 8a 0280"),  # E a third time
]
# "2" pressed 400 ms later (timestamp 0x1000 + 3200 = 0x1c80).
PRESS_2 = [
    bytes.fromhex("80e5 006a 00001c80 11223344  02 0a 00a0"),
    bytes.fromhex("8065 006b 00001c80 11223344  02 8a 0140"),
    bytes.fromhex("8065 006c 00001c80 11223344  02 8a 0140"),
    bytes.fromhex("8065 006d 00001c80 11223344  02 8a 0140"),
]


def feed(detector: DtmfDetector, datagrams: list[bytes], now: float = 1.0) -> list[str]:
    for data in datagrams:
        detector.receive_packet(parse_packet(data), now)
    digits: list[str] = []
    while (digit := detector.next_event()) is not None:
        digits.append(digit.digit)
    return digits


def detector() -> DtmfDetector:
    return DtmfDetector(payload_types=(TE,), red_payload_types=(RED,))


def event_packet(
    payload: bytes, *, timestamp: int, sequence: int = 1, ssrc: int = 0x11223344, pt: int = TE
) -> bytes:
    return RtpPacket(
        payload_type=pt, sequence=sequence, timestamp=timestamp, ssrc=ssrc, payload=payload
    ).serialize()


# -- payload format --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "event"),
    [
        (b"\x01\x0a\x00\xa0", TelephoneEvent(event=1, end=False, volume=10, duration=160)),
        (b"\x0b\x8a\x03\x20", TelephoneEvent(event=11, end=True, volume=10, duration=800)),
        (b"\x10\x3f\xff\xff", TelephoneEvent(event=16, end=False, volume=63, duration=65535)),
        (b"\x00\x80\x00\x00", TelephoneEvent(event=0, end=True, volume=0, duration=0)),
    ],
)
def test_telephone_event_bytes_round_trip(payload: bytes, event: TelephoneEvent) -> None:
    assert parse_telephone_events(payload) == [event]
    assert build_telephone_events([event]) == payload


def test_the_reserved_bit_is_ignored_on_receipt() -> None:
    assert parse_telephone_events(b"\x05\x4a\x00\xa0") == parse_telephone_events(
        b"\x05\x0a\x00\xa0"
    )


@pytest.mark.parametrize("payload", [b"", b"\x01\x0a\x00", b"\x01\x0a\x00\xa0\x02"])
def test_malformed_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(DtmfParseError):
        parse_telephone_events(payload)


def test_out_of_range_fields_cannot_be_serialised() -> None:
    for bad in (
        TelephoneEvent(event=256),
        TelephoneEvent(event=1, volume=64),
        TelephoneEvent(event=1, duration=65536),
    ):
        with pytest.raises(ValueError, match="range"):
            bad.serialize()


def test_digit_codes() -> None:
    assert [digit_to_event(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert digit_to_event("a") == 12
    assert event_to_digit(11) == "#"
    assert event_to_digit(16) is None
    with pytest.raises(ValueError, match="DTMF"):
        digit_to_event("E")


def test_sender_payloads_of_one_press() -> None:
    payloads = event_payloads(1, duration=800, interval=160, volume=10)
    assert payloads == [
        bytes.fromhex("010a00a0"),
        bytes.fromhex("010a0140"),
        bytes.fromhex("010a01e0"),
        bytes.fromhex("010a0280"),
        bytes.fromhex("018a0320"),
        bytes.fromhex("018a0320"),
        bytes.fromhex("018a0320"),
    ]
    # A press shorter than one interval is just its end packet, three times.
    assert event_payloads(5, duration=100, interval=160) == [bytes.fromhex("058a0064")] * 3
    with pytest.raises(ValueError, match="duration"):
        event_payloads(1, duration=70000, interval=160)


# -- RFC 2198 --------------------------------------------------------------------------------


def test_red_payload_round_trip() -> None:
    blocks = [
        RedundantBlock(payload_type=TE, timestamp_offset=1600, payload=b"\x01\x8a\x02\x80"),
        RedundantBlock(payload_type=TE, timestamp_offset=0, payload=b"\x02\x0a\x00\xa0"),
    ]
    # F=1|PT 101, offset 1600 (14 bits) | length 4 (10 bits); then F=0|PT 101.
    data = bytes.fromhex("e5 190004 65 018a0280 020a00a0")
    assert build_red(blocks) == data
    assert parse_red(data) == blocks


@pytest.mark.parametrize(
    "data", [b"", bytes.fromhex("e5 1900"), bytes.fromhex("e5 190008 65 018a0280")]
)
def test_truncated_red_payloads_are_refused(data: bytes) -> None:
    with pytest.raises(DtmfParseError):
        parse_red(data)


# -- detection -------------------------------------------------------------------------------


def test_one_press_in_order_is_one_digit() -> None:
    d = detector()
    assert feed(d, PRESS_1) == ["1"]
    assert d.stats.repeats == 5


def test_the_repeated_end_packets_do_not_repeat_the_digit() -> None:
    d = detector()
    assert feed(d, PRESS_1[3:4]) == ["1"]
    assert feed(d, PRESS_1[4:]) == []


def test_lost_first_packet_still_gives_the_digit() -> None:
    assert feed(detector(), PRESS_1[1:]) == ["1"]


def test_only_the_end_packets_arrive() -> None:
    assert feed(detector(), PRESS_1[3:]) == ["1"]


def test_out_of_order_packets_give_one_digit() -> None:
    shuffled = [PRESS_1[2], PRESS_1[0], PRESS_1[4], PRESS_1[1], PRESS_1[3], PRESS_1[5]]
    assert feed(detector(), shuffled) == ["1"]


def test_an_update_arriving_after_the_end_is_the_same_event() -> None:
    # A detector keyed on "end bit seen, then a non-end packet = new press" reports "1" twice;
    # the timestamp says it is one event.
    late = [PRESS_1[0], PRESS_1[3], PRESS_1[4], PRESS_1[1], PRESS_1[5], PRESS_1[2]]
    assert feed(detector(), late) == ["1"]


def test_two_presses_of_two_keys() -> None:
    d = detector()
    assert feed(d, PRESS_1 + PRESS_2) == ["1", "2"]
    assert d.stats.digits == 2


def test_a_late_packet_of_the_previous_press_after_the_next_one_started() -> None:
    assert feed(detector(), PRESS_1[:2] + PRESS_2[:1] + PRESS_1[2:] + PRESS_2[1:]) == ["1", "2"]


def test_pressing_the_same_key_twice_gives_two_digits() -> None:
    again = [data[:8] + bytes.fromhex("00001c80") + data[12:] for data in PRESS_1]
    assert feed(detector(), PRESS_1 + again) == ["1", "1"]


def test_a_long_press_split_into_two_segments_is_one_digit() -> None:
    # RFC 4733 §2.5.1.3: after 0xFFFF units the sender starts a new segment, contiguous
    # with the first one (new timestamp = old + 0xFFFF), same key.
    start = 0x2000
    first = [
        event_packet(bytes.fromhex("050aff00"), timestamp=start, sequence=1),
        event_packet(bytes.fromhex("058affff"), timestamp=start, sequence=2),
        event_packet(bytes.fromhex("058affff"), timestamp=start, sequence=3),
    ]
    second = [
        event_packet(bytes.fromhex("050a00a0"), timestamp=start + 0xFFFF, sequence=4),
        event_packet(bytes.fromhex("058a0320"), timestamp=start + 0xFFFF, sequence=5),
    ]
    d = detector()
    assert feed(d, first + second) == ["5"]
    assert d.stats.continuations == 1


def test_two_events_packed_in_one_packet() -> None:
    # §2.5.1.5: "1" (ended, 800 units) then "2" which starts where "1" ended.
    packed = event_packet(bytes.fromhex("018a0320 020a00a0"), timestamp=0x3000, sequence=7)
    later_2 = event_packet(bytes.fromhex("028a0140"), timestamp=0x3000 + 800, sequence=8)
    d = detector()
    assert feed(d, [packed, later_2]) == ["1", "2"]
    first = feed(detector(), [packed])
    assert first == ["1", "2"]


def test_redundant_blocks_reveal_a_lost_press_once() -> None:
    # RFC 2198: the packet of "2" also carries the end of "1" (1600 units earlier).
    red = build_red(
        [
            RedundantBlock(payload_type=TE, timestamp_offset=1600, payload=b"\x01\x8a\x02\x80"),
            RedundantBlock(payload_type=TE, timestamp_offset=0, payload=b"\x02\x0a\x00\xa0"),
        ]
    )
    packet = event_packet(red, timestamp=0x1000 + 1600, sequence=9, pt=RED)
    assert feed(detector(), [packet]) == ["1", "2"]  # "1" was lost: the redundancy saves it
    assert feed(detector(), [PRESS_1[0], packet]) == ["1", "2"]  # "1" seen: not repeated


def test_sources_are_kept_apart_by_ssrc() -> None:
    other = [data[:8] + bytes.fromhex("55667788") + data[12:] for data in PRESS_1]
    assert feed(detector(), PRESS_1 + other) == ["1", "1"]


def test_non_digit_events_and_other_payload_types() -> None:
    d = detector()
    flash = event_packet(bytes.fromhex("108a0320"), timestamp=5)
    audio = RtpPacket(payload_type=0, sequence=1, timestamp=5, ssrc=1, payload=b"\xff" * 160)
    assert feed(d, [flash]) == []
    assert d.stats.non_digit_events == 1
    assert d.receive_packet(audio, 1.0) is False
    assert d.receive_packet(parse_packet(event_packet(b"\x01", timestamp=9)), 1.0) is True
    assert d.stats.malformed == 1


def test_a_forgotten_old_event_is_stale_not_new() -> None:
    d = DtmfDetector(payload_types=(TE,), memory=2, stale_after=8000)
    presses = [
        event_packet(bytes([1, 0x8A, 3, 0x20]), timestamp=ts, sequence=i)
        for i, ts in enumerate((1000, 20000, 40000))
    ]
    assert feed(d, presses) == ["1", "1", "1"]
    assert feed(d, presses[:1]) == []  # forgotten (memory 2) but 39000 units old
    assert d.stats.stale == 1


def test_digit_event_fields() -> None:
    d = detector()
    d.receive_packet(parse_packet(PRESS_1[0]), 12.5)
    assert d.next_event() == DtmfDigit(
        digit="1",
        source=DtmfSource.RTP,
        detected_at=12.5,
        rtp_timestamp=0x1000,
        ssrc=0x11223344,
    )
    assert d.next_event() is None


@given(
    st.lists(st.sampled_from(range(len(PRESS_1))), min_size=1, max_size=12),
)
def test_any_arrival_of_a_press_is_exactly_one_digit(order: list[int]) -> None:
    # Any subset, in any order, with duplicates: still one "1".
    assert feed(detector(), [PRESS_1[i] for i in order]) == ["1"]


@given(st.permutations(PRESS_1 + PRESS_2))
def test_two_presses_in_any_order_are_two_digits(datagrams: list[bytes]) -> None:
    assert sorted(feed(detector(), datagrams)) == ["1", "2"]


# -- SIP INFO --------------------------------------------------------------------------------


RELAY = "application/dtmf-relay"


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (RELAY, b"Signal=1\r\nDuration=160\r\n", DtmfInfo(digit="1", duration_ms=160)),
        (
            RELAY.title() + "; charset=utf-8",
            b"signal= *\nduration=100",
            DtmfInfo(digit="*", duration_ms=100),
        ),
        (RELAY, b"Signal=11\r\n", DtmfInfo(digit="#")),
        (RELAY, b"Signal=b\r\n", DtmfInfo(digit="B")),
        ("application/dtmf", b"5", DtmfInfo(digit="5")),
        ("application/dtmf", b"Signal=9\r\nDuration=250\r\n", DtmfInfo(digit="9", duration_ms=250)),
    ],
)
def test_info_bodies(content_type: str, body: bytes, expected: DtmfInfo) -> None:
    assert parse_dtmf_info(content_type, body) == expected


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/sdp"])
def test_other_info_bodies_are_not_dtmf(content_type: str | None) -> None:
    assert parse_dtmf_info(content_type, b"Signal=1") is None


@pytest.mark.parametrize(
    "body",
    [b"Signal=Z", b"Duration=160", b"Signal=1\r\nDuration=abc", b"", b"Signal=\xff", b"what"],
)
def test_malformed_dtmf_relay_bodies(body: bytes) -> None:
    with pytest.raises(DtmfParseError):
        parse_dtmf_info("application/dtmf-relay", body)


def test_detector_reads_info_as_a_press_each_time() -> None:
    d = detector()
    assert d.receive_info("application/dtmf-relay", b"Signal=1\r\nDuration=160", 3.0)
    assert d.receive_info("application/dtmf-relay", b"Signal=1\r\nDuration=160", 3.5)
    assert not d.receive_info("application/dtmf-relay", b"Signal=?", 4.0)
    assert not d.receive_info("text/plain", b"hello", 4.0)
    first = d.next_event()
    assert first == DtmfDigit(digit="1", source=DtmfSource.INFO, detected_at=3.0)
    assert d.next_event() is not None
    assert d.next_event() is None
    assert d.stats.malformed == 1
