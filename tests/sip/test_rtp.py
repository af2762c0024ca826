"""RTP packets (byte fixtures), the paced sender (scripted time), the receiver (latching,
loss/reorder statistics), SDP offer/answer, and two sessions wired in memory."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sip.dtmf import parse_telephone_events
from sip.g711 import Codec
from sip.rtp import (
    MediaNegotiationError,
    RtpConfig,
    RtpExtension,
    RtpPacket,
    RtpParseError,
    RtpReceiver,
    RtpSender,
    RtpSession,
    is_rtcp,
    make_audio_offer,
    negotiate,
    parse_packet,
    sequence_delta,
)
from sip.sdp import Direction

PEER = ("127.0.0.1", 40000)
OTHER = ("127.0.0.1", 40002)

# -- packets ---------------------------------------------------------------------------------

PACKETS = [
    (
        # V=2, PT 0, seq 1, ts 160, SSRC 0xdeadbeef, 4 payload octets.
        bytes.fromhex("8000 0001 000000a0 deadbeef ffff7f7f"),
        RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=0xDEADBEEF,
                  payload=b"\xff\xff\x7f\x7f"),
    ),
    (
        # Marker, PT 8, sequence and timestamp at their maximum.
        bytes.fromhex("8088 ffff ffffffff 00000001 d5"),
        RtpPacket(payload_type=8, sequence=0xFFFF, timestamp=0xFFFFFFFF, ssrc=1, payload=b"\xd5",
                  marker=True),
    ),
    (
        # Two CSRCs.
        bytes.fromhex("8265 0010 00001000 0a0b0c0d 00000011 00000022 010a00a0"),
        RtpPacket(payload_type=101, sequence=16, timestamp=4096, ssrc=0x0A0B0C0D,
                  payload=b"\x01\x0a\x00\xa0", csrcs=(0x11, 0x22)),
    ),
    (
        # Header extension (profile 0xBEDE, one word) and 3 octets of padding.
        bytes.fromhex("b000 0002 00000140 00000005 bede0001 10ff0000 ffff 000003"),
        RtpPacket(payload_type=0, sequence=2, timestamp=320, ssrc=5, payload=b"\xff\xff",
                  extension=RtpExtension(0xBEDE, bytes.fromhex("10ff0000")), padding=3),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("data", "packet"), PACKETS)
def test_packet_bytes_parse_and_serialize(data: bytes, packet: RtpPacket) -> None:
    assert parse_packet(data) == packet
    assert bytes(packet) == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes.fromhex("8000 0001 000000a0 dead"), "shorter"),
        (bytes.fromhex("4000 0001 000000a0 deadbeef"), "version"),
        (bytes.fromhex("8200 0001 000000a0 deadbeef 00000011"), "CSRC"),
        (bytes.fromhex("9000 0001 000000a0 deadbeef bede"), "extension"),
        (bytes.fromhex("9000 0001 000000a0 deadbeef bede0002 00000000"), "extension"),
        (bytes.fromhex("a000 0001 000000a0 deadbeef ff00"), "padding"),
        (bytes.fromhex("a000 0001 000000a0 deadbeef 09"), "padding"),
    ],
)
def test_malformed_packets_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(RtpParseError, match=reason):
        parse_packet(data)


@given(
    st.builds(
        RtpPacket,
        payload_type=st.integers(0, 127),
        sequence=st.integers(0, 0xFFFF),
        timestamp=st.integers(0, 0xFFFFFFFF),
        ssrc=st.integers(0, 0xFFFFFFFF),
        payload=st.binary(max_size=200),
        marker=st.booleans(),
        csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
        extension=st.none()
        | st.builds(
            RtpExtension,
            st.integers(0, 0xFFFF),
            st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4)),
        ),
        padding=st.integers(0, 255),
    )
)
def test_any_packet_round_trips(packet: RtpPacket) -> None:
    assert parse_packet(bytes(packet)) == packet


@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_rtp_parse_error(data: bytes) -> None:
    with contextlib.suppress(RtpParseError):
        parse_packet(data)


def test_rtcp_is_told_apart_from_rtp() -> None:
    sender_report = bytes.fromhex("80c8 0006 deadbeef")
    receiver_report = bytes.fromhex("81c9 0007 deadbeef")
    assert is_rtcp(sender_report)
    assert is_rtcp(receiver_report)
    assert not is_rtcp(PACKETS[0][0])
    assert not is_rtcp(PACKETS[1][0])  # marker + PT 8 = 0x88, not RTCP's 200-204
    assert not is_rtcp(b"\x80")


def test_sequence_arithmetic_wraps() -> None:
    assert sequence_delta(0, 0xFFFF) == 1
    assert sequence_delta(0xFFFF, 0) == -1
    assert sequence_delta(100, 90) == 10


# -- sender ----------------------------------------------------------------------------------

SSRC = 0x01020304


def sender(**kwargs: object) -> RtpSender:
    options: dict[str, object] = {
        "ssrc": SSRC,
        "sequence": 1000,
        "timestamp": 50_000,
        "payload_type": 0,
    }
    options.update(kwargs)
    return RtpSender(**options)  # type: ignore[arg-type]


def frames(count: int, first: int = 0) -> list[bytes]:
    return [bytes([(first + i) % 256]) * 160 for i in range(count)]


def drain(s: RtpSender, until: float) -> list[RtpPacket]:
    """Wake up at every deadline, as a driver does, until ``until``."""
    packets: list[RtpPacket] = []
    while (when := s.next_send_time()) is not None and when <= until:
        packets += [parse_packet(d) for d in s.packets_due(when)]
    return packets


def test_a_prompt_is_paced_at_20_ms_with_the_marker_on_the_first_packet() -> None:
    s = sender()
    assert s.next_send_time() is None
    s.play(frames(3), 10.0)
    sent: list[tuple[float, RtpPacket]] = []
    while (when := s.next_send_time()) is not None:
        assert s.packets_due(when - 0.001) == []
        sent += [(when, parse_packet(data)) for data in s.packets_due(when)]
    assert [when for when, _ in sent] == pytest.approx([10.0, 10.02, 10.04])
    packets = [packet for _, packet in sent]
    assert [p.sequence for p in packets] == [1000, 1001, 1002]
    assert [p.timestamp for p in packets] == [50_000, 50_160, 50_320]
    assert [p.marker for p in packets] == [True, False, False]
    assert [p.payload for p in packets] == frames(3)
    assert {(p.ssrc, p.payload_type) for p in packets} == {(SSRC, 0)}
    assert s.stats.packets == 3
    assert s.stats.octets == 480


def test_the_grid_does_not_drift_over_a_long_prompt() -> None:
    s = sender()
    s.play(frames(3000), 0.0)  # one minute
    last = 0.0
    for _ in range(3000):
        when = s.next_send_time()
        assert when is not None
        last = when
        assert len(s.packets_due(when)) == 1
    assert last == pytest.approx(59.98, abs=1e-9)


def test_a_new_talkspurt_has_the_marker_and_a_timestamp_that_followed_the_clock() -> None:
    s = sender()
    s.play(frames(2), 10.0)
    s.packets_due(10.02)
    assert s.next_send_time() is None  # idle: discontinuous transmission
    s.play(frames(1), 11.0)
    assert s.next_send_time() == 11.0
    (packet,) = (parse_packet(d) for d in s.packets_due(11.0))
    assert packet.marker
    assert packet.timestamp == 50_000 + 8000  # one second of samples later
    assert packet.sequence == 1002  # sequence numbers never jump
    assert s.stats.talkspurts == 2


def test_playing_again_before_the_next_slot_continues_the_talkspurt() -> None:
    s = sender()
    s.play(frames(1), 0.0)
    s.packets_due(0.0)
    s.play(frames(1), 0.005)
    assert s.next_send_time() == pytest.approx(0.02)
    (packet,) = (parse_packet(d) for d in s.packets_due(0.02))
    assert not packet.marker
    assert packet.timestamp == 50_160


def test_a_late_wake_up_sends_the_missed_packets_at_once() -> None:
    s = sender()
    s.play(frames(10), 0.0)
    due = [parse_packet(d) for d in s.packets_due(0.065)]  # slots 0, 20, 40, 60 ms
    assert [p.timestamp - 50_000 for p in due] == [0, 160, 320, 480]
    assert s.stats.skipped_slots == 0


def test_exactly_max_catch_up_late_is_still_sent() -> None:
    s = sender()
    s.play(frames(10), 0.0)
    assert len(s.packets_due(0.1)) == 6  # slots 0..100 ms; slot 0 is exactly 100 ms late
    assert s.stats.skipped_slots == 0


def test_a_very_late_wake_up_skips_slots_instead_of_bursting() -> None:
    s = sender()
    s.play(frames(20), 0.0)
    assert len(s.packets_due(0.05)) == 3  # slots 0..2
    due = [parse_packet(d) for d in s.packets_due(0.51)]
    # max_catch_up is 100 ms: slots 3..20 are skipped, 21..25 (420-500 ms) are sent, and the
    # audio goes on where it stopped (frame 3), with timestamps true to the clock.
    assert [p.payload[0] for p in due] == [3, 4, 5, 6, 7]
    assert [p.timestamp - 50_000 for p in due] == [160 * k for k in range(21, 26)]
    assert [p.sequence for p in due] == list(range(1003, 1008))
    assert s.stats.skipped_slots == 18


def test_sequence_and_timestamp_wrap_around() -> None:
    s = sender(sequence=0xFFFF, timestamp=0xFFFFFF00)
    s.play(frames(3), 0.0)
    packets = [parse_packet(d) for d in s.packets_due(0.04)]
    assert [p.sequence for p in packets] == [0xFFFF, 0, 1]
    assert [p.timestamp for p in packets] == [0xFFFFFF00, 0xFFFFFFA0, 0x40]


def test_a_repeated_prompt_loops_until_stopped() -> None:
    s = sender()
    s.play(frames(2), 0.0, repeat=True)
    payloads = [p.payload[0] for p in drain(s, 0.1)]
    assert payloads == [0, 1, 0, 1, 0, 1]
    s.stop_audio()
    assert s.next_send_time() is None
    assert not s.busy


def test_comfort_silence_fills_the_gaps_without_new_talkspurts() -> None:
    s = sender(idle_payload=b"\xff" * 160)
    s.play(frames(1, first=7), 0.0)
    packets = [parse_packet(d) for d in s.packets_due(0.06)]
    assert [p.payload[0] for p in packets] == [7, 0xFF, 0xFF, 0xFF]
    assert [p.marker for p in packets] == [True, False, False, False]
    assert s.next_send_time() == pytest.approx(0.08)
    s.play(frames(1, first=9), 0.07)
    assert [parse_packet(d).payload[0] for d in s.packets_due(0.08)] == [9]


def test_a_dtmf_event_pauses_the_audio_and_shares_one_timestamp() -> None:
    s = sender(event_payload_type=101)
    s.play(frames(2, first=1), 0.0)
    s.packets_due(0.0)  # frame 1 at slot 0
    s.send_event(1, 0.001, duration=0.05)  # 400 units: updates 160, 320; end 400 x3
    packets = drain(s, 0.2)
    assert [p.payload_type for p in packets] == [101] * 5 + [0]
    events = [parse_telephone_events(p.payload)[0] for p in packets[:5]]
    assert [(e.duration, e.end) for e in events] == [
        (160, False),
        (320, False),
        (400, True),
        (400, True),
        (400, True),
    ]
    assert {p.timestamp for p in packets[:5]} == {50_160}
    assert [p.marker for p in packets] == [True, False, False, False, False, False]
    # The audio resumes in the next slot with its own clock-true timestamp.
    assert packets[5].payload[0] == 2
    assert packets[5].timestamp == 50_000 + 6 * 160
    assert s.stats.events == 1


def test_an_event_needs_a_negotiated_payload_type() -> None:
    with pytest.raises(ValueError, match="telephone-event"):
        sender(event_payload_type=None).send_event(1, 0.0)


# -- receiver --------------------------------------------------------------------------------


def rtp(seq: int, ts: int | None = None, *, ssrc: int = 7, pt: int = 0) -> bytes:
    return RtpPacket(
        payload_type=pt,
        sequence=seq % 65536,
        timestamp=(ts if ts is not None else seq * 160) % (1 << 32),
        ssrc=ssrc,
        payload=b"\xff" * 160,
    ).serialize()


def test_the_receiver_latches_on_the_first_source() -> None:
    r = RtpReceiver(expected_address=("192.0.2.1", 5004))
    assert r.remote_address == ("192.0.2.1", 5004)
    assert r.receive_datagram(rtp(1), PEER, 0.0) is not None
    assert r.remote_address == PEER  # symmetric RTP: the SDP address was wrong (NAT)
    assert r.receive_datagram(rtp(2, ssrc=99), OTHER, 0.02) is None  # an intruder
    assert r.stats.foreign == 1
    assert r.remote_address == PEER


def test_the_same_ssrc_from_a_new_address_relatches_at_once() -> None:
    r = RtpReceiver()
    r.receive_datagram(rtp(1), PEER, 0.0)
    assert r.receive_datagram(rtp(2), OTHER, 0.02) is not None  # NAT rebinding
    assert r.remote_address == OTHER
    assert r.stats.relatches == 1


def test_a_new_source_is_accepted_after_the_latched_one_fell_silent() -> None:
    r = RtpReceiver(config=RtpConfig(relatch_after=1.0))
    r.receive_datagram(rtp(1), PEER, 0.0)
    assert r.receive_datagram(rtp(1, ssrc=99), OTHER, 0.5) is None
    assert r.receive_datagram(rtp(1, ssrc=99), OTHER, 1.1) is not None
    assert r.remote_address == OTHER
    assert r.stats.ssrc_changes == 1


def test_loss_reordering_and_duplicates_are_counted() -> None:
    r = RtpReceiver()
    for seq in (1, 2, 4, 3, 3, 7):
        r.receive_datagram(rtp(seq), PEER, seq * 0.02)
    stats = r.stats
    assert stats.packets == 6
    assert stats.expected == 7
    assert stats.lost == 2  # 5 and 6 never came
    assert stats.reordered == 1  # 3 after 4
    assert stats.duplicates == 1


def test_sequence_wrap_is_not_loss() -> None:
    r = RtpReceiver()
    for seq in (65534, 65535, 65536, 65537):
        r.receive_datagram(rtp(seq), PEER, 0.0)
    assert (r.stats.expected, r.stats.lost, r.stats.reordered) == (4, 0, 0)
    r.receive_datagram(rtp(65535), PEER, 0.0)  # a duplicate from before the wrap
    assert r.stats.duplicates == 1


def test_a_big_jump_restarts_the_sequence() -> None:
    r = RtpReceiver()
    r.receive_datagram(rtp(10), PEER, 0.0)
    r.receive_datagram(rtp(20_000), PEER, 0.02)
    assert r.stats.restarts == 1
    assert r.stats.lost == 0


def test_jitter_follows_rfc_3550_a8() -> None:
    r = RtpReceiver()
    for n in range(5):
        r.receive_datagram(rtp(n), PEER, 100 + n * 0.02)
    assert r.stats.jitter == pytest.approx(0.0, abs=1e-9)
    # One packet 8 ms late: |D| = 64 units, J = 64/16 = 4 units = 0.5 ms.
    r.receive_datagram(rtp(5), PEER, 100 + 5 * 0.02 + 0.008)
    assert r.stats.jitter == pytest.approx(0.0005)


def test_rtcp_and_garbage_are_ignored_and_counted() -> None:
    r = RtpReceiver()
    assert r.receive_datagram(bytes.fromhex("80c8 0006 deadbeef"), PEER, 0.0) is None
    assert r.receive_datagram(b"hello", PEER, 0.0) is None
    assert (r.stats.rtcp, r.stats.invalid, r.stats.packets) == (1, 1, 0)
    assert r.remote_address is None


# -- SDP -------------------------------------------------------------------------------------


def test_our_offer() -> None:
    offer = make_audio_offer("127.0.0.1", 16384, sess_id="42")
    assert offer.serialize() == (
        b"v=0\r\no=- 42 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 16384 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\na=sendrecv\r\n"
    )


ANSWER = (
    b"v=0\r\no=rep 7 7 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\na=ptime:30\r\n"
)


def test_negotiate_reads_codec_event_type_and_address() -> None:
    parameters = negotiate(ANSWER)
    assert parameters.address == ("192.0.2.10", 4000)
    assert parameters.codec is Codec.PCMA
    assert parameters.payload_type == 8
    assert parameters.telephone_event_pt == 96
    assert parameters.ptime == pytest.approx(0.03)
    assert parameters.direction is Direction.SENDRECV


def test_negotiate_static_payload_type_without_rtpmap() -> None:
    answer = ANSWER.replace(b"RTP/AVP 8 96", b"RTP/AVP 0").replace(b"a=rtpmap:8 PCMA/8000\r\n", b"")
    answer = answer.replace(b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n", b"")
    parameters = negotiate(answer)
    assert (parameters.codec, parameters.telephone_event_pt) == (Codec.PCMU, None)


@pytest.mark.parametrize(
    "answer",
    [
        ANSWER.replace(b"m=audio 4000", b"m=audio 0"),
        ANSWER.replace(b"RTP/AVP 8 96", b"RTP/AVP 18").replace(b"rtpmap:8 PCMA", b"rtpmap:18 G729"),
        ANSWER.replace(b"m=audio", b"m=video"),
    ],
)
def test_negotiate_refuses_answers_without_usable_audio(answer: bytes) -> None:
    with pytest.raises(MediaNegotiationError):
        negotiate(answer)


# -- two sessions in memory ------------------------------------------------------------------

A = ("127.0.0.1", 20000)
B = ("127.0.0.1", 20002)


def wire(a: RtpSession, b: RtpSession, until: float, now: float) -> float:
    """Move packets between two sessions, always to the next deadline, until ``until``."""
    while True:
        deadlines = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
        if not deadlines or min(deadlines) > until:
            return now
        now = max(now, min(deadlines))
        for source, source_addr, target in ((a, A, b), (b, B, a)):
            for data, destination in source.datagrams_to_send(now):
                assert destination == (B if source is a else A)
                target.receive_datagram(data, source_addr, now)


def test_two_sessions_exchange_a_prompt_and_a_digit() -> None:
    daemon = RtpSession(ssrc=1, sequence=0, timestamp=0, codec=Codec.PCMU)
    phone = RtpSession(ssrc=2, sequence=0, timestamp=0, codec=Codec.PCMU)
    daemon.set_remote(negotiate(make_audio_offer(B[0], B[1], sess_id="2")))
    phone.set_remote(negotiate(make_audio_offer(A[0], A[1], sess_id="1")))
    heard: list[bytes] = []
    original = phone.receive_datagram

    def record(data: bytes, addr: tuple[str, int], now: float) -> RtpPacket | None:
        packet = original(data, addr, now)
        if packet is not None and packet.payload_type == 0:
            heard.append(packet.payload)
        return packet

    phone.receive_datagram = record  # type: ignore[method-assign]
    prompt = frames(50, first=1)  # one second
    daemon.play(prompt, 0.0)
    now = wire(daemon, phone, until=0.5, now=0.0)
    phone.send_digit("1", now)
    now = wire(daemon, phone, until=2.0, now=now)
    digit = daemon.next_event()
    assert digit is not None
    assert digit.digit == "1"
    assert 0.48 <= digit.detected_at <= 0.52
    assert daemon.next_event() is None  # the three end packets gave no second digit
    assert heard == prompt
    assert phone.receiver.stats.lost == 0
    assert daemon.receiver.stats.packets == 7  # 800 units: 4 updates, then 3 end packets
    assert not daemon.busy


def test_the_answer_switches_the_law_and_the_event_type() -> None:
    session = RtpSession(ssrc=1, sequence=0, timestamp=0, codec=Codec.PCMU, comfort_silence=True)
    session.set_remote(negotiate(ANSWER))
    assert session.codec is Codec.PCMA
    assert session.sender.payload_type == 8
    assert session.sender.event_payload_type == 96
    assert session.sender.idle_payload == b"\xd5" * 160
    assert session.detector.payload_types == frozenset({96, 101})
    assert session.remote_address == ("192.0.2.10", 4000)


def test_nothing_is_due_without_a_destination() -> None:
    session = RtpSession(ssrc=1, sequence=0, timestamp=0)
    session.play(frames(2), 0.0)
    assert session.get_timer() is None
    assert session.datagrams_to_send(1.0) == []
    session.receive_datagram(rtp(1), PEER, 0.01)  # the peer's first packet shows the way
    assert session.get_timer() == 0.0
    assert [destination for _, destination in session.datagrams_to_send(0.01)] == [PEER]
