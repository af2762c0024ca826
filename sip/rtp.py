"""RTP (RFC 3550) for short prompts and DTMF: packets, a paced sender, a receiver, a session.

Sans-I/O like the rest of :mod:`sip`: nothing here opens a socket or reads a clock. The pacing
clock is data: :meth:`RtpSender.next_send_time` says when the next packet is due and
:meth:`RtpSender.packets_due` (given ``now``) returns every packet whose time has come, so a
driver arms one timer (or one shared timer for many sessions) and a test scripts time.

The fixed header (RFC 3550 §5.1)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                           timestamp                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           synchronization source (SSRC) identifier            |
    +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
    |            contributing source (CSRC) identifiers             |
    |                             ....                              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Symmetric RTP (RFC 4961): a :class:`RtpReceiver` latches onto the address the peer's packets
come from, and the session sends there (from the socket it receives on), so media works
through NATs whatever the SDP said. RTCP is not sent: prompts last seconds, and a peer's RTCP
that arrives on the RTP port (RFC 5761 demultiplexing) is recognised and ignored.

An :class:`RtpSession` combines a sender, a receiver and a :class:`~sip.dtmf.DtmfDetector` for
one call leg, with the three drivers of every sans-I/O object here: application calls
(:meth:`~RtpSession.play`, :meth:`~RtpSession.send_digit`, ...), network input
(:meth:`~RtpSession.receive_datagram`) and the timer (:meth:`~RtpSession.get_timer`, then
:meth:`~RtpSession.datagrams_to_send`). :func:`make_audio_offer` and :func:`negotiate` are the
SDP side (our offer, the peer's answer).
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sip.dtmf import DtmfDetector, DtmfDigit, digit_to_event, event_payloads
from sip.errors import SipError
from sip.g711 import CLOCK_RATE, Codec
from sip.sdp import (
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SessionDescription,
)

__all__ = [
    "RTP_VERSION",
    "Address",
    "MediaNegotiationError",
    "MediaParameters",
    "ReceiverStats",
    "RtpConfig",
    "RtpExtension",
    "RtpPacket",
    "RtpParseError",
    "RtpReceiver",
    "RtpSender",
    "RtpSession",
    "SenderStats",
    "is_rtcp",
    "make_audio_offer",
    "negotiate",
    "parse_packet",
    "sequence_delta",
]

Address = tuple[str, int]

RTP_VERSION = 2
#: Payload type offered for RFC 4733 telephone-event (dynamic range 96-127; 101 by custom).
DEFAULT_TELEPHONE_EVENT_PT = 101
_HEADER = struct.Struct("!BBHII")
_SEQUENCE_MODULUS = 1 << 16
_TIMESTAMP_MODULUS = 1 << 32
#: RFC 3550 A.1: a forward jump of the sequence larger than this is a restart, not loss.
MAX_DROPOUT = 3000
#: RFC 3550 A.1: a backward step smaller than this is a late (reordered) packet.
MAX_MISORDER = 100
#: How many recent sequence numbers the receiver remembers to recognise duplicates.
_DUPLICATE_WINDOW = 128


class RtpParseError(SipError, ValueError):
    """A datagram that is not an RTP packet."""


class MediaNegotiationError(SipError):
    """An SDP answer that leaves no usable audio stream (no common codec, port 0, no address).

    The call controller answers such a leg like a failed one: hang it up.
    """


@dataclass(frozen=True, slots=True)
class RtpConfig:
    """Media settings; every default is what a G.711 prompt leg wants."""

    #: Packetization time: one packet per 20 ms (RFC 3551 §4.5 default for G.711).
    ptime: float = 0.020
    #: RTP clock rate (8 kHz for G.711 and its telephone-events).
    clock_rate: int = CLOCK_RATE
    #: When the driver wakes up this late (seconds), older packet slots are skipped instead of
    #: sent in a burst: the receiver sees a gap (a loss), the timestamps stay true to the wall
    #: clock, and the audio resumes where it stopped.
    max_catch_up: float = 0.100
    #: Symmetric RTP: a new source address replaces the latched one when it carries the same
    #: SSRC, or when the latched source has been silent this long (seconds).
    relatch_after: float = 1.0
    #: Duration of the DTMF events we send (seconds) and their volume (-dBm0).
    dtmf_duration: float = 0.100
    dtmf_volume: int = 10

    @property
    def samples_per_packet(self) -> int:
        """Timestamp units per packet (160 for 20 ms at 8 kHz)."""
        return round(self.ptime * self.clock_rate)


# -- packets ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """A header extension (RFC 3550 §5.3.1): a 16-bit profile word and 32-bit-aligned data."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet. ``bytes(packet)`` serialises it; :func:`parse_packet` reads one."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    #: Padding octets at the end (including the count octet); 0 for none.
    padding: int = 0

    def serialize(self) -> bytes:
        """The packet as bytes."""
        if not 0 <= self.payload_type <= 0x7F:
            raise ValueError(f"payload type out of range: {self.payload_type}")
        if len(self.csrcs) > 15 or not 0 <= self.padding <= 255:
            raise ValueError("too many CSRCs or too much padding")
        first = (
            (RTP_VERSION << 6)
            | (0x20 if self.padding else 0)
            | (0x10 if self.extension is not None else 0)
            | len(self.csrcs)
        )
        parts = [
            _HEADER.pack(
                first,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence % _SEQUENCE_MODULUS,
                self.timestamp % _TIMESTAMP_MODULUS,
                self.ssrc,
            )
        ]
        parts += [csrc.to_bytes(4, "big") for csrc in self.csrcs]
        if self.extension is not None:
            if len(self.extension.data) % 4:
                raise ValueError("header extension data must be a multiple of 4 octets")
            parts.append(struct.pack("!HH", self.extension.profile, len(self.extension.data) // 4))
            parts.append(self.extension.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)

    def __bytes__(self) -> bytes:
        return self.serialize()


def parse_packet(data: bytes) -> RtpPacket:
    """Parse an RTP packet; raise :class:`RtpParseError` when ``data`` is not one."""
    if len(data) < _HEADER.size:
        raise RtpParseError(f"RTP packet of {len(data)} octets is shorter than its header")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpParseError(f"RTP version {first >> 6}")
    position = _HEADER.size
    csrc_count = first & 0x0F
    end = len(data)
    if position + 4 * csrc_count > end:
        raise RtpParseError("CSRC list truncated")
    csrcs = tuple(
        int.from_bytes(data[position + 4 * i : position + 4 * i + 4], "big")
        for i in range(csrc_count)
    )
    position += 4 * csrc_count
    extension: RtpExtension | None = None
    if first & 0x10:
        if position + 4 > end:
            raise RtpParseError("header extension truncated")
        profile, words = struct.unpack_from("!HH", data, position)
        position += 4
        if position + 4 * words > end:
            raise RtpParseError("header extension longer than the packet")
        extension = RtpExtension(profile, bytes(data[position : position + 4 * words]))
        position += 4 * words
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or position + padding > end:
            raise RtpParseError(f"bad padding count {padding}")
        end -= padding
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[position:end]),
        marker=bool(second & 0x80),
        csrcs=csrcs,
        extension=extension,
        padding=padding,
    )


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on an RTP port is RTCP (RFC 5761 §4: packet types 192-223 sit where
    RTP has the marker bit and payload types 64-95, which RTP must not use)."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


