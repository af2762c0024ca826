"""Bridge and CallFlow: the 3PCC SDP flow and every teardown path, with simulated time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dialer.calls.bridge import (
    BridgeSettings,
    BridgeState,
    CallCommand,
    CallFlow,
    DialProspect,
    Reinvite,
    placeholder_offer,
)
from dialer.calls.controller import WallClock
from dialer.calls.outcome import (
    CallEventKind,
    CallOutcome,
    CallResult,
    Leg,
    LegKind,
    LegResult,
    Party,
)
from dialer.calls.ringing import (
    REASON_COMPLETED_ELSEWHERE,
    CallStateError,
    CancelLeg,
    HangUpLeg,
    StartLeg,
)
from dialer.domain import LeadContext, LeadStatus, RingMode, RingPlan, RingTarget
from sip.sdp import Direction, SessionDescription

DAEMON_IP = "127.0.0.1"
PROSPECT = Leg(LegKind.PROSPECT, 0)


def rep(index: int) -> Leg:
    return Leg(LegKind.REP, index)


def sdp(
    owner: str, address: str, port: int, *, direction: str = "sendrecv", version: int = 1
) -> bytes:
    return (
        f"v=0\r\no={owner} 4242 {version} IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\n"
        f"t=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    ).encode()


REP_ANSWER = sdp("rep", "127.0.0.2", 6000, direction="inactive")
REP_REANSWER = sdp("rep", "127.0.0.2", 6000, version=2)
PROSPECT_ANSWER = sdp("prospect", "127.0.0.3", 7000)


def make_plan(count: int = 1, *, mode: RingMode = RingMode.PARALLEL) -> RingPlan:
    return RingPlan(
        targets=tuple(
            RingTarget(rep_id=f"rep{i}", uri=f"sip:rep{i}@127.0.0.1:{5070 + i}")
            for i in range(count)
        ),
        mode=mode,
        ring_timeout_s=20.0,
        prospect_number="+15551230000",
        caller_id="+15550100000",
        lead=LeadContext(lead_id="lead-1", phone="+15551230000", name="Pat", source="web"),
    )


def new_flow(count: int = 1, settings: BridgeSettings | None = None) -> CallFlow:
    return CallFlow(
        make_plan(count),
        now=0.0,
        media_address=DAEMON_IP,
        session_id=1000,
        settings=settings,
    )


def only(commands: list[CallCommand], kind: type[CallCommand]) -> CallCommand:
    matching = [c for c in commands if isinstance(c, kind)]
    assert len(matching) == 1, commands
    return matching[0]


def parse(data: bytes) -> SessionDescription:
    return SessionDescription.parse(data)


def answered_flow(count: int = 1, settings: BridgeSettings | None = None) -> CallFlow:
    """A flow whose rep 0 has answered: the prospect's INVITE is out."""
    flow = new_flow(count, settings)
    flow.pop_commands()
    flow.leg_sent(rep(0), 0.0)
    flow.leg_ringing(rep(0), 0.1)
    flow.leg_answered(rep(0), REP_ANSWER, 2.0)
    return flow


def bridged_flow() -> CallFlow:
    flow = answered_flow()
    flow.pop_commands()
    flow.leg_sent(PROSPECT, 2.0, trunk="primary")
    flow.leg_ringing(PROSPECT, 3.0)
    flow.leg_answered(PROSPECT, PROSPECT_ANSWER, 9.0)
    flow.pop_commands()
    flow.reinvite_answered(rep(0), REP_REANSWER, 9.01)
    return flow


def bridge_state(flow: CallFlow) -> BridgeState:
    assert flow.bridge is not None
    return flow.bridge.state


def settled_bridge_time(flow: CallFlow) -> float | None:
    assert flow.bridge is not None
    return flow.bridge.bridged_at


def settled(flow: CallFlow) -> CallOutcome:
    assert flow.outcome is not None
    return flow.outcome


def test_placeholder_offer_holds_no_media_yet() -> None:
    offer = parse(placeholder_offer("127.0.0.1", session_id="77"))
    assert offer.media_address(0) == ("127.0.0.1", 9)
    assert offer.media_direction(0) is Direction.INACTIVE
    assert offer.media[0].formats == ("0", "8", "101")
    assert offer.origin.sess_id == "77"
    v6 = parse(placeholder_offer("::1", session_id="1"))
    assert v6.origin.addrtype == "IP6"


