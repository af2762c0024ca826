"""Interop of our SIP stack (sip.aio.SipEndpoint) with SIPp, the peer of record.

Our UAC calls a SIPp UAS that answers, answers after early media, is busy, never answers (we
CANCEL), challenges us (401), or hangs up itself; and SIPp's UAC calls our UA. Every case runs
over UDP and TCP. Besides the events our side sees, each test checks what SIPp recorded: one
successful call, no failed call, no unexpected message and no retransmission in either
direction (on loopback any retransmission means a late or missing message).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dialer.sipp import SippPeer, SippProcess, SippResult, Transport
from sip.aio import SipEndpoint
from sip.auth import Credentials
from sip.config import SipConfig
from sip.events import (
    AckReceived,
    CallAnswered,
    CallProgress,
    CallRejected,
    CallTerminated,
    IncomingCall,
    TerminationCause,
)
from sip.sdp import Direction, SessionDescription, make_inactive_offer
from tests.support.sipp import needs_sipp, test_scenario

pytestmark = [pytest.mark.sipp, needs_sipp]

OFFER = make_inactive_offer("127.0.0.1", sess_id="4242").with_direction(Direction.SENDRECV)
ANSWER = OFFER.with_bumped_version()
#: Bound of every exchange with SIPp (each takes milliseconds on loopback).
STEP_S = 10.0


@pytest.fixture(params=[Transport.UDP, Transport.TCP], ids=["udp", "tcp"])
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def endpoint(transport: Transport) -> AsyncIterator[SipEndpoint]:
    config = SipConfig(transport="udp" if transport is Transport.UDP else "tcp")
    async with SipEndpoint(config) as sip:
        await sip.start("127.0.0.1", 0)
        yield sip
    assert sip.stats.internal_errors == 0
    assert sip.stats.events_dropped == 0
    if transport is Transport.TCP:
        # Every request and response of the test's call (INVITE, ACK, CANCEL, BYE, both ways)
        # went over the one connection: reused, never re-opened per transaction.
        assert sip.stats.tcp_connections == 1, sip.stats


def assert_clean(result: SippResult, *, successful: int = 1) -> None:
    """SIPp saw exactly the expected calls, nothing unexpected, nothing retransmitted."""
    detail = f"{result.summary()}\n{result.errors()[-3000:]}"
    # Without SIPp's per-message counts the zero checks below would check nothing.
    assert result.counts, detail
    assert result.exit_code == 0, detail
    assert result.successful_calls == successful, detail
    assert result.failed_calls == 0, detail
    assert result.unexpected_messages == 0, detail
    assert result.retransmissions_sent == 0, detail
    assert result.retransmissions_received == 0, detail
    assert result.out_of_call_messages == 0, detail
    assert result.dead_call_messages == 0, detail


def uas(scenario: str, transport: Transport, tmp_path: Path, **options: object) -> SippProcess:
    peer = SippPeer(
        scenario=scenario,
        transport=transport,
        calls=1,
        timeout_s=20,
        workdir=tmp_path / "sipp",
        **options,  # type: ignore[arg-type]
    )
    return SippProcess(peer)


def target(sipp: SippProcess) -> str:
    host, port = sipp.address
    return f"sip:service@{host}:{port}"


def call(endpoint: SipEndpoint, sipp: SippProcess, *, auth: Credentials | None = None) -> str:
    return endpoint.invite(
        target(sipp),
        from_uri="sip:dialer@127.0.0.1",
        from_display="Dialer Test",
        body=OFFER.serialize(),
        auth=auth,
    )


async def hang_up(endpoint: SipEndpoint, leg: str) -> None:
    assert endpoint.bye(leg)
    ended = await endpoint.wait_for(CallTerminated, leg_id=leg)
    assert ended.cause is TerminationCause.LOCAL_BYE
    assert ended.status == 200


# -- our UAC -> SIPp UAS ---------------------------------------------------------------------


async def test_call_answered(endpoint: SipEndpoint, transport: Transport, tmp_path: Path) -> None:
    async with uas("uas_answer", transport, tmp_path, pause_ms=20) as sipp:
        async with asyncio.timeout(STEP_S):
            leg = call(endpoint, sipp)
            ringing = await endpoint.wait_for(CallProgress, leg_id=leg)
            assert ringing.status == 180
            answered = await endpoint.wait_for(CallAnswered, leg_id=leg)
            assert answered.status == 200
            assert not answered.needs_ack
            answer = SessionDescription.parse(answered.body)
            assert answer.media_address(0)[0] == "127.0.0.1"
            await hang_up(endpoint, leg)
        result = await sipp.wait(STEP_S)
    assert_clean(result)
    log = result.messages()
    assert "ACK sip:" in log
    assert "BYE sip:" in log
    assert OFFER.serialize().decode() in log.replace("\n", "\r\n")


async def test_call_answered_after_early_media(
    endpoint: SipEndpoint, transport: Transport, tmp_path: Path
) -> None:
    async with uas("uas_early_media", transport, tmp_path, pause_ms=20) as sipp:
        async with asyncio.timeout(STEP_S):
            leg = call(endpoint, sipp)
            ringing = await endpoint.wait_for(CallProgress, leg_id=leg)
            early = await endpoint.wait_for(CallProgress, leg_id=leg)
            assert (ringing.status, early.status) == (180, 183)
            assert SessionDescription.parse(early.body).media[0].media == "audio"
            answered = await endpoint.wait_for(CallAnswered, leg_id=leg)
            assert answered.status == 200
            await hang_up(endpoint, leg)
        result = await sipp.wait(STEP_S)
    assert_clean(result)


async def test_busy(endpoint: SipEndpoint, transport: Transport, tmp_path: Path) -> None:
    async with uas("uas_busy", transport, tmp_path) as sipp:
        async with asyncio.timeout(STEP_S):
            leg = call(endpoint, sipp)
            rejected = await endpoint.wait_for(CallRejected, leg_id=leg)
            assert rejected.status == 486
            assert rejected.response is not None
        result = await sipp.wait(STEP_S)
    assert_clean(result)
    assert "ACK sip:" in result.messages()


async def test_no_answer_then_cancel(
    endpoint: SipEndpoint, transport: Transport, tmp_path: Path
) -> None:
    async with uas("uas_ring_no_answer", transport, tmp_path) as sipp:
        async with asyncio.timeout(STEP_S):
            leg = call(endpoint, sipp)
            ringing = await endpoint.wait_for(CallProgress, leg_id=leg)
            assert ringing.status == 180
            assert endpoint.cancel(leg)
            rejected = await endpoint.wait_for(CallRejected, leg_id=leg)
            assert rejected.status == 487
        result = await sipp.wait(STEP_S)
    assert_clean(result)
    log = result.messages()
    assert "CANCEL sip:" in log
    assert "SIP/2.0 487 Request Terminated" in log


async def test_digest_challenge_answered(
    endpoint: SipEndpoint, transport: Transport, tmp_path: Path
) -> None:
    async with uas("uas_auth", transport, tmp_path) as sipp:
        async with asyncio.timeout(STEP_S):
            leg = call(endpoint, sipp, auth=Credentials("dialer", "secret"))
            answered = await endpoint.wait_for(CallAnswered, leg_id=leg)
            assert answered.status == 200
            await hang_up(endpoint, leg)
        result = await sipp.wait(STEP_S)
    assert_clean(result)  # SIPp's <verifyauth> accepted our Authorization
    log = result.messages()
    assert "Authorization: Digest" in log
    assert "qop=auth" in log


async def test_digest_with_wrong_password_is_rejected(
    endpoint: SipEndpoint, transport: Transport, tmp_path: Path
) -> None:
    async with uas("uas_auth", transport, tmp_path) as sipp:
        async with asyncio.timeout(STEP_S):
            leg = call(endpoint, sipp, auth=Credentials("dialer", "wrong"))
            rejected = await endpoint.wait_for(CallRejected, leg_id=leg)
            assert rejected.status == 403
        result = await sipp.wait(STEP_S)
    assert result.failed_calls == 1, result.summary()
    assert result.successful_calls == 0
    assert result.unexpected_messages == 0, result.errors()


async def test_remote_hangs_up(endpoint: SipEndpoint, transport: Transport, tmp_path: Path) -> None:
    async with uas("uas_answer_then_bye", transport, tmp_path, pause_ms=50) as sipp:
        async with asyncio.timeout(STEP_S):
            leg = call(endpoint, sipp)
            await endpoint.wait_for(CallAnswered, leg_id=leg)
            ended = await endpoint.wait_for(CallTerminated, leg_id=leg)
            assert ended.cause is TerminationCause.REMOTE_BYE
        result = await sipp.wait(STEP_S)
    assert_clean(result)


# -- SIPp UAC -> our UA ----------------------------------------------------------------------


def uac(scenario: str, endpoint: SipEndpoint, transport: Transport, tmp_path: Path) -> SippProcess:
    return SippProcess(
        SippPeer(
            scenario=test_scenario(scenario),
            remote=endpoint.address,
            transport=transport,
            calls=1,
            pause_ms=50,
            timeout_s=20,
            service="rep",
            workdir=tmp_path / "sipp",
        )
    )


async def test_sipp_calls_us_and_hangs_up(
    endpoint: SipEndpoint, transport: Transport, tmp_path: Path
) -> None:
    async with uac("uac_call", endpoint, transport, tmp_path) as sipp:
        async with asyncio.timeout(STEP_S):
            incoming = await endpoint.wait_for(IncomingCall)
            assert incoming.request_uri.startswith("sip:rep@127.0.0.1")
            offer = SessionDescription.parse(incoming.body)
            assert offer.media_direction() is Direction.SENDRECV
            endpoint.ring(incoming.leg_id)
            endpoint.accept(incoming.leg_id, body=ANSWER.serialize())
            await endpoint.wait_for(AckReceived, leg_id=incoming.leg_id)
            ended = await endpoint.wait_for(CallTerminated, leg_id=incoming.leg_id)
            assert ended.cause is TerminationCause.REMOTE_BYE
        result = await sipp.wait(STEP_S)
    assert_clean(result)
    log = result.messages()
    assert "SIP/2.0 180" in log
    assert "SIP/2.0 200" in log


async def test_sipp_calls_us_and_we_hang_up(
    endpoint: SipEndpoint, transport: Transport, tmp_path: Path
) -> None:
    async with uac("uac_remote_bye", endpoint, transport, tmp_path) as sipp:
        async with asyncio.timeout(STEP_S):
            incoming = await endpoint.wait_for(IncomingCall)
            endpoint.accept(incoming.leg_id, body=ANSWER.serialize())
            await endpoint.wait_for(AckReceived, leg_id=incoming.leg_id)
            await hang_up(endpoint, incoming.leg_id)
        result = await sipp.wait(STEP_S)
    assert_clean(result)
