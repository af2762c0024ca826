"""DTMF digits: RFC 4733 telephone events over RTP, and SIP INFO bodies as a fallback.

A key press is reported exactly once, however the network delivered it. The telephone-event
payload (RFC 4733 §2.3) is::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     event     |E|R| volume    |          duration             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

and the rules the :class:`DtmfDetector` relies on are:

* The RTP timestamp of every packet of an event is the event's start (§2.5.1.2): the pair
  (SSRC, timestamp) *is* the event. Updates (growing ``duration``), the end packet (E bit) and
  its retransmissions ("The final packet for each event and for each segment SHOULD be sent a
  total of three times at the interval used by the source for updates", §2.5.1.4) all share
  it; so do packets that arrive out of order, and packets after the first one was lost (the
  marker bit is only a hint). A second press of the same key has a new timestamp.
* An event longer than the 16-bit duration field is sent as segments (§2.5.1.3): a new
  timestamp for the same key, contiguous with the previous segment. That is one press.
* Several consecutive events may be packed into one payload (§2.5.1.5); event *n* then starts
  at the packet timestamp plus the durations of the events before it.
* Redundancy: each update repeats the whole history of its event, and with RFC 2198 audio
  redundancy (``a=rtpmap:<pt> red/8000``) older blocks ride in later packets, each with its
  own timestamp offset; the detector reads every block.

The SIP INFO fallback reads ``application/dtmf-relay`` (``Signal=1`` / ``Duration=160``) and
``application/dtmf`` (the bare digit) bodies.

Pure: no I/O, no clock (``now`` is passed in, and only recorded in the digit events).
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sip.errors import SipError

if TYPE_CHECKING:
    from sip.rtp import RtpPacket

__all__ = [
    "DIGITS",
    "DtmfDetector",
    "DtmfDigit",
    "DtmfInfo",
    "DtmfParseError",
    "DtmfSource",
    "RedundantBlock",
    "TelephoneEvent",
    "build_red",
    "build_telephone_events",
    "digit_to_event",
    "event_payloads",
    "event_to_digit",
    "parse_dtmf_info",
    "parse_red",
    "parse_telephone_events",
]

#: Event codes 0-15 in order (RFC 4733 §3.2 Table 7): 0-9, ``*`` = 10, ``#`` = 11, A-D = 12-15.
DIGITS = "0123456789*#ABCD"
#: Largest value of the 16-bit duration field; longer events are split into segments.
MAX_DURATION = 0xFFFF
#: Largest volume (-63 dBm0); volume is a power level below 0 dBm0.
MAX_VOLUME = 63
#: A new segment of the same key continuing an event that has lasted at least this long (in
#: timestamp units, ~7.7 s at 8 kHz) is the same press; two presses cannot be that close and
#: that long unless the first one was a held key.
SEGMENT_CONTINUATION_MIN = 0xF000
#: How many recent events the detector remembers to recognise their late packets.
DEFAULT_EVENT_MEMORY = 64
#: Events this far (timestamp units, 10 s at 8 kHz) behind the newest one of their source are
#: stale: a packet of one that is no longer remembered is dropped rather than reported again.
DEFAULT_STALE_AFTER = 80_000
#: Bound of the undelivered digit queue (a peer sending events for ever cannot grow it).
MAX_PENDING_DIGITS = 256

_TIMESTAMP_MODULUS = 1 << 32


class DtmfParseError(SipError, ValueError):
    """A telephone-event, RFC 2198 or INFO DTMF body that does not follow its format."""


def digit_to_event(digit: str) -> int:
    """The RFC 4733 event code of a DTMF key: ``0``-``9``, ``*``, ``#``, ``A``-``D``."""
    index = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index


def event_to_digit(event: int) -> str | None:
    """The key of an event code, or None for codes that are not DTMF digits (e.g. flash, 16)."""
    return DIGITS[event] if 0 <= event < len(DIGITS) else None


# -- RFC 4733 payload ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """One 4-octet telephone-event block."""

    #: Event code (0-255); 0-15 are DTMF digits.
    event: int
    #: The E bit: this block reports the end of the event.
    end: bool = False
    #: Power level in -dBm0 (0-63); 0 is loudest.
    volume: int = 10
    #: Duration so far, in RTP timestamp units from the event's start.
    duration: int = 0

    @property
    def digit(self) -> str | None:
        """The DTMF key, or None when the code is not a digit."""
        return event_to_digit(self.event)

    def serialize(self) -> bytes:
        """The 4 octets of this block (the R bit is sent as 0)."""
        if not 0 <= self.event <= 0xFF:
            raise ValueError(f"event code out of range: {self.event}")
        if not 0 <= self.volume <= MAX_VOLUME:
            raise ValueError(f"volume out of range: {self.volume}")
        if not 0 <= self.duration <= MAX_DURATION:
            raise ValueError(f"duration out of range: {self.duration}")
        flags = (0x80 if self.end else 0) | self.volume
        return bytes((self.event, flags, self.duration >> 8, self.duration & 0xFF))