def test_the_sdp_flow_gives_each_side_the_others_media() -> None:
    flow = new_flow()
    start = only(flow.pop_commands(), StartLeg)
    assert isinstance(start, StartLeg)
    offer0 = parse(start.offer)
    assert offer0.media_direction(0) is Direction.INACTIVE
    assert offer0.origin.sess_id == "1000"

    flow.leg_sent(rep(0), 0.0)
    flow.leg_answered(rep(0), REP_ANSWER, 2.0)
    dial = only(flow.pop_commands(), DialProspect)
    assert isinstance(dial, DialProspect)
    assert (dial.number, dial.caller_id) == ("+15551230000", "+15550100000")
    offer1 = parse(dial.offer)
    # The prospect is offered the rep's media, made sendrecv.
    assert offer1.media_address(0) == ("127.0.0.2", 6000)
    assert offer1.media_direction(0) is Direction.SENDRECV

    flow.leg_sent(PROSPECT, 2.001, trunk="primary")
    flow.leg_ringing(PROSPECT, 3.0)
    flow.leg_answered(PROSPECT, PROSPECT_ANSWER, 9.0)
    reinvite = only(flow.pop_commands(), Reinvite)
    assert isinstance(reinvite, Reinvite)
    assert reinvite.leg == rep(0)
    offer2 = parse(reinvite.offer)
    # The rep is re-offered the prospect's media, in our session, version + 1 (RFC 3264 §8).
    assert offer2.media_address(0) == ("127.0.0.3", 7000)
    assert offer2.origin.username == offer0.origin.username
    assert offer2.origin.sess_id == offer0.origin.sess_id
    assert offer2.origin.sess_version == offer0.origin.sess_version + 1

    flow.reinvite_answered(rep(0), REP_REANSWER, 9.01)
    assert flow.pop_commands() == []
    assert bridge_state(flow) is BridgeState.BRIDGED
    assert flow.outcome is None  # talking

    flow.leg_ended(PROSPECT, 60.0)
    assert only(flow.pop_commands(), HangUpLeg) == HangUpLeg(leg=rep(0))
    outcome = settled(flow)
    assert outcome.result is CallResult.COMPLETED
    assert outcome.result.lead_status is LeadStatus.COMPLETED
    assert outcome.ended_by is Party.PROSPECT
    assert outcome.winner_rep_id == "rep0"
    assert (outcome.rep_answered_at, outcome.prospect_invited_at) == (2.0, 2.001)
    assert (outcome.prospect_ringing_at, outcome.prospect_answered_at) == (3.0, 9.0)
    assert (outcome.bridged_at, outcome.ended_at) == (9.01, 60.0)

    rep_record = outcome.leg(rep(0))
    prospect_record = outcome.leg(PROSPECT)
    assert rep_record.local_sdp is not None and prospect_record.local_sdp is not None
    # Final state of each leg: rep's remote media = prospect's; prospect's remote = rep's.
    assert parse(rep_record.local_sdp).media_address(0) == parse(PROSPECT_ANSWER).media_address(0)
    assert parse(prospect_record.local_sdp).media_address(0) == parse(REP_ANSWER).media_address(0)
    assert prospect_record.remote_sdp == PROSPECT_ANSWER
    assert rep_record.remote_sdp == REP_REANSWER
    assert prospect_record.trunk == "primary"
    assert rep_record.result is LegResult.ANSWERED


def test_event_stream_of_a_completed_call() -> None:
    flow = bridged_flow()
    flow.leg_ended(rep(0), 30.0)
    kinds = [e.kind for e in flow.pop_events()]
    assert kinds == [
        CallEventKind.REP_INVITED,
        CallEventKind.REP_RINGING,
        CallEventKind.REP_ANSWERED,
        CallEventKind.PROSPECT_INVITED,
        CallEventKind.PROSPECT_RINGING,
        CallEventKind.PROSPECT_ANSWERED,
        CallEventKind.BRIDGED,
        CallEventKind.CALL_ENDED,
    ]


def test_rep_hangs_up_after_the_bridge() -> None:
    flow = bridged_flow()
    flow.leg_ended(rep(0), 30.0)
    assert flow.pop_commands() == [HangUpLeg(leg=PROSPECT)]
    outcome = settled(flow)
    assert (outcome.result, outcome.ended_by) == (CallResult.COMPLETED, Party.REP)
    last = flow.pop_events()[-1]
    assert last.kind is CallEventKind.CALL_ENDED
    assert (last.call_result, last.ended_by, last.rep_id) == (
        CallResult.COMPLETED,
        Party.REP,
        "rep0",
    )


