"""The console's Decline: ``Call.cancel_rep`` against real SIPp reps, and ``Pipeline.decline``.

A rep whose phone rings declines: their leg gets a CANCEL (RFC 3326 ``Reason`` 603) and the
plan goes on (a sequential plan rings the next rep at once, long before the ring timeout). A
press-1 rep who picked up and has not pressed a key yet is hung up (BYE) as declined.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import pytest

from dialer.calls import BridgeSettings, CallEvent, CallEventKind, CallResult, LegResult
from dialer.calls.controller import Call, CallController, ControllerSettings
from dialer.calls.ringing import REASON_DECLINED
from dialer.config import TrunkConfig
from dialer.domain import LeadStatus, RingMode
from dialer.pipeline import DeclinableCall
from sip.aio.rtp import RtpEngineConfig
from tests.dialer.test_calls_sipp import (
    assert_ok,
    controller,
    ended,
    make_plan,
    methods_received,
    peer,
    received,
    results,
    running,
    start_sipp,
)
from tests.dialer.test_pipeline import floor
from tests.support.pipeline import prospect_scenario, read_trace, rep_scenario
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.sipp, needs_sipp]

#: Longer than the whole test may take: only a working decline moves these calls on.
LONG_S = 15.0
#: Bound on waiting for one call event.
EVENT_TIMEOUT_S = 5.0


async def wait_for(events: list[CallEvent], match: Callable[[CallEvent], bool]) -> CallEvent:
    """The first event matching ``match``, waiting (bounded) for it to arrive."""
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while True:
            for event in events:
                if match(event):
                    return event
            await asyncio.sleep(0.01)


async def test_declined_ringing_leg_is_cancelled_and_the_next_rep_rings() -> None:
    async with running(
        peer("uas_ring_no_answer"),
        peer("calls_rep_answer", pause_ms=200),
        peer("calls_prospect_answer_hangup", pause_ms=100),
    ) as (rep1, rep2, prospect):
        async with controller(prospect) as calls:
            plan = make_plan([rep1, rep2], mode=RingMode.SEQUENTIAL, ring_timeout_s=LONG_S)
            events: list[CallEvent] = []
            call = calls.start_call(plan, on_event=events.append)
            assert isinstance(call, DeclinableCall)
            await wait_for(events, lambda e: e.kind is CallEventKind.REP_RINGING)
            assert call.cancel_rep("nobody") is False
            assert call.cancel_rep("rep1") is True
            assert call.cancel_rep("rep1") is False  # already cancelling
            outcome = await ended(call)
        r1, r2, rp = await results([rep1, rep2, prospect])

    for result in (r1, r2, rp):
        assert_ok(result)
    (cancel,) = received(r1, "CANCEL")
    assert cancel.header("Reason") == REASON_DECLINED
    assert outcome.result is CallResult.COMPLETED
    assert outcome.winner_rep_id == "rep2"
    first, second = outcome.rep_legs
    assert (first.result, first.final_status) == (LegResult.DECLINED, 487)
    # The plan went on at the decline, not at rep1's ring timeout.
    assert first.cancelled_at is not None and second.invite_sent_at is not None
    assert second.invite_sent_at - first.cancelled_at < LONG_S
    assert second.result is LegResult.ANSWERED
    assert call.cancel_rep("rep2") is False  # the winner is not declined afterwards


async def test_declined_press1_leg_waiting_for_its_key_is_hung_up() -> None:
    async with AsyncExitStack() as stack:
        rep = await start_sipp(stack, peer("press1_rep_voicemail"))
        calls = CallController(
            trunks=[TrunkConfig(name="primary", proxy="sip:127.0.0.1:9", options_interval_s=0)],
            settings=ControllerSettings(
                bridge=BridgeSettings(prospect_ring_timeout_s=5.0),
                rtp=RtpEngineConfig(host="127.0.0.1", ports=None),
            ),
        )
        await calls.start()
        stack.push_async_callback(calls.close)
        plan = replace(make_plan([rep]), accept="press1", accept_timeout_s=LONG_S)
        events: list[CallEvent] = []
        call: Call = calls.start_call(plan, on_event=events.append)
        await wait_for(events, lambda e: e.kind is CallEventKind.REP_PROMPTED)
        assert call.cancel_rep("rep1") is True
        outcome = await ended(call)
        (rep_result,) = await results([rep])

    assert_ok(rep_result)
    assert methods_received(rep_result)[-1] == "BYE"
    assert [r.result for r in outcome.rep_legs] == [LegResult.DECLINED]
    # Not counted as voicemail: the rep said no.
    assert outcome.rep_voicemail == {}
    assert outcome.result is CallResult.REPS_NO_ANSWER


async def test_pipeline_decline_cancels_the_reps_leg_and_the_lead_moves_on(
    database_url: str, tmp_path: Path
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=None)}
    prospect = prospect_scenario(tmp_path / "prospect.xml")
    async with floor(
        database_url, tmp_path, reps, prospect, ringing={"ring_timeout_s": LONG_S}
    ) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.RINGING_REPS)
        assert await f.pipeline.decline(lead_id, "bob") is False  # not rung for this lead
        assert await f.pipeline.decline("no-such-lead", "ann") is False
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while not await f.pipeline.decline(lead_id, "ann"):
                await asyncio.sleep(0.02)
        # Ann was the only rep: the round is over at once (not after the ring timeout) and
        # she is not offered the lead again.
        await f.wait(lead_id, LeadStatus.WAITING_FOR_REP, timeout=LONG_S / 2)
        events = await f.events(lead_id)
        ended_legs = [(d["rep_id"], d["result"]) for kind, d in events if kind == "rep_leg_ended"]
        assert ended_legs == [("ann", "declined")]
        assert f.invites(f.reps["ann"]) == 1
        assert [m.method for m in read_trace(f.reps["ann"]) if m.received].count("CANCEL") == 1
        log = (f.reps["ann"].workdir / "messages.log").read_text(errors="replace")
        assert f"Reason: {REASON_DECLINED}" in log