def sequence_delta(newer: int, older: int) -> int:
    """``newer - older`` in 16-bit serial arithmetic, in [-32768, 32767]."""
    return (newer - older + 0x8000) % _SEQUENCE_MODULUS - 0x8000


# -- sender ----------------------------------------------------------------------------------


@dataclass(slots=True)
class SenderStats:
    """Counters of an :class:`RtpSender` (the figures an RTCP SR would carry, and pacing)."""

    packets: int = 0
    octets: int = 0
    #: Packet slots skipped because the driver woke up more than ``max_catch_up`` late.
    skipped_slots: int = 0
    #: Talkspurts started (packets sent with the marker bit for audio).
    talkspurts: int = 0
    #: DTMF events sent.
    events: int = 0


@dataclass(slots=True)
class _Event:
    payloads: list[bytes]
    position: int = 0
    timestamp: int | None = None


class RtpSender:
    """Packetizer and pacing clock of one outgoing stream.

    Audio is given as ready payloads, one per packet (:meth:`play`); DTMF as events
    (:meth:`send_event`). Packets are due on a grid: slot *k* of a talkspurt is due at
    ``anchor + k * ptime`` and carries timestamp ``anchor_ts + k * samples_per_packet``
    (multiplication, not accumulation: no drift). When nothing is queued the sender is idle
    (discontinuous transmission): :meth:`next_send_time` is None; the next :meth:`play` starts a
    new talkspurt whose first packet has the marker bit (RFC 3551 §4.1) and whose timestamp
    has advanced with the wall clock meanwhile (RFC 3550 §5.1). With ``idle_payload`` the
    sender never idles and fills the gaps with it (comfort silence keeps NAT bindings and the
    peer's latching alive while we wait for a digit).

    An event pauses the audio: its packets take consecutive slots and share the timestamp of
    the first one (RFC 4733 §2.5.1.2); the audio resumes in the next free slot.
    """

    def __init__(
        self,
        *,
        ssrc: int,
        sequence: int,
        timestamp: int,
        payload_type: int,
        event_payload_type: int | None = DEFAULT_TELEPHONE_EVENT_PT,
        config: RtpConfig | None = None,
        idle_payload: bytes | None = None,
    ) -> None:
        self.config = config if config is not None else RtpConfig()
        self.ssrc = ssrc & 0xFFFFFFFF
        self.payload_type = payload_type
        self.event_payload_type = event_payload_type
        self.idle_payload = idle_payload
        self.stats = SenderStats()
        self._sequence = sequence % _SEQUENCE_MODULUS
        self._ptime = self.config.ptime
        self._samples = self.config.samples_per_packet
        self._anchor_time: float | None = None
        self._anchor_ts = timestamp % _TIMESTAMP_MODULUS
        self._slot = 0
        self._last_ts: int | None = None
        self._audio: deque[bytes] = deque()
        self._loop: Sequence[bytes] = ()
        self._loop_position = 0
        self._events: deque[_Event] = deque()
        self._talkspurt_start = True

    # ---------------------------------------------------------------- application

    @property
    def samples_per_packet(self) -> int:
        """Timestamp units per packet."""
        return self._samples

    @property
    def busy(self) -> bool:
        """Audio or events are queued (comfort ``idle_payload`` does not count)."""
        return bool(self._audio or self._loop or self._events)

    @property
    def sequence(self) -> int:
        """The sequence number of the next packet."""
        return self._sequence

    def play(self, payloads: Iterable[bytes], now: float, *, repeat: bool = False) -> None:
        """Queue audio payloads (one per packet) after what is already queued.

        ``repeat=True`` loops them until :meth:`stop_audio` (ringback); anything queued after a
        loop never plays.
        """
        frames = list(payloads)
        if not frames:
            return
        self._resume(now)
        if repeat:
            self._loop = frames
            self._loop_position = 0
        else:
            self._audio.extend(frames)

    def stop_audio(self) -> None:
        """Drop the queued audio (and a loop); an event being sent is finished."""
        self._audio.clear()
        self._loop = ()
        self._loop_position = 0

    def send_event(
        self,
        event: int,
        now: float,
        *,
        duration: float | None = None,
        volume: int | None = None,
    ) -> None:
        """Queue an RFC 4733 event (a digit: :func:`~sip.dtmf.digit_to_event`)."""
        if self.event_payload_type is None:
            raise ValueError("no telephone-event payload type was negotiated")
        seconds = duration if duration is not None else self.config.dtmf_duration
        payloads = event_payloads(
            event,
            duration=max(1, round(seconds * self.config.clock_rate)),
            interval=self._samples,
            volume=volume if volume is not None else self.config.dtmf_volume,
        )
        self._resume(now)
        self._events.append(_Event(payloads))

    # ---------------------------------------------------------------- pacing

    def next_send_time(self) -> float | None:
        """When the next packet is due, or None when there is nothing to send."""
        if self._anchor_time is None or not (self.busy or self.idle_payload is not None):
            return None
        return self._anchor_time + self._slot * self._ptime

    def packets_due(self, now: float) -> list[bytes]:
        """Every packet due at ``now``, serialised, in order (usually one)."""
        out: list[bytes] = []
        anchor = self._anchor_time
        if anchor is None:
            return out
        # The first slot not more than max_catch_up late; older ones are skipped.
        late_slot = math.ceil((now - self.config.max_catch_up - anchor) / self._ptime - 1e-9)
        while self.busy or self.idle_payload is not None:
            slot_time = anchor + self._slot * self._ptime
            if slot_time > now + 1e-9:
                break
            if self._slot < late_slot:
                self.stats.skipped_slots += late_slot - self._slot
                self._slot = late_slot
                continue
            out.append(self._next_packet())
            self._slot += 1
        return out

    # ---------------------------------------------------------------- internals

    def _resume(self, now: float) -> None:
        """Anchor a new talkspurt at ``now`` unless the current grid is still running."""
        if self._anchor_time is not None and (self.busy or self.idle_payload is not None):
            return
        if self._anchor_time is not None:
            next_slot_time = self._anchor_time + self._slot * self._ptime
            if now <= next_slot_time:
                return  # back-to-back: continue the grid, no new talkspurt
            elapsed = round((now - self._anchor_time) * self.config.clock_rate)
            timestamp = (self._anchor_ts + elapsed) % _TIMESTAMP_MODULUS
            if self._last_ts is not None:
                ahead = (timestamp - self._last_ts) % _TIMESTAMP_MODULUS
                if ahead < self._samples or ahead >= _TIMESTAMP_MODULUS // 2:
                    timestamp = (self._last_ts + self._samples) % _TIMESTAMP_MODULUS
            self._anchor_ts = timestamp
        self._anchor_time = now
        self._slot = 0
        self._talkspurt_start = True

    def _next_packet(self) -> bytes:
        timestamp = (self._anchor_ts + self._slot * self._samples) % _TIMESTAMP_MODULUS
        marker = False
        if self._events:
            event = self._events[0]
            if event.timestamp is None:
                event.timestamp = timestamp
                marker = True
                self.stats.events += 1
            payload = event.payloads[event.position]
            event.position += 1
            if event.position == len(event.payloads):
                self._events.popleft()
            assert self.event_payload_type is not None
            payload_type = self.event_payload_type
            packet_ts = event.timestamp
            # An event is its own talkspurt; audio after it goes on without a marker.
            self._talkspurt_start = False
        else:
            if self._audio:
                payload = self._audio.popleft()
            elif self._loop:
                payload = self._loop[self._loop_position]
                self._loop_position = (self._loop_position + 1) % len(self._loop)
            else:
                assert self.idle_payload is not None
                payload = self.idle_payload
            payload_type = self.payload_type
            packet_ts = timestamp
            if self._talkspurt_start:
                marker = True
                self._talkspurt_start = False
                self.stats.talkspurts += 1
        self._last_ts = timestamp
        data = (
            _HEADER.pack(
                0x80,
                (0x80 if marker else 0) | payload_type,
                self._sequence,
                packet_ts,
                self.ssrc,
            )
            + payload
        )
        self._sequence = (self._sequence + 1) % _SEQUENCE_MODULUS
        self.stats.packets += 1
        self.stats.octets += len(payload)
        return data


