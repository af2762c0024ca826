"""dialer.store.pipeline against a real PostgreSQL: claims, leases, steps, rep lifecycle, pages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from dialer.config import RepConfig
from dialer.domain import LeadStatus, RepStatus
from dialer.store import NewLead, Store
from dialer.store.migrate import AnyConnection
from dialer.store.pipeline import (
    DecisionRecord,
    LeadChanges,
    PipelineLead,
    PipelineStore,
    decode_cursor,
    encode_cursor,
)
from dialer.store.pool import create_pool
from dialer.store.routing import RoutingStore

pytestmark = pytest.mark.postgres

LEASE_S = 30.0


def rep(rep_id: str) -> RepConfig:
    return RepConfig(id=rep_id, name=rep_id.title(), sip_uri=f"sip:{rep_id}@127.0.0.1")


async def add_leads(store: Store, count: int, *, start: datetime | None = None) -> list[str]:
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    ids = []
    for n in range(count):
        lead, created = await store.create_lead(
            NewLead(phone="+14155552671", received_at=start + timedelta(milliseconds=n))
        )
        assert created
        ids.append(lead.id)
    return ids


async def events(store: Store, lead_id: str) -> list[tuple[str, dict[str, object]]]:
    return [(event.kind, dict(event.data)) for event in await store.list_events(lead_id)]


async def test_claim_moves_new_leads_to_routing_with_an_event(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    ids = await add_leads(store, 3)
    daemon = PipelineStore(db_pool, "daemon-a", lease_s=LEASE_S)
    claims = await daemon.claim_ready(2)
    assert [claim.lead.id for claim in claims] == ids[:2]  # oldest first
    for claim in claims:
        assert claim.prior_status is LeadStatus.RECEIVED
        assert claim.previous_owner is None
        assert not claim.recovered
        assert claim.lead.status is LeadStatus.ROUTING
        assert claim.lead.claimed_by == "daemon-a"
        assert claim.lead.lease_until is not None
        assert await events(store, claim.lead.id) == [
            ("received", {}),
            ("routing", {"daemon": "daemon-a", "from": "received"}),
        ]
    other = PipelineStore(db_pool, "daemon-b", lease_s=LEASE_S)
    rest = await other.claim_ready(10)
    assert [claim.lead.id for claim in rest] == ids[2:]
    assert await other.claim_ready(10) == []
    assert await daemon.claim_ready(10) == []


async def test_two_daemons_claiming_at_once_share_without_overlap(
    store: Store, database_url: str
) -> None:
    ids = await add_leads(store, 120)
    pools = [await create_pool(database_url, min_size=2, max_size=4) for _ in range(2)]
    try:
        daemons = [
            PipelineStore(pool, name, lease_s=LEASE_S)
            for pool, name in zip(pools, ("a", "b"), strict=True)
        ]

        async def drain(daemon: PipelineStore) -> list[str]:
            taken: list[str] = []
            for _ in range(100):  # bounded; 120 leads in batches of 7 need ~18 rounds
                claims = await daemon.claim_ready(7)
                if not claims:
                    break
                taken += [claim.lead.id for claim in claims]
            return taken

        a, b = await asyncio.gather(*(drain(daemon) for daemon in daemons))
    finally:
        for pool in pools:
            await pool.close()
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(ids)
    assert a and b


async def test_lapsed_lease_is_recovered_by_another_daemon(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    [lead_id] = await add_leads(store, 1)
    dead = PipelineStore(db_pool, "dead", lease_s=0.2)
    [claim] = await dead.claim_ready(1)
    ringing = await dead.update(
        lead_id,
        at=datetime.now(UTC),
        kind="ringing_reps",
        status=LeadStatus.RINGING_REPS,
        changes=LeadChanges(add_ring_round=True, tried_reps=["ann"]),
    )
    assert ringing is not None and ringing.ring_rounds == 1
    alive = PipelineStore(db_pool, "alive", lease_s=LEASE_S)
    assert await alive.claim_ready(5) == []  # the lease still runs
    await asyncio.sleep(0.3)
    [recovered] = await alive.claim_ready(5)
    assert recovered.recovered
    assert recovered.prior_status is LeadStatus.RINGING_REPS
    assert recovered.previous_owner == "dead"
    assert recovered.lead.status is LeadStatus.RINGING_REPS  # the handler decides what next
    assert recovered.lead.tried_reps == ("ann",)
    kinds = [kind for kind, _ in await events(store, lead_id)]
    assert kinds == ["received", "routing", "ringing_reps", "recovered"]
    # The dead daemon, were it to wake up, can no longer change the lead.
    assert await dead.update(lead_id, at=datetime.now(UTC), kind="late") is None
    assert claim.lead.id == lead_id


async def hold(
    db_pool: asyncpg.Pool, lead_ids: list[str], owner: str, *, lease_s: list[float]
) -> None:
    """Set up leads in hand: claimed by ``owner``, half connected, half ringing reps, with the
    given lease left (negative: lapsed that long ago)."""
    for n, (lead_id, left) in enumerate(zip(lead_ids, lease_s, strict=True)):
        await db_pool.execute(
            "UPDATE leads SET claimed_by = $2, status = $3,"
            " lease_until = now() + make_interval(secs => $4::float8) WHERE id = $1::uuid",
            lead_id,
            owner,
            "connected" if n % 2 else "ringing_reps",
            left,
        )


async def schedule(db_pool: asyncpg.Pool, lead_id: str, in_s: float) -> None:
    await db_pool.execute(
        "UPDATE leads SET status = 'scheduled',"
        " next_attempt_at = now() + make_interval(secs => $2::float8) WHERE id = $1::uuid",
        lead_id,
        in_s,
    )


async def test_claim_skips_live_leases_and_recovers_lapsed_ones_before_fresh_work(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    # The oldest leads are in hand with live leases: a claim must never return them.
    in_hand = await add_leads(store, 40, start=now - timedelta(minutes=10))
    await hold(db_pool, in_hand, "holder", lease_s=[3600.0] * 40)
    # Lapsed leases of a dead daemon, the one received first lapsed last.
    lapsed = await add_leads(store, 3, start=now - timedelta(minutes=9))
    await hold(db_pool, lapsed, "dead", lease_s=[-1.0, -2.0, -3.0])
    # Fresh work, one lead older than everything else, and retries due now or later.
    [oldest] = await add_leads(store, 1, start=now - timedelta(minutes=20))
    fresh = await add_leads(store, 2, start=now - timedelta(minutes=1))
    due, later = await add_leads(store, 2, start=now - timedelta(seconds=30))
    await schedule(db_pool, due, -300.0)  # due 5 minutes ago: between `oldest` and `fresh`
    await schedule(db_pool, later, 3600.0)

    daemon = PipelineStore(db_pool, "daemon-a", lease_s=LEASE_S)
    first = await daemon.claim_ready(2)  # recovery alone fills a small batch
    second = await daemon.claim_ready(3)  # the last recovered lead, then the oldest work
    rest = await daemon.claim_ready(100)
    assert [claim.lead.id for claim in first] == [lapsed[2], lapsed[1]]
    assert [claim.lead.id for claim in second] == [lapsed[0], oldest, due]
    assert [claim.lead.id for claim in rest] == fresh
    assert await daemon.claim_ready(100) == []

    recovered = first + second[:1]
    assert all(claim.recovered and claim.previous_owner == "dead" for claim in recovered)
    assert [claim.lead.status.value for claim in recovered] == [
        "ringing_reps",
        "connected",
        "ringing_reps",
    ]
    assert [kind for kind, _ in await events(store, lapsed[0])] == ["received", "recovered"]
    for claim in second[1:] + rest:
        assert not claim.recovered and claim.previous_owner is None
        assert claim.lead.status is LeadStatus.ROUTING
    assert second[2].prior_status is LeadStatus.SCHEDULED
    holders = await db_pool.fetch(
        "SELECT claimed_by, count(*) FROM leads WHERE id = ANY($1::uuid[]) GROUP BY 1",
        [*in_hand, later],
    )
    assert {row["claimed_by"]: row["count"] for row in holders} == {"holder": 40, None: 1}


async def test_two_daemons_share_lapsed_and_fresh_work_without_touching_live_leases(
    store: Store, db_pool: asyncpg.Pool, database_url: str
) -> None:
    now = datetime.now(UTC)
    in_hand = await add_leads(store, 80, start=now - timedelta(minutes=10))
    await hold(db_pool, in_hand, "holder", lease_s=[3600.0] * 80)
    lapsed = await add_leads(store, 25, start=now - timedelta(minutes=9))
    await hold(db_pool, lapsed, "dead", lease_s=[-float(n) for n in range(1, 26)])
    fresh = await add_leads(store, 50, start=now - timedelta(minutes=5))
    for lead_id in fresh[::10]:
        await schedule(db_pool, lead_id, -1.0)
    pools = [await create_pool(database_url, min_size=2, max_size=4) for _ in range(2)]
    try:
        daemons = [
            PipelineStore(pool, name, lease_s=LEASE_S)
            for pool, name in zip(pools, ("a", "b"), strict=True)
        ]

        async def drain(daemon: PipelineStore) -> list[tuple[str, bool]]:
            taken: list[tuple[str, bool]] = []
            for _ in range(100):  # bounded; 75 leads in batches of 7 need ~11 rounds
                claims = await daemon.claim_ready(7)
                if not claims:
                    break
                taken += [(claim.lead.id, claim.recovered) for claim in claims]
            return taken

        a, b = await asyncio.gather(*(drain(daemon) for daemon in daemons))
    finally:
        for pool in pools:
            await pool.close()
    ids_a, ids_b = [lead_id for lead_id, _ in a], [lead_id for lead_id, _ in b]
    assert not set(ids_a) & set(ids_b)
    assert sorted(ids_a + ids_b) == sorted(lapsed + fresh)
    assert a and b
    # Each daemon took every lapsed lead it got before any fresh one: a claim reaches fresh
    # work only when no lapsed lead is left to lock.
    for taken in (a, b):
        flags = [was_recovered for _, was_recovered in taken]
        assert flags == sorted(flags, reverse=True)
    assert {lead_id for lead_id, was_recovered in a + b if was_recovered} == set(lapsed)
    owners = await db_pool.fetch(
        "SELECT DISTINCT claimed_by FROM leads WHERE id = ANY($1::uuid[])", in_hand
    )
    assert [row["claimed_by"] for row in owners] == ["holder"]


async def test_update_checks_ownership_and_status_and_keeps_decision(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    [lead_id] = await add_leads(store, 1)
    owner = PipelineStore(db_pool, "owner", lease_s=LEASE_S)
    stranger = PipelineStore(db_pool, "stranger", lease_s=LEASE_S)
    await owner.claim_ready(1)
    now = datetime.now(UTC)
    assert await stranger.update(lead_id, at=now, kind="x", status=LeadStatus.COMPLETED) is None
    assert (
        await owner.update(
            lead_id,
            at=now,
            kind="x",
            status=LeadStatus.CONNECTED,
            from_statuses=[LeadStatus.CALLING_PROSPECT],
        )
        is None
    )
    due = now + timedelta(minutes=5)
    decision = DecisionRecord(
        version="v1", rule="fallback", outcome="routed", explanation={"why": 1}, decided_at=now
    )
    await db_pool.execute("INSERT INTO routing_rulesets VALUES ('v1', '{}'::jsonb, now(), now())")
    moved = await owner.update(
        lead_id,
        at=now,
        kind="ringing_reps",
        data={"round": 1},
        status=LeadStatus.RINGING_REPS,
        from_statuses=[LeadStatus.ROUTING],
        changes=LeadChanges(sla_due_at=due, tried_reps=["ann", "bob"], add_ring_round=True),
        decision=decision,
    )
    assert moved is not None
    assert moved.status is LeadStatus.RINGING_REPS and moved.sla_due_at == due
    rows = await db_pool.fetch("SELECT version, rule, explanation FROM routing_decisions")
    assert [(r["version"], r["rule"], r["explanation"]) for r in rows] == [
        ("v1", "fallback", {"why": 1})
    ]
    # coalesce: the first SLA deadline, first touch and call time stay; tried reps dedupe.
    answered = now + timedelta(seconds=3)
    again = await owner.update(
        lead_id,
        at=answered,
        kind="rep_answered",
        changes=LeadChanges(
            sla_due_at=due + timedelta(hours=1),
            first_touch_at=answered,
            assigned_rep="bob",
            tried_reps=["bob", "cat"],
        ),
    )
    assert again is not None
    assert again.sla_due_at == due
    assert again.first_touch_at == answered and again.lead.assigned_rep == "bob"
    assert again.tried_reps == ("ann", "bob", "cat")
    later = await owner.update(
        lead_id,
        at=answered + timedelta(seconds=9),
        kind=None,
        changes=LeadChanges(first_touch_at=answered + timedelta(seconds=9)),
    )
    assert later is not None and later.first_touch_at == answered
    assert [e.seq for e in await store.list_events(lead_id)] == [1, 2, 3, 4]  # no event: no seq
    done = await owner.update(
        lead_id,
        at=now,
        kind="completed",
        status=LeadStatus.COMPLETED,
        changes=LeadChanges(release=True, status_reason="ok"),
    )
    assert done is not None and done.claimed_by is None and done.status_reason == "ok"
    assert await owner.claim_ready(5) == []


async def test_scheduled_leads_are_claimed_when_due(store: Store, db_pool: asyncpg.Pool) -> None:
    [soon, later] = await add_leads(store, 2)
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S)
    await daemon.claim_ready(2)
    now = datetime.now(UTC)
    for lead_id, delay in ((soon, -1), (later, 3600)):
        await daemon.update(
            lead_id,
            at=now,
            kind="scheduled",
            status=LeadStatus.SCHEDULED,
            changes=LeadChanges(next_attempt_at=now + timedelta(seconds=delay), release=True),
        )
    [claim] = await daemon.claim_ready(5)
    assert claim.lead.id == soon
    assert claim.prior_status is LeadStatus.SCHEDULED and not claim.recovered
    assert claim.lead.status is LeadStatus.ROUTING and claim.lead.next_attempt_at is None


async def test_waiting_leads_are_offered_to_free_reps_oldest_sla_first(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann"), rep("bob"), rep("cat")])
    for rep_id in ("ann", "bob", "cat"):
        await routing.set_status(rep_id, RepStatus.AWAY)
    ids = await add_leads(store, 12)
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S)
    await daemon.claim_ready(12)
    now = datetime.now(UTC)
    dues = [now + timedelta(minutes=(7 * n) % 12) for n in range(12)]  # a shuffled order
    for lead_id, due in zip(ids, dues, strict=True):
        await daemon.update(
            lead_id,
            at=now,
            kind="waiting_for_rep",
            status=LeadStatus.WAITING_FOR_REP,
            changes=LeadChanges(
                sla_due_at=due,
                waiting_since=now,
                next_attempt_at=now + timedelta(hours=1),
                release=True,
            ),
        )
    assert await daemon.claim_ready(5) == []
    assert await daemon.claim_waiting(50, any_time=True) == []  # nobody free
    await routing.set_status("ann", RepStatus.AVAILABLE)
    await routing.set_status("bob", RepStatus.AVAILABLE)
    assert await daemon.claim_waiting(50) == []  # re-check time not reached
    claims = await daemon.claim_waiting(50, any_time=True)  # a rep became free
    # Two free reps: up to five leads each, earliest deadlines first.
    by_due = [lead_id for _, lead_id in sorted(zip(dues, ids, strict=True))]
    assert [claim.lead.id for claim in claims] == by_due[:10]
    assert all(claim.lead.status is LeadStatus.WAITING_FOR_REP for claim in claims)
    kinds = [kind for kind, _ in await events(store, claims[0].lead.id)]
    assert kinds == ["received", "routing", "waiting_for_rep"]  # claiming is silent
    assert len(await daemon.claim_waiting(50, any_time=True)) == 2  # the rest


async def test_renew_extends_leases_and_reservations_and_reports_lost_leads(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann")])
    [mine, theirs] = await add_leads(store, 2)
    daemon = PipelineStore(db_pool, "d", lease_s=60)
    other = PipelineStore(db_pool, "other", lease_s=60)
    await daemon.claim_ready(1)
    await other.claim_ready(1)
    assert await routing.reserve_reps(mine, ["ann"], 1, 1.0, "d") == ["ann"]
    before = await routing.get_rep("ann")
    assert before is not None and before.reserved_until is not None
    held = await daemon.renew([mine, theirs, "not-a-uuid"])
    assert held == {mine}
    after = await routing.get_rep("ann")
    assert after is not None and after.reserved_until is not None
    assert after.reserved_until > before.reserved_until + timedelta(seconds=30)


async def test_rep_lifecycle_on_call_wrap_up_available(store: Store, db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann"), rep("bob")])
    [lead_id] = await add_leads(store, 1)
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S)
    await daemon.claim_ready(1)
    assert await routing.reserve_reps(lead_id, ["ann", "bob"], 2, LEASE_S, "d") == ["ann", "bob"]
    await daemon.update(
        lead_id,
        at=datetime.now(UTC),
        kind="ringing_reps",
        status=LeadStatus.RINGING_REPS,
        changes=LeadChanges(ringing_reps=["ann", "bob"]),
    )
    rows = await db_pool.fetch("SELECT id, activity FROM reps ORDER BY id")
    activity = {row["id"]: row["activity"] for row in rows}
    assert activity == {"ann": "ringing", "bob": "ringing"}
    assert await daemon.rep_on_call(lead_id, "ann")
    assert not await daemon.rep_on_call("00000000-0000-7000-8000-000000000000", "bob")
    over = await daemon.rep_leg_over(lead_id, "bob", missed=False, max_missed=1)
    assert over is not None and not over.away and over.missed_in_row == 0
    ann = await routing.get_rep("ann")
    assert ann is not None and ann.status is RepStatus.BUSY and ann.reserved_by == lead_id
    freed = await daemon.release_lead_reps(lead_id, wrap_up_rep="ann", wrap_up_s=0.3)
    assert freed == {"ann": "wrap_up"}
    assert await daemon.sweep_reps() == []
    await asyncio.sleep(0.4)
    assert await daemon.sweep_reps() == ["ann"]
    ann = await routing.get_rep("ann")
    assert ann is not None and ann.status is RepStatus.AVAILABLE and ann.reserved_by is None


async def test_missed_leads_in_a_row_put_a_rep_away(store: Store, db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann")])
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S)
    ids = await add_leads(store, 3)
    outcomes = []
    for lead_id, missed in zip(ids, (True, False, True), strict=True):
        assert await routing.reserve_reps(lead_id, ["ann"], 1, LEASE_S, "d") == ["ann"]
        after = await daemon.rep_leg_over(lead_id, "ann", missed=missed, max_missed=2)
        assert after is not None
        outcomes.append((after.missed_in_row, after.status))
    # A leg cancelled because another rep answered does not count, nor reset the count.
    assert outcomes == [(1, "available"), (1, "available"), (2, "away")]
    # Away reps are not reserved any more.
    [extra] = await add_leads(store, 1)
    assert await routing.reserve_reps(extra, ["ann"], 1, LEASE_S, "d") == []


async def test_sweep_frees_reps_whose_daemon_died(store: Store, db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann"), rep("bob")])
    [lead_id] = await add_leads(store, 1)
    dead = PipelineStore(db_pool, "dead", lease_s=LEASE_S)
    await dead.claim_ready(1)
    assert await routing.reserve_reps(lead_id, ["ann", "bob"], 2, 0.2, "dead") == ["ann", "bob"]
    await dead.update(
        lead_id,
        at=datetime.now(UTC),
        kind="ringing_reps",
        changes=LeadChanges(ringing_reps=["ann", "bob"]),
    )
    assert await dead.rep_on_call(lead_id, "ann")
    assert await dead.sweep_reps() == []
    await asyncio.sleep(0.3)
    assert await PipelineStore(db_pool, "alive", lease_s=LEASE_S).sweep_reps() == ["ann", "bob"]
    reps = await routing.list_reps()
    assert [(r.id, r.status, r.reserved_by) for r in reps] == [
        ("ann", RepStatus.AVAILABLE, None),
        ("bob", RepStatus.AVAILABLE, None),
    ]


async def test_expire_and_unclaim_own_work(store: Store, db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann")])
    [first, second] = await add_leads(store, 2)
    daemon = PipelineStore(db_pool, "fixed-name", lease_s=3600)
    await daemon.claim_ready(2)
    await routing.reserve_reps(first, ["ann"], 1, 3600, "fixed-name")
    # A restart under the same instance id takes its leads back at once.
    assert await daemon.expire_own() == (2, 1)
    claims = await daemon.claim_ready(5)
    assert sorted(claim.lead.id for claim in claims) == sorted([first, second])
    assert all(claim.recovered for claim in claims)
    assert await daemon.unclaim_own() == (2, 1)
    assert (await routing.get_rep("ann")).reserved_by is None  # type: ignore[union-attr]
    other = PipelineStore(db_pool, "other", lease_s=60)
    assert len(await other.claim_ready(5)) == 2


async def test_list_leads_pages_by_keyset(store: Store, db_pool: asyncpg.Pool) -> None:
    start = datetime(2024, 6, 4, 12, 0, tzinfo=UTC)
    ids = await add_leads(store, 7, start=start)
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S)
    seen: list[str] = []
    cursor = None
    pages = 0
    for _ in range(10):
        page = await daemon.list_leads(limit=3, cursor=cursor)
        pages += 1
        seen += [lead.id for lead in page.leads]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids and pages == 3
    since = await daemon.list_leads(since=start + timedelta(milliseconds=5))
    assert [lead.id for lead in since.leads] == ids[5:] and since.next_cursor is None
    await daemon.claim_ready(2)
    routing_page = await daemon.list_leads(status=LeadStatus.ROUTING)
    assert [lead.id for lead in routing_page.leads] == ids[:2]
    received = await daemon.list_leads(status=LeadStatus.RECEIVED, limit=5)
    assert [lead.id for lead in received.leads] == ids[2:]
    with pytest.raises(ValueError):
        await daemon.list_leads(cursor="garbage!")


def test_cursor_round_trip_and_rejects_foreign_values() -> None:
    moment = datetime(2024, 6, 4, 12, 0, 0, 123456, tzinfo=UTC)
    lead_id = "01900000-0000-7000-8000-000000000001"
    received_at, parsed = decode_cursor(encode_cursor(moment, lead_id))
    assert received_at == moment and str(parsed) == lead_id
    for bad in ("", "e30", "WyJ4IiwgInkiXQ", encode_cursor(moment, lead_id)[:-3]):
        with pytest.raises(ValueError):
            decode_cursor(bad)


async def test_routing_context_counts_todays_prospect_calls_and_dnc(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    [lead_id] = await add_leads(store, 1)
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S)
    now = datetime.now(UTC)
    assert await daemon.routing_context(lead_id, "+14155552671", now) == type(
        await daemon.routing_context(lead_id, "+14155552671", now)
    )(on_dnc=False, attempts_today=0)
    await daemon.claim_ready(1)
    for hours_ago in (30, 2, 1):
        await daemon.update(lead_id, at=now - timedelta(hours=hours_ago), kind="calling_prospect")
    await RoutingStore(db_pool).add_dnc("+14155552671")
    context = await daemon.routing_context(lead_id, "+14155552671", now)
    assert context.on_dnc and context.attempts_today == 2


async def test_new_leads_and_freed_reps_notify_listeners(
    store: Store, db_pool: asyncpg.Pool, database_url: str
) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann")])
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(
            "dialer_pipeline", lambda *args: received.put_nowait(str(args[3]))
        )
        [lead_id] = await add_leads(store, 1)
        assert await asyncio.wait_for(received.get(), 5) == "lead"
        await routing.reserve_reps(lead_id, ["ann"], 1, LEASE_S, "d")
        await routing.release_reps(lead_id)
        assert await asyncio.wait_for(received.get(), 5) == "rep:ann"
        await routing.set_status("ann", RepStatus.AWAY)
        await routing.set_status("ann", RepStatus.AVAILABLE)
        assert await asyncio.wait_for(received.get(), 5) == "rep:ann"
        assert received.empty()
    finally:
        await listener.close()


async def test_step_hook_commits_or_rolls_back_with_the_step(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    seen: list[tuple[str, str, int]] = []

    async def hook(
        conn: AnyConnection, lead: PipelineLead, kind: str, data: Mapping[str, Any], seq: int
    ) -> None:
        seen.append((lead.id, kind, seq))
        await conn.execute("INSERT INTO dnc (phone, reason) VALUES ($1, $2)", f"+1{seq}", kind)
        if data.get("fail"):
            raise RuntimeError("the outbox refused")

    [lead_id] = await add_leads(store, 1)
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S, on_step=hook)
    await daemon.claim_ready(1)
    # The claim's own routing step runs the hook too (lead.received is queued there).
    assert seen == [(lead_id, "routing", 2)]
    now = datetime.now(UTC)
    moved = await daemon.update(
        lead_id, at=now, kind="ringing_reps", status=LeadStatus.RINGING_REPS
    )
    assert moved is not None and seen[1:] == [(lead_id, "ringing_reps", 3)]
    with pytest.raises(RuntimeError):
        await daemon.update(
            lead_id, at=now, kind="connected", data={"fail": True}, status=LeadStatus.CONNECTED
        )
    # The failed step left nothing behind: status, timeline and the hook's row all rolled back.
    after = await daemon.get(lead_id)
    assert after is not None and after.status is LeadStatus.RINGING_REPS
    assert [kind for kind, _ in await events(store, lead_id)][-1] == "ringing_reps"
    assert await db_pool.fetchval("SELECT count(*) FROM dnc") == 2
    assert await daemon.update(lead_id, at=now, kind=None, changes=LeadChanges()) is not None
    assert len(seen) == 3  # no event, no hook


async def test_append_events_writes_a_burst_in_one_statement_with_consecutive_seqs(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    [lead_id] = await add_leads(store, 1)
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S)
    [claim] = await daemon.claim_ready(1)  # received (1), routing (2)
    start = datetime.now(UTC)
    burst = [
        ("rep_invited", {"leg": "rep0", "rep_id": "ann"}, start),
        ("rep_invited", {"leg": "rep1", "rep_id": "bob"}, start + timedelta(milliseconds=1)),
        ("rep_ringing", {}, start + timedelta(milliseconds=7)),
    ]
    moved = await daemon.append_events(lead_id, burst)
    assert moved is not None and moved.updated_at == burst[-1][2]
    assert moved.status is claim.lead.status  # nothing but the timeline changed
    stored = await store.list_events(lead_id)
    assert [(e.seq, e.kind, dict(e.data), e.at) for e in stored[2:]] == [
        (seq, kind, data, at) for seq, (kind, data, at) in enumerate(burst, start=3)
    ]
    # The next step takes the seq after the burst's.
    await daemon.update(lead_id, at=start, kind="ringing_reps", status=LeadStatus.RINGING_REPS)
    assert [e.seq for e in await store.list_events(lead_id)] == [1, 2, 3, 4, 5, 6]
    # Not ours any more: nothing is written.
    other = PipelineStore(db_pool, "other", lease_s=LEASE_S)
    assert await other.append_events(lead_id, burst) is None
    assert len(await store.list_events(lead_id)) == 6


async def test_append_events_runs_the_step_hook_per_event_in_one_transaction(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    seen: list[tuple[str, int, datetime | None, bool]] = []

    async def hook(
        conn: AnyConnection, lead: PipelineLead, kind: str, data: Mapping[str, Any], seq: int
    ) -> None:
        # The event row and the lead's event_seq are there already, inside the transaction.
        row = await conn.fetchrow(
            "SELECT kind, (SELECT event_seq FROM leads WHERE id = $1) AS last"
            " FROM lead_events WHERE lead_id = $1 AND seq = $2",
            uuid.UUID(lead.id),
            seq,
        )
        assert row is not None and row["kind"] == kind
        seen.append((kind, seq, lead.updated_at, conn.is_in_transaction()))
        await conn.execute("INSERT INTO dnc (phone, reason) VALUES ($1, $2)", f"+1{seq}", kind)
        if data.get("fail"):
            raise RuntimeError("the outbox refused")

    [lead_id] = await add_leads(store, 1)
    daemon = PipelineStore(db_pool, "d", lease_s=LEASE_S, on_step=hook)
    await daemon.claim_ready(1)  # its routing step ran the hook once (seq 2)
    seen.clear()
    start = datetime.now(UTC)
    later = start + timedelta(milliseconds=5)
    assert await daemon.append_events(lead_id, [("a", {}, start), ("b", {}, later)]) is not None
    # Once per event, its own seq and time, as two update() steps would have given it.
    assert seen == [("a", 3, start, True), ("b", 4, later, True)]
    assert await db_pool.fetchval("SELECT count(*) FROM dnc") == 3

    seen.clear()
    failing = [("c", {}, later), ("d", {}, later), ("e", {"fail": True}, later)]
    with pytest.raises(RuntimeError):
        await daemon.append_events(lead_id, failing)
    assert [seq for _, seq, _, _ in seen] == [5, 6, 7]
    # The hook failing on the last event rolled back all three rows and the hook's own rows.
    assert [e.kind for e in await store.list_events(lead_id)][2:] == ["a", "b"]
    assert await db_pool.fetchval("SELECT count(*) FROM dnc") == 3
    after = await daemon.get(lead_id)
    assert after is not None and after.updated_at == later
    # Lost claim: no hook call.
    seen.clear()
    other = PipelineStore(db_pool, "other", lease_s=LEASE_S, on_step=hook)
    assert await other.append_events(lead_id, [("f", {}, later)]) is None
    assert seen == []
