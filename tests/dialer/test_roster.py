"""dialer.roster against a real PostgreSQL: one read shared, freed reps patched in, own changes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import asyncpg

from dialer.config import RepConfig
from dialer.domain import RepStatus
from dialer.roster import RepRoster
from dialer.store.routing import CapacityLimits, RepRecord, RoutingStore

T0 = datetime(2024, 6, 4, 16, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def rep(rep_id: str) -> RepConfig:
    return RepConfig(id=rep_id, name=rep_id.title(), sip_uri=f"sip:{rep_id}@127.0.0.1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class GatedStore(RoutingStore):
    """Reads the reps, then holds the result until ``gate`` opens (a read in flight)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.gate = asyncio.Event()
        self.read_done = asyncio.Event()

    async def routing_reps(
        self, limits: Mapping[str, CapacityLimits], *, at: datetime | None = None
    ) -> list[RepRecord]:
        records = await super().routing_reps(limits, at=at)
        self.read_done.set()
        await self.gate.wait()
        return records


async def floor(pool: asyncpg.Pool, *ids: str) -> RoutingStore:
    routing = RoutingStore(pool)
    await routing.sync_reps([rep(rep_id) for rep_id in ids], at=T0)
    return routing


async def test_one_read_serves_decisions_until_it_is_max_age_old(db_pool: asyncpg.Pool) -> None:
    routing = await floor(db_pool, "ann", "bob")
    clock = FakeClock()
    roster = RepRoster(routing, {}, max_age_s=0.25, clock=clock)
    first = await roster.snapshot(T0)
    assert sorted(first.states) == ["ann", "bob"] and roster.reads == 1
    await routing.set_status("bob", RepStatus.AWAY, at=T0)
    clock.now += 0.2
    assert await roster.snapshot(T0) is first and roster.reads == 1
    assert first.states["bob"].status is RepStatus.AVAILABLE  # as read
    clock.now += 0.1
    second = await roster.snapshot(T0)
    assert roster.reads == 2 and second.states["bob"].status is RepStatus.AWAY
    third = await roster.snapshot(T0, fresh=True)
    assert roster.reads == 3 and third is not second


async def test_concurrent_decisions_share_one_read(db_pool: asyncpg.Pool) -> None:
    routing = await floor(db_pool, "ann")
    roster = RepRoster(routing, {}, max_age_s=0.25)
    snapshots = await asyncio.gather(*(roster.snapshot(T0) for _ in range(8)))
    assert roster.reads == 1
    assert all(snapshot is snapshots[0] for snapshot in snapshots)


async def test_max_age_zero_reads_for_every_decision(db_pool: asyncpg.Pool) -> None:
    routing = await floor(db_pool, "ann")
    roster = RepRoster(routing, {}, max_age_s=0)
    await roster.snapshot(T0)
    await roster.snapshot(T0)
    assert roster.reads == 2


async def test_a_freed_rep_is_marked_free_without_a_read(db_pool: asyncpg.Pool) -> None:
    routing = await floor(db_pool, "ann", "bob")
    roster = RepRoster(routing, {}, max_age_s=60)
    assert await routing.reserve_reps("lead-1", ["ann"], 1, 30, "d", at=T0) == ["ann"]
    await routing.set_status("bob", RepStatus.AWAY, at=T0)
    snapshot = await roster.snapshot(T0)
    assert snapshot.states["ann"].reserved_by == "lead-1"
    assert snapshot.states["bob"].status is RepStatus.AWAY
    roster.rep_freed("ann")
    roster.rep_freed("bob")
    roster.rep_freed("nobody")  # not on the floor when read: ignored
    again = await roster.snapshot(T0)
    assert again is snapshot and roster.reads == 1
    assert again.states["ann"].reserved_by is None and again.states["ann"].reserved_until is None
    assert again.states["bob"].status is RepStatus.AVAILABLE
    assert "nobody" not in again.states


async def test_a_rep_freed_while_a_read_is_in_flight_is_free_in_its_result(
    db_pool: asyncpg.Pool,
) -> None:
    routing = GatedStore(db_pool)
    await routing.sync_reps([rep("ann")], at=T0)
    roster = RepRoster(routing, {}, max_age_s=60)
    assert await routing.reserve_reps("lead-1", ["ann"], 1, 30, "d", at=T0) == ["ann"]
    reading = asyncio.create_task(roster.snapshot(T0))
    await routing.read_done.wait()  # the read saw ann reserved
    assert await routing.release_reps("lead-1", at=T0) == ["ann"]
    roster.rep_freed("ann")  # the announcement overtakes the read's result
    routing.gate.set()
    snapshot = await reading
    assert snapshot.states["ann"].reserved_by is None


async def test_a_caller_cancelled_while_waiting_does_not_cancel_the_shared_read(
    db_pool: asyncpg.Pool,
) -> None:
    routing = GatedStore(db_pool)
    await routing.sync_reps([rep("ann")], at=T0)
    roster = RepRoster(routing, {}, max_age_s=60)
    first = asyncio.create_task(roster.snapshot(T0))
    second = asyncio.create_task(roster.snapshot(T0))
    await routing.read_done.wait()
    first.cancel()
    routing.gate.set()
    snapshot = await second
    assert sorted(snapshot.states) == ["ann"] and roster.reads == 1


async def test_own_reservations_and_answers_are_applied_at_once(db_pool: asyncpg.Pool) -> None:
    routing = await floor(db_pool, "ann", "bob")
    roster = RepRoster(routing, {}, max_age_s=60)
    snapshot = await roster.snapshot(T0)
    roster.reserved("lead-1", ["ann", "nobody"], T0 + LEASE)
    assert snapshot.states["ann"].reserved_by == "lead-1"
    assert snapshot.states["ann"].reserved_until == T0 + LEASE
    assert "nobody" not in snapshot.states
    roster.answered("ann", T0 + timedelta(seconds=1))
    ann = snapshot.states["ann"]
    assert ann.status is RepStatus.BUSY
    assert ann.last_assigned_at == T0 + timedelta(seconds=1)
    assert (ann.leads_last_hour, ann.leads_today, ann.calls_today) == (1, 1, 1)
    assert snapshot.status_changed_at["ann"] == T0 + timedelta(seconds=1)
    assert snapshot.states["bob"].status is RepStatus.AVAILABLE


async def test_a_reload_reads_again_with_the_new_limits(db_pool: asyncpg.Pool) -> None:
    routing = await floor(db_pool, "ann")
    roster = RepRoster(routing, {}, max_age_s=60)
    await routing.record_assignment("ann", "lead-1", at=T0 - timedelta(minutes=5))
    before = await roster.snapshot(T0)
    assert before.states["ann"].leads_last_hour == 0  # no limit: not counted
    roster.replace_limits({"ann": CapacityLimits(per_hour=5, per_day=None)})
    after = await roster.snapshot(T0)
    assert roster.reads == 2 and after.states["ann"].leads_last_hour == 1


async def test_a_read_begun_before_a_reload_is_not_kept(db_pool: asyncpg.Pool) -> None:
    routing = GatedStore(db_pool)
    await routing.sync_reps([rep("ann")], at=T0)
    roster = RepRoster(routing, {}, max_age_s=60)
    reading = asyncio.create_task(roster.snapshot(T0))
    await routing.read_done.wait()
    roster.replace_limits({})  # a reload while the read is in flight
    routing.gate.set()
    old = await reading
    assert sorted(old.states) == ["ann"]  # its caller still gets it
    fresh = await roster.snapshot(T0)
    assert fresh is not old and roster.reads == 2
