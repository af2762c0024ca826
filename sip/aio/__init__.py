"""The asyncio adapter: sockets, the clock and one timer around a sans-I/O UserAgent.

This package (with :mod:`sip.aio.rtp`, the RTP media adapter) is the only part of :mod:`sip`
that imports asyncio, socket, time or secrets. It owns no protocol logic: after every input
(a datagram, TCP bytes, an application call, the timer) it passes ``loop.time()`` to the
:class:`~sip.ua.UserAgent`, sends what the UA wants sent, delivers the UA's events, and re-arms
a single ``loop.call_at`` for the UA's next deadline (the aioquic ``QuicConnectionProtocol``
pattern). It works with the default loop and uvloop.

Host names: the core routes to ``(host, port)`` taken from URIs and never resolves names. The
adapter sends to IP literals directly and resolves any other host with ``loop.getaddrinfo``
(A/AAAA records only, in the socket's address family) in a task, never blocking the loop.
Messages to a host being resolved wait, in order, and go out when the lookup ends. Answers are
kept in a small bounded cache for :data:`DNS_CACHE_TTL` (getaddrinfo does not expose the
record TTL); failures for :data:`DNS_NEGATIVE_TTL`. A failed lookup is reported to the UA as a
transport error, so the transaction ends as with a 503 (``CallRejected(status=503,
response=None)`` or ``RequestCompleted(status=503)``). RFC 3263 (NAPTR/SRV selection of
transport, port and fail-over targets) is not implemented: a host without a port gets 5060
(5061 for sips) and its first address.

Usage::

    endpoint = SipEndpoint(SipConfig())
    host, port = await endpoint.start("127.0.0.1", 0)
    leg = endpoint.invite("sip:rep@127.0.0.1:5062", from_uri="sip:dialer@127.0.0.1", body=sdp)
    answered = await endpoint.wait_for(CallAnswered, leg_id=leg)
    endpoint.bye(leg)
    await endpoint.wait_for(CallTerminated, leg_id=leg)
    await endpoint.close()
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..auth import Credentials
from ..config import SipConfig
from ..errors import ParseError
from ..events import CallEvent, Event, RequestCompleted
from ..message import StreamParser
from ..transaction import Address
from ..ua import CallState, IdGenerator, UserAgent
from ..uri import URI

__all__ = ["AioStats", "SecretIds", "SipEndpoint"]

_log = logging.getLogger("sip.aio")

E = TypeVar("E", bound=Event)

#: Socket buffer size asked for UDP (the kernel caps it at net.core.rmem_max / wmem_max). The
#: default ~208 KiB holds only ~100 small datagrams (each is charged ~2 KiB): a burst of a few
#: hundred INVITE answers would be dropped and cost retransmissions.
DEFAULT_UDP_BUFFER_BYTES = 4 * 1024 * 1024

#: Default bound of the event queue. Events are never silently lost below it; above it they
#: are dropped, counted in ``AioStats.events_dropped`` and logged (the application is not
#: consuming: a bug or an overload the operator must see).
DEFAULT_EVENT_QUEUE_SIZE = 65536

#: Seconds a resolved host address is reused (a fixed value: getaddrinfo hides the DNS TTL).
DNS_CACHE_TTL = 60.0

#: Seconds a failed lookup is remembered, so a burst of requests to a dead name costs one lookup
#: and fails fast instead of queueing behind resolver timeouts.
DNS_NEGATIVE_TTL = 5.0

#: Host names kept in the cache; the least recently stored is evicted first.
DNS_CACHE_SIZE = 256

#: Seconds one lookup may take before the host counts as unreachable.
DNS_TIMEOUT = 5.0

#: Bytes of a refused message quoted in its debug log line (enough for the start line).
_LOGGED_BYTES = 80


class SecretIds:
    """Production :class:`~sip.ua.IdGenerator`: unguessable identifiers from :mod:`secrets`."""

    def branch(self) -> str:
        """``z9hG4bK`` + 64 random bits."""
        return "z9hG4bK" + secrets.token_hex(8)

    def tag(self) -> str:
        """48 random bits (RFC 3261 §19.3 asks for at least 32)."""
        return secrets.token_hex(6)

    def call_id(self) -> str:
        """128 random bits."""
        return secrets.token_hex(16)

    def cnonce(self) -> str:
        """64 random bits."""
        return secrets.token_hex(8)

    def jitter(self, low: float, high: float) -> float:
        """Uniform in ``[low, high]`` with millisecond resolution."""
        steps = max(1, round((high - low) * 1000))
        return low + (high - low) * secrets.randbelow(steps + 1) / steps


@dataclass(slots=True)
class AioStats:
    """Counters of the adapter (the UA has its own in ``endpoint.ua.stats``)."""

    datagrams_received: int = 0
    datagrams_sent: int = 0
    #: Exceptions raised by the core on some input (logged with a traceback, never re-raised
    #: into the loop). Non-zero means a bug.
    internal_errors: int = 0
    #: Events dropped because the bounded queue was full.
    events_dropped: int = 0
    #: TCP connections opened (by us or accepted).
    tcp_connections: int = 0
    #: TCP streams closed because they could not be framed (garbage, oversized message).
    tcp_framing_errors: int = 0
    #: Messages that could not be sent (send error, connection failure, unresolvable host).
    send_errors: int = 0
    #: Host name lookups started (cache misses).
    dns_lookups: int = 0
    #: Host name lookups that failed (no address, resolver error, timeout).
    dns_failures: int = 0


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._endpoint._datagram_received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: UDP gives no reliable per-destination signal,
        # so the transaction timers handle it (RFC 3261 §18.4 allows both).
        _log.debug("UDP error: %s", exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, endpoint: SipEndpoint, remote: Address | None) -> None:
        self._endpoint = endpoint
        self.remote = remote
        self.transport: asyncio.Transport | None = None
        self._parser = StreamParser()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.remote is None:
            peer = transport.get_extra_info("peername")
            self.remote = (str(peer[0]), int(peer[1]))
        self._endpoint._tcp_connected(self.remote, self)

    def data_received(self, data: bytes) -> None:
        assert self.remote is not None
        self._endpoint._stream_received(self, self._parser, data, self.remote)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.remote is not None:
            self._endpoint._tcp_lost(self.remote, self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SipEndpoint:
    """A :class:`~sip.ua.UserAgent` on a UDP socket or a TCP listener, driven by asyncio.

    ``config.transport`` picks UDP or TCP. Over TCP, a connection is opened to a destination
    the first time something is sent there and reused afterwards; accepted connections are
    reused for the responses (and requests) to their peer. Events are delivered to
    ``on_event`` when given (called synchronously from the loop; it must not block), else put
    on a bounded queue read with :meth:`next_event`, ``async for`` or :meth:`wait_for`.

    Every application method mirrors the UA's (same names and arguments, without ``now``).
    """

    def __init__(
        self,
        config: SipConfig | None = None,
        *,
        ids: IdGenerator | None = None,
        contact_user: str = "dialer",
        advertised_host: str | None = None,
        on_event: Callable[[Event], None] | None = None,
        event_queue_size: int = DEFAULT_EVENT_QUEUE_SIZE,
        udp_buffer_bytes: int = DEFAULT_UDP_BUFFER_BYTES,
    ) -> None:
        self.config = config if config is not None else SipConfig()
        self.stats = AioStats()
        self._ids: IdGenerator = ids if ids is not None else SecretIds()
        self._contact_user = contact_user
        self._advertised_host = advertised_host
        self._on_event = on_event
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=event_queue_size)
        self._skipped: deque[Event] = deque()
        self._ua: UserAgent | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[Address, _TcpProtocol] = {}
        self._connecting: dict[Address, list[bytes]] = {}
        # Unresolved destinations whose messages wait on a TCP connect to their address, so a
        # failed connect reaches the transactions addressed by name.
        self._connect_origins: dict[Address, set[Address]] = {}
        # TCP connects and host name lookups in flight (cancelled by close()).
        self._connect_tasks: set[asyncio.Task[None]] = set()
        # host -> (address, or None when the lookup failed; expiry in loop time)
        self._dns_cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        # host -> messages (with their unresolved destination) waiting for its lookup, in order
        self._resolving: dict[str, list[tuple[bytes, Address]]] = {}
        self._family: int = socket.AF_INET
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self._closed = False
        self._address: Address | None = None
        self._udp_buffer_bytes = udp_buffer_bytes

    # ------------------------------------------------------------------ life cycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        """Bind (port 0: any free port) and return the bound ``(host, port)``."""
        if self._ua is not None:
            raise RuntimeError("SipEndpoint already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self.config.reliable:
            self._server = await loop.create_server(
                lambda: _TcpProtocol(self, None), host=host, port=port
            )
            sockname = self._server.sockets[0].getsockname()
            self._family = int(self._server.sockets[0].family)
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            self._udp = transport
            sock = transport.get_extra_info("socket")
            if sock is not None and self._udp_buffer_bytes > 0:
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, option, self._udp_buffer_bytes)
                    except OSError as error:  # some platforms refuse; the default still works
                        _log.debug("cannot set UDP socket buffer: %s", error)
            sockname = transport.get_extra_info("sockname")
            if sock is not None:
                self._family = int(sock.family)
        bound: Address = (str(sockname[0]), int(sockname[1]))
        self._address = bound
        local = (self._advertised_host or bound[0], bound[1])
        self._ua = UserAgent(
            self.config, local=local, ids=self._ids, contact_user=self._contact_user
        )
        return bound

    async def close(self) -> None:
        """Stop the timer, close every socket and connection. Calls in flight are abandoned
        (send BYE/CANCEL and wait for their events first for a graceful stop)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._connect_tasks):
            task.cancel()
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._connect_tasks:
            await asyncio.gather(*self._connect_tasks, return_exceptions=True)

    async def __aenter__(self) -> SipEndpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def address(self) -> Address:
        """The bound ``(host, port)``."""
        if self._address is None:
            raise RuntimeError("SipEndpoint not started")
        return self._address

    @property
    def ua(self) -> UserAgent:
        """The sans-I/O user agent (for state queries and stats; drive it through the
        endpoint so that sends and the timer follow)."""
        if self._ua is None:
            raise RuntimeError("SipEndpoint not started")
        return self._ua

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    # ------------------------------------------------------------------ application calls

    def invite(
        self,
        target: str | URI,
        *,
        from_uri: str,
        from_display: str | None = None,
        to_uri: str | None = None,
        to_display: str | None = None,
        body: bytes = b"",
        content_type: str = "application/sdp",
        extra_headers: Sequence[tuple[str, str]] = (),
        destination: Address | None = None,
        route: Sequence[str] = (),
        auth: Credentials | None = None,
    ) -> str:
        """:meth:`UserAgent.invite`; returns the leg id."""
        leg_id = self.ua.invite(
            target,
            self._now(),
            from_uri=from_uri,
            from_display=from_display,
            to_uri=to_uri,
            to_display=to_display,
            body=body,
            content_type=content_type,
            extra_headers=extra_headers,
            destination=destination,
            route=route,
            auth=auth,
        )
        self._flush()
        return leg_id

    def cancel(self, leg_id: str, *, reason: str | None = None) -> bool:
        """:meth:`UserAgent.cancel`."""
        done = self.ua.cancel(leg_id, self._now(), reason=reason)
        self._flush()
        return done

    def bye(
        self,
        leg_id: str,
        *,
        reason: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """:meth:`UserAgent.bye`."""
        done = self.ua.bye(leg_id, self._now(), reason=reason, extra_headers=extra_headers)
        self._flush()
        return done

    def hangup(self, leg_id: str, *, reason: str | None = None) -> bool:
        """:meth:`UserAgent.hangup`."""
        done = self.ua.hangup(leg_id, self._now(), reason=reason)
        self._flush()
        return done

    def ack(self, leg_id: str, *, body: bytes = b"", content_type: str = "application/sdp") -> bool:
        """:meth:`UserAgent.ack`."""
        try:
            return self.ua.ack(leg_id, self._now(), body=body, content_type=content_type)
        finally:
            self._flush()

    def reinvite(
        self,
        leg_id: str,
        *,
        body: bytes = b"",
        content_type: str = "application/sdp",
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """:meth:`UserAgent.reinvite`."""
        try:
            self.ua.reinvite(
                leg_id,
                self._now(),
                body=body,
                content_type=content_type,
                extra_headers=extra_headers,
            )
        finally:
            self._flush()

    def send_info(
        self,
        leg_id: str,
        *,
        body: bytes,
        content_type: str,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> str:
        """:meth:`UserAgent.send_info`; returns the request id."""
        try:
            return self.ua.send_info(
                leg_id,
                self._now(),
                body=body,
                content_type=content_type,
                extra_headers=extra_headers,
            )
        finally:
            self._flush()

    def options(
        self,
        target: str | URI,
        *,
        from_uri: str,
        destination: Address | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        auth: Credentials | None = None,
    ) -> str:
        """:meth:`UserAgent.options`; returns the request id."""
        try:
            return self.ua.options(
                target,
                self._now(),
                from_uri=from_uri,
                destination=destination,
                extra_headers=extra_headers,
                auth=auth,
            )
        finally:
            self._flush()

    def ring(
        self,
        leg_id: str,
        *,
        status: int = 180,
        body: bytes = b"",
        content_type: str = "application/sdp",
    ) -> bool:
        """:meth:`UserAgent.ring`."""
        try:
            return self.ua.ring(
                leg_id, self._now(), status=status, body=body, content_type=content_type
            )
        finally:
            self._flush()

    def accept(
        self,
        leg_id: str,
        *,
        body: bytes = b"",
        content_type: str = "application/sdp",
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """:meth:`UserAgent.accept`."""
        try:
            return self.ua.accept(
                leg_id,
                self._now(),
                body=body,
                content_type=content_type,
                extra_headers=extra_headers,
            )
        finally:
            self._flush()

    def reject(
        self,
        leg_id: str,
        status: int = 486,
        *,
        reason: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """:meth:`UserAgent.reject`."""
        try:
            return self.ua.reject(
                leg_id, self._now(), status, reason=reason, extra_headers=extra_headers
            )
        finally:
            self._flush()

    def answer_reinvite(
        self,
        leg_id: str,
        *,
        status: int = 200,
        body: bytes = b"",
        content_type: str = "application/sdp",
        reason: str | None = None,
    ) -> bool:
        """:meth:`UserAgent.answer_reinvite`."""
        try:
            return self.ua.answer_reinvite(
                leg_id,
                self._now(),
                status=status,
                body=body,
                content_type=content_type,
                reason=reason,
            )
        finally:
            self._flush()

    def call_state(self, leg_id: str) -> CallState:
        """:meth:`UserAgent.call_state`."""
        return self.ua.call_state(leg_id)

    # ------------------------------------------------------------------ events

    async def next_event(self) -> Event:
        """The next event (waits for one). Not available with ``on_event``."""
        if self._skipped:
            return self._skipped.popleft()
        return await self._queue.get()

    def __aiter__(self) -> SipEndpoint:
        return self

    async def __anext__(self) -> Event:
        return await self.next_event()

    async def wait_for(
        self,
        event_type: type[E],
        *,
        leg_id: str | None = None,
        request_id: str | None = None,
    ) -> E:
        """Wait for the next event of ``event_type`` (for ``leg_id`` / ``request_id`` when
        given). Other events stay queued, in order, for later calls. Bound the wait with
        ``asyncio.timeout()``."""

        def matches(event: Event) -> bool:
            if not isinstance(event, event_type):
                return False
            if leg_id is not None and (not isinstance(event, CallEvent) or event.leg_id != leg_id):
                return False
            return request_id is None or (
                isinstance(event, RequestCompleted) and event.request_id == request_id
            )

        for index, event in enumerate(self._skipped):
            if matches(event):
                del self._skipped[index]
                return event  # type: ignore[return-value]  # matches() checked the type
        while True:
            event = await self._queue.get()
            if matches(event):
                return event  # type: ignore[return-value]
            self._skipped.append(event)

    def _deliver(self, event: Event) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                self.stats.internal_errors += 1
                _log.exception("on_event handler failed on %r", event)
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.stats.events_dropped += 1
            _log.error("SIP event queue full: dropped %r", event)

    # ------------------------------------------------------------------ driving the UA

    def _flush(self) -> None:
        """Send what the UA has to send, deliver its events, re-arm the timer."""
        if self._flushing or self._ua is None or self._closed:
            return
        ua = self._ua
        self._flushing = True
        try:
            while True:
                now = self._now()
                datagrams = ua.datagrams_to_send(now)
                for data, addr in datagrams:
                    self._send(data, addr)
                event = ua.next_event()
                if event is None and not datagrams:
                    break
                while event is not None:
                    self._deliver(event)  # may call back into the endpoint: loop again
                    event = ua.next_event()
        finally:
            self._flushing = False
        self._rearm()

    def _rearm(self) -> None:
        assert self._loop is not None and self._ua is not None
        timer_at = self._ua.get_timer()
        if timer_at is None:
            return  # an armed timer that fires with nothing due is harmless
        # Only move the timer earlier: a later deadline is handled when the armed one fires,
        # which keeps call_at/cancel churn off the per-message path.
        if self._timer is not None and self._timer_at is not None and self._timer_at <= timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = timer_at
        self._timer = self._loop.call_at(timer_at, self._on_timer)

    def _on_timer(self) -> None:
        assert self._ua is not None
        timer_at = self._timer_at if self._timer_at is not None else 0.0
        self._timer = None
        self._timer_at = None
        now = max(timer_at, self._now())
        try:
            self._ua.handle_timer(now)
        except Exception:
            self.stats.internal_errors += 1
            _log.exception("SIP timer handling failed")
        self._flush()

    def _datagram_received(self, data: bytes, addr: Address) -> None:
        self.stats.datagrams_received += 1
        ua = self._ua
        assert ua is not None
        # The core only counts what it drops (no logging there); the counters tell us here.
        malformed, unmatched = ua.stats.malformed, ua.stats.unmatched_responses
        try:
            ua.receive_datagram(data, addr, self._now())
        except Exception:
            self.stats.internal_errors += 1
            _log.exception("SIP datagram from %s:%s could not be handled", *addr)
        if ua.stats.malformed != malformed or ua.stats.unmatched_responses != unmatched:
            self._log_dropped(addr, data, malformed, unmatched)
        self._flush()

    def _log_dropped(self, addr: Address, data: bytes, malformed: int, unmatched: int) -> None:
        """Log at debug what the UA refused since it had counted ``malformed`` and
        ``unmatched`` (responses matching no transaction): a peer sending garbage is the
        operator's to find, but never worth more than a debug line each."""
        assert self._ua is not None
        stats = self._ua.stats
        if stats.malformed != malformed:
            _log.debug(
                "malformed SIP message from %s:%s (%d bytes, starts %r): "
                "answered 400 when it was an answerable request, else dropped",
                addr[0],
                addr[1],
                len(data),
                data[:_LOGGED_BYTES],
            )
        if stats.unmatched_responses != unmatched:
            _log.debug(
                "SIP response from %s:%s matches no transaction, dropped (starts %r)",
                addr[0],
                addr[1],
                data[:_LOGGED_BYTES],
            )

    def _stream_received(
        self, conn: _TcpProtocol, parser: StreamParser, data: bytes, addr: Address
    ) -> None:
        assert self._ua is not None
        try:
            parser.feed(data)
            while (message := parser.next_message()) is not None:
                self.stats.datagrams_received += 1
                stats = self._ua.stats
                malformed, unmatched = stats.malformed, stats.unmatched_responses
                try:
                    self._ua.receive_message(message, addr, self._now())
                except Exception:
                    self.stats.internal_errors += 1
                    _log.exception("SIP message from %s:%s could not be handled", *addr)
                if stats.malformed != malformed or stats.unmatched_responses != unmatched:
                    self._log_dropped(addr, bytes(message), malformed, unmatched)
        except ParseError as error:
            # A stream cannot be resynchronised after garbage: drop the connection.
            self.stats.tcp_framing_errors += 1
            _log.debug("closing TCP connection from %s:%s: %s", addr[0], addr[1], error)
            conn.close()
        self._flush()

    # ------------------------------------------------------------------ name resolution

    def _send(self, data: bytes, addr: Address) -> None:
        """Send to ``addr``, resolving its host first when it is a name (see the module doc)."""
        host = addr[0]
        if _is_ip_literal(host):
            self._send_to_address(data, addr, addr)
            return
        waiting = self._resolving.get(host)
        if waiting is not None:
            waiting.append((data, addr))
            return
        cached = self._dns_cache.get(host)
        if cached is not None and cached[1] > self._now():
            address = cached[0]
            if address is None:
                self.stats.send_errors += 1
                self._report_unreachable_soon([addr])
            else:
                self._send_to_address(data, (address, addr[1]), addr)
            return
        self._resolving[host] = [(data, addr)]
        self.stats.dns_lookups += 1
        assert self._loop is not None
        task = self._loop.create_task(self._resolve(host))
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _resolve(self, host: str) -> None:
        assert self._loop is not None
        # Stay in the socket's family: an IPv4 socket cannot send to an AAAA answer. An IPv6
        # socket also reaches IPv4-only names through v4-mapped addresses.
        flags = socket.AI_V4MAPPED if self._family == socket.AF_INET6 else 0
        socktype = socket.SOCK_STREAM if self._udp is None else socket.SOCK_DGRAM
        address: str | None = None
        try:
            async with asyncio.timeout(DNS_TIMEOUT):
                infos = await self._loop.getaddrinfo(
                    host, None, family=self._family, type=socktype, flags=flags
                )
            if infos:
                address = str(infos[0][4][0])
        except (OSError, ValueError) as error:
            # gaierror, TimeoutError (both OSError) and UnicodeError (a ValueError, for a name
            # that cannot be IDNA-encoded) all mean the same to SIP: the host is unreachable.
            _log.warning("cannot resolve SIP host %s: %s", host, str(error) or type(error).__name__)
        now = self._now()
        self._dns_cache[host] = (address, now + (DNS_CACHE_TTL if address else DNS_NEGATIVE_TTL))
        self._dns_cache.move_to_end(host)
        while len(self._dns_cache) > DNS_CACHE_SIZE:
            self._dns_cache.popitem(last=False)
        waiting = self._resolving.pop(host, [])
        if self._closed or self._ua is None:
            return
        if address is None:
            self.stats.dns_failures += 1
            self.stats.send_errors += len(waiting)
            self._report_unreachable(list(dict.fromkeys(origin for _, origin in waiting)))
            return
        for data, origin in waiting:
            self._send_to_address(data, (address, origin[1]), origin)
        self._flush()

    def _report_unreachable_soon(self, destinations: list[Address]) -> None:
        # Deferred: _send runs inside _flush, often inside the application call that created
        # the transaction, whose id the application must get before the failure event.
        assert self._loop is not None
        self._loop.call_soon(self._report_unreachable, destinations)

    def _report_unreachable(self, destinations: list[Address]) -> None:
        if self._closed or self._ua is None:
            return
        now = self._now()
        for destination in destinations:
            try:
                self._ua.transport_error(destination, now)
            except Exception:
                self.stats.internal_errors += 1
                _log.exception("SIP transport error for %s:%s failed", *destination)
        self._flush()

    # ------------------------------------------------------------------ transports

    def _send_to_address(self, data: bytes, addr: Address, origin: Address) -> None:
        """Send to the IP address ``addr``; ``origin`` is the destination the UA used."""
        if self._udp is not None:
            try:
                self._udp.sendto(data, addr)
                self.stats.datagrams_sent += 1
            except (OSError, ValueError) as error:
                self.stats.send_errors += 1
                _log.debug("UDP send to %s:%s failed: %s", addr[0], addr[1], error)
            return
        conn = self._connections.get(addr)
        if conn is not None:
            conn.write(data)
            self.stats.datagrams_sent += 1
            return
        if origin != addr:
            self._connect_origins.setdefault(addr, set()).add(origin)
        pending = self._connecting.get(addr)
        if pending is not None:
            pending.append(data)
            return
        self._connecting[addr] = [data]
        assert self._loop is not None
        task = self._loop.create_task(self._connect(addr))
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _connect(self, addr: Address) -> None:
        assert self._loop is not None
        try:
            await self._loop.create_connection(lambda: _TcpProtocol(self, addr), addr[0], addr[1])
        except OSError as error:
            pending = self._connecting.pop(addr, [])
            origins = self._connect_origins.pop(addr, set())
            self.stats.send_errors += len(pending)
            _log.debug("TCP connect to %s:%s failed: %s", addr[0], addr[1], error)
            self._report_unreachable([addr, *sorted(origins)])

    def _tcp_connected(self, remote: Address, conn: _TcpProtocol) -> None:
        self.stats.tcp_connections += 1
        self._connections[remote] = conn
        self._connect_origins.pop(remote, None)
        for data in self._connecting.pop(remote, []):
            conn.write(data)
            self.stats.datagrams_sent += 1

    def _tcp_lost(self, remote: Address, conn: _TcpProtocol) -> None:
        if self._connections.get(remote) is conn:
            del self._connections[remote]


def _is_ip_literal(host: str) -> bool:
    """True for an IPv4 or IPv6 address (the UA removes IPv6 brackets), False for a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
