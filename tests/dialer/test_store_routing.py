"""dialer.store.routing against a real PostgreSQL: reps, reservations across daemons, DNC."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg

from dialer.config import Config, RepConfig, parse_config
from dialer.domain import RepStatus
from dialer.routing import Outcome, Router, derive_facts, ruleset_document, ruleset_version
from dialer.store import NewLead, Store
from dialer.store.pipeline import PipelineStore
from dialer.store.pool import create_pool
from dialer.store.routing import CapacityLimits, RoundRobinTurn, RoutingStore

T0 = datetime(2024, 6, 4, 16, 0, tzinfo=UTC)


def rep(rep_id: str, **extra: object) -> RepConfig:
    values: dict[str, object] = {
        "id": rep_id,
        "name": rep_id.title(),
        "sip_uri": f"sip:{rep_id}@127.0.0.1",
    }
    values.update(extra)
    return RepConfig(**values)  # type: ignore[arg-type]


def floor_config(count: int) -> Config:
    return parse_config(
        {
            "reps": [
                {"id": f"rep{n:02d}", "sip_uri": f"sip:rep{n:02d}@127.0.0.1"} for n in range(count)
            ],
            "routing": {"rules": [{"name": "all", "ring": {"size": 1}}]},
            "compliance": {"calling_hours": "00:00-24:00"},
        },
        env={},
    )


async def test_sync_reps_keeps_live_status_and_deactivates_removed(db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann"), rep("bob", timezone="America/New_York")], at=T0)
    assert await routing.set_status("bob", RepStatus.AWAY, at=T0) is not None
    await routing.sync_reps([rep("bob", name="Robert"), rep("cat")], at=T0)
    reps = await routing.list_reps(at=T0)
    assert [(r.id, r.name, r.status) for r in reps] == [
        ("bob", "Robert", RepStatus.AWAY),
        ("cat", "Cat", RepStatus.AVAILABLE),
    ]
    everyone = await routing.list_reps(at=T0, include_inactive=True)
    assert [(r.id, r.active) for r in everyone] == [("ann", False), ("bob", True), ("cat", True)]
    assert await routing.set_status("ann", RepStatus.AVAILABLE) is None  # removed rep
    assert await routing.set_status("nobody", RepStatus.BUSY) is None
    states = await routing.rep_states(at=T0)
    assert set(states) == {"bob", "cat"}
    assert states["bob"].status is RepStatus.AWAY


async def test_counters_for_capacity_and_strategies(db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    # 2024-06-04 03:00 UTC is still June 3rd in New York.
    await routing.sync_reps([rep("ann", timezone="America/New_York")], at=T0)
    for minutes_ago in (5, 30, 90, 60 * 14):
        await routing.record_assignment(
            "ann", f"L{minutes_ago}", at=T0 - timedelta(minutes=minutes_ago)
        )
    assert await routing.record_call("ann", at=T0 - timedelta(hours=20))  # yesterday, NY time
    assert await routing.record_call("ann", at=T0 - timedelta(minutes=1))
    assert await routing.record_call("ann", at=T0)
    assert not await routing.record_call("nobody", at=T0)
    (record,) = await routing.list_reps(at=T0)
    assert record.leads_last_hour == 2
    assert record.leads_today == 3  # 14 h ago was 22:00 the day before in New York
    assert record.calls_today == 2
    assert record.last_assigned_at == T0 - timedelta(minutes=5)
    state = record.state
    assert (state.leads_last_hour, state.leads_today, state.calls_today) == (2, 3, 2)


# Columns that differ between two reps by identity or by the database clock (now()).
_NOT_COMPARED = frozenset({"id", "name", "sip_uri", "reserved_by", "status_changed_at"})


async def rep_row(db_pool: asyncpg.Pool, rep_id: str) -> dict[str, object]:
    row = await db_pool.fetchrow("SELECT * FROM reps WHERE id = $1", rep_id)
    assert row is not None
    return dict(row)


async def assignments(db_pool: asyncpg.Pool, rep_id: str) -> list[tuple[str, datetime]]:
    rows = await db_pool.fetch(
        "SELECT lead_id, assigned_at FROM rep_assignments WHERE rep_id = $1 ORDER BY assigned_at",
        rep_id,
    )
    return [(row["lead_id"], row["assigned_at"]) for row in rows]


async def test_rep_answered_does_what_on_call_assignment_and_call_did(
    db_pool: asyncpg.Pool,
) -> None:
    routing = RoutingStore(db_pool)
    pipeline = PipelineStore(db_pool, "d", lease_s=30)
    # ann takes the old path (three statements), bob the new one; same zone, same history: a
    # lead and a call at 16:00 New York time on June 3rd, two misses in a row.
    ny = "America/New_York"
    await routing.sync_reps([rep("ann", timezone=ny), rep("bob", timezone=ny)], at=T0)
    for rep_id in ("ann", "bob"):
        await routing.record_assignment(rep_id, f"old-{rep_id}", at=T0 - timedelta(hours=20))
        assert await routing.record_call(rep_id, at=T0 - timedelta(hours=20))
    await db_pool.execute("UPDATE reps SET missed_in_row = 2")
    assert await routing.reserve_reps("L-ann", ["ann"], 1, 30, "d", at=T0) == ["ann"]
    assert await routing.reserve_reps("L-bob", ["bob"], 1, 30, "d", at=T0) == ["bob"]

    # Answered (legs of the same lead) at 22:00 and 22:01 on June 3rd in New York (02:00 UTC
    # on the 4th: the UTC day differs), then at 12:00 on the 4th (a new day in New York).
    # (when, calls today, leads in the last hour, leads today), as the strategies read them.
    late = T0 - timedelta(hours=14)
    steps = [
        (late, 2, 1, 2),
        (late + timedelta(minutes=1), 3, 2, 3),
        (T0, 1, 1, 1),
    ]
    for at, calls_today, leads_last_hour, leads_today in steps:
        assert await pipeline.rep_on_call("L-ann", "ann")
        await routing.record_assignment("ann", "L-ann", at=at)
        assert await routing.record_call("ann", at=at)
        assert await routing.rep_answered("L-bob", "bob", at=at)

        ann, bob = await rep_row(db_pool, "ann"), await rep_row(db_pool, "bob")
        assert {k: v for k, v in bob.items() if k not in _NOT_COMPARED} == {
            k: v for k, v in ann.items() if k not in _NOT_COMPARED
        }
        assert bob["reserved_by"] == "L-bob"
        assert (bob["status"], bob["activity"], bob["missed_in_row"]) == ("busy", "on_call", 0)
        assert bob["updated_at"] == at
        assert [when for _, when in await assignments(db_pool, "bob")] == [
            when for _, when in await assignments(db_pool, "ann")
        ]
        (record,) = [r for r in await routing.list_reps(at=at) if r.id == "bob"]
        assert record.status is RepStatus.BUSY
        assert record.last_assigned_at == at  # least_recent
        assert (record.calls_today, record.leads_last_hour, record.leads_today) == (
            calls_today,
            leads_last_hour,
            leads_today,
        )
    assert [lead for lead, _ in await assignments(db_pool, "bob")] == ["old-bob"] + 3 * ["L-bob"]


async def test_rep_answered_changes_nothing_unless_reserved_for_the_lead(
    db_pool: asyncpg.Pool,
) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann"), rep("bob")], at=T0)
    assert await routing.reserve_reps("L1", ["ann"], 1, 30, "d", at=T0) == ["ann"]
    before = {rep_id: await rep_row(db_pool, rep_id) for rep_id in ("ann", "bob")}
    assert not await routing.rep_answered("L2", "ann", at=T0)  # reserved for another lead
    assert not await routing.rep_answered("L1", "bob", at=T0)  # not reserved at all
    assert not await routing.rep_answered("L1", "nobody", at=T0)
    assert {rep_id: await rep_row(db_pool, rep_id) for rep_id in ("ann", "bob")} == before
    assert await db_pool.fetchval("SELECT count(*) FROM rep_assignments") == 0


async def test_routing_reps_count_capacity_only_up_to_the_limits(db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    reps = [
        rep("ann", timezone="America/New_York", max_leads_per_hour=5, max_leads_per_day=2),
        rep("bob", max_leads_per_day=10),
        rep("cat"),
    ]
    await routing.sync_reps(reps, at=T0)
    for rep_id in ("ann", "bob", "cat"):
        for minutes_ago in (5, 30, 90, 60 * 14):
            await routing.record_assignment(
                rep_id, f"{rep_id}-{minutes_ago}", at=T0 - timedelta(minutes=minutes_ago)
            )
    limits = CapacityLimits.from_config(reps)
    assert limits == {"ann": CapacityLimits(5, 2), "bob": CapacityLimits(None, 10)}
    full = {record.id: record for record in await routing.list_reps(at=T0)}
    capped = {record.id: record for record in await routing.routing_reps(limits, at=T0)}
    assert list(capped) == ["ann", "bob", "cat"]
    # ann: 2 in the last hour (below 5: exact); 3 today in New York, counted up to 2.
    assert (full["ann"].leads_last_hour, full["ann"].leads_today) == (2, 3)
    assert (capped["ann"].leads_last_hour, capped["ann"].leads_today) == (2, 2)
    # bob: no hourly limit (not counted), 4 today in UTC (below 10: exact).
    assert (full["bob"].leads_last_hour, full["bob"].leads_today) == (2, 4)
    assert (capped["bob"].leads_last_hour, capped["bob"].leads_today) == (0, 4)
    # cat: no limit at all, nothing counted; everything else is as list_reps has it.
    assert (capped["cat"].leads_last_hour, capped["cat"].leads_today) == (0, 0)
    assert capped["cat"] == replace(full["cat"], leads_last_hour=0, leads_today=0)
    # The router's verdicts are the same on both: ann is at her daily limit.
    config = parse_config(
        {
            "reps": [
                {"id": "ann", "sip_uri": "sip:ann@127.0.0.1", "max_leads_per_day": 2},
                {"id": "bob", "sip_uri": "sip:bob@127.0.0.1", "max_leads_per_day": 10},
                {"id": "cat", "sip_uri": "sip:cat@127.0.0.1"},
            ],
            "compliance": {"calling_hours": "00:00-24:00"},
        },
        env={},
    )
    router = Router(config)
    facts = derive_facts(lead_id="L", phone="+14155552671", clock_start=T0)
    verdicts = [
        {c.rep: c.eligible for c in router.decide(facts, states, T0).candidates}
        for states in (
            {r.id: r.state for r in full.values()},
            {r.id: r.state for r in capped.values()},
        )
    ]
    assert verdicts[0] == verdicts[1] == {"ann": False, "bob": True, "cat": True}


async def test_reserve_release_and_lease(db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    await routing.sync_reps([rep("ann"), rep("bob"), rep("cat"), rep("dan")], at=T0)
    await routing.set_status("dan", RepStatus.BUSY, at=T0)
    got = await routing.reserve_reps("L1", ["bob", "ann", "dan", "cat"], 2, 30, "d1", at=T0)
    assert got == ["bob", "ann"]
    # Already reserved reps and busy reps are skipped.
    assert await routing.reserve_reps("L2", ["ann", "bob", "dan", "cat"], 2, 30, "d2", at=T0) == [
        "cat"
    ]
    states = await routing.rep_states(at=T0)
    assert states["ann"].reserved_by == "L1"
    assert states["ann"].reserved_until == T0 + timedelta(seconds=30)
    # The same lead may re-reserve its own reps (a retry after a restart).
    assert await routing.reserve_reps("L1", ["ann"], 1, 60, "d1", at=T0) == ["ann"]
    assert await routing.renew_reservations("L1", 90, at=T0) == ["ann", "bob"]
    # A lapsed lease frees the rep for another lead.
    later = T0 + timedelta(seconds=91)
    assert await routing.reserve_reps("L3", ["bob"], 1, 30, "d2", at=later) == ["bob"]
    assert await routing.release_reps("L1", at=later) == ["ann"]
    assert await routing.release_daemon("d2", at=later) == ["bob", "cat"]
    assert await routing.release_reps("L1") == []
    assert all(s.reserved_by is None for s in (await routing.rep_states(at=later)).values())
    assert await routing.reserve_reps("L4", [], 1, 30, "d1") == []
    assert await routing.reserve_reps("L4", ["ann"], 0, 30, "d1") == []


async def test_round_robin_cursor_rotates_from_the_database(db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    pool = ("ann", "bob", "cat")
    await routing.sync_reps([rep(r) for r in pool], at=T0)
    turn = RoundRobinTurn(key="rule-a", pool=pool)
    picked = []
    for number in range(5):
        # The caller's (stale) order always starts at ann: the cursor in the database decides.
        got = await routing.reserve_reps(
            f"L{number}", list(pool), 1, 30, "d", round_robin=turn, at=T0
        )
        picked.append(got[0])
        await routing.release_reps(f"L{number}", at=T0)
    assert picked == ["ann", "bob", "cat", "ann", "bob"]
    assert await routing.cursors() == {"rule-a": 2}


async def test_rule_sets_decisions_and_dnc(store: Store, db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    config = floor_config(2)
    version = ruleset_version(config)
    assert await routing.record_ruleset(version, ruleset_document(config), at=T0)
    assert not await routing.record_ruleset(version, ruleset_document(config), at=T0)
    row = await db_pool.fetchrow("SELECT body, first_activated_at FROM routing_rulesets")
    assert row is not None and row["body"] == ruleset_document(config)

    lead, _ = await store.create_lead(NewLead(phone="+14155550123", received_at=T0))
    await routing.sync_reps(config.reps, at=T0)
    router = Router(config)
    facts = derive_facts(lead_id=lead.id, phone=lead.phone, clock_start=T0)
    decision = router.decide(facts, await routing.rep_states(at=T0), T0)
    await routing.record_decision(
        lead_id=lead.id,
        version=decision.version,
        rule=decision.rule,
        outcome=decision.outcome.value,
        explanation=decision.to_json(),
        at=T0,
    )
    (stored,) = await routing.decisions(lead.id)
    assert stored["version"] == version
    assert stored["explanation"]["ring_plan"]["targets"] == ["rep00"]

    assert await routing.add_dnc("+14155550123", "asked", at=T0)
    assert not await routing.add_dnc("+14155550123")
    assert await routing.on_dnc("+14155550123")
    blocked = router.decide(facts, {}, T0, on_dnc=await routing.on_dnc(lead.phone))
    assert blocked.outcome is Outcome.BLOCKED
    assert await routing.remove_dnc("+14155550123")
    assert not await routing.remove_dnc("+14155550123")
    assert not await routing.on_dnc("+14155550123")


async def test_two_daemons_never_share_a_rep_and_round_robin_stays_fair(database_url: str) -> None:
    """2 routing workers with separate pools assign 500 leads to 20 reps."""
    config = floor_config(20)
    router = Router(config)
    pools = [await create_pool(database_url, min_size=1, max_size=2) for _ in range(2)]
    try:
        await RoutingStore(pools[0]).sync_reps(config.reps, at=T0)
        leads = iter(range(500))
        held: set[str] = set()
        assigned: Counter[str] = Counter()
        overlaps: list[str] = []

        async def worker(pool: asyncpg.Pool, daemon_id: str) -> int:
            routing = RoutingStore(pool)
            done = 0
            for number in leads:
                lead_id = f"{daemon_id}-lead-{number}"
                now = T0 + timedelta(milliseconds=number)
                facts = derive_facts(lead_id=lead_id, phone="+14155550123", clock_start=now)
                states = await routing.rep_states(at=now)
                decision = router.decide(facts, states, now, cursors=await routing.cursors())
                assert decision.cursor_key is not None
                got: list[str] = []
                for _ in range(50):  # everyone may be held by the other daemon for a moment
                    got = await routing.reserve_reps(
                        lead_id,
                        decision.ordered_reps,
                        decision.ring_size,
                        30,
                        daemon_id,
                        round_robin=RoundRobinTurn(
                            key=decision.cursor_key, pool=decision.pool_reps
                        ),
                        at=now,
                    )
                    if got:
                        break
                    await asyncio.sleep(0.001)
                assert len(got) == 1, got
                (rep_id,) = got
                if rep_id in held:
                    overlaps.append(rep_id)
                held.add(rep_id)
                assigned[rep_id] += 1
                # "Ringing": hold the rep for a real while (not one loop turn) so the other
                # daemon reserves meanwhile and a double reservation would show up in `held`.
                await asyncio.sleep(0.002)
                held.discard(rep_id)
                assert await routing.release_reps(lead_id, at=now) == [rep_id]
                done += 1
            return done

        counts = await asyncio.wait_for(
            asyncio.gather(worker(pools[0], "d1"), worker(pools[1], "d2")), timeout=90
        )
    finally:
        for pool in pools:
            await pool.close()
    assert sum(counts) == 500
    assert min(counts) > 0  # both daemons really took part
    assert overlaps == []
    assert sum(assigned.values()) == 500
    assert len(assigned) == 20
    assert max(assigned.values()) - min(assigned.values()) <= 1


async def test_two_daemons_competing_for_the_same_reps_never_share_one(database_url: str) -> None:
    """No cursor to spread them: both daemons want the same reps, in the same order."""
    reps = [rep(f"rep{n}") for n in range(6)]
    order = [r.id for r in reps]
    pools = [await create_pool(database_url, min_size=2, max_size=2) for _ in range(2)]
    try:
        await RoutingStore(pools[0]).sync_reps(reps, at=T0)
        held: dict[str, str] = {}
        overlaps: list[str] = []
        contended = 0

        async def worker(pool: asyncpg.Pool, daemon_id: str) -> None:
            nonlocal contended
            routing = RoutingStore(pool)

            async def one_lead(lead_id: str) -> None:
                nonlocal contended
                got = await routing.reserve_reps(lead_id, order, 3, 30, daemon_id, at=T0)
                contended += got[:1] != order[:1]
                for rep_id in got:
                    if rep_id in held:
                        overlaps.append(rep_id)
                    held[rep_id] = lead_id
                await asyncio.sleep(0.001)  # ringing
                for rep_id in got:
                    if held.get(rep_id) == lead_id:
                        del held[rep_id]
                assert await routing.release_reps(lead_id, at=T0) == sorted(got)

            for batch in range(60):
                # Two leads at once per daemon: four reservations racing for six reps.
                await asyncio.gather(
                    one_lead(f"{daemon_id}-{batch}-a"), one_lead(f"{daemon_id}-{batch}-b")
                )

        await asyncio.wait_for(
            asyncio.gather(worker(pools[0], "d1"), worker(pools[1], "d2")), timeout=60
        )
    finally:
        for pool in pools:
            await pool.close()
    assert overlaps == []
    assert contended > 0  # reservations really raced


async def test_reserving_goes_past_taken_candidates_in_order(db_pool: asyncpg.Pool) -> None:
    routing = RoutingStore(db_pool)
    ids = [f"r{n:03d}" for n in range(120)]
    await routing.sync_reps([rep(rep_id) for rep_id in ids], at=T0)
    # The first 14 and every rep from 16 to 99 are taken: one free in the first few
    # candidates, the next ones far down the order.
    taken = ids[:14] + ids[16:100]
    assert await routing.reserve_reps("other", taken, len(taken), 30, "d", at=T0) == taken
    order = list(reversed(ids[100:])) + ids[:100]  # any order: the router's
    got = await routing.reserve_reps("lead", order, 3, 30, "d", at=T0)
    assert got == order[:3]
    assert await routing.release_reps("lead", at=T0) == sorted(got)
    order = ids[:100] + ids[100:]
    got = await routing.reserve_reps("lead", order, 4, 30, "d", at=T0)
    assert got == ["r014", "r015", "r100", "r101"]
    assert await routing.reserve_reps("late", ids, 200, 30, "d", at=T0) == ids[102:]
