"""The asyncio adapter over real loopback sockets (UDP and TCP, port 0)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from sip.aio import SipEndpoint
from sip.config import SipConfig
from sip.events import (
    AckReceived,
    CallAnswered,
    CallTerminated,
    IncomingCall,
    RequestCompleted,
    TerminationCause,
)
from sip.message import Response, parse_message

OFFER = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
ANSWER = OFFER.replace(b"1 1", b"2 2")


def fast(transport: str = "udp") -> SipConfig:
    """Short timers keep the adapter tests fast; the protocol logic is the same."""
    return SipConfig(transport=transport, t1=0.05, t2=0.4, t4=0.5, timer_d_unreliable=0.5)


async def _call_and_hang_up(transport: str) -> None:
    config = fast(transport)
    async with SipEndpoint(config) as caller, SipEndpoint(config) as callee:
        await caller.start("127.0.0.1", 0)
        host, port = await callee.start("127.0.0.1", 0)
        async with asyncio.timeout(5):
            leg = caller.invite(
                f"sip:rep@{host}:{port}", from_uri="sip:dialer@127.0.0.1", body=OFFER
            )
            incoming = await callee.wait_for(IncomingCall)
            assert incoming.body == OFFER
            callee.ring(incoming.leg_id)
            callee.accept(incoming.leg_id, body=ANSWER)
            answered = await caller.wait_for(CallAnswered, leg_id=leg)
            assert answered.body == ANSWER
            assert not answered.needs_ack
            await callee.wait_for(AckReceived, leg_id=incoming.leg_id)
            assert caller.bye(leg)
            ended = await caller.wait_for(CallTerminated, leg_id=leg)
            assert ended.cause is TerminationCause.LOCAL_BYE
            assert ended.status == 200
            remote = await callee.wait_for(CallTerminated, leg_id=incoming.leg_id)
            assert remote.cause is TerminationCause.REMOTE_BYE
        assert caller.stats.internal_errors == 0
        assert callee.stats.internal_errors == 0


async def test_udp_call_invite_answer_ack_bye() -> None:
    await _call_and_hang_up("udp")


async def test_tcp_call_invite_answer_ack_bye() -> None:
    await _call_and_hang_up("tcp")


async def test_garbage_datagram_is_answered_or_dropped_and_endpoint_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sip.aio")
    config = fast()
    async with SipEndpoint(config) as endpoint:
        host, port = await endpoint.start("127.0.0.1", 0)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendto(sock, b"\x00\xffnot sip at all\r\n\r\n", (host, port))
            # A request with a broken Max-Forwards but every header needed to answer it: 400.
            bad = (
                b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad\r\n"
                b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n"
                b"Call-ID: bad@x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: many\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            await loop.sock_sendto(sock, bad, (host, port))
            async with asyncio.timeout(5):
                data = await loop.sock_recv(sock, 65535)
            response = parse_message(data)
            assert isinstance(response, Response)
            assert response.status == 400
            assert response.call_id == "bad@x"
            assert response.to.tag  # RFC 3261 §8.2.6.2: the UAS adds a To tag
        finally:
            sock.close()
        assert endpoint.ua.stats.malformed == 2
        # Each is logged at debug (DESIGN §3: "logged and answered with 400").
        logged = [r.getMessage() for r in caplog.records if r.name == "sip.aio"]
        assert sum(m.startswith("malformed SIP message from 127.0.0.1:") for m in logged) == 2
        assert any("b'\\x00\\xffnot sip at all" in m for m in logged), logged
        # Still alive: an OPTIONS to ourselves completes.
        async with asyncio.timeout(5):
            request_id = endpoint.options(f"sip:{host}:{port}", from_uri="sip:probe@127.0.0.1")
            done = await endpoint.wait_for(RequestCompleted, request_id=request_id)
        assert done.status == 200
        assert endpoint.stats.internal_errors == 0


async def test_tcp_connect_failure_rejects_the_call_with_503() -> None:
    config = fast("tcp")
    # A port nobody listens on: bind a socket, note its port, close it.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_port = probe.getsockname()[1]
    probe.close()
    async with SipEndpoint(config) as caller:
        await caller.start("127.0.0.1", 0)
        async with asyncio.timeout(5):
            from sip.events import CallRejected

            leg = caller.invite(f"sip:x@127.0.0.1:{dead_port}", from_uri="sip:d@127.0.0.1")
            rejected = await caller.wait_for(CallRejected, leg_id=leg)
        assert rejected.status == 503
        assert rejected.response is None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_start_returns_bound_port(transport: str) -> None:
    async with SipEndpoint(SipConfig(transport=transport)) as endpoint:
        host, port = await endpoint.start("127.0.0.1", 0)
        assert host == "127.0.0.1"
        assert port > 0
        assert endpoint.address == (host, port)


async def test_on_event_callback_can_drive_the_endpoint() -> None:
    """Events delivered synchronously may call back into the endpoint (re-entrancy)."""
    config = fast()
    seen: list[str] = []
    callee: SipEndpoint

    def answer(event: object) -> None:
        seen.append(type(event).__name__)
        if isinstance(event, IncomingCall):
            callee.accept(event.leg_id, body=ANSWER)

    callee = SipEndpoint(config, on_event=answer)
    async with callee, SipEndpoint(config) as caller:
        await caller.start("127.0.0.1", 0)
        host, port = await callee.start("127.0.0.1", 0)
        async with asyncio.timeout(5):
            leg = caller.invite(f"sip:rep@{host}:{port}", from_uri="sip:d@127.0.0.1", body=OFFER)
            await caller.wait_for(CallAnswered, leg_id=leg)
            caller.hangup(leg)
            await caller.wait_for(CallTerminated, leg_id=leg)
            while "CallTerminated" not in seen:
                await asyncio.sleep(0.01)
        assert seen == ["IncomingCall", "AckReceived", "CallTerminated"]
