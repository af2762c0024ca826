"""Issue 10, acceptance 1: press-1-to-accept with a real softphone (pjsua2) as the rep.

Two reps are rung in parallel on a press-1 plan: a SIPp "voicemail" box that answers at once
and never sends a digit, and a pjsua2 softphone in its own process (DESIGN §8,
``tests/support/pjsua2_peer.py``) that answers 2 s later, records what it hears, and presses
1 (RFC 4733) once the prompt is over. The voicemail leg is hung up when its accept timeout
passes and does not win; the softphone's recording has the prompt's duration and energy, and
it ends bridged to a SIPp prospect.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import socket
import struct
import sys
import wave
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from dialer.calls import BridgeSettings
from dialer.calls.controller import CallController, ControllerSettings, default_accept_prompt
from dialer.calls.outcome import CallEvent, CallEventKind, CallResult, LegResult
from dialer.config import TrunkConfig
from dialer.domain import LeadContext, RingMode, RingPlan, RingTarget
from dialer.sipp import SippError, SippPeer, SippProcess, free_port, scenario_path
from sip.aio.rtp import RtpEngineConfig
from tests.support.sipp import needs_sipp

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.slow,
    needs_sipp,
    pytest.mark.skipif(
        importlib.util.find_spec("pjsua2") is None,
        reason="pjsua2-python is not installed (pip install pjsua2-python; DESIGN §8)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
CALL_TIMEOUT_S = 25.0
#: The softphone answers this long after the INVITE, so that the voicemail box (answering at
#: once) reaches its accept timeout first.
PJSUA_ANSWER_AFTER_S = 2.0
#: Frames quieter than this (16-bit RMS, about -50 dBFS) count as silence.
SILENCE_RMS = 100.0
FRAME_S = 0.02


def frame_rms(samples: Sequence[int], rate: int) -> list[float]:
    size = int(rate * FRAME_S)
    return [
        math.sqrt(sum(s * s for s in samples[i : i + size]) / size)
        for i in range(0, len(samples) - size + 1, size)
    ]


def audible(samples: Sequence[int], rate: int) -> tuple[float, float]:
    """(seconds from the first to the last audible frame, RMS dB of the audible frames)."""
    levels = frame_rms(samples, rate)
    loud = [i for i, level in enumerate(levels) if level > SILENCE_RMS]
    assert loud, "no audio at all"
    span = (loud[-1] - loud[0] + 1) * FRAME_S
    active = [levels[i] for i in loud]
    energy = math.sqrt(sum(level * level for level in active) / len(active))
    return span, 20 * math.log10(energy)


def read_wav(path: Path) -> tuple[list[int], int]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2 and wav.getnchannels() == 1
        rate = wav.getframerate()
        data = wav.readframes(wav.getnframes())
    return list(struct.unpack(f"<{len(data) // 2}h", data)), rate


def free_even_udp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port % 2 == 0 and port < 65000:
            return port
    raise AssertionError("no even UDP port found")


async def start_sipp(stack: AsyncExitStack, peer: SippPeer) -> SippProcess:
    for attempt in range(3):
        try:
            return await stack.enter_async_context(SippProcess(peer))
        except SippError as error:
            if "Address already in use" not in str(error) or attempt == 2:
                raise
    raise AssertionError("unreachable")


async def test_softphone_hears_the_prompt_presses_1_and_is_bridged_voicemail_is_not(
    tmp_path: Path,
) -> None:
    prompt = default_accept_prompt()
    recording = tmp_path / "rep.wav"
    sip_port = free_port()
    # The voicemail box times out before the softphone presses 1, the softphone presses in
    # time: answer + prompt + 0.4 s < answer + accept timeout.
    dtmf_after = prompt.duration + 0.4
    accept_timeout = prompt.duration + 1.4
    async with AsyncExitStack() as stack:
        softphone = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.pjsua2_peer",
            "--sip-port",
            str(sip_port),
            "--rtp-port",
            str(free_even_udp_port()),
            "--record",
            str(recording),
            "--answer-after",
            str(PJSUA_ANSWER_AFTER_S),
            "--dtmf",
            "1",
            "--dtmf-after",
            f"{dtmf_after:.2f}",
            "--max-seconds",
            str(CALL_TIMEOUT_S),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stack.push_async_callback(_stop, softphone)
        assert softphone.stdout is not None
        async with asyncio.timeout(10):
            while (line := await softphone.stdout.readline()) and line.strip() != b"READY":
                pass
        assert line.strip() == b"READY", "pjsua2 peer did not start"

        voicemail = await start_sipp(
            stack,
            SippPeer(
                scenario=scenario_path("press1_rep_voicemail"),
                calls=1,
                timeout_s=CALL_TIMEOUT_S,
            ),
        )
        prospect = await start_sipp(
            stack,
            SippPeer(
                scenario=scenario_path("calls_prospect_answer_hangup"),
                pause_ms=1000,
                calls=1,
                timeout_s=CALL_TIMEOUT_S,
            ),
        )
        calls = CallController(
            trunks=[
                TrunkConfig(
                    name="primary",
                    proxy=f"sip:127.0.0.1:{prospect.local_port}",
                    options_interval_s=0,
                )
            ],
            settings=ControllerSettings(
                bridge=BridgeSettings(prospect_ring_timeout_s=10.0),
                rtp=RtpEngineConfig(host="127.0.0.1", ports=None),
            ),
        )
        await calls.start()
        stack.push_async_callback(calls.close)
        plan = RingPlan(
            targets=(
                RingTarget(rep_id="voicemail", uri=f"sip:vm@127.0.0.1:{voicemail.local_port}"),
                RingTarget(rep_id="softphone", uri=f"sip:rep@127.0.0.1:{sip_port}"),
            ),
            mode=RingMode.PARALLEL,
            ring_timeout_s=15.0,
            prospect_number="+15551230000",
            caller_id="+15550100000",
            lead=LeadContext(lead_id="lead-pj", phone="+15551230000", name="Pat", source="web"),
            accept="press1",
            accept_timeout_s=accept_timeout,
        )
        events: list[CallEvent] = []
        call = calls.start_call(plan, on_event=events.append)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            outcome = await call.wait_ended()
            out, err = await softphone.communicate()
        voicemail_result = await voicemail.wait(CALL_TIMEOUT_S)
        prospect_result = await prospect.wait(CALL_TIMEOUT_S)

    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert softphone.returncode == 0, err.decode()[-2000:]
    assert report["answered"] and report["dtmf_sent"] and report["disconnected"], report
    # The initial media plus the bridge re-INVITE.
    assert report["media_updates"] >= 2, report
    for result in (voicemail_result, prospect_result):
        assert result.exit_code == 0 and result.failed_calls == 0, result.summary()

    assert outcome.result is CallResult.COMPLETED, outcome
    assert outcome.winner_rep_id == "softphone"
    assert outcome.bridged_at is not None
    results = {record.rep_id: record.result for record in outcome.rep_legs}
    assert results == {"voicemail": LegResult.VOICEMAIL, "softphone": LegResult.ANSWERED}
    assert outcome.rep_voicemail == {"voicemail": 1}
    kinds = [e.kind for e in events]
    assert kinds.index(CallEventKind.REP_VOICEMAIL) < kinds.index(CallEventKind.REP_ANSWERED)

    # What the softphone heard: the prompt, at its length and level.
    samples, rate = read_wav(recording)
    heard_span, heard_db = audible(samples, rate)
    prompt_pcm = prompt.pcm()
    reference = list(struct.unpack(f"<{len(prompt_pcm) // 2}h", prompt_pcm))
    prompt_span, prompt_db = audible(reference, 8000)
    assert abs(heard_span - prompt_span) <= 0.2 * prompt_span, (heard_span, prompt_span)
    assert abs(heard_db - prompt_db) <= 3.0, (heard_db, prompt_db)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Stop the softphone if it is still running (only this process, by its pid)."""
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
