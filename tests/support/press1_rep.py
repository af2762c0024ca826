"""A press-1 rep phone inside the test process: our own SIP endpoint plus a plain UDP socket.

It answers the daemon's INVITE with an SDP pointing at its socket, records every RTP packet
the daemon sends (with the loop time it arrived), presses a key over SIP INFO
``application/dtmf-relay``, answers the bridge re-INVITE and the final BYE. Used where a test
must look at the audio itself (prompt length, ringback tones), which SIPp does not expose.
"""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import dataclass, field

from sip import CallTerminated, IncomingCall, ReInviteReceived
from sip.aio import SipEndpoint
from sip.g711 import Codec, decode, rms
from sip.prompt import Prompt
from sip.rtp import RtpPacket, parse_packet

#: Payload types of the answer below: PCMU and telephone-event.
TELEPHONE_EVENT_PT = 101


@dataclass(frozen=True, slots=True)
class Heard:
    """One RTP packet from the daemon and when (loop time) it arrived."""

    at: float
    packet: RtpPacket


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, rep: InProcessRep) -> None:
        self._rep = rep

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._rep._heard.append(Heard(asyncio.get_running_loop().time(), parse_packet(data)))


@dataclass
class InProcessRep:
    """The rep (see the module docstring); use as ``async with InProcessRep() as rep``."""

    endpoint: SipEndpoint = field(default_factory=SipEndpoint)
    _heard: list[Heard] = field(default_factory=list)
    _transport: asyncio.DatagramTransport | None = None
    leg_id: str | None = None
    #: Loop times the bridge re-INVITE arrived, we answered it, and the BYE came (or None).
    reinvited_at: float | None = None
    reinvite_answered_at: float | None = None
    ended_at: float | None = None

    async def __aenter__(self) -> InProcessRep:
        await self.endpoint.start("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self), local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._transport is not None:
            self._transport.close()
        await self.endpoint.close()

    @property
    def uri(self) -> str:
        """Where the daemon rings this rep."""
        host, port = self.endpoint.address
        return f"sip:rep@{host}:{port}"

    @property
    def heard(self) -> list[Heard]:
        """Every RTP packet received so far, in arrival order."""
        return list(self._heard)

    def answer_sdp(self, version: int = 1) -> bytes:
        assert self._transport is not None
        port = self._transport.get_extra_info("sockname")[1]
        return (
            f"v=0\r\no=rep 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP 0 {TELEPHONE_EVENT_PT}\r\n"
            f"a=rtpmap:0 PCMU/8000\r\na=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000\r\n"
            "a=sendrecv\r\n"
        ).encode()

    async def answer(self, *, when: asyncio.Event | None = None) -> None:
        """Wait for the INVITE, ring, then pick up (once ``when`` is set, if given)."""
        incoming = await self.endpoint.wait_for(IncomingCall)
        self.leg_id = incoming.leg_id
        self.endpoint.ring(incoming.leg_id)
        if when is not None:
            await when.wait()
        self.endpoint.accept(incoming.leg_id, body=self.answer_sdp())

    async def wait_audio(self, seconds: float) -> None:
        """Return once ``seconds`` of audio arrived (prompt and comfort silence alike)."""
        while seconds_of(self._heard) < seconds:
            await asyncio.sleep(0.02)

    def press(self, digit: str) -> None:
        """Press ``digit`` (SIP INFO ``application/dtmf-relay``)."""
        assert self.leg_id is not None
        self.endpoint.send_info(
            self.leg_id,
            body=f"Signal={digit}\r\nDuration=160\r\n".encode(),
            content_type="application/dtmf-relay",
        )

    async def accept_bridge(self, *, answer_after_s: float = 0.0) -> None:
        """Answer the bridge re-INVITE ``answer_after_s`` after it came (a phone may take a
        moment), then wait for the BYE; notes when each happened."""
        assert self.leg_id is not None
        loop = asyncio.get_running_loop()
        reinvite = await self.endpoint.wait_for(ReInviteReceived, leg_id=self.leg_id)
        self.reinvited_at = loop.time()
        await asyncio.sleep(answer_after_s)
        self.reinvite_answered_at = loop.time()
        self.endpoint.answer_reinvite(self.leg_id, body=self.answer_sdp(2))
        assert reinvite.body  # the prospect's media
        await self.endpoint.wait_for(CallTerminated, leg_id=self.leg_id)
        self.ended_at = asyncio.get_running_loop().time()


def audio_of(heard: list[Heard]) -> bytes:
    """The G.711 packets' audio as 16-bit PCM (events and other payloads skipped)."""
    codecs = {codec.payload_type: codec for codec in Codec}
    return b"".join(
        decode(h.packet.payload, codecs[h.packet.payload_type])
        for h in heard
        if h.packet.payload_type in codecs
    )


def seconds_of(heard: list[Heard]) -> float:
    """How much audio the G.711 packets carry (20 ms of 8 kHz each by default)."""
    codecs = {codec.payload_type for codec in Codec}
    return sum(len(h.packet.payload) for h in heard if h.packet.payload_type in codecs) / 8000


#: A 20 ms frame louder than this (16-bit RMS, about -50 dBFS) is audible; the daemon's comfort
#: silence and the prompts' padding are digital silence.
AUDIBLE_RMS = 100.0


def audible_seconds(frames: list[bytes], codec: Codec = Codec.PCMU) -> float:
    """From the first to the end of the last audible frame (G.711 payloads, one per packet)."""
    loud = [i for i, frame in enumerate(frames) if rms(decode(frame, codec)) > AUDIBLE_RMS]
    if not loud:
        return 0.0
    return sum(len(frame) for frame in frames[loud[0] : loud[-1] + 1]) / 8000


def heard_audible_seconds(heard: list[Heard]) -> float:
    """:func:`audible_seconds` of what the rep heard (PCMU packets, as answered)."""
    return audible_seconds([h.packet.payload for h in heard if h.packet.payload_type == 0])


def prompt_audible_seconds(prompt: Prompt) -> float:
    """:func:`audible_seconds` of a prompt cut into packets as the daemon sends it."""
    return audible_seconds(prompt.frames(Codec.PCMU))


def power_at(pcm: bytes, frequency: float, rate: int = 8000) -> float:
    """Goertzel: the signal's power at ``frequency``, normalised by length."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    return (previous**2 + before**2 - coefficient * previous * before) / len(samples) ** 2