def test_rep_hangs_up_before_the_prospect_answers() -> None:
    flow = answered_flow()
    flow.pop_commands()
    flow.leg_ringing(PROSPECT, 3.0)
    flow.leg_ended(rep(0), 5.0)
    assert flow.pop_commands() == [CancelLeg(leg=PROSPECT)]
    assert flow.outcome is None  # the prospect leg is not over yet
    flow.leg_failed(PROSPECT, 5.01, status=487)
    outcome = settled(flow)
    assert (outcome.result, outcome.ended_by) == (CallResult.REP_HUNG_UP, Party.REP)
    assert outcome.leg(PROSPECT).result is LegResult.CANCELLED
    assert outcome.leg(PROSPECT).final_status == 487


def test_prospect_answer_crossing_the_cancel_is_hung_up() -> None:
    flow = answered_flow()
    flow.pop_commands()
    flow.leg_ended(rep(0), 5.0)
    flow.pop_commands()
    flow.leg_answered(PROSPECT, PROSPECT_ANSWER, 5.002)
    assert flow.pop_commands() == [HangUpLeg(leg=PROSPECT)]
    outcome = settled(flow)
    assert outcome.result is CallResult.REP_HUNG_UP
    assert outcome.leg(PROSPECT).result is LegResult.ANSWERED_LATE


@pytest.mark.parametrize(
    ("status", "result", "call_result", "lead_status"),
    [
        (486, None, CallResult.PROSPECT_BUSY, LeadStatus.PROSPECT_BUSY),
        (603, None, CallResult.PROSPECT_BUSY, LeadStatus.PROSPECT_BUSY),
        (480, None, CallResult.PROSPECT_NO_ANSWER, LeadStatus.PROSPECT_NO_ANSWER),
        (404, None, CallResult.PROSPECT_FAILED, LeadStatus.FAILED),
        (None, None, CallResult.PROSPECT_FAILED, LeadStatus.FAILED),
        (401, None, CallResult.TRUNK_AUTH_FAILED, LeadStatus.FAILED),
        (None, LegResult.TRUNK_BUSY, CallResult.TRUNK_BUSY, LeadStatus.FAILED),
    ],
)
def test_prospect_failure_hangs_up_the_rep_with_the_outcome(
    status: int | None,
    result: LegResult | None,
    call_result: CallResult,
    lead_status: LeadStatus,
) -> None:
    flow = answered_flow()
    flow.pop_commands()
    flow.leg_failed(PROSPECT, 4.0, status=status, result=result)
    assert flow.pop_commands() == [HangUpLeg(leg=rep(0))]
    outcome = settled(flow)
    assert outcome.result is call_result
    assert outcome.result.lead_status is lead_status
    assert outcome.ended_by is Party.PROSPECT
    ended = [e for e in flow.pop_events() if e.kind is CallEventKind.PROSPECT_LEG_ENDED]
    assert len(ended) == 1 and ended[0].status == status


def test_prospect_no_answer_times_out() -> None:
    flow = answered_flow(settings=BridgeSettings(prospect_ring_timeout_s=30.0))
    flow.pop_commands()
    flow.leg_ringing(PROSPECT, 2.5)
    assert flow.get_timer() == 32.0
    flow.handle_timer(32.0)
    assert flow.pop_commands() == [CancelLeg(leg=PROSPECT), HangUpLeg(leg=rep(0))]
    flow.leg_failed(PROSPECT, 32.01, status=487)
    outcome = settled(flow)
    assert outcome.result is CallResult.PROSPECT_NO_ANSWER
    assert outcome.leg(PROSPECT).result is LegResult.NO_ANSWER
    assert flow.get_timer() is None


def test_prospect_hangs_up_before_the_rep_is_reinvited() -> None:
    flow = answered_flow()
    flow.pop_commands()
    flow.leg_answered(PROSPECT, PROSPECT_ANSWER, 5.0)
    flow.pop_commands()
    flow.leg_ended(PROSPECT, 5.001)
    assert flow.pop_commands() == [HangUpLeg(leg=rep(0))]
    assert settled(flow).result is CallResult.PROSPECT_NO_ANSWER
    # The re-INVITE's late 2xx changes nothing.
    flow.reinvite_answered(rep(0), REP_REANSWER, 5.01)
    assert flow.pop_commands() == []


