"""dialer.store.notify on real PostgreSQL: enqueue in the caller's transaction, claim, settle."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from dialer.store import NewLead, Store
from dialer.store import notify as outbox
from dialer.store.notify import OutboxStatus

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def make_lead(store: Store, phone: str = "+14155552671") -> str:
    lead, _ = await store.create_lead(NewLead(phone=phone, received_at=T0))
    return lead.id


def payload(event_id: str, **extra: object) -> dict[str, object]:
    return {"id": event_id, "type": "lead.received", **extra}


async def test_enqueue_commits_with_the_callers_transaction(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    lead_id = await make_lead(store)
    async with db_pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="boom"):
            async with conn.transaction():
                rows = await outbox.enqueue(
                    conn, lead_id, "lead.received", payload("e1"), ["crm"], now=T0
                )
                assert len(rows) == 1
                raise RuntimeError("boom")
        assert await outbox.list_for_lead(conn, lead_id) == []

        async with conn.transaction():
            rows = await outbox.enqueue(
                conn, lead_id, "lead.received", payload("e1"), ["crm", "slack"], now=T0
            )
        stored = await outbox.list_for_lead(conn, lead_id)
    assert stored == rows
    assert [(r.endpoint, r.idempotency_key, r.status) for r in stored] == [
        ("crm", "e1:crm", OutboxStatus.PENDING),
        ("slack", "e1:slack", OutboxStatus.PENDING),
    ]
    first = stored[0]
    assert first.lead_id == lead_id
    assert first.event_type == "lead.received"
    assert first.payload == {"id": "e1", "type": "lead.received"}
    assert first.attempts == 0
    assert first.next_attempt_at == T0
    assert first.created_at == T0
    assert first.delivered_at is None


async def test_enqueue_same_event_twice_adds_nothing(store: Store, db_pool: asyncpg.Pool) -> None:
    lead_id = await make_lead(store)
    async with db_pool.acquire() as conn:
        first = await outbox.enqueue(conn, lead_id, "t", payload("same"), ["a", "b"], now=T0)
        again = await outbox.enqueue(conn, lead_id, "t", payload("same"), ["b", "c"], now=T0)
        explicit = await outbox.enqueue(
            conn, lead_id, "t", {"x": 1}, ["a"], event_id="other", now=T0
        )
        generated = await outbox.enqueue(conn, lead_id, "t", {"x": 1}, ["a"], now=T0)
    assert [r.endpoint for r in first] == ["a", "b"]
    assert [r.idempotency_key for r in again] == ["same:c"]
    assert [r.idempotency_key for r in explicit] == ["other:a"]
    assert uuid.UUID(generated[0].idempotency_key.removesuffix(":a"))


async def test_enqueue_rejects_bad_input_and_ignores_unknown_lead(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    lead_id = await make_lead(store)
    async with db_pool.acquire() as conn:
        with pytest.raises(ValueError, match="exceeds"):
            big = {"id": "big", "blob": "x" * (outbox.MAX_PAYLOAD_BYTES + 1)}
            await outbox.enqueue(conn, lead_id, "t", big, ["a"], now=T0)
        with pytest.raises(ValueError, match="twice"):
            await outbox.enqueue(conn, lead_id, "t", payload("d"), ["a", "a"], now=T0)
        assert await outbox.enqueue(conn, lead_id, "t", payload("n"), [], now=T0) == []
        unknown = str(uuid.uuid4())
        assert await outbox.enqueue(conn, unknown, "t", payload("u"), ["a"], now=T0) == []
        assert await outbox.list_for_lead(conn, lead_id) == []


async def test_enqueue_signals_listeners_at_commit_only(
    store: Store, db_pool: asyncpg.Pool, database_url: str
) -> None:
    lead_id = await make_lead(store)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(
            outbox.NOTIFY_CHANNEL, lambda _c, _pid, _ch, data: heard.put_nowait(data)
        )
        async with db_pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await outbox.enqueue(conn, lead_id, "t", payload("n1"), ["crm"], now=T0)
            await asyncio.sleep(0.1)
            assert heard.empty()  # not before commit
            await tx.commit()
        assert await asyncio.wait_for(heard.get(), 5) == "crm"
    finally:
        await listener.close()


async def test_claim_oldest_first_one_per_lead_and_endpoint(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    lead_a = await make_lead(store)
    lead_b = await make_lead(store, "+14155552672")
    async with db_pool.acquire() as conn:
        for n in range(3):
            await outbox.enqueue(conn, lead_a, "t", payload(f"a{n}"), ["crm", "slack"], now=T0)
            await outbox.enqueue(conn, lead_b, "t", payload(f"b{n}"), ["crm"], now=T0)

        claimed = await outbox.claim_due(
            conn, {"crm": 10, "slack": 10}, now=T0, lease_s=30, worker_id="w1"
        )
        # Only the first event of each (lead, endpoint): the others wait behind it.
        assert sorted(r.idempotency_key for r in claimed) == ["a0:crm", "a0:slack", "b0:crm"]
        for row in claimed:
            assert row.status is OutboxStatus.DELIVERING
            assert row.attempts == 1
            assert row.claimed_by == "w1"
            assert row.claim_token is not None
            assert row.next_attempt_at == T0 + timedelta(seconds=30)  # the lease
        # Nothing more is due while those are in flight.
        assert await outbox.claim_due(conn, {"crm": 10}, now=T0, lease_s=30, worker_id="w2") == []
        assert await outbox.next_due_at(conn, ["crm"]) == T0 + timedelta(seconds=30)

        a0_crm = next(r for r in claimed if r.idempotency_key == "a0:crm")
        delivered = await outbox.mark_delivered(conn, a0_crm.id, now=T0)
        assert delivered is not None
        assert delivered.status is OutboxStatus.DELIVERED
        assert delivered.delivered_at == T0
        assert await outbox.next_due_at(conn, ["crm"]) == T0
        nxt = await outbox.claim_due(conn, {"crm": 10}, now=T0, lease_s=30, worker_id="w2")
        assert [r.idempotency_key for r in nxt] == ["a1:crm"]


async def test_claim_respects_free_slots_per_endpoint(store: Store, db_pool: asyncpg.Pool) -> None:
    leads = [await make_lead(store, f"+1415555{2600 + n}") for n in range(5)]
    async with db_pool.acquire() as conn:
        for lead_id in leads:
            await outbox.enqueue(conn, lead_id, "t", payload(lead_id), ["crm", "mail"], now=T0)
        claimed = await outbox.claim_due(
            conn, {"crm": 2, "mail": 0}, now=T0, lease_s=30, worker_id="w"
        )
        assert [r.endpoint for r in claimed] == ["crm", "crm"]
        assert [r.lead_id for r in claimed] == leads[:2]  # oldest first
        assert await outbox.claim_due(conn, {}, now=T0, lease_s=30, worker_id="w") == []


async def test_concurrent_claims_skip_locked_rows(store: Store, db_pool: asyncpg.Pool) -> None:
    leads = [await make_lead(store, f"+1415555{2700 + n}") for n in range(4)]
    async with db_pool.acquire() as conn:
        for lead_id in leads:
            await outbox.enqueue(conn, lead_id, "t", payload(lead_id), ["crm"], now=T0)
    async with db_pool.acquire() as first, db_pool.acquire() as second:
        tx = first.transaction()
        await tx.start()
        mine = await outbox.claim_due(first, {"crm": 2}, now=T0, lease_s=30, worker_id="w1")
        # Still uncommitted: the second worker neither waits for nor takes those rows.
        theirs = await asyncio.wait_for(
            outbox.claim_due(second, {"crm": 10}, now=T0, lease_s=30, worker_id="w2"), 5
        )
        await tx.commit()
    assert len(mine) == 2
    assert len(theirs) == 2
    assert {r.id for r in mine}.isdisjoint({r.id for r in theirs})


async def test_failed_attempt_waits_and_blocks_later_rows_of_the_lead(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    lead_id = await make_lead(store)
    async with db_pool.acquire() as conn:
        await outbox.enqueue(conn, lead_id, "t", payload("e1"), ["crm"], now=T0)
        await outbox.enqueue(conn, lead_id, "t", payload("e2"), ["crm"], now=T0)
        (row,) = await outbox.claim_due(conn, {"crm": 5}, now=T0, lease_s=30, worker_id="w")
        assert row.claim_token is not None
        retry_at = T0 + timedelta(seconds=7)
        failed = await outbox.mark_failed(
            conn, row.id, row.claim_token, next_attempt_at=retry_at, error="HTTP 500", now=T0
        )
        assert failed is not None
        assert failed.status is OutboxStatus.PENDING
        assert failed.last_error == "HTTP 500"
        assert failed.next_attempt_at == retry_at
        # e2 waits behind e1, which is not due yet.
        assert await outbox.claim_due(conn, {"crm": 5}, now=T0, lease_s=30, worker_id="w") == []
        assert await outbox.next_due_at(conn, ["crm"]) == retry_at
        (again,) = await outbox.claim_due(conn, {"crm": 5}, now=retry_at, lease_s=30, worker_id="w")
        assert again.idempotency_key == "e1:crm"
        assert again.attempts == 2
        assert again.claim_token is not None
        # A stale token settles nothing.
        assert await outbox.dead_letter(conn, row.id, row.claim_token, error="x", now=T0) is None
        dead = await outbox.dead_letter(
            conn, again.id, again.claim_token, error="x" * 5000, now=retry_at
        )
        assert dead is not None
        assert dead.status is OutboxStatus.DEAD
        assert dead.last_error is not None
        assert len(dead.last_error) == outbox.MAX_ERROR_CHARS
        # A dead letter no longer blocks the lead's next notification.
        (nxt,) = await outbox.claim_due(conn, {"crm": 5}, now=retry_at, lease_s=30, worker_id="w")
        assert nxt.idempotency_key == "e2:crm"


async def test_lapsed_lease_is_claimed_again_and_fences_the_old_claim(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    lead_id = await make_lead(store)
    async with db_pool.acquire() as conn:
        await outbox.enqueue(conn, lead_id, "t", payload("e1"), ["crm"], now=T0)
        (crashed,) = await outbox.claim_due(conn, {"crm": 1}, now=T0, lease_s=10, worker_id="w1")
        before_lapse = T0 + timedelta(seconds=9)
        assert (
            await outbox.claim_due(conn, {"crm": 1}, now=before_lapse, lease_s=10, worker_id="w2")
            == []
        )
        lapsed = T0 + timedelta(seconds=10)
        (reclaimed,) = await outbox.claim_due(
            conn, {"crm": 1}, now=lapsed, lease_s=10, worker_id="w2"
        )
        assert reclaimed.id == crashed.id
        assert reclaimed.attempts == 2
        assert reclaimed.claimed_by == "w2"
        assert reclaimed.claim_token != crashed.claim_token
        assert crashed.claim_token is not None
        late = await outbox.mark_failed(
            conn, crashed.id, crashed.claim_token, next_attempt_at=lapsed, error="late", now=lapsed
        )
        assert late is None
        done = await outbox.mark_delivered(conn, reclaimed.id, now=lapsed)
        assert done is not None
        assert await outbox.mark_delivered(conn, reclaimed.id, now=lapsed) is None
        fetched = await outbox.get_row(conn, reclaimed.id)
        assert fetched is not None
        assert fetched.status is OutboxStatus.DELIVERED
        assert await outbox.next_due_at(conn, ["crm"]) is None
