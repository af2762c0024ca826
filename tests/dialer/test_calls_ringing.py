"""RingSession: parallel, sequential and wave ringing with simulated time (no sockets)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.calls.outcome import CallEventKind, CallResult, Leg, LegKind, LegResult
from dialer.calls.ringing import (
    REASON_COMPLETED_ELSEWHERE,
    REASON_DECLINED,
    CallStateError,
    CancelLeg,
    Command,
    HangUpLeg,
    LegInput,
    LegState,
    RingSession,
    RingState,
    StartLeg,
    advance_leg,
)
from dialer.domain import LeadContext, RingMode, RingPlan, RingTarget

ANSWER_SDP = b"v=0\r\no=rep 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def rep(index: int) -> Leg:
    return Leg(LegKind.REP, index)


def make_plan(
    count: int = 3,
    *,
    mode: RingMode = RingMode.PARALLEL,
    ring_timeout_s: float = 20.0,
    wave_size: int = 3,
    deadline_s: float | None = None,
) -> RingPlan:
    return RingPlan(
        targets=tuple(
            RingTarget(rep_id=f"rep{i}", uri=f"sip:rep{i}@127.0.0.1:{5070 + i}")
            for i in range(count)
        ),
        mode=mode,
        wave_size=wave_size,
        ring_timeout_s=ring_timeout_s,
        deadline_s=deadline_s,
        prospect_number="+15551230000",
        caller_id="+15550100000",
        lead=LeadContext(lead_id="lead-1", phone="+15551230000", name="Pat", source="web"),
    )


def start(plan: RingPlan, now: float = 0.0) -> RingSession:
    return RingSession(plan, now=now, make_offer=lambda leg: f"offer-{leg}".encode())


def started(commands: list[Command]) -> list[Leg]:
    return [c.leg for c in commands if isinstance(c, StartLeg)]


def cancelled(commands: list[Command]) -> dict[Leg, str | None]:
    return {c.leg: c.reason for c in commands if isinstance(c, CancelLeg)}


def hung_up(commands: list[Command]) -> list[Leg]:
    return [c.leg for c in commands if isinstance(c, HangUpLeg)]


def test_parallel_starts_every_leg_with_its_own_offer() -> None:
    session = start(make_plan(3))
    commands = session.pop_commands()
    assert started(commands) == [rep(0), rep(1), rep(2)]
    offers = {c.leg: c.offer for c in commands if isinstance(c, StartLeg)}
    assert offers[rep(1)] == b"offer-rep-1"
    assert session.record(rep(1)).local_sdp == b"offer-rep-1"
    assert session.get_timer() == 20.0


def test_parallel_rep_two_answers_and_the_others_are_cancelled_with_reason() -> None:
    session = start(make_plan(3))
    session.pop_commands()
    for i in range(3):
        session.leg_sent(rep(i), 0.001)
        session.leg_ringing(rep(i), 0.05)
    session.leg_answered(rep(1), ANSWER_SDP, 1.0)

    assert session.state is RingState.ANSWERED
    assert session.winner == rep(1)
    commands = session.pop_commands()
    assert cancelled(commands) == {
        rep(0): REASON_COMPLETED_ELSEWHERE,
        rep(2): REASON_COMPLETED_ELSEWHERE,
    }
    assert REASON_COMPLETED_ELSEWHERE == 'SIP;cause=200;text="Call completed elsewhere"'
    assert session.get_timer() is None
    assert session.legs_alive

    session.leg_failed(rep(0), 1.01, status=487)
    session.leg_failed(rep(2), 1.02, status=487)
    assert not session.legs_alive
    ended = [e for e in session.pop_events() if e.kind is CallEventKind.REP_LEG_ENDED]
    assert [(e.leg, e.result, e.status) for e in ended] == [
        (rep(0), LegResult.CANCELLED, 487),
        (rep(2), LegResult.CANCELLED, 487),
    ]
    winner = session.record(rep(1))
    assert winner.result is LegResult.ANSWERED
    assert (winner.invite_sent_at, winner.ringing_at, winner.answered_at) == (0.001, 0.05, 1.0)
    assert winner.remote_sdp == ANSWER_SDP


def test_events_follow_the_legs() -> None:
    session = start(make_plan(2))
    session.leg_sent(rep(0), 0.0, trunk=None)
    session.leg_ringing(rep(0), 0.1)
    session.leg_ringing(rep(0), 0.2, status=183)  # a second provisional is not news
    session.leg_answered(rep(0), ANSWER_SDP, 0.5)
    kinds = [(e.kind, e.leg) for e in session.pop_events()]
    assert kinds == [
        (CallEventKind.REP_INVITED, rep(0)),
        (CallEventKind.REP_RINGING, rep(0)),
        (CallEventKind.REP_ANSWERED, rep(0)),
    ]


def test_two_answers_within_five_ms_make_exactly_one_winner() -> None:
    session = start(make_plan(3))
    session.pop_commands()
    session.leg_answered(rep(0), ANSWER_SDP, 1.000)
    first = session.pop_commands()
    assert set(cancelled(first)) == {rep(1), rep(2)}
    # rep 2's 200 crossed our CANCEL on the wire.
    session.leg_answered(rep(2), ANSWER_SDP, 1.005)
    assert session.winner == rep(0)
    assert hung_up(session.pop_commands()) == [rep(2)]
    late = session.record(rep(2))
    assert late.result is LegResult.ANSWERED_LATE
    assert late.final_status == 200
    assert session.leg_state(rep(2)) is LegState.TERMINATED
    # The late leg's BYE being answered, or the peer's own BYE, changes nothing.
    session.leg_ended(rep(2), 1.1)
    session.leg_failed(rep(1), 1.01, status=487)
    assert not session.legs_alive
    results = {
        e.leg: e.result for e in session.pop_events() if e.kind is CallEventKind.REP_LEG_ENDED
    }
    assert results == {rep(2): LegResult.ANSWERED_LATE, rep(1): LegResult.CANCELLED}


def test_sequential_busy_then_timeout_then_answer() -> None:
    session = start(make_plan(3, mode=RingMode.SEQUENTIAL, ring_timeout_s=15.0))
    assert started(session.pop_commands()) == [rep(0)]

    session.leg_failed(rep(0), 0.2, status=486)
    assert started(session.pop_commands()) == [rep(1)]
    assert session.record(rep(0)).result is LegResult.BUSY
    assert session.get_timer() == pytest.approx(15.2)

    session.leg_ringing(rep(1), 0.3)
    session.handle_timer(10.0)  # early wake-up: nothing is due
    assert session.pop_commands() == []
    session.handle_timer(15.2)
    commands = session.pop_commands()
    assert cancelled(commands) == {rep(1): None}  # no "completed elsewhere" for a timeout
    assert started(commands) == [rep(2)]

    session.leg_failed(rep(1), 15.21, status=487)
    assert session.record(rep(1)).result is LegResult.NO_ANSWER
    session.leg_answered(rep(2), ANSWER_SDP, 18.0)
    assert session.winner == rep(2)
    assert session.pop_commands() == []
    assert not session.legs_alive


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (486, LegResult.BUSY),
        (600, LegResult.BUSY),
        (603, LegResult.REJECTED),
        (408, LegResult.UNREACHABLE),
        (503, LegResult.UNREACHABLE),
        (None, LegResult.UNREACHABLE),
        (404, LegResult.UNREACHABLE),
        (407, LegResult.AUTH_FAILED),
        (500, LegResult.FAILED),
    ],
)
def test_failures_have_names(status: int | None, expected: LegResult) -> None:
    session = start(make_plan(1))
    session.leg_failed(rep(0), 0.1, status=status)
    assert session.record(rep(0)).result is expected
    assert session.state is RingState.EXHAUSTED


def test_all_reps_fail_is_reps_no_answer() -> None:
    session = start(make_plan(3))
    session.leg_failed(rep(0), 0.1, status=486)
    session.leg_failed(rep(1), 0.2, status=603)
    assert session.result is None
    session.handle_timer(20.0)
    assert cancelled(session.pop_commands()) == {rep(2): None}
    # Not decided before the timed-out leg is over: its 2xx could still win.
    assert session.result is None
    session.leg_failed(rep(2), 20.01, status=487)
    assert session.state is RingState.EXHAUSTED
    assert session.result is CallResult.REPS_NO_ANSWER
    assert [r.result for r in session.records()] == [
        LegResult.BUSY,
        LegResult.REJECTED,
        LegResult.NO_ANSWER,
    ]
    assert not session.legs_alive


def test_trunk_refusal_is_passed_through() -> None:
    session = start(make_plan(1))
    session.leg_failed(rep(0), 0.0, result=LegResult.TRUNK_BUSY)
    assert session.record(rep(0)).result is LegResult.TRUNK_BUSY
    assert session.result is CallResult.REPS_NO_ANSWER


def test_waves_wait_for_the_whole_wave() -> None:
    session = start(make_plan(5, mode=RingMode.WAVES, wave_size=2, ring_timeout_s=10.0))
    assert started(session.pop_commands()) == [rep(0), rep(1)]
    session.leg_failed(rep(0), 1.0, status=486)
    assert session.pop_commands() == []  # rep 1 still rings: the wave is not over
    session.handle_timer(10.0)
    commands = session.pop_commands()
    assert cancelled(commands) == {rep(1): None}
    assert started(commands) == [rep(2), rep(3)]
    session.leg_failed(rep(2), 11.0, status=480)
    session.leg_failed(rep(3), 11.5, status=603)
    assert started(session.pop_commands()) == [rep(4)]
    session.leg_answered(rep(4), ANSWER_SDP, 12.0)
    assert session.winner == rep(4)


def test_a_timed_out_rep_who_picks_up_still_wins() -> None:
    session = start(make_plan(2, mode=RingMode.SEQUENTIAL, ring_timeout_s=10.0))
    session.pop_commands()
    session.handle_timer(10.0)
    assert started(session.pop_commands()) == [rep(1)]
    session.leg_answered(rep(0), ANSWER_SDP, 10.002)  # crossed the CANCEL
    assert session.winner == rep(0)
    assert cancelled(session.pop_commands()) == {rep(1): REASON_COMPLETED_ELSEWHERE}


def test_deadline_cuts_the_plan() -> None:
    session = start(
        make_plan(3, mode=RingMode.SEQUENTIAL, ring_timeout_s=20.0, deadline_s=30.0), now=100.0
    )
    session.pop_commands()
    session.handle_timer(120.0)
    assert started(session.pop_commands()) == [rep(1)]
    assert session.get_timer() == 130.0
    session.handle_timer(130.0)
    assert cancelled(session.pop_commands()) == {rep(1): None}
    assert session.state is RingState.EXHAUSTED
    # After the deadline a 2xx racing the CANCEL is hung up, not accepted.
    session.leg_answered(rep(1), ANSWER_SDP, 130.01)
    assert hung_up(session.pop_commands()) == [rep(1)]
    assert session.winner is None
    session.leg_failed(rep(0), 130.02, status=487)
    assert not session.legs_alive
    with pytest.raises(KeyError):  # rep 2 never started
        session.record(rep(2))


def test_abort_cancels_everything_and_hangs_up_late_answers() -> None:
    session = start(make_plan(2))
    session.pop_commands()
    session.abort(1.0)
    assert session.state is RingState.ABORTED
    assert session.result is CallResult.ABORTED
    assert set(cancelled(session.pop_commands())) == {rep(0), rep(1)}
    session.leg_answered(rep(0), ANSWER_SDP, 1.01)
    assert hung_up(session.pop_commands()) == [rep(0)]
    session.leg_failed(rep(1), 1.02, status=487)
    assert session.record(rep(1)).result is LegResult.CANCELLED
    assert not session.legs_alive


def test_protocol_errors_are_bugs() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        start(make_plan(0))
    session = start(make_plan(2))
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    with pytest.raises(CallStateError):
        session.leg_answered(rep(0), ANSWER_SDP, 1.1)
    with pytest.raises(CallStateError):
        session.leg_ringing(Leg(LegKind.REP, 7), 1.2)
    with pytest.raises(CallStateError):
        advance_leg(LegState.CALLING, LegInput.REMOTE_BYE)
    with pytest.raises(CallStateError):
        advance_leg(LegState.TERMINATED, LegInput.ANSWER)


# -- properties over random leg events ------------------------------------------------------

_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["ringing", "answer", "fail", "timer", "bye"]),
        st.integers(min_value=0, max_value=3),
        st.sampled_from([486, 487, 603, 408, None]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    events=_EVENTS,
    mode=st.sampled_from(list(RingMode)),
    wave_size=st.integers(min_value=1, max_value=3),
)
def test_random_event_orders_keep_the_invariants(
    events: list[tuple[str, int, int | None]], mode: RingMode, wave_size: int
) -> None:
    """Whatever order legs report in: at most one winner, every other 2xx is hung up, no leg is
    started after the winner, each leg is cancelled at most once, and time only moves on."""
    session = start(make_plan(4, mode=mode, wave_size=wave_size, ring_timeout_s=5.0))
    now = 0.0
    answered: list[Leg] = []
    all_commands: list[Command] = session.pop_commands()
    win_index: int | None = None
    for kind, index, status in events:
        leg = rep(index)
        now += 1.0
        try:
            state = session.leg_state(leg)
        except KeyError:
            continue
        if kind == "timer":
            session.handle_timer(now)
        elif kind == "ringing" and state in (
            LegState.CALLING,
            LegState.RINGING,
            LegState.CANCELLING,
        ):
            session.leg_ringing(leg, now)
        elif kind == "answer" and state in (
            LegState.CALLING,
            LegState.RINGING,
            LegState.CANCELLING,
        ):
            answered.append(leg)
            winner_before = session.winner
            session.leg_answered(leg, ANSWER_SDP, now)
            commands = session.pop_commands()
            if winner_before is None and session.winner is not None:
                win_index = len(all_commands)
            all_commands.extend(commands)
            if winner_before is not None or session.winner != leg:
                assert hung_up(commands) == [leg]
            continue
        elif kind == "fail" and state is not LegState.ANSWERED:
            session.leg_failed(leg, now, status=status)
        elif kind == "bye" and state is LegState.ANSWERED:
            session.leg_ended(leg, now)
        all_commands.extend(session.pop_commands())

    winners = [leg for leg in answered if leg == session.winner]
    assert len(winners) <= 1
    if session.winner is not None:
        assert session.state is RingState.ANSWERED
        assert win_index is not None
        assert not any(isinstance(c, StartLeg) for c in all_commands[win_index:])
    for leg in answered:
        if leg != session.winner:
            assert leg in hung_up(all_commands)
    cancels = [c.leg for c in all_commands if isinstance(c, CancelLeg)]
    assert len(cancels) == len(set(cancels))
    timer = session.get_timer()
    assert timer is None or session.state is RingState.RINGING


def test_decline_cancels_only_that_leg_and_the_plan_goes_on() -> None:
    session = start(make_plan(2, mode=RingMode.SEQUENTIAL))
    session.pop_commands()
    session.leg_sent(rep(0), 0.1)
    session.leg_ringing(rep(0), 0.2)
    assert session.decline(rep(0), 1.0) is True
    commands = session.pop_commands()
    # CANCEL with the decline Reason, and the next rep rings at once (not at the timeout).
    assert cancelled(commands) == {rep(0): REASON_DECLINED}
    assert started(commands) == [rep(1)]
    assert session.decline(rep(0), 1.1) is False  # already cancelling
    session.leg_failed(rep(0), 1.2, status=487)
    assert session.record(rep(0)).result is LegResult.DECLINED
    assert session.state is RingState.RINGING
    session.leg_answered(rep(1), ANSWER_SDP, 2.0)
    assert session.winner == rep(1)
    assert session.decline(rep(1), 2.1) is False  # the winner cannot be declined


def test_decline_hangs_up_a_press1_leg_waiting_for_its_key() -> None:
    session = start(dataclasses.replace(make_plan(2), accept="press1"))
    session.pop_commands()
    session.leg_answered(rep(0), ANSWER_SDP, 1.0)
    assert session.awaiting_accept(rep(0))
    session.pop_commands()
    assert session.decline(rep(0), 1.5) is True
    assert hung_up(session.pop_commands()) == [rep(0)]
    assert session.record(rep(0)).result is LegResult.DECLINED
    assert session.state is RingState.RINGING  # rep 1 still rings
    kinds = [e.kind for e in session.pop_events()]
    assert CallEventKind.REP_VOICEMAIL not in kinds