def test_abort_while_dialing_and_while_bridged() -> None:
    flow = answered_flow()
    flow.pop_commands()
    flow.abort(3.0)
    assert flow.pop_commands() == [CancelLeg(leg=PROSPECT), HangUpLeg(leg=rep(0))]
    flow.leg_failed(PROSPECT, 3.01, status=487)
    outcome = settled(flow)
    assert (outcome.result, outcome.ended_by) == (CallResult.ABORTED, Party.DAEMON)
    assert outcome.result.lead_status is None

    flow = bridged_flow()
    flow.abort(20.0)
    assert flow.pop_commands() == [HangUpLeg(leg=PROSPECT), HangUpLeg(leg=rep(0))]
    outcome = settled(flow)
    assert (outcome.result, outcome.ended_by) == (CallResult.COMPLETED, Party.DAEMON)


def test_abort_while_reps_ring() -> None:
    flow = new_flow(2)
    flow.pop_commands()
    flow.abort(1.0)
    assert {c.leg for c in flow.pop_commands() if isinstance(c, CancelLeg)} == {rep(0), rep(1)}
    flow.leg_failed(rep(0), 1.01, status=487)
    assert flow.outcome is None
    flow.leg_failed(rep(1), 1.02, status=487)
    assert settled(flow).result is CallResult.ABORTED


def test_rep_media_moved_in_its_reinvite_answer_is_relayed_to_the_prospect() -> None:
    flow = answered_flow()
    dial = only(flow.pop_commands(), DialProspect)
    assert isinstance(dial, DialProspect)
    flow.leg_answered(PROSPECT, PROSPECT_ANSWER, 5.0)
    flow.pop_commands()
    moved = sdp("rep", "127.0.0.2", 6002, version=2)
    flow.reinvite_answered(rep(0), moved, 5.01)
    reinvite = only(flow.pop_commands(), Reinvite)
    assert isinstance(reinvite, Reinvite)
    assert reinvite.leg == PROSPECT
    offer = parse(reinvite.offer)
    first = parse(dial.offer)
    assert offer.media_address(0) == ("127.0.0.2", 6002)
    assert offer.origin.sess_id == first.origin.sess_id
    assert offer.origin.sess_version == first.origin.sess_version + 1
    assert bridge_state(flow) is BridgeState.REINVITING_PROSPECT
    flow.reinvite_answered(PROSPECT, PROSPECT_ANSWER, 5.02)
    assert bridge_state(flow) is BridgeState.BRIDGED
    assert settled_bridge_time(flow) == 5.02


def test_reinvite_glare_is_retried_once_then_the_bridge_fails() -> None:
    flow = answered_flow(settings=BridgeSettings(glare_retry_s=2.5))
    flow.pop_commands()
    flow.leg_answered(PROSPECT, PROSPECT_ANSWER, 5.0)
    first = only(flow.pop_commands(), Reinvite)
    flow.reinvite_failed(rep(0), 5.01, status=491)
    assert flow.pop_commands() == []
    assert flow.get_timer() == pytest.approx(7.51)
    flow.handle_timer(7.51)
    assert flow.pop_commands() == [first]
    flow.reinvite_failed(rep(0), 7.52, status=491)
    assert flow.pop_commands() == [HangUpLeg(leg=PROSPECT), HangUpLeg(leg=rep(0))]
    assert settled(flow).result is CallResult.BRIDGE_FAILED


def test_rep_reinvite_refused_fails_the_bridge() -> None:
    flow = answered_flow()
    flow.pop_commands()
    flow.leg_answered(PROSPECT, PROSPECT_ANSWER, 5.0)
    flow.pop_commands()
    flow.reinvite_failed(rep(0), 5.01, status=488)
    assert flow.pop_commands() == [HangUpLeg(leg=PROSPECT), HangUpLeg(leg=rep(0))]
    assert settled(flow).result is CallResult.BRIDGE_FAILED
    with pytest.raises(CallStateError):
        new_flow().reinvite_failed(rep(0), 1.0, status=488)


def test_rep_answer_without_usable_sdp_cannot_be_bridged() -> None:
    flow = new_flow()
    flow.pop_commands()
    flow.leg_answered(rep(0), b"", 1.0)
    assert flow.pop_commands() == [HangUpLeg(leg=rep(0))]
    outcome = settled(flow)
    assert outcome.result is CallResult.BRIDGE_FAILED
    assert outcome.prospect_leg is None


