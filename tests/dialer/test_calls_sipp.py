"""CallController against real SIPp peers on 127.0.0.1: reps, and a prospect behind a "trunk".

Each test checks what every peer saw twice: SIPp's own scenario checks (screen-pop headers,
the Reason of a CANCEL, caller ID, P-Asserted-Identity: a failed check fails the SIPp call and
its exit status) and the messages in SIPp's trace, parsed here. The SDP each leg ended with is
compared across peers: the rep's last offer from the daemon carries the prospect's media
address, and the prospect's offer carries the rep's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import pytest

from dialer.calls import (
    BridgeSettings,
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallResult,
    Leg,
    LegKind,
    LegResult,
    Party,
)
from dialer.calls.controller import Call, CallController, ControllerSettings
from dialer.config import TrunkConfig
from dialer.domain import LeadContext, RingMode, RingPlan, RingTarget
from dialer.sipp import SippError, SippPeer, SippProcess, SippResult, scenario_path
from sip.config import SipConfig
from sip.sdp import SessionDescription
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.sipp, needs_sipp]

PROSPECT = Leg(LegKind.PROSPECT, 0)
LEAD = LeadContext(
    lead_id="lead-42",
    phone="+15551230000",
    name="Pat Smith",
    company="Acme",
    source="web",
    page_url="http://127.0.0.1:8080/leads/lead-42",
)
#: Bound on one call in these tests (SIPp peers answer within ~1 s).
CALL_TIMEOUT_S = 20.0


def rep(index: int) -> Leg:
    return Leg(LegKind.REP, index)


# -- SIPp's message trace -------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """One message from a SIPp ``-trace_msg`` log."""

    direction: str  # "received" or "sent"
    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: str

    @property
    def method(self) -> str | None:
        first = self.start_line.split(" ", 1)[0]
        return None if first.startswith("SIP/") else first

    @property
    def status(self) -> int | None:
        parts = self.start_line.split(" ", 2)
        return int(parts[1]) if parts[0].startswith("SIP/") else None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def media(self) -> tuple[str, int]:
        return SessionDescription.parse(self.body).media_address(0)


def trace(result: SippResult) -> list[Logged]:
    """Every message SIPp received or sent, in order."""
    messages: list[Logged] = []
    for chunk in result.messages().split("\n-----------------------------------------------"):
        lines = chunk.split("\n")
        kind = next((line for line in lines if " message " in line), "")
        if "received" in kind:
            direction = "received"
        elif "sent" in kind:
            direction = "sent"
        else:
            continue
        start = lines.index(kind) + 2
        text = "\n".join(lines[start:]).strip("\n")
        head, _, body = text.partition("\n\n")
        head_lines = head.split("\n")
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in head_lines[1:])
        )
        messages.append(Logged(direction, head_lines[0], headers, body.strip()))
    return messages


def received(result: SippResult, method: str) -> list[Logged]:
    return [m for m in trace(result) if m.direction == "received" and m.method == method]


def sent_answers(result: SippResult) -> list[Logged]:
    """The 2xx with SDP this peer sent (its answers)."""
    return [
        m
        for m in trace(result)
        if m.direction == "sent" and m.status is not None and 200 <= m.status < 300 and m.body
    ]


def methods_received(result: SippResult) -> list[str]:
    return [m.method for m in trace(result) if m.direction == "received" and m.method]


# -- fixtures ---------------------------------------------------------------------------------


def peer(scenario: str, *, pause_ms: int | None = None, calls: int = 1, **keys: str) -> SippPeer:
    return SippPeer(
        scenario=scenario_path(scenario),
        pause_ms=pause_ms,
        calls=calls,
        timeout_s=CALL_TIMEOUT_S,
        keys=keys,
    )


def make_plan(
    reps: Sequence[SippProcess],
    *,
    mode: RingMode = RingMode.PARALLEL,
    ring_timeout_s: float = 10.0,
) -> RingPlan:
    return RingPlan(
        targets=tuple(
            RingTarget(rep_id=f"rep{i + 1}", uri=f"sip:rep{i + 1}@127.0.0.1:{p.local_port}")
            for i, p in enumerate(reps)
        ),
        mode=mode,
        ring_timeout_s=ring_timeout_s,
        prospect_number="+15551230000",
        caller_id="+15550100000",
        lead=LEAD,
    )


#: SIPp binds its media port + 2 (video) as well, which dialer.sipp does not check is free:
#: a start that loses that race is retried with fresh ports (bounded).
START_ATTEMPTS = 3


async def start_sipp(stack: AsyncExitStack, peer: SippPeer) -> SippProcess:
    for attempt in range(START_ATTEMPTS):
        try:
            return await stack.enter_async_context(SippProcess(peer))
        except SippError as error:
            if "Address already in use" not in str(error) or attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@asynccontextmanager
async def running(*peers: SippPeer) -> AsyncIterator[list[SippProcess]]:
    async with AsyncExitStack() as stack:
        yield [await start_sipp(stack, p) for p in peers]


@asynccontextmanager
async def controller(
    trunk: SippProcess | None,
    *,
    sip_config: SipConfig | None = None,
    prospect_ring_timeout_s: float = 10.0,
    max_calls: int = 10,
    trunk_max_waiting: int = 100,
    username: str = "",
    password: str = "",
    backup: SippProcess | None = None,
) -> AsyncIterator[CallController]:
    """A started controller whose trunk "primary" is ``trunk`` (and "backup", next in config
    order, is ``backup`` when given)."""
    port = trunk.local_port if trunk is not None else 9
    trunks = [
        TrunkConfig(
            name="primary",
            proxy=f"sip:127.0.0.1:{port}",
            username=username,
            password=password,
            max_calls=max_calls,
            options_interval_s=0,
        )
    ]
    if backup is not None:
        trunks.append(
            TrunkConfig(
                name="backup", proxy=f"sip:127.0.0.1:{backup.local_port}", options_interval_s=0
            )
        )
    calls = CallController(
        trunks=trunks,
        sip_config=sip_config,
        settings=ControllerSettings(
            bridge=BridgeSettings(prospect_ring_timeout_s=prospect_ring_timeout_s),
            trunk_max_waiting=trunk_max_waiting,
        ),
    )
    await calls.start()
    try:
        yield calls
    finally:
        await calls.close()


async def run_call(calls: CallController, plan: RingPlan) -> tuple[CallOutcome, list[CallEvent]]:
    events: list[CallEvent] = []
    call = calls.start_call(plan, on_event=events.append)
    return await ended(call), events


async def ended(call: Call) -> CallOutcome:
    """The call's outcome; a call still going after CALL_TIMEOUT_S fails the test with what
    it was waiting for."""
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            return await call.wait_ended()
    except TimeoutError:
        flow = call.flow
        legs = {str(r.leg): (r.result.value, r.final_status) for r in flow.ring.records()}
        bridge = flow.bridge
        raise AssertionError(
            f"call {call.id} not over after {CALL_TIMEOUT_S}s: ring={flow.ring.state.name} "
            f"legs={legs} bridge={bridge.state.name if bridge else None} "
            f"prospect={bridge.prospect_record if bridge else None}"
        ) from None


async def results(processes: Sequence[SippProcess]) -> list[SippResult]:
    return [await p.wait(CALL_TIMEOUT_S) for p in processes]


def assert_ok(result: SippResult) -> None:
    assert result.exit_code == 0 and result.failed_calls == 0, (
        f"{result.summary()}\n{result.errors()[-2000:]}"
    )


def assert_bridged_media(rep_result: SippResult, prospect_result: SippResult) -> None:
    """Each side's last offer from the daemon carries the other side's media address."""
    rep_invites = received(rep_result, "INVITE")
    prospect_invites = received(prospect_result, "INVITE")
    assert len(rep_invites) == 2, "initial INVITE + one bridge re-INVITE"
    assert rep_invites[-1].media == sent_answers(prospect_result)[0].media
    assert prospect_invites[-1].media == sent_answers(rep_result)[0].media


def assert_never_bridged_media(rep_result: SippResult, prospect_result: SippResult) -> None:
    """The call ended before any bridge: the rep's one INVITE was never followed by a
    re-INVITE to the prospect's media, and the prospect was offered the rep's media."""
    assert len(received(rep_result, "INVITE")) == 1, "no bridge re-INVITE"
    (answer,) = sent_answers(rep_result)
    assert [invite.media for invite in received(prospect_result, "INVITE")] == [answer.media]


def invites_by_call(result: SippResult) -> dict[str, list[Logged]]:
    """The INVITEs a peer received, by Call-ID, in order."""
    calls: dict[str, list[Logged]] = {}
    for invite in received(result, "INVITE"):
        calls.setdefault(invite.header("Call-ID") or "", []).append(invite)
    return calls


def assert_media_per_call(
    rep_result: SippResult, prospect_result: SippResult, *, bridged: int, unbridged: int = 0
) -> None:
    """Several calls through one rep peer and one prospect peer: ``bridged`` rep calls ended
    re-INVITEd to a prospect's answered media, ``unbridged`` never left their first offer, and
    every prospect INVITE carried a rep's answered media."""
    prospect_media = {answer.media for answer in sent_answers(prospect_result)}
    rep_media = {answer.media for answer in sent_answers(rep_result)}
    rep_calls = list(invites_by_call(rep_result).values())
    moved = [invites for invites in rep_calls if len(invites) == 2]
    assert len(moved) == bridged and len(rep_calls) == bridged + unbridged
    assert all(invites[-1].media in prospect_media for invites in moved)
    assert all(invite.media in rep_media for invite in received(prospect_result, "INVITE"))