# -- receiver --------------------------------------------------------------------------------


@dataclass(slots=True)
class ReceiverStats:
    """Reception statistics of the current source (RFC 3550 §6.4.1 / Appendix A)."""

    #: Valid RTP packets accepted (duplicates included).
    packets: int = 0
    octets: int = 0
    #: Packets expected from the sequence numbers, and how many of them never came.
    expected: int = 0
    lost: int = 0
    #: Packets that arrived after a later one (reordered), and exact duplicates.
    reordered: int = 0
    duplicates: int = 0
    #: Interarrival jitter in seconds (RFC 3550 A.8), over the audio payload types.
    jitter: float = 0.0
    #: Sequence restarts (a jump beyond MAX_DROPOUT) and SSRC changes.
    restarts: int = 0
    ssrc_changes: int = 0
    #: Datagrams ignored: RTCP, not RTP, or from an address other than the latched one.
    rtcp: int = 0
    invalid: int = 0
    foreign: int = 0
    #: Times the latched source address changed.
    relatches: int = 0


class RtpReceiver:
    """Validates incoming datagrams, latches the peer's address and keeps statistics.

    ``expected_address`` (from the SDP) is where we send until the peer's first packet shows
    where it really is (RFC 4961). After that, datagrams from other addresses are ignored
    unless they carry the latched SSRC (the peer's NAT mapping changed) or the latched source
    has been silent for ``relatch_after`` seconds.
    """

    def __init__(
        self,
        *,
        config: RtpConfig | None = None,
        expected_address: Address | None = None,
        audio_payload_types: Iterable[int] = (Codec.PCMU.payload_type, Codec.PCMA.payload_type),
    ) -> None:
        self.config = config if config is not None else RtpConfig()
        self.expected_address = expected_address
        self.audio_payload_types = frozenset(audio_payload_types)
        self.stats = ReceiverStats()
        self.latched_address: Address | None = None
        self.ssrc: int | None = None
        self._last_from_latched = 0.0
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._received = 0
        self._recent: deque[int] = deque(maxlen=_DUPLICATE_WINDOW)
        self._recent_set: set[int] = set()
        self._transit: float | None = None
        self._jitter_units = 0.0

    @property
    def remote_address(self) -> Address | None:
        """Where to send: the latched source, else the signalled address."""
        return self.latched_address or self.expected_address

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> RtpPacket | None:
        """Read one datagram; return the packet when it is valid RTP from the peer."""
        if is_rtcp(data):
            self.stats.rtcp += 1
            return None
        try:
            packet = parse_packet(data)
        except RtpParseError:
            self.stats.invalid += 1
            return None
        if not self._accept_source(packet, addr, now):
            self.stats.foreign += 1
            return None
        self._update_statistics(packet, now)
        return packet

    def _accept_source(self, packet: RtpPacket, addr: Address, now: float) -> bool:
        if self.latched_address is None:
            self.latched_address = addr
        elif addr != self.latched_address:
            silent = now - self._last_from_latched >= self.config.relatch_after
            if packet.ssrc != self.ssrc and not silent:
                return False
            self.latched_address = addr
            self.stats.relatches += 1
        self._last_from_latched = now
        return True

    def _update_statistics(self, packet: RtpPacket, now: float) -> None:
        stats = self.stats
        stats.packets += 1
        stats.octets += len(packet.payload)
        seq = packet.sequence
        if packet.ssrc != self.ssrc:
            if self.ssrc is not None:
                stats.ssrc_changes += 1
            self.ssrc = packet.ssrc
            self._restart(seq)
        else:
            delta = (seq - self._max_seq) % _SEQUENCE_MODULUS
            extended = self._cycles + seq
            if 0 < delta < MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += _SEQUENCE_MODULUS
                extended = self._cycles + seq
                self._max_seq = seq
                self._count(extended)
            elif delta == 0 or (delta >= _SEQUENCE_MODULUS - MAX_MISORDER):
                if delta and seq > self._max_seq:
                    extended -= _SEQUENCE_MODULUS  # late packet from before the last wrap
                if extended in self._recent_set:
                    stats.duplicates += 1
                else:
                    stats.reordered += 1
                    self._count(extended)
            else:
                stats.restarts += 1
                self._restart(seq)
        extended_max = self._cycles + self._max_seq
        stats.expected = extended_max - self._base_seq + 1
        stats.lost = max(0, stats.expected - self._received)
        if packet.payload_type in self.audio_payload_types:
            # RFC 3550 A.8: J += (|D| - J) / 16, in timestamp units.
            transit = now * self.config.clock_rate - packet.timestamp
            if self._transit is not None:
                difference = abs(transit - self._transit)
                if difference < _TIMESTAMP_MODULUS // 2:
                    self._jitter_units += (difference - self._jitter_units) / 16
            self._transit = transit
            stats.jitter = self._jitter_units / self.config.clock_rate

    def _restart(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._received = 0
        self._recent.clear()
        self._recent_set.clear()
        self._transit = None
        self._count(seq)

    def _count(self, extended: int) -> None:
        self._received += 1
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(extended)
        self._recent_set.add(extended)


# -- SDP -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaParameters:
    """What an SDP answer settled for our audio stream."""

    #: The peer's RTP address from the answer (symmetric RTP may correct it later).
    address: Address
    codec: Codec
    #: The payload type to send audio with (the answer's number for the codec).
    payload_type: int
    #: The answer's telephone-event payload type (to send DTMF), None when not accepted.
    telephone_event_pt: int | None
    #: The answer's ``a=ptime`` in seconds, if any.
    ptime: float | None
    direction: Direction


def make_audio_offer(
    address: str,
    port: int,
    *,
    sess_id: str,
    sess_version: int = 0,
    codecs: Sequence[Codec] = (Codec.PCMU, Codec.PCMA),
    telephone_event_pt: int | None = DEFAULT_TELEPHONE_EVENT_PT,
    ptime: float = 0.020,
    username: str = "-",
) -> SessionDescription:
    """Our audio offer: G.711 ``codecs`` in preference order, RFC 4733 events 0-16, sendrecv."""
    if not codecs:
        raise ValueError("offer at least one codec")
    addrtype = "IP6" if ":" in address else "IP4"
    formats = [str(codec.payload_type) for codec in codecs]
    attributes: list[Attribute] = [
        ("rtpmap", f"{codec.payload_type} {codec.encoding_name}/{CLOCK_RATE}") for codec in codecs
    ]
    if telephone_event_pt is not None:
        formats.append(str(telephone_event_pt))
        attributes.append(("rtpmap", f"{telephone_event_pt} telephone-event/{CLOCK_RATE}"))
        attributes.append(("fmtp", f"{telephone_event_pt} 0-16"))
    attributes.append(("ptime", str(round(ptime * 1000))))
    attributes.append((Direction.SENDRECV.value, None))
    return SessionDescription(
        origin=Origin(username, sess_id, sess_version, "IN", addrtype, address),
        session_name="-",
        connection=Connection("IN", addrtype, address),
        media=(
            MediaDescription(
                media="audio",
                port=port,
                proto="RTP/AVP",
                formats=tuple(formats),
                attributes=tuple(attributes),
            ),
        ),
    )


def _rtpmaps(media: MediaDescription) -> dict[str, tuple[str, int]]:
    maps: dict[str, tuple[str, int]] = {}
    for value in media.attribute_values("rtpmap"):
        payload_type, _, encoding = value.partition(" ")
        name, _, rate = encoding.strip().partition("/")
        rate_digits = rate.partition("/")[0]
        maps[payload_type] = (
            name.strip().lower(),
            int(rate_digits) if rate_digits.isdigit() else 0,
        )
    return maps


def negotiate(
    answer: SessionDescription | bytes,
    *,
    codecs: Sequence[Codec] = (Codec.PCMU, Codec.PCMA),
) -> MediaParameters:
    """Read the peer's answer to :func:`make_audio_offer` (RFC 3264 §6.1).

    The first audio stream with a non-zero port is used; its first format that is one of
    ``codecs`` (by rtpmap, or by static payload type without one) is the codec. Raises
    :class:`MediaNegotiationError` when there is none.
    """
    description = SessionDescription.parse(answer) if isinstance(answer, bytes) else answer
    for index, media in enumerate(description.media):
        if media.media != "audio" or media.port == 0 or not media.proto.startswith("RTP/"):
            continue
        try:
            address = description.media_address(index)
        except ValueError as error:
            raise MediaNegotiationError(str(error)) from error
        maps = _rtpmaps(media)
        chosen: tuple[Codec, int] | None = None
        event_pt: int | None = None
        for fmt in media.formats:
            if not fmt.isdigit():
                continue
            name, rate = maps.get(fmt, ("", 0))
            if name == "telephone-event" and rate == CLOCK_RATE and event_pt is None:
                event_pt = int(fmt)
                continue
            codec = Codec.from_encoding_name(name) if name else None
            if codec is None and fmt not in maps:
                codec = {0: Codec.PCMU, 8: Codec.PCMA}.get(int(fmt))
            if codec is not None and codec in codecs and chosen is None:
                chosen = (codec, int(fmt))
        if chosen is None:
            raise MediaNegotiationError("the answer accepts none of the offered codecs")
        ptime_text = media.attribute("ptime")
        ptime = None
        if ptime_text and ptime_text.strip().isdigit():
            ptime = int(ptime_text.strip()) / 1000
        return MediaParameters(
            address=address,
            codec=chosen[0],
            payload_type=chosen[1],
            telephone_event_pt=event_pt,
            ptime=ptime,
            direction=description.media_direction(index),
        )
    raise MediaNegotiationError("the answer has no active audio stream")


# -- session ---------------------------------------------------------------------------------


class RtpSession:
    """One leg's audio stream: paced sending, symmetric RTP, DTMF detection.

    Drivers:

    1. application: :meth:`set_remote` (the negotiated answer), :meth:`play` /
       :meth:`play_prompt`, :meth:`stop_audio`, :meth:`send_digit`, :meth:`receive_info`;
    2. network: :meth:`receive_datagram` (every datagram of the leg's RTP port);
    3. timer: :meth:`get_timer` is when the next packet is due; call :meth:`datagrams_to_send`
       then (or at any time: it returns what is due).

    Digits are pulled with :meth:`next_event`. Until the remote address is known (an answer,
    or a first packet from the peer) nothing is due and nothing is sent.
    """

    def __init__(
        self,
        *,
        ssrc: int,
        sequence: int,
        timestamp: int,
        codec: Codec = Codec.PCMU,
        telephone_event_pt: int | None = DEFAULT_TELEPHONE_EVENT_PT,
        config: RtpConfig | None = None,
        comfort_silence: bool = False,
    ) -> None:
        self.config = config if config is not None else RtpConfig()
        self.codec = codec
        self._offered_event_pt = telephone_event_pt
        self.sender = RtpSender(
            ssrc=ssrc,
            sequence=sequence,
            timestamp=timestamp,
            payload_type=codec.payload_type,
            event_payload_type=telephone_event_pt,
            config=self.config,
            idle_payload=(
                bytes([codec.silence]) * self.config.samples_per_packet if comfort_silence else None
            ),
        )
        self.receiver = RtpReceiver(config=self.config)
        self.detector = DtmfDetector(
            payload_types=() if telephone_event_pt is None else (telephone_event_pt,)
        )
        self.parameters: MediaParameters | None = None

    # ---------------------------------------------------------------- application

    def set_remote(self, parameters: MediaParameters) -> None:
        """Apply the negotiated answer: where to send, with which codec and payload types."""
        self.parameters = parameters
        self.receiver.expected_address = parameters.address
        if parameters.codec is not self.codec:
            self.codec = parameters.codec
            self.sender.stop_audio()  # queued frames are in the other law
            if self.sender.idle_payload is not None:
                self.sender.idle_payload = (
                    bytes([parameters.codec.silence]) * self.config.samples_per_packet
                )
        self.sender.payload_type = parameters.payload_type
        self.sender.event_payload_type = parameters.telephone_event_pt
        # Receive events with our offered number and the answer's (peers differ on which).
        types = {pt for pt in (self._offered_event_pt, parameters.telephone_event_pt) if pt}
        self.detector.payload_types = frozenset(types)

    @property
    def remote_address(self) -> Address | None:
        """Where packets go (latched source, else the answer's address)."""
        return self.receiver.remote_address

    def play(self, payloads: Iterable[bytes], now: float, *, repeat: bool = False) -> None:
        """Queue audio payloads already in :attr:`codec` (one per packet)."""
        self.sender.play(payloads, now, repeat=repeat)

    def stop_audio(self) -> None:
        """Stop the prompt (e.g. when the digit has come)."""
        self.sender.stop_audio()

    def send_digit(self, digit: str, now: float, *, duration: float | None = None) -> None:
        """Send an RFC 4733 DTMF digit (a test peer, or a DTMF-driven IVR upstream)."""
        self.sender.send_event(digit_to_event(digit), now, duration=duration)

    def receive_info(self, content_type: str | None, body: bytes, now: float) -> bool:
        """Feed a SIP INFO body of this leg (``application/dtmf-relay`` fallback)."""
        return self.detector.receive_info(content_type, body, now)

    @property
    def busy(self) -> bool:
        """Audio or DTMF is still queued."""
        return self.sender.busy

    # ---------------------------------------------------------------- network

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> RtpPacket | None:
        """Feed one datagram from the leg's RTP socket; return it parsed when it was accepted
        (valid RTP from the peer), e.g. for a recorder."""
        packet = self.receiver.receive_datagram(data, addr, now)
        if packet is not None:
            self.detector.receive_packet(packet, now)
        return packet

    def next_event(self) -> DtmfDigit | None:
        """The next detected digit, or None."""
        return self.detector.next_event()

    # ---------------------------------------------------------------- timer

    def get_timer(self) -> float | None:
        """When the next packet is due (None: nothing to send, or nowhere to send it)."""
        if self.receiver.remote_address is None:
            return None
        return self.sender.next_send_time()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Every packet due at ``now`` with its destination."""
        destination = self.receiver.remote_address
        if destination is None:
            return []
        return [(data, destination) for data in self.sender.packets_due(now)]
