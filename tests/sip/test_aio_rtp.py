"""The RTP adapter over real loopback UDP sockets: two sessions exchange a prompt and an
RFC 4733 digit, symmetric RTP, the INFO fallback, port ranges, the shared pacer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sip.aio.rtp import RtpEngine, RtpEngineConfig, RtpPortsExhaustedError
from sip.dtmf import DtmfDigit, DtmfSource
from sip.g711 import Codec
from sip.prompt import Prompt
from sip.rtp import RtpPacket, make_audio_offer

LOOPBACK = RtpEngineConfig(ports=None)
#: 0.4 s of audio whose every 20 ms frame is different, so the test can tell frames apart.
PROMPT = Prompt(
    name="test", codec=Codec.PCMU, audio=b"".join(bytes([i + 1]) * 160 for i in range(20))
)


@pytest.mark.parametrize("shared_pacer", [True, False], ids=["shared-timer", "timer-per-stream"])
async def test_two_sessions_exchange_a_prompt_and_a_digit(shared_pacer: bool) -> None:
    config = RtpEngineConfig(ports=None, shared_pacer=shared_pacer)
    heard: list[RtpPacket] = []
    async with RtpEngine(config) as daemon, RtpEngine(config) as phone:
        leg = await daemon.open_stream()
        softphone = await phone.open_stream(on_packet=heard.append, comfort_silence=False)
        leg.apply_answer(softphone.offer())
        softphone.apply_answer(leg.offer())
        async with asyncio.timeout(5):
            leg.play(PROMPT)
            await leg.wait_played()
            softphone.send_digit("1")
            digit = await leg.next_digit()
            await softphone.wait_played()
        assert digit.digit == "1"
        assert digit.source is DtmfSource.RTP
        audio = [p for p in heard if p.payload_type == 0]
        # The prompt arrives whole and in order, then comfort silence follows it.
        assert [p.payload for p in audio[:20]] == PROMPT.frames()
        assert all(p.payload == b"\xff" * 160 for p in audio[20:])
        assert [p.marker for p in audio[:2]] == [True, False]
        assert [p.sequence - audio[0].sequence for p in audio[:20]] == list(range(20))
        await asyncio.sleep(0.05)  # the last packets are still in flight when sent
        assert leg.session.receiver.stats.packets == 7  # 100 ms event: 4 updates + 3 ends
        assert leg.session.next_event() is None  # the repeated ends gave no second digit
        assert daemon.stats.internal_errors == phone.stats.internal_errors == 0


async def test_symmetric_rtp_sends_where_the_peer_really_is() -> None:
    heard: list[RtpPacket] = []
    async with RtpEngine(LOOPBACK) as daemon, RtpEngine(LOOPBACK) as phone:
        leg = await daemon.open_stream()
        softphone = await phone.open_stream(on_packet=heard.append, comfort_silence=False)
        # The answer claims a port nobody listens on (a NAT rewrote it, say).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
            placeholder.bind(("127.0.0.1", 0))
            wrong_port = placeholder.getsockname()[1]
        wrong = make_audio_offer("127.0.0.1", wrong_port, sess_id="1").serialize()
        leg.apply_answer(wrong)
        softphone.apply_answer(leg.offer())
        async with asyncio.timeout(5):
            softphone.send_digit("5")
            assert (await leg.next_digit()).digit == "5"
            assert leg.session.remote_address == softphone.local_address
            leg.play(PROMPT)
            await leg.wait_played()
            while len([p for p in heard if p.payload_type == 0]) < 20:
                await asyncio.sleep(0.01)


async def test_the_info_fallback_and_the_digit_callback() -> None:
    digits: list[DtmfDigit] = []
    async with RtpEngine(LOOPBACK) as engine:
        stream = await engine.open_stream(on_digit=digits.append)
        assert stream.receive_info("application/dtmf-relay", b"Signal=1\r\nDuration=160\r\n")
        assert not stream.receive_info("text/plain", b"1")
        assert [(d.digit, d.source) for d in digits] == [("1", DtmfSource.INFO)]


async def test_comfort_silence_keeps_flowing_after_the_prompt() -> None:
    heard: list[RtpPacket] = []
    async with RtpEngine(LOOPBACK) as daemon, RtpEngine(LOOPBACK) as phone:
        leg = await daemon.open_stream()
        softphone = await phone.open_stream(on_packet=heard.append, comfort_silence=False)
        leg.apply_answer(softphone.offer())
        async with asyncio.timeout(5):
            leg.play(PROMPT)
            await leg.wait_played()
            while len(heard) < 25:
                await asyncio.sleep(0.02)
        leg.stop_audio()
        assert heard[24].payload == b"\xff" * 160
        assert sum(p.marker for p in heard) == 1


def _even_free_port() -> tuple[socket.socket, int]:
    for _ in range(50):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        if port % 2 == 0 and port < 65530:
            return sock, port
        sock.close()
    raise RuntimeError("no even ephemeral port")


async def test_ports_come_from_the_range_and_busy_ones_are_skipped() -> None:
    held, port = _even_free_port()
    with held:
        async with RtpEngine(RtpEngineConfig(ports=(port, port))) as engine:
            with pytest.raises(RtpPortsExhaustedError):
                await engine.open_stream()
            assert engine.stats.ports_in_use == 1
        async with RtpEngine(RtpEngineConfig(ports=(port - 1, port + 4))) as engine:
            stream = await engine.open_stream()
            assert stream.local_address[1] in (port + 2, port + 4)  # even, not the held one
            await stream.close()
            assert engine.stats.streams_open == 0
    # Closing gave the port back.
    async with RtpEngine(RtpEngineConfig(ports=(port, port))) as engine:
        stream = await engine.open_stream()
        assert stream.local_address == ("127.0.0.1", port)
        offer = stream.offer()
        assert f"m=audio {port} RTP/AVP 0 8 101".encode() in offer


async def test_one_shared_timer_serves_many_streams() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink_port = sink.getsockname()[1]
    answer = make_audio_offer("127.0.0.1", sink_port, sess_id="9").serialize()
    with sink:
        async with RtpEngine(LOOPBACK) as engine:
            streams = [await engine.open_stream(comfort_silence=False) for _ in range(20)]
            for stream in streams:
                stream.apply_answer(answer)
            for stream in streams:
                stream.play(PROMPT)
            async with asyncio.timeout(5):
                await asyncio.gather(*(stream.wait_played() for stream in streams))
            assert engine.stats.datagrams_sent == 20 * 20
            # Streams due together are served by one wake-up: far fewer than one per packet
            # (a timer per stream would wake up 400 times).
            assert engine.stats.timer_wakeups <= engine.stats.datagrams_sent // 4


async def test_a_failing_session_stops_its_stream_not_the_loop() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    answer = make_audio_offer("127.0.0.1", sink.getsockname()[1], sess_id="9").serialize()
    with sink:
        async with RtpEngine(LOOPBACK) as engine:
            broken = await engine.open_stream(comfort_silence=False)
            healthy = await engine.open_stream(comfort_silence=False)
            for stream in (broken, healthy):
                stream.apply_answer(answer)
            broken.play_frames([b"\xff" * 160])
            broken.session.sender.packets_due = None  # type: ignore[assignment,method-assign]
            healthy.play(PROMPT)
            async with asyncio.timeout(5):
                await healthy.wait_played()
            assert broken.failed
            assert engine.stats.internal_errors == 1
            assert engine.stats.datagrams_sent == 20
