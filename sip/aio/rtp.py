"""The asyncio adapter of :mod:`sip.rtp`: UDP ports, the loop clock and one pacing timer.

An :class:`RtpEngine` (one per daemon) binds a UDP port per stream from a configured range
and drives every stream's sans-I/O :class:`~sip.rtp.RtpSession`. Like :mod:`sip.aio` it owns
no protocol logic: it reads ``loop.time()``, passes it in, sends what the session says is due
and re-arms a timer for the next deadline.

Pacing: by default all streams share **one** ``loop.call_at`` timer over a heap of their
deadlines; when it fires, every stream due within ``pacing_slack`` is served (with
``now = max(deadline, loop.time())``, the aioquic rule), so 200 prompts cost a few hundred
wake-ups per second instead of 10,000 timer handles. ``shared_pacer=False`` gives each
stream its own timer (the simple design, kept as the benchmark's baseline).

Usage (one press-1 rep leg, with :class:`sip.aio.SipEndpoint` for the signalling)::

    async with RtpEngine(RtpEngineConfig(ports=(16384, 32767))) as engine:
        stream = await engine.open_stream()
        leg = endpoint.invite(rep_uri, from_uri=..., body=stream.offer())
        answered = await endpoint.wait_for(CallAnswered, leg_id=leg)
        stream.apply_answer(answered.body)
        stream.play(prompt)
        async with asyncio.timeout(accept_timeout):
            digit = await stream.next_digit()
        await stream.close()
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import math
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..dtmf import DtmfDigit
from ..errors import SipError
from ..g711 import Codec
from ..prompt import Prompt
from ..rtp import (
    DEFAULT_TELEPHONE_EVENT_PT,
    Address,
    MediaParameters,
    RtpConfig,
    RtpPacket,
    RtpSession,
    make_audio_offer,
    negotiate,
)
from ..sdp import SessionDescription

__all__ = [
    "RtpEngine",
    "RtpEngineConfig",
    "RtpEngineStats",
    "RtpPortsExhaustedError",
    "RtpStream",
]

_log = logging.getLogger("sip.aio.rtp")

#: Bound of each stream's digit queue (a peer cannot grow it without limit).
DIGIT_QUEUE_SIZE = 64


class RtpPortsExhaustedError(SipError):
    """No port of the configured range could be bound (all in use): the leg cannot get media."""


@dataclass(frozen=True, slots=True)
class RtpEngineConfig:
    """Settings of the RTP adapter; every default documented."""

    #: Address to bind the RTP sockets to.
    host: str = "127.0.0.1"
    #: Address written in our SDP (``c=``); None: ``host``. Set it when binding 0.0.0.0.
    advertised_host: str | None = None
    #: Inclusive port range; even ports are used (RTP convention, RFC 3550 §11). None: let
    #: the OS pick any free port (tests).
    ports: tuple[int, int] | None = (16384, 32767)
    #: Media settings (ptime, catch-up, latching, DTMF defaults).
    rtp: RtpConfig = field(default_factory=RtpConfig)
    #: One timer for every stream (True) or one per stream (False).
    shared_pacer: bool = True
    #: Streams due within this many seconds of a timer wake-up are served in the same one.
    pacing_slack: float = 0.0005
    #: Talkspurts start on a grid of this many seconds (0: at once), so that streams started
    #: in the same millisecond share their wake-ups for the whole prompt, while streams
    #: started at other times spread the load over the 20 ms period.
    pacing_grid: float = 0.001
    #: Send comfort silence between prompts, so the peer's latching and NAT stay up while we
    #: wait for its digit.
    comfort_silence: bool = True


@dataclass(slots=True)
class RtpEngineStats:
    """Counters of the adapter (each session has its own in ``stream.session``)."""

    streams_opened: int = 0
    streams_open: int = 0
    #: Ports tried that were already in use.
    ports_in_use: int = 0
    datagrams_sent: int = 0
    datagrams_received: int = 0
    send_errors: int = 0
    #: Pacing timer wake-ups (all pacers).
    timer_wakeups: int = 0
    #: Exceptions from the core (logged, never raised into the loop). Non-zero means a bug.
    internal_errors: int = 0
    #: Digits dropped because the stream's queue was full.
    digits_dropped: int = 0


class _Pacer:
    """A heap of stream deadlines behind one ``call_at``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, slack: float, stats: RtpEngineStats):
        self._loop = loop
        self._slack = slack
        self._stats = stats
        self._heap: list[tuple[float, int, RtpStream]] = []
        self._counter = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def schedule(self, stream: RtpStream) -> None:
        deadline = None if stream.closed or stream.failed else stream.session.get_timer()
        if deadline is None:
            stream.scheduled_at = None
            return
        if stream.scheduled_at is not None and stream.scheduled_at <= deadline:
            return  # already in the heap at (or before) this time
        stream.scheduled_at = deadline
        heapq.heappush(self._heap, (deadline, next(self._counter), stream))
        self._rearm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._heap.clear()

    def _rearm(self) -> None:
        if not self._heap:
            return
        first = self._heap[0][0]
        if self._timer is not None and self._timer_at is not None and self._timer_at <= first:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = first
        self._timer = self._loop.call_at(first, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._stats.timer_wakeups += 1
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now + self._slack:
            deadline, _, stream = heapq.heappop(heap)
            if stream.closed or stream.scheduled_at != deadline:
                continue  # superseded by an earlier entry, or the stream is gone
            stream.scheduled_at = None
            stream.transmit(max(deadline, now))
            self.schedule(stream)
        self._rearm()


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.stream: RtpStream | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if self.stream is not None:
            self.stream.datagram_received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: the peer is not listening (yet); RTP carries on regardless.
        _log.debug("RTP socket error: %s", exc)


class RtpStream:
    """One leg's media on its own UDP port: an :class:`~sip.rtp.RtpSession` on the loop.

    Application calls mirror the session's without ``now``. Digits arrive on a bounded queue
    (:meth:`next_digit`) or, when given, through ``on_digit`` (called from the loop; must not
    block).
    """

    def __init__(
        self,
        engine: RtpEngine,
        session: RtpSession,
        *,
        transport: asyncio.DatagramTransport,
        local_address: Address,
        pacer: _Pacer,
        on_digit: Callable[[DtmfDigit], None] | None,
        on_packet: Callable[[RtpPacket], None] | None,
    ) -> None:
        self.session = session
        self.local_address = local_address
        self.scheduled_at: float | None = None
        self.closed = False
        #: The session raised while producing packets (a bug): the stream sends no more, rather
        #: than being rescheduled at the same deadline for ever.
        self.failed = False
        self._engine = engine
        self._loop = engine.loop
        self._transport = transport
        self._pacer = pacer
        self._on_digit = on_digit
        self._on_packet = on_packet
        self._digits: asyncio.Queue[DtmfDigit] = asyncio.Queue(maxsize=DIGIT_QUEUE_SIZE)
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._sess_id = str(secrets.randbelow(1 << 62))

    # ---------------------------------------------------------------- SDP

    def offer(self, *, sess_version: int = 0) -> bytes:
        """Our SDP offer for this port (G.711 µ-law and A-law, telephone-event)."""
        host = self._engine.config.advertised_host or self.local_address[0]
        description = make_audio_offer(
            host,
            self.local_address[1],
            sess_id=self._sess_id,
            sess_version=sess_version,
            codecs=(self.session.codec, *(c for c in Codec if c is not self.session.codec)),
            telephone_event_pt=self.session.sender.event_payload_type,
            ptime=self._engine.config.rtp.ptime,
        )
        return description.serialize()

    def apply_answer(self, answer: bytes | SessionDescription) -> MediaParameters:
        """Negotiate the peer's answer and start sending to it.

        Raises :class:`~sip.rtp.MediaNegotiationError` (or :class:`~sip.errors.ParseError`
        for a malformed body): the caller hangs up such a leg.
        """
        parameters = negotiate(answer)
        self.session.set_remote(parameters)
        self._after_input()
        return parameters

    # ---------------------------------------------------------------- application

    def play(self, prompt: Prompt, *, repeat: bool = False) -> None:
        """Queue a prompt (transcoded to the negotiated law); ``repeat`` loops it."""
        frames = prompt.frames(self.session.codec, self.session.sender.samples_per_packet)
        self.play_frames(frames, repeat=repeat)

    def play_frames(self, payloads: Iterable[bytes], *, repeat: bool = False) -> None:
        """Queue ready payloads (one per packet, in the negotiated law)."""
        self.session.play(payloads, self._start_time(), repeat=repeat)
        self._after_input()

    def stop_audio(self) -> None:
        """Stop the prompt now (comfort silence, if configured, goes on)."""
        self.session.stop_audio()
        self._wake_idle_waiters()

    def send_digit(self, digit: str, *, duration: float | None = None) -> None:
        """Send an RFC 4733 digit."""
        self.session.send_digit(digit, self._start_time(), duration=duration)
        self._after_input()

    def receive_info(self, content_type: str | None, body: bytes) -> bool:
        """Feed a SIP INFO body of this leg (``application/dtmf-relay`` fallback)."""
        found = self.session.receive_info(content_type, body, self._loop.time())
        self._deliver_digits()
        return found

    async def next_digit(self) -> DtmfDigit:
        """The next digit (waits; bound it with ``asyncio.timeout``). Not with ``on_digit``."""
        return await self._digits.get()

    async def wait_played(self) -> None:
        """Return once everything queued (prompt, digits) has been sent."""
        if not self.session.busy or self.closed:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._idle_waiters.append(waiter)
        await waiter

    async def close(self) -> None:
        """Close the socket; the port goes back to the range."""
        if self.closed:
            return
        self.closed = True
        self._transport.close()
        self._wake_idle_waiters()
        self._engine._stream_closed(self)

    async def __aenter__(self) -> RtpStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- driving the session

    def transmit(self, now: float) -> None:
        """Send what is due at ``now`` (called by the pacer)."""
        try:
            datagrams = self.session.datagrams_to_send(now)
        except Exception:
            self.failed = True
            self._engine.stats.internal_errors += 1
            _log.exception("RTP session failed to produce packets; the stream stops sending")
            return
        stats = self._engine.stats
        for data, addr in datagrams:
            try:
                self._transport.sendto(data, addr)
                stats.datagrams_sent += 1
            except OSError as error:
                stats.send_errors += 1
                _log.debug("RTP send to %s:%s failed: %s", addr[0], addr[1], error)
        if self._idle_waiters and not self.session.busy:
            self._wake_idle_waiters()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """Feed one datagram (called by the protocol)."""
        self._engine.stats.datagrams_received += 1
        try:
            packet = self.session.receive_datagram(data, addr, self._loop.time())
            if packet is not None and self._on_packet is not None:
                self._on_packet(packet)
        except Exception:
            self._engine.stats.internal_errors += 1
            _log.exception("RTP datagram from %s:%s could not be handled", *addr)
        self._deliver_digits()
        if self.scheduled_at is None:
            self._pacer.schedule(self)  # the first packet may have told us where to send

    def _start_time(self) -> float:
        now = self._loop.time()
        grid = self._engine.config.pacing_grid
        return math.ceil(now / grid) * grid if grid > 0 else now

    def _after_input(self) -> None:
        if not self.closed:
            self._pacer.schedule(self)

    def _deliver_digits(self) -> None:
        while (digit := self.session.next_event()) is not None:
            if self._on_digit is not None:
                try:
                    self._on_digit(digit)
                except Exception:
                    self._engine.stats.internal_errors += 1
                    _log.exception("on_digit handler failed on %r", digit)
                continue
            try:
                self._digits.put_nowait(digit)
            except asyncio.QueueFull:
                self._engine.stats.digits_dropped += 1

    def _wake_idle_waiters(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class RtpEngine:
    """Opens :class:`RtpStream`\\ s on ports from a range and paces them on the running loop."""

    def __init__(self, config: RtpEngineConfig | None = None) -> None:
        self.config = config if config is not None else RtpEngineConfig()
        self.stats = RtpEngineStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shared: _Pacer | None = None
        self._streams: set[RtpStream] = set()
        first = self.config.ports[0] if self.config.ports is not None else 0
        self._next_port = first + (first & 1)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the engine runs on (the one running at the first :meth:`open_stream`)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def streams(self) -> frozenset[RtpStream]:
        """The open streams."""
        return frozenset(self._streams)

    async def open_stream(
        self,
        *,
        codec: Codec = Codec.PCMU,
        telephone_event_pt: int | None = DEFAULT_TELEPHONE_EVENT_PT,
        on_digit: Callable[[DtmfDigit], None] | None = None,
        on_packet: Callable[[RtpPacket], None] | None = None,
        comfort_silence: bool | None = None,
    ) -> RtpStream:
        """Bind a port and return a stream ready for :meth:`RtpStream.offer`.

        ``on_digit`` receives digits instead of the queue; ``on_packet`` sees every accepted
        RTP packet (a recorder, a test). Both are called from the loop and must not block.
        Raises :class:`RtpPortsExhaustedError` when every port of the range is taken.
        """
        loop = self.loop
        sock, local = self._bind()
        protocol = _RtpProtocol()
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        session = RtpSession(
            ssrc=secrets.randbits(32),
            sequence=secrets.randbits(16),
            timestamp=secrets.randbits(32),
            codec=codec,
            telephone_event_pt=telephone_event_pt,
            config=self.config.rtp,
            comfort_silence=(
                self.config.comfort_silence if comfort_silence is None else comfort_silence
            ),
        )
        pacer = self._pacer()
        stream = RtpStream(
            self,
            session,
            transport=transport,
            local_address=local,
            pacer=pacer,
            on_digit=on_digit,
            on_packet=on_packet,
        )
        protocol.stream = stream
        self._streams.add(stream)
        self.stats.streams_opened += 1
        self.stats.streams_open = len(self._streams)
        return stream

    async def close(self) -> None:
        """Close every stream and stop the timers."""
        for stream in list(self._streams):
            await stream.close()
        if self._shared is not None:
            self._shared.close()

    async def __aenter__(self) -> RtpEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _pacer(self) -> _Pacer:
        if not self.config.shared_pacer:
            return _Pacer(self.loop, self.config.pacing_slack, self.stats)
        if self._shared is None:
            self._shared = _Pacer(self.loop, self.config.pacing_slack, self.stats)
        return self._shared

    def _stream_closed(self, stream: RtpStream) -> None:
        self._streams.discard(stream)
        self.stats.streams_open = len(self._streams)
        if not self.config.shared_pacer:
            stream._pacer.close()

    def _bind(self) -> tuple[socket.socket, Address]:
        host = self.config.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self.config.ports is None:
            candidates: Iterable[int] = (0,)
        else:
            low, high = self.config.ports
            low += low & 1
            count = max(0, (high - low) // 2 + 1)
            start = (self._next_port - low) // 2 % count if count else 0
            candidates = (low + 2 * ((start + i) % count) for i in range(count))
        for port in candidates:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError as error:
                sock.close()
                if error.errno != errno.EADDRINUSE:
                    raise
                self.stats.ports_in_use += 1
                continue
            sock.setblocking(False)
            name = sock.getsockname()
            self._next_port = int(name[1]) + 2
            return sock, (str(name[0]), int(name[1]))
        raise RtpPortsExhaustedError(f"no free RTP port in {self.config.ports} on {host}")
