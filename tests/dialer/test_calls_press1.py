"""Press-1-to-accept (DESIGN §4, voicemail defence).

Two halves: the sans-I/O inputs of :class:`RingSession` / :class:`CallFlow` with simulated time,
then :class:`CallController` with real SIPp peers on 127.0.0.1 and the daemon's own RTP: a
voicemail rep that picks up and never presses a key, a rep who presses 1 (SIP INFO
``application/dtmf-relay``) and is bridged to the prospect, and a rep who presses 2. Last, a
rep phone inside the test process (``tests/support/press1_rep.py``) listens to the audio: the
prompt, then ringback while the prospect is dialled, then nothing once re-INVITEd.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import pytest

from dialer.calls import BridgeSettings, CallFlow, DialProspect, Reinvite
from dialer.calls.controller import CallController, ControllerSettings, default_accept_prompt
from dialer.calls.outcome import (
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallResult,
    Leg,
    LegKind,
    LegResult,
)
from dialer.calls.prompts import SpeechSettings
from dialer.calls.ringing import (
    CancelLeg,
    Command,
    HangUpLeg,
    LegState,
    PlayRingback,
    PromptLeg,
    RingSession,
    RingState,
    StartLeg,
)
from dialer.config import TrunkConfig
from dialer.domain import LeadContext, RingMode, RingPlan, RingTarget
from dialer.sipp import SippError, SippPeer, SippProcess, SippResult, scenario_path
from sip.aio.rtp import RtpEngineConfig
from sip.sdp import SessionDescription
from tests.support.press1_rep import (
    InProcessRep,
    audio_of,
    heard_audible_seconds,
    power_at,
    prompt_audible_seconds,
    seconds_of,
)
from tests.support.sipp import needs_sipp

ANSWER_SDP = (
    b"v=0\r\no=rep 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)
LEAD = LeadContext(lead_id="lead-7", phone="+15551230000", name="Pat", source="web")


def rep(index: int) -> Leg:
    return Leg(LegKind.REP, index)


def make_plan(
    count: int = 2,
    *,
    accept: str = "press1",
    accept_timeout_s: float = 8.0,
    mode: RingMode = RingMode.PARALLEL,
    ring_timeout_s: float = 20.0,
    deadline_s: float | None = None,
    uris: Sequence[str] | None = None,
) -> RingPlan:
    return RingPlan(
        targets=tuple(
            RingTarget(
                rep_id=f"rep{i}",
                uri=uris[i] if uris is not None else f"sip:rep{i}@127.0.0.1:{5070 + i}",
            )
            for i in range(count)
        ),
        mode=mode,
        ring_timeout_s=ring_timeout_s,
        deadline_s=deadline_s,
        prospect_number="+15551230000",
        caller_id="+15550100000",
        lead=LEAD,
        accept=accept,
        accept_timeout_s=accept_timeout_s,
    )


def start(plan: RingPlan, now: float = 0.0) -> RingSession:
    return RingSession(plan, now=now, make_offer=lambda leg: f"offer-{leg}".encode())


def of_type(commands: Sequence[object], kind: type) -> list[Leg]:
    return [c.leg for c in commands if isinstance(c, kind)]  # type: ignore[attr-defined]


def kinds(events: Sequence[CallEvent]) -> list[CallEventKind]:
    return [e.kind for e in events]


# -- RingSession: the press-1 inputs, simulated time -------------------------------------------


def test_answer_mode_is_the_default_and_a_2xx_still_wins_at_once() -> None:
    session = RingSession(make_plan(accept="answer"), now=0.0, make_offer=lambda leg: b"offer")
    session.pop_commands()
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    assert session.state is RingState.ANSWERED and session.winner == rep(0)
    assert not of_type(session.pop_commands(), PromptLeg)


def test_unknown_accept_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="accept"):
        start(make_plan(accept="press9"))


def test_pick_up_is_pending_prompt_and_the_others_keep_ringing() -> None:
    session = start(make_plan(3, accept_timeout_s=5.0))
    session.pop_commands()
    session.leg_ringing(rep(1), 0.5)
    session.leg_answered(rep(0), ANSWER_SDP, 2.0)
    commands = session.pop_commands()
    assert commands == [PromptLeg(leg=rep(0), sdp=ANSWER_SDP)]
    assert session.state is RingState.RINGING and session.winner is None
    assert session.awaiting_accept(rep(0))
    assert session.leg_state(rep(0)) is LegState.ANSWERED
    assert session.leg_state(rep(1)) is LegState.RINGING
    assert kinds(session.pop_events())[-1] is CallEventKind.REP_PROMPTED
    # The accept deadline comes before the ring timeouts.
    assert session.get_timer() == 7.0


def test_digit_one_wins_cancels_ringing_and_hangs_up_other_prompted_legs() -> None:
    session = start(make_plan(3))
    session.pop_commands()
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    session.leg_answered(rep(2), ANSWER_SDP, 1.5)
    session.pop_commands()
    session.pop_events()
    session.leg_accepted(rep(2), 3.0)
    commands = session.pop_commands()
    assert session.state is RingState.ANSWERED and session.winner == rep(2)
    assert commands[0] == PlayRingback(leg=rep(2))
    assert of_type(commands, CancelLeg) == [rep(1)]
    assert of_type(commands, HangUpLeg) == [rep(0)]
    assert session.record(rep(0)).result is LegResult.CANCELLED
    assert session.record(rep(2)).result is LegResult.ANSWERED
    assert not session.awaiting_accept(rep(0))
    events = session.pop_events()
    assert kinds(events)[0] is CallEventKind.REP_ANSWERED
    assert events[0].at == 3.0 and events[0].rep_id == "rep2"


def test_no_digit_within_accept_timeout_is_voicemail_and_the_plan_goes_on() -> None:
    session = start(make_plan(2, accept_timeout_s=4.0))
    session.pop_commands()
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    session.pop_commands()
    session.pop_events()
    session.handle_timer(4.9)  # not yet
    assert session.awaiting_accept(rep(0))
    assert session.get_timer() == 5.0
    session.handle_timer(5.0)
    assert of_type(session.pop_commands(), HangUpLeg) == [rep(0)]
    assert session.record(rep(0)).result is LegResult.VOICEMAIL
    events = session.pop_events()
    assert kinds(events) == [CallEventKind.REP_VOICEMAIL, CallEventKind.REP_LEG_ENDED]
    assert events[1].result is LegResult.VOICEMAIL and events[1].rep_id == "rep0"
    assert session.state is RingState.RINGING
    # The second rep can still pick up and accept.
    session.leg_answered(rep(1), ANSWER_SDP, 6.0)
    session.leg_accepted(rep(1), 7.0)
    assert session.winner == rep(1)
    # A late key from the voicemail leg changes nothing.
    session.leg_accepted(rep(0), 7.5)
    assert session.winner == rep(1)


def test_other_key_declines_and_every_leg_declined_exhausts_the_plan() -> None:
    session = start(make_plan(2))
    session.pop_commands()
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    session.leg_declined(rep(0), 2.0)
    assert of_type(session.pop_commands(), HangUpLeg) == [rep(0)]
    assert session.record(rep(0)).result is LegResult.DECLINED
    session.leg_failed(rep(1), 3.0, status=486)
    assert session.state is RingState.EXHAUSTED
    assert session.result is CallResult.REPS_NO_ANSWER


def test_sequential_waits_for_the_key_before_the_next_rep_rings() -> None:
    session = start(make_plan(2, mode=RingMode.SEQUENTIAL, accept_timeout_s=3.0))
    assert of_type(session.pop_commands(), StartLeg) == [rep(0)]
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    session.pop_commands()
    session.handle_timer(4.0)
    commands = session.pop_commands()
    assert of_type(commands, HangUpLeg) == [rep(0)]
    assert of_type(commands, StartLeg) == [rep(1)]


def test_hanging_up_on_the_prompt_is_declined() -> None:
    session = start(make_plan(1))
    session.pop_commands()
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    session.pop_commands()
    session.leg_ended(rep(0), 2.0)
    assert session.record(rep(0)).result is LegResult.DECLINED
    assert not session.pop_commands()  # the rep sent BYE: nothing to send
    assert session.state is RingState.EXHAUSTED


def test_deadline_and_abort_hang_up_prompted_legs() -> None:
    session = start(make_plan(2, deadline_s=5.0, accept_timeout_s=10.0))
    session.pop_commands()
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    session.pop_commands()
    session.handle_timer(5.0)
    commands = session.pop_commands()
    assert of_type(commands, HangUpLeg) == [rep(0)]
    assert of_type(commands, CancelLeg) == [rep(1)]
    assert session.record(rep(0)).result is LegResult.NO_ANSWER

    aborted = start(make_plan(1))
    aborted.pop_commands()
    aborted.leg_answered(rep(0), ANSWER_SDP, 1.0)
    aborted.pop_commands()
    aborted.abort(2.0)
    assert of_type(aborted.pop_commands(), HangUpLeg) == [rep(0)]
    assert aborted.record(rep(0)).result is LegResult.CANCELLED


def test_call_flow_bridges_the_accepted_rep_with_its_media_offer() -> None:
    flow = CallFlow(make_plan(2), now=0.0, media_address="127.0.0.1", session_id=1000)
    flow.pop_commands()
    our_media = ANSWER_SDP.replace(b"o=rep", b"o=dialer").replace(b"40000", b"20000")
    flow.leg_sent(rep(0), 0.1, offer=our_media)
    assert flow.ring.record(rep(0)).local_sdp == our_media
    flow.leg_answered(rep(0), ANSWER_SDP, 1.0)
    flow.leg_answered(rep(1), ANSWER_SDP, 1.2)
    flow.pop_commands()
    flow.leg_voicemail(rep(1), 2.0)
    flow.leg_accepted(rep(0), 3.0)
    commands: list[Command | DialProspect | Reinvite] = list(flow.pop_commands())
    assert any(isinstance(c, DialProspect) for c in commands)
    assert flow.winner is not None and flow.winner.rep_id == "rep0"
    assert flow.bridge is not None and flow.bridge.rep_leg == rep(0)


# -- the controller against SIPp peers ----------------------------------------------------------

#: Bound on one call in these tests.
CALL_TIMEOUT_S = 20.0
START_ATTEMPTS = 3


def peer(scenario: str, *, pause_ms: int | None = None, **keys: str) -> SippPeer:
    return SippPeer(
        scenario=scenario_path(scenario),
        pause_ms=pause_ms,
        calls=1,
        timeout_s=CALL_TIMEOUT_S,
        keys=keys,
    )


async def start_sipp(stack: AsyncExitStack, sipp_peer: SippPeer) -> SippProcess:
    for attempt in range(START_ATTEMPTS):
        try:
            return await stack.enter_async_context(SippProcess(sipp_peer))
        except SippError as error:
            if "Address already in use" not in str(error) or attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@asynccontextmanager
async def running(*peers: SippPeer) -> AsyncIterator[list[SippProcess]]:
    async with AsyncExitStack() as stack:
        yield [await start_sipp(stack, p) for p in peers]


@asynccontextmanager
async def press1_controller(
    trunk: SippProcess, *, speech: SpeechSettings | None = None
) -> AsyncIterator[CallController]:
    """A started controller with RTP (press-1 prompts) and, with ``speech``, spoken sources."""
    calls = CallController(
        trunks=[
            TrunkConfig(
                name="primary", proxy=f"sip:127.0.0.1:{trunk.local_port}", options_interval_s=0
            )
        ],
        settings=ControllerSettings(
            bridge=BridgeSettings(prospect_ring_timeout_s=10.0),
            rtp=RtpEngineConfig(host="127.0.0.1", ports=None),
            speech=speech,
        ),
    )
    await calls.start()
    try:
        yield calls
    finally:
        await calls.close()


def sipp_plan(reps: Sequence[SippProcess], *, accept_timeout_s: float) -> RingPlan:
    return make_plan(
        len(reps),
        accept_timeout_s=accept_timeout_s,
        uris=[f"sip:rep{i}@127.0.0.1:{p.local_port}" for i, p in enumerate(reps)],
        ring_timeout_s=10.0,
    )


async def run_call(calls: CallController, plan: RingPlan) -> tuple[CallOutcome, list[CallEvent]]:
    events: list[CallEvent] = []
    call = calls.start_call(plan, on_event=events.append)
    async with asyncio.timeout(CALL_TIMEOUT_S):
        outcome = await call.wait_ended()
    return outcome, events


def assert_ok(result: SippResult) -> None:
    assert result.exit_code == 0 and result.failed_calls == 0, (
        f"{result.summary()}\n{result.errors()[-2000:]}"
    )


def sdp_bodies(result: SippResult, direction: str, start: str) -> list[SessionDescription]:
    """The SDP bodies of the messages the peer ``direction`` ("sent"/"received") whose start
    line begins with ``start`` ("INVITE", "SIP/2.0 200"), in order."""
    bodies: list[SessionDescription] = []
    for chunk in result.messages().split("\n-----------------------------------------------"):
        lines = chunk.split("\n")
        marker = next((i for i, line in enumerate(lines) if " message " in line), None)
        if marker is None or direction not in lines[marker]:
            continue
        text = "\n".join(lines[marker + 2 :]).strip("\n")
        head, _, body = text.partition("\n\n")
        if head.startswith(start) and body.strip():
            bodies.append(SessionDescription.parse(body.strip().encode()))
    return bodies


def invites_received(result: SippResult) -> list[SessionDescription]:
    """The SDP of every INVITE the peer received, in order."""
    return sdp_bodies(result, "received", "INVITE ")


@pytest.mark.sipp
@pytest.mark.slow
@needs_sipp
async def test_sipp_voicemail_is_hung_up_and_the_rep_pressing_1_is_bridged() -> None:
    """Rep 0 is a voicemail box: it picks up at once and never presses a key. Rep 1 picks up
    later and presses 1 over SIP INFO. Rep 0 gets BYE after accept_timeout_s and does not win;
    rep 1 is bridged to the prospect (its re-INVITE carries the prospect's media)."""
    async with running(
        peer("press1_rep_voicemail"),
        peer("press1_rep_info", pause_ms=1500, digit="1"),
        peer("calls_prospect_answer_hangup", pause_ms=200),
    ) as (voicemail, accepting, prospect):
        async with press1_controller(prospect) as calls:
            outcome, events = await run_call(
                calls, sipp_plan([voicemail, accepting], accept_timeout_s=1.0)
            )
            assert calls.rtp_engine.stats.streams_open == 0
            sent = calls.rtp_engine.stats.datagrams_sent
        results = [await p.wait(CALL_TIMEOUT_S) for p in (voicemail, accepting, prospect)]
    for result in results:
        assert_ok(result)
    assert outcome.result is CallResult.COMPLETED
    assert outcome.winner_rep_id == "rep1"
    assert [r.result for r in outcome.rep_legs] == [LegResult.VOICEMAIL, LegResult.ANSWERED]
    assert outcome.rep_voicemail == {"rep0": 1}
    assert outcome.bridged_at is not None
    voicemail_record = outcome.leg(rep(0))
    assert voicemail_record.answered_at is not None and voicemail_record.ended_at is not None
    assert voicemail_record.ended_at - voicemail_record.answered_at >= 0.9
    # The daemon's own media was offered to both reps and the prompt was sent.
    assert sent > 50
    first_offers = [invites_received(r)[0] for r in results[:2]]
    assert all(o.media[0].port != 9 for o in first_offers)
    # The winner's re-INVITE points it at the prospect's media.
    rep_invites = invites_received(results[1])
    assert len(rep_invites) == 2
    prospect_answer = sdp_bodies(results[2], "sent", "SIP/2.0 200")[0]
    rep_answer = sdp_bodies(results[1], "sent", "SIP/2.0 200")[0]
    assert rep_invites[1].media_address(0) == prospect_answer.media_address(0)
    assert invites_received(results[2])[0].media_address(0) == rep_answer.media_address(0)
    event_kinds = kinds(events)
    assert event_kinds.count(CallEventKind.REP_PROMPTED) == 2
    assert CallEventKind.REP_VOICEMAIL in event_kinds
    assert event_kinds.index(CallEventKind.REP_VOICEMAIL) < event_kinds.index(
        CallEventKind.REP_ANSWERED
    )
    assert event_kinds[-1] is CallEventKind.CALL_ENDED


@pytest.mark.sipp
@pytest.mark.slow
@needs_sipp
async def test_sipp_rep_pressing_2_is_declined() -> None:
    async with running(
        peer("press1_rep_info", digit="2"),
        peer("calls_prospect_answer_hangup", pause_ms=200),
    ) as (declining, prospect):
        async with press1_controller(prospect) as calls:
            outcome, events = await run_call(calls, sipp_plan([declining], accept_timeout_s=5.0))
        declined = await declining.wait(CALL_TIMEOUT_S)
    assert_ok(declined)
    assert outcome.result is CallResult.REPS_NO_ANSWER
    assert [r.result for r in outcome.rep_legs] == [LegResult.DECLINED]
    assert outcome.rep_voicemail == {}
    assert outcome.prospect_leg is None
    record = outcome.leg(rep(0))
    assert record.answered_at is not None and record.ended_at is not None
    # Declined on the key, long before the accept timeout.
    assert record.ended_at - record.answered_at < 4.0
    ended = [e for e in events if e.kind is CallEventKind.REP_LEG_ENDED]
    assert [e.result for e in ended] == [LegResult.DECLINED]


@pytest.mark.sipp
@pytest.mark.slow
@needs_sipp
async def test_sipp_hang_up_during_the_prompt_ends_the_leg_and_frees_its_port() -> None:
    async with running(
        peer("press1_rep_voicemail"),
        peer("calls_prospect_answer_hangup", pause_ms=200),
    ) as (voicemail, prospect):
        async with press1_controller(prospect) as calls:
            events: list[CallEvent] = []
            call = calls.start_call(
                sipp_plan([voicemail], accept_timeout_s=10.0), on_event=events.append
            )
            async with asyncio.timeout(CALL_TIMEOUT_S):
                while CallEventKind.REP_PROMPTED not in kinds(events):
                    await asyncio.sleep(0.02)
                assert calls.rtp_engine.stats.streams_open == 1
                call.hang_up()
                outcome = await call.wait_ended()
            await asyncio.sleep(0)  # let the port's close task run
            assert calls.rtp_engine.stats.streams_open == 0
        result = await voicemail.wait(CALL_TIMEOUT_S)
    assert_ok(result)
    assert outcome.result is CallResult.ABORTED
    assert [r.result for r in outcome.rep_legs] == [LegResult.CANCELLED]
    assert outcome.rep_voicemail == {}


@pytest.mark.sipp
@pytest.mark.slow
@needs_sipp
async def test_the_accepting_rep_hears_ringback_until_the_bridge_reinvite() -> None:
    """The rep hears the whole prompt, presses 1, then hears US ringback (440 + 480 Hz) while
    the prospect (answering after 1.5 s) is dialled; from the bridge re-INVITE on, the daemon
    plays nothing more (the phone answers the re-INVITE 200 ms later) and closes its port once
    the re-INVITE completes (the prospect talks 500 ms before hanging up: time to notice)."""
    generic = default_accept_prompt()
    async with running(peer("calls_prospect_answer_hangup", pause_ms=1500)) as (prospect,):
        async with press1_controller(prospect) as calls, InProcessRep() as phone:
            plan = make_plan(1, uris=[phone.uri], accept_timeout_s=10.0, ring_timeout_s=10.0)
            call = calls.start_call(plan)
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await phone.answer()
                await phone.wait_audio(generic.duration + 0.2)
                prompt = phone.heard
                phone.press("1")
                await phone.accept_bridge(answer_after_s=0.2)
                outcome = await call.wait_ended()
        assert_ok(await prospect.wait(CALL_TIMEOUT_S))
    assert outcome.result is CallResult.COMPLETED and outcome.bridged_at is not None
    assert heard_audible_seconds(prompt) == pytest.approx(prompt_audible_seconds(generic))
    assert phone.reinvited_at is not None and phone.reinvite_answered_at is not None
    assert phone.ended_at is not None
    later = phone.heard[len(prompt) :]
    ringback = [h for h in later if h.at < phone.reinvited_at]
    assert seconds_of(ringback) >= 0.5
    pcm = audio_of(ringback)
    for frequency in (440, 480):
        assert power_at(pcm, frequency) > 100 * power_at(pcm, 600)
        assert power_at(pcm, frequency) > 100 * power_at(pcm, 1000)
    # Silence from the re-INVITE on (a packet in flight may land just after it), and no
    # packet at all once the re-INVITE completed and the port closed.
    assert phone.ended_at - phone.reinvite_answered_at >= 0.2
    after = [h for h in later if h.at > phone.reinvited_at + 0.03]
    assert seconds_of(after) >= 0.1  # comfort silence until the re-INVITE completes
    assert heard_audible_seconds(after) == 0.0
    assert [h for h in later if h.at > phone.reinvite_answered_at + 0.1] == []