def parse_telephone_events(payload: bytes) -> list[TelephoneEvent]:
    """Every block of a telephone-event payload (one, or several packed per §2.5.1.5)."""
    if not payload or len(payload) % 4:
        raise DtmfParseError(f"telephone-event payload of {len(payload)} octets")
    return [
        TelephoneEvent(
            event=payload[i],
            end=bool(payload[i + 1] & 0x80),  # the R bit (0x40) is ignored, as §2.3.3 says
            volume=payload[i + 1] & 0x3F,
            duration=(payload[i + 2] << 8) | payload[i + 3],
        )
        for i in range(0, len(payload), 4)
    ]


def build_telephone_events(events: Iterable[TelephoneEvent]) -> bytes:
    """A payload carrying ``events`` in order."""
    return b"".join(event.serialize() for event in events)


def event_payloads(
    event: int,
    *,
    duration: int,
    interval: int,
    volume: int = 10,
    end_repeats: int = 3,
) -> list[bytes]:
    """The payloads a sender emits for one event, one per packet interval.

    ``duration`` and ``interval`` are in timestamp units (e.g. 800 and 160 for 100 ms in 20 ms
    packets at 8 kHz). Updates report the duration reached at the end of each interval; the
    last block, with the E bit and the full duration, is sent ``end_repeats`` times (§2.5.1.4).
    The first packet of the list must carry the RTP marker bit.
    """
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"event duration must be 1..{MAX_DURATION} timestamp units")
    if interval <= 0 or end_repeats < 1:
        raise ValueError("interval and end_repeats must be positive")
    updates = [
        TelephoneEvent(event=event, volume=volume, duration=elapsed).serialize()
        for elapsed in range(interval, duration, interval)
    ]
    final = TelephoneEvent(event=event, end=True, volume=volume, duration=duration).serialize()
    return updates + [final] * end_repeats


# -- RFC 2198 redundancy ---------------------------------------------------------------------

# RFC 2198 §3: each redundant block has a 4-octet header, the primary a 1-octet one:
#     |F|   block PT  |  timestamp offset         |   block length    |
#     |0|   Block PT  |


@dataclass(frozen=True, slots=True, kw_only=True)
class RedundantBlock:
    """One block of an RFC 2198 ``red`` payload; the primary block has offset 0 and comes last."""

    payload_type: int
    #: How far (timestamp units) before the packet's timestamp this block's data started.
    timestamp_offset: int
    payload: bytes


def parse_red(payload: bytes) -> list[RedundantBlock]:
    """The blocks of an RFC 2198 payload, oldest first, the primary last."""
    headers: list[tuple[int, int, int]] = []
    position = 0
    while True:
        if position >= len(payload):
            raise DtmfParseError("RFC 2198 payload ends inside its headers")
        first = payload[position]
        if not first & 0x80:
            headers.append((first & 0x7F, 0, -1))
            position += 1
            break
        if position + 4 > len(payload):
            raise DtmfParseError("RFC 2198 block header truncated")
        word = int.from_bytes(payload[position + 1 : position + 4], "big")
        headers.append((first & 0x7F, word >> 10, word & 0x3FF))
        position += 4
    blocks: list[RedundantBlock] = []
    for payload_type, offset, length in headers:
        end = len(payload) if length < 0 else position + length
        if end > len(payload):
            raise DtmfParseError("RFC 2198 block longer than the payload")
        blocks.append(
            RedundantBlock(
                payload_type=payload_type, timestamp_offset=offset, payload=payload[position:end]
            )
        )
        position = end
    return blocks


def build_red(blocks: Sequence[RedundantBlock]) -> bytes:
    """An RFC 2198 payload; the last block is the primary (its offset is not sent)."""
    if not blocks:
        raise ValueError("an RFC 2198 payload needs a primary block")
    headers = bytearray()
    for block in blocks[:-1]:
        if not (0 <= block.timestamp_offset < 1 << 14 and len(block.payload) < 1 << 10):
            raise ValueError("RFC 2198 offset or block length out of range")
        word = (block.timestamp_offset << 10) | len(block.payload)
        headers.append(0x80 | block.payload_type)
        headers += word.to_bytes(3, "big")
    headers.append(blocks[-1].payload_type & 0x7F)
    return bytes(headers) + b"".join(block.payload for block in blocks)