def test_parallel_call_ends_only_after_every_loser_is_over() -> None:
    flow = new_flow(3)
    flow.pop_commands()
    flow.leg_answered(rep(1), REP_ANSWER, 1.0)
    commands = flow.pop_commands()
    assert {c.leg: c.reason for c in commands if isinstance(c, CancelLeg)} == {
        rep(0): REASON_COMPLETED_ELSEWHERE,
        rep(2): REASON_COMPLETED_ELSEWHERE,
    }
    assert len([c for c in commands if isinstance(c, DialProspect)]) == 1
    # The second 2xx within 5 ms: hung up, no second prospect call.
    flow.leg_answered(rep(2), REP_ANSWER, 1.005)
    assert flow.pop_commands() == [HangUpLeg(leg=rep(2))]
    flow.leg_failed(PROSPECT, 2.0, status=486)
    assert flow.pop_commands() == [HangUpLeg(leg=rep(1))]
    assert flow.outcome is None  # rep 0 has not answered the CANCEL yet
    flow.leg_failed(rep(0), 2.5, status=487)
    outcome = settled(flow)
    assert outcome.result is CallResult.PROSPECT_BUSY
    assert [r.leg for r in outcome.legs] == [rep(0), rep(1), rep(2), PROSPECT]
    assert [r.result for r in outcome.rep_legs] == [
        LegResult.CANCELLED,
        LegResult.ANSWERED,
        LegResult.ANSWERED_LATE,
    ]
    assert flow.pop_events()[-1].kind is CallEventKind.CALL_ENDED


def test_reps_no_answer_outcome() -> None:
    flow = CallFlow(
        make_plan(2, mode=RingMode.SEQUENTIAL),
        now=0.0,
        media_address=DAEMON_IP,
        session_id=1,
    )
    flow.leg_failed(rep(0), 1.0, status=486)
    flow.leg_failed(rep(1), 2.0, status=None)
    outcome = settled(flow)
    assert outcome.result is CallResult.REPS_NO_ANSWER
    assert outcome.result.lead_status is LeadStatus.REPS_NO_ANSWER
    assert outcome.winner_rep_id is None and outcome.prospect_leg is None
    assert [e.kind for e in flow.pop_events()][-1] is CallEventKind.CALL_ENDED
    with pytest.raises(CallStateError):
        flow.leg_answered(PROSPECT, PROSPECT_ANSWER, 3.0)


def test_timeline_data_is_json_ready() -> None:
    flow = bridged_flow()
    events = flow.pop_events()
    invited = next(e for e in events if e.kind is CallEventKind.PROSPECT_INVITED)
    assert invited.timeline_data() == {"leg": "prospect-0", "rep_id": "rep0", "trunk": "primary"}


def test_relayed_offer_states_each_direction_explicitly() -> None:
    """A prospect answer that relies on the default direction (none written), or says it at
    session level, reaches the rep with the direction on every media line."""
    implicit = (
        b"v=0\r\no=p 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
        b"m=audio 7000 RTP/AVP 0\r\n"
    )
    session_level = (
        b"v=0\r\no=p 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n"
        b"a=sendonly\r\nm=audio 7000 RTP/AVP 0\r\n"
    )
    for answer, expected in ((implicit, Direction.SENDRECV), (session_level, Direction.SENDONLY)):
        flow = answered_flow()
        flow.pop_commands()
        flow.leg_answered(PROSPECT, answer, 5.0)
        reinvite = only(flow.pop_commands(), Reinvite)
        assert isinstance(reinvite, Reinvite)
        offer = parse(reinvite.offer)
        assert offer.media[0].direction is expected
        assert offer.attribute(expected.value) is None  # not at session level any more


def test_wall_clock_keeps_a_calls_event_times_in_order() -> None:
    """Each conversion reads the loop clock and the wall clock; a pause between the two reads
    (here: the wall clock read 0.3 ms late for the first event) must not put a later event
    before an earlier one on the timeline."""
    clock = WallClock()
    first = clock.wall_time(10.0000, loop_now=10.0010, wall_now=1_000.0013)
    second = clock.wall_time(10.0002, loop_now=10.0020, wall_now=1_000.0020)
    assert second >= first
    assert first == datetime.fromtimestamp(1_000.0003, UTC)
    # Without a pause, conversions are exact and strictly follow the loop clock.
    later = clock.wall_time(10.5, loop_now=10.6, wall_now=1_000.6)
    assert later == datetime.fromtimestamp(1_000.5, UTC)