# -- the acceptance tests of issue 5 ----------------------------------------------------------


async def test_parallel_rep_two_answers_others_get_cancel_with_reason() -> None:
    """3 reps in parallel, rep 2 answers after 1 s; reps 1 and 3 get CANCEL with the Reason
    (checked by their scenario). The prospect answers, is bridged, and hangs up first."""
    async with running(
        peer("calls_rep_cancelled"),
        peer("calls_rep_answer", pause_ms=1000),
        peer("calls_rep_cancelled"),
        peer("calls_prospect_answer_hangup", pause_ms=200),
    ) as (rep1, rep2, rep3, prospect):
        async with controller(prospect) as calls:
            outcome, events = await run_call(calls, make_plan([rep1, rep2, rep3]))
        r1, r2, r3, rp = await results([rep1, rep2, rep3, prospect])

    for result in (r1, r2, r3, rp):
        assert_ok(result)
    for loser in (r1, r3):
        (cancel,) = received(loser, "CANCEL")
        assert cancel.header("Reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    assert methods_received(r2) == ["INVITE", "ACK", "INVITE", "ACK", "BYE"]
    assert_bridged_media(r2, rp)

    assert outcome.result is CallResult.COMPLETED
    assert outcome.ended_by is Party.PROSPECT
    assert outcome.winner_rep_id == "rep2"
    assert [r.result for r in outcome.rep_legs] == [
        LegResult.CANCELLED,
        LegResult.ANSWERED,
        LegResult.CANCELLED,
    ]
    assert outcome.bridged_at is not None and outcome.rep_answered_at is not None
    assert outcome.rep_answered_at - outcome.started_at >= 0.9
    # The records hold the same SDP the peers saw.
    rep_sdp = outcome.leg(rep(1)).local_sdp
    prospect_sdp = outcome.leg(PROSPECT).local_sdp
    assert rep_sdp is not None and prospect_sdp is not None
    assert SessionDescription.parse(rep_sdp).media_address(0) == sent_answers(rp)[0].media
    assert SessionDescription.parse(prospect_sdp).media_address(0) == sent_answers(r2)[0].media
    kinds = [e.kind for e in events]
    assert kinds.index(CallEventKind.REP_ANSWERED) < kinds.index(CallEventKind.PROSPECT_INVITED)
    assert kinds.index(CallEventKind.BRIDGED) < kinds.index(CallEventKind.CALL_ENDED)
    assert kinds[-1] is CallEventKind.CALL_ENDED
    assert all(e.wall_at is not None for e in events)


async def test_events_queued_behind_a_slow_batch_callback_come_as_one_batch() -> None:
    """``on_events``: what queued while the callback was busy is delivered at once, in order
    (the three INVITEs of a parallel ring are published together), and the call waits for
    every batch; ``on_event`` and ``on_events`` together are refused."""
    async with running(
        peer("calls_rep_cancelled"),
        peer("calls_rep_answer", pause_ms=600),
        peer("calls_rep_cancelled"),
        peer("calls_prospect_answer_hangup", pause_ms=200),
    ) as (rep1, rep2, rep3, prospect):
        async with controller(prospect) as calls:
            plan = make_plan([rep1, rep2, rep3])
            with pytest.raises(ValueError, match="not both"):
                calls.start_call(plan, on_event=print, on_events=print)
            batches: list[list[CallEvent]] = []

            async def slow_writer(batch: Sequence[CallEvent]) -> None:
                batches.append(list(batch))
                await asyncio.sleep(0.3)  # a timeline write far slower than the signalling

            outcome = await ended(calls.start_call(plan, on_events=slow_writer))
        for result in await results([rep1, rep2, rep3, prospect]):
            assert_ok(result)

    assert outcome.result is CallResult.COMPLETED and outcome.winner_rep_id == "rep2"
    kinds = [[event.kind for event in batch] for batch in batches]
    assert kinds[0] == [CallEventKind.REP_INVITED] * 3, kinds
    assert [event.rep_id for event in batches[0]] == ["rep1", "rep2", "rep3"]
    # The answer, the prospect's INVITE and the losers' CANCEL results arrive while a batch is
    # being written: they queue and come together.
    assert any(len(batch) > 1 for batch in batches[1:]), kinds
    flat = [event for batch in batches for event in batch]
    assert all(batches) and len(batches) < len(flat)
    # In order, each event once: the call's own sequence, as on_event would have had it.
    assert [event.at for event in flat] == sorted(event.at for event in flat)
    assert flat[-1].kind is CallEventKind.CALL_ENDED
    assert [event.kind for event in flat].count(CallEventKind.CALL_ENDED) == 1
    order = [event.kind for event in flat]
    assert order.index(CallEventKind.REP_ANSWERED) < order.index(CallEventKind.PROSPECT_INVITED)
    assert order.index(CallEventKind.PROSPECT_INVITED) < order.index(CallEventKind.BRIDGED)


async def test_two_reps_answer_within_5_ms_exactly_one_is_bridged() -> None:
    """Both reps answer ~1 s in, 5 ms apart, without a provisional first (so no CANCEL can get
    in between): exactly one is bridged; the other's 2xx is ACKed and BYEd."""
    # T1 = 2 s: no INVITE retransmission before the answers arrive (SIPp is pausing then).
    async with running(
        peer("calls_rep_race", pause_ms=1000),
        peer("calls_rep_race", pause_ms=1005),
        peer("calls_prospect_answer_hangup", pause_ms=100),
    ) as (rep1, rep2, prospect):
        async with controller(prospect, sip_config=SipConfig(t1=2.0, t2=4.0)) as calls:
            outcome, _ = await run_call(calls, make_plan([rep1, rep2]))
        r1, r2, rp = await results([rep1, rep2, prospect])

    for result in (r1, r2, rp):
        assert_ok(result)
    assert outcome.result is CallResult.COMPLETED
    winner, loser = (r1, r2) if outcome.winner_rep_id == "rep1" else (r2, r1)
    assert methods_received(winner) == ["INVITE", "ACK", "INVITE", "ACK", "BYE"]
    assert methods_received(loser) == ["INVITE", "ACK", "BYE"]
    assert_bridged_media(winner, rp)
    assert sorted(r.result for r in outcome.rep_legs) == sorted(
        [LegResult.ANSWERED, LegResult.ANSWERED_LATE]
    )
    # The race really happened: both 200s reached the daemon, close together. SIPp sends them
    # 5 ms apart (pauses 1000 and 1005 ms); 50 ms leaves room for scheduling noise on a loaded
    # 2-core machine (SIPp's timer wheel, the INVITEs' own send skew, the event loop) while
    # staying far below what a sequential or retransmission-driven second answer would take.
    answered = [r.answered_at for r in outcome.rep_legs]
    assert None not in answered, answered
    first, second = sorted(a for a in answered if a is not None)
    assert second - first <= 0.05, answered
    assert len(received(rp, "INVITE")) == 1  # one prospect call, not two


async def test_sequential_busy_then_no_answer_then_answer() -> None:
    async with running(
        peer("uas_busy"),
        peer("uas_ring_no_answer"),
        peer("calls_rep_answer", pause_ms=200),
        peer("calls_prospect_answer_hangup", pause_ms=100),
    ) as (rep1, rep2, rep3, prospect):
        async with controller(prospect) as calls:
            plan = make_plan([rep1, rep2, rep3], mode=RingMode.SEQUENTIAL, ring_timeout_s=1.0)
            outcome, events = await run_call(calls, plan)
        r1, r2, r3, rp = await results([rep1, rep2, rep3, prospect])

    for result in (r1, r2, r3, rp):
        assert_ok(result)
    assert methods_received(r1) == ["INVITE", "ACK"]
    (cancel,) = received(r2, "CANCEL")
    assert cancel.header("Reason") is None  # a ring timeout is not "completed elsewhere"
    assert_bridged_media(r3, rp)
    assert outcome.result is CallResult.COMPLETED
    assert outcome.winner_rep_id == "rep3"
    records = outcome.rep_legs
    assert [r.result for r in records] == [
        LegResult.BUSY,
        LegResult.NO_ANSWER,
        LegResult.ANSWERED,
    ]
    assert records[0].final_status == 486 and records[1].final_status == 487
    # Sequential: each rep rang only after the previous one was done.
    assert records[1].invite_sent_at is not None and records[0].ended_at is not None
    assert records[1].invite_sent_at >= records[0].ended_at
    assert records[2].invite_sent_at is not None and records[1].cancelled_at is not None
    assert records[2].invite_sent_at >= records[1].cancelled_at
    ended = [e.rep_id for e in events if e.kind is CallEventKind.REP_LEG_ENDED]
    assert ended == ["rep1", "rep2"]


async def test_all_reps_fail_is_reps_no_answer() -> None:
    async with running(peer("uas_busy"), peer("uas_ring_no_answer"), peer("uas_busy")) as reps:
        async with controller(None) as calls:
            outcome, events = await run_call(calls, make_plan(reps, ring_timeout_s=1.0))
        rs = await results(reps)

    for result in rs:
        assert_ok(result)
    assert outcome.result is CallResult.REPS_NO_ANSWER
    assert outcome.prospect_leg is None and outcome.winner_rep_id is None
    assert [r.result for r in outcome.rep_legs] == [
        LegResult.BUSY,
        LegResult.NO_ANSWER,
        LegResult.BUSY,
    ]
    assert events[-1].call_result is CallResult.REPS_NO_ANSWER


async def test_prospect_busy_hangs_up_the_rep() -> None:
    async with running(peer("calls_rep_answer", pause_ms=100), peer("uas_busy", pause_ms=100)) as (
        rep1,
        prospect,
    ):
        async with controller(prospect) as calls:
            outcome, _ = await run_call(calls, make_plan([rep1]))
        r1, rp = await results([rep1, prospect])

    assert_ok(r1)
    assert_ok(rp)
    assert methods_received(r1) == ["INVITE", "ACK", "BYE"]  # no bridge re-INVITE
    assert outcome.result is CallResult.PROSPECT_BUSY
    prospect_leg = outcome.prospect_leg
    assert prospect_leg is not None
    assert (prospect_leg.result, prospect_leg.final_status) == (LegResult.BUSY, 486)
    assert_never_bridged_media(r1, rp)


async def test_prospect_no_answer_is_cancelled() -> None:
    async with running(peer("calls_rep_answer", pause_ms=100), peer("uas_ring_no_answer")) as (
        rep1,
        prospect,
    ):
        async with controller(prospect, prospect_ring_timeout_s=1.0) as calls:
            outcome, _ = await run_call(calls, make_plan([rep1]))
        r1, rp = await results([rep1, prospect])

    assert_ok(r1)
    assert_ok(rp)
    assert methods_received(r1) == ["INVITE", "ACK", "BYE"]
    assert methods_received(rp) == ["INVITE", "CANCEL", "ACK"]
    assert outcome.result is CallResult.PROSPECT_NO_ANSWER
    prospect_leg = outcome.prospect_leg
    assert prospect_leg is not None and prospect_leg.result is LegResult.NO_ANSWER
    assert prospect_leg.cancelled_at is not None and prospect_leg.invite_sent_at is not None
    assert prospect_leg.cancelled_at - prospect_leg.invite_sent_at >= 0.99
    assert_never_bridged_media(r1, rp)


async def test_rep_hangs_up_first_after_the_bridge() -> None:
    async with running(
        peer("calls_rep_answer_hangup", pause_ms=100),
        peer("calls_prospect_answer", pause_ms=100),
    ) as (rep1, prospect):
        async with controller(prospect) as calls:
            outcome, _ = await run_call(calls, make_plan([rep1]))
        r1, rp = await results([rep1, prospect])

    assert_ok(r1)
    assert_ok(rp)
    assert methods_received(rp) == ["INVITE", "ACK", "BYE"]
    assert_bridged_media(r1, rp)
    assert (outcome.result, outcome.ended_by) == (CallResult.COMPLETED, Party.REP)


async def test_rep_hangs_up_before_the_prospect_answers() -> None:
    async with running(peer("uas_answer_then_bye", pause_ms=500), peer("uas_ring_no_answer")) as (
        rep1,
        prospect,
    ):
        async with controller(prospect) as calls:
            outcome, _ = await run_call(calls, make_plan([rep1]))
        r1, rp = await results([rep1, prospect])

    assert_ok(r1)
    assert_ok(rp)
    assert methods_received(rp) == ["INVITE", "CANCEL", "ACK"]
    assert (outcome.result, outcome.ended_by) == (CallResult.REP_HUNG_UP, Party.REP)
    prospect_leg = outcome.prospect_leg
    assert prospect_leg is not None and prospect_leg.result is LegResult.CANCELLED
    assert_never_bridged_media(r1, rp)


async def test_trunk_digest_challenge_is_answered() -> None:
    async with running(peer("calls_rep_answer_hangup", pause_ms=100), peer("uas_auth")) as (
        rep1,
        prospect,
    ):
        async with controller(prospect, username="dialer", password="secret") as calls:
            outcome, _ = await run_call(calls, make_plan([rep1]))
        r1, rp = await results([rep1, prospect])

    assert_ok(r1)
    assert_ok(rp)  # the scenario verified the digest (verifyauth)
    first, second = received(rp, "INVITE")
    assert first.header("Authorization") is None
    authorization = second.header("Authorization")
    assert authorization is not None and 'username="dialer"' in authorization
    assert_bridged_media(r1, rp)
    assert outcome.result is CallResult.COMPLETED


async def test_trunk_at_max_calls_queues_the_second_prospect() -> None:
    """max_calls = 1: the second call's prospect leg waits until the first call's ends."""
    async with running(
        peer("calls_rep_answer", pause_ms=100, calls=2),
        peer("calls_prospect_answer_hangup", pause_ms=100, calls=2),
    ) as (rep1, prospect):
        async with controller(prospect, max_calls=1) as calls:
            first: Call = calls.start_call(make_plan([rep1]))
            second: Call = calls.start_call(make_plan([rep1]))
            one = await ended(first)
            two = await ended(second)
        r1, rp = await results([rep1, prospect])

    assert_ok(r1)
    assert_ok(rp)
    assert (one.result, two.result) == (CallResult.COMPLETED, CallResult.COMPLETED)
    first_prospect, second_prospect = one.prospect_leg, two.prospect_leg
    assert first_prospect is not None and second_prospect is not None
    assert first_prospect.ended_at is not None and second_prospect.invite_sent_at is not None
    assert second_prospect.invite_sent_at >= first_prospect.ended_at
    assert two.rep_answered_at is not None
    assert second_prospect.invite_sent_at - two.rep_answered_at >= 0.4  # it waited in line
    assert_media_per_call(r1, rp, bridged=2)


async def test_trunk_full_with_no_waiting_room_is_trunk_busy() -> None:
    async with running(
        peer("calls_rep_answer", pause_ms=100, calls=2),
        peer("calls_prospect_answer_hangup", pause_ms=300),
    ) as (rep1, prospect):
        async with controller(prospect, max_calls=1, trunk_max_waiting=0) as calls:
            first = calls.start_call(make_plan([rep1]))
            second = calls.start_call(make_plan([rep1]))
            one = await ended(first)
            two = await ended(second)
        r1, rp = await results([rep1, prospect])

    assert_ok(r1)
    assert_ok(rp)
    results_by_call = sorted([one.result, two.result])
    assert results_by_call == sorted([CallResult.COMPLETED, CallResult.TRUNK_BUSY])
    busy = one if one.result is CallResult.TRUNK_BUSY else two
    assert busy.prospect_leg is not None and busy.prospect_leg.result is LegResult.TRUNK_BUSY
    assert_media_per_call(r1, rp, bridged=1, unbridged=1)


async def test_trunk_503_fails_over_to_the_next_trunk() -> None:
    async with running(
        peer("calls_rep_answer_hangup", pause_ms=100),
        peer("calls_trunk_unavailable"),
        peer("calls_prospect_answer", pause_ms=100),
    ) as (rep1, primary, backup):
        async with controller(primary, backup=backup) as calls:
            outcome, events = await run_call(calls, make_plan([rep1]))
        r1, rt, rp = await results([rep1, primary, backup])

    for result in (r1, rt, rp):
        assert_ok(result)
    assert methods_received(rt) == ["INVITE", "ACK"]
    assert_bridged_media(r1, rp)
    assert outcome.result is CallResult.COMPLETED
    prospect_leg = outcome.prospect_leg
    assert prospect_leg is not None and prospect_leg.trunk == "backup"
    invited = [e.trunk for e in events if e.kind is CallEventKind.PROSPECT_INVITED]
    assert invited == ["primary", "backup"]


async def test_tel_rep_is_rung_through_the_trunk() -> None:
    """A rep whose URI is a tel: number is called through the trunk (counted against its
    max_calls: the prospect then spills over to the next trunk)."""
    async with running(
        peer("calls_rep_answer_hangup", pause_ms=100),
        peer("calls_prospect_answer", pause_ms=100),
    ) as (rep_trunk, prospect):
        async with controller(rep_trunk, backup=prospect, max_calls=1) as calls:
            plan = RingPlan(
                targets=(RingTarget(rep_id="mobile", uri="tel:+15557770001"),),
                prospect_number="+15551230000",
                caller_id="+15550100000",
                lead=LEAD,
            )
            outcome, _ = await run_call(calls, plan)
        rr, rp = await results([rep_trunk, prospect])

    assert_ok(rr)
    assert_ok(rp)
    (invite, _reinvite) = received(rr, "INVITE")
    assert invite.start_line.startswith("INVITE sip:+15557770001@127.0.0.1:")
    assert invite.start_line.split(" ")[1].endswith(";user=phone")
    assert_bridged_media(rr, rp)
    assert outcome.result is CallResult.COMPLETED
    assert (outcome.leg(rep(0)).trunk, outcome.leg(PROSPECT).trunk) == ("primary", "backup")