# -- SIP INFO bodies -------------------------------------------------------------------------

#: The media types read as DTMF in an INFO request.
DTMF_RELAY = "application/dtmf-relay"
DTMF = "application/dtmf"

# application/dtmf-relay (Cisco, de-facto): lines "key=value", e.g. "Signal=5\r\nDuration=160".
_RELAY_LINE = re.compile(r"^\s*([A-Za-z-]+)\s*=\s*(\S*)\s*$")
_NUMERIC_SIGNALS = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfInfo:
    """A digit carried in a SIP INFO body."""

    digit: str
    #: ``Duration`` in milliseconds, when the body has one.
    duration_ms: int | None = None


def _info_digit(signal: str) -> str:
    signal = _NUMERIC_SIGNALS.get(signal, signal).upper()
    if len(signal) != 1 or signal not in DIGITS:
        raise DtmfParseError(f"not a DTMF signal: {signal!r}")
    return signal


def parse_dtmf_info(content_type: str | None, body: bytes) -> DtmfInfo | None:
    """The digit of an INFO body, or None when ``content_type`` is not a DTMF type.

    Raises :class:`DtmfParseError` for a DTMF content type whose body carries no valid digit.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in (DTMF_RELAY, DTMF):
        return None
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as error:
        raise DtmfParseError("DTMF INFO body is not ASCII") from error
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _RELAY_LINE.match(line)
        if match is None:
            if media_type == DTMF and not fields and "=" not in line:
                fields["signal"] = line.strip()  # application/dtmf: the bare digit
                continue
            raise DtmfParseError(f"malformed DTMF INFO line: {line!r}")
        fields[match.group(1).lower()] = match.group(2)
    if "signal" not in fields:
        raise DtmfParseError("DTMF INFO body without a Signal")
    duration: int | None = None
    if fields.get("duration"):
        if not fields["duration"].isdigit():
            raise DtmfParseError(f"bad DTMF INFO Duration: {fields['duration']!r}")
        duration = int(fields["duration"])
    return DtmfInfo(digit=_info_digit(fields["signal"]), duration_ms=duration)


# -- detection -------------------------------------------------------------------------------


class DtmfSource(enum.Enum):
    """Where a digit came from."""

    #: An RFC 4733 telephone event in the RTP stream.
    RTP = "rfc4733"
    #: A SIP INFO request (``application/dtmf-relay`` or ``application/dtmf``).
    INFO = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfDigit:
    """A key press; fires once per press, on the first packet (or INFO) that reveals it."""

    digit: str
    source: DtmfSource
    #: The ``now`` at which the press was detected.
    detected_at: float
    #: The event's RTP timestamp and source (None for INFO).
    rtp_timestamp: int | None = None
    ssrc: int | None = None


@dataclass(slots=True)
class DetectorStats:
    """Counters of a :class:`DtmfDetector`."""

    #: Digits reported.
    digits: int = 0
    #: Telephone-event blocks read (every update, end and retransmission).
    blocks: int = 0
    #: Blocks of an event already reported (updates, end retransmissions, late packets).
    repeats: int = 0
    #: New segments of a long press (not reported again).
    continuations: int = 0
    #: Events with a code that is not a digit (flash, tones).
    non_digit_events: int = 0
    #: Late packets of an event too old to be remembered.
    stale: int = 0
    #: Payloads that could not be parsed.
    malformed: int = 0
    #: Digits dropped because nobody consumed the queue.
    dropped: int = 0


@dataclass(slots=True)
class _Seen:
    event: int
    duration: int
    ended: bool


class DtmfDetector:
    """Turns telephone-event packets (and INFO bodies) into :class:`DtmfDigit` events.

    Feed packets with :meth:`receive_packet` (only those of ``payload_types`` and
    ``red_payload_types`` are looked at; give it the whole stream), INFO bodies with
    :meth:`receive_info`; pull digits with :meth:`next_event`. A press is identified by its
    (SSRC, RTP timestamp), see the module docstring; a digit is reported as soon as any packet
    of its event arrives (a voicemail-defence prompt wants the earliest answer, and a press
    never "un-happens").
    """

    def __init__(
        self,
        *,
        payload_types: Iterable[int] = (101,),
        red_payload_types: Iterable[int] = (),
        memory: int = DEFAULT_EVENT_MEMORY,
        stale_after: int = DEFAULT_STALE_AFTER,
    ) -> None:
        self.payload_types = frozenset(payload_types)
        self.red_payload_types = frozenset(red_payload_types)
        self.stats = DetectorStats()
        self._memory = memory
        self._stale_after = stale_after
        self._seen: OrderedDict[tuple[int, int], _Seen] = OrderedDict()
        self._newest: dict[int, int] = {}
        self._digits: deque[DtmfDigit] = deque()

    def next_event(self) -> DtmfDigit | None:
        """The next detected digit, or None."""
        return self._digits.popleft() if self._digits else None

    def receive_packet(self, packet: RtpPacket, now: float) -> bool:
        """Read one RTP packet; True when it was a telephone-event (or RFC 2198) packet."""
        if packet.payload_type in self.payload_types:
            try:
                events = parse_telephone_events(packet.payload)
            except DtmfParseError:
                self.stats.malformed += 1
                return True
            self._receive_events(packet.ssrc, packet.timestamp, events, now)
            return True
        if packet.payload_type in self.red_payload_types:
            try:
                blocks = parse_red(packet.payload)
                decoded = [
                    (block.timestamp_offset, parse_telephone_events(block.payload))
                    for block in blocks
                    if block.payload_type in self.payload_types
                ]
            except DtmfParseError:
                self.stats.malformed += 1
                return True
            for offset, events in decoded:
                start = (packet.timestamp - offset) % _TIMESTAMP_MODULUS
                self._receive_events(packet.ssrc, start, events, now)
            return True
        return False

    def receive_info(self, content_type: str | None, body: bytes, now: float) -> bool:
        """Read a SIP INFO body; True when it carried a digit (each INFO is one press)."""
        try:
            info = parse_dtmf_info(content_type, body)
        except DtmfParseError:
            self.stats.malformed += 1
            return False
        if info is None:
            return False
        self._report(DtmfDigit(digit=info.digit, source=DtmfSource.INFO, detected_at=now))
        return True

    def _receive_events(
        self, ssrc: int, timestamp: int, events: list[TelephoneEvent], now: float
    ) -> None:
        start = timestamp
        for event in events:
            self.stats.blocks += 1
            self._receive_event(ssrc, start, event, now)
            # §2.5.1.5: packed events are consecutive, each starting where the previous ended.
            start = (start + event.duration) % _TIMESTAMP_MODULUS

    def _receive_event(self, ssrc: int, start: int, event: TelephoneEvent, now: float) -> None:
        key = (ssrc, start)
        seen = self._seen.get(key)
        if seen is not None:
            self.stats.repeats += 1
            seen.duration = max(seen.duration, event.duration)
            seen.ended = seen.ended or event.end
            return
        newest = self._newest.get(ssrc)
        if newest is not None:
            behind = (newest - start) % _TIMESTAMP_MODULUS
            if 0 < behind < _TIMESTAMP_MODULUS // 2 and behind > self._stale_after:
                self.stats.stale += 1
                return
            if behind == 0 or behind >= _TIMESTAMP_MODULUS // 2:
                self._newest[ssrc] = start
        else:
            self._newest[ssrc] = start
        continuation = self._continues_segment(ssrc, start, event.event)
        self._remember(key, _Seen(event.event, event.duration, event.end))
        if continuation:
            self.stats.continuations += 1
            return
        digit = event.digit
        if digit is None:
            self.stats.non_digit_events += 1
            return
        self._report(
            DtmfDigit(
                digit=digit,
                source=DtmfSource.RTP,
                detected_at=now,
                rtp_timestamp=start,
                ssrc=ssrc,
            )
        )

    def _continues_segment(self, ssrc: int, start: int, code: int) -> bool:
        # §2.5.1.3: the next segment starts where the previous one ended, same key.
        for (other_ssrc, other_start), seen in reversed(self._seen.items()):
            if other_ssrc != ssrc or seen.event != code:
                continue
            gap = (start - other_start) % _TIMESTAMP_MODULUS
            if seen.duration <= gap <= MAX_DURATION and gap >= SEGMENT_CONTINUATION_MIN:
                return True
        return False

    def _remember(self, key: tuple[int, int], seen: _Seen) -> None:
        self._seen[key] = seen
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)

    def _report(self, digit: DtmfDigit) -> None:
        if len(self._digits) >= MAX_PENDING_DIGITS:
            self.stats.dropped += 1
            return
        self.stats.digits += 1
        self._digits.append(digit)
