"""dialer.store against a real PostgreSQL: creation, idempotency races, timeline, transitions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from dialer.domain import Intent, LeadStatus
from dialer.store import RECEIVED_EVENT, NewLead, Store, new_lead_id


def new_lead(**overrides: object) -> NewLead:
    values: dict[str, object] = {
        "phone": "+14155552671",
        "name": "Ada",
        "source": "web",
        "external_id": None,
        "received_at": datetime.now(UTC),
    }
    values.update(overrides)
    return NewLead(**values)  # type: ignore[arg-type]


async def test_create_and_get_round_trip(store: Store) -> None:
    submitted = datetime.now(UTC) - timedelta(minutes=3)
    lead, created = await store.create_lead(
        new_lead(
            email="ada@example.com",
            company="Engines",
            intent=Intent.HIGH,
            consent=True,
            fields={"plan": "pro", "nested": {"list": [1, "two", None]}},
            submitted_at=submitted,
            received_event_data={"submitted_at_clamped_from": "x"},
        )
    )
    assert created
    assert lead.status is LeadStatus.RECEIVED
    fetched = await store.get_lead(lead.id)
    assert fetched == lead
    assert fetched.intent is Intent.HIGH
    assert fetched.fields == {"plan": "pro", "nested": {"list": [1, "two", None]}}
    assert fetched.submitted_at == submitted
    assert fetched.clock_start == submitted
    events = await store.list_events(lead.id)
    assert [(e.seq, e.kind) for e in events] == [(1, RECEIVED_EVENT)]
    assert events[0].at == lead.received_at
    assert events[0].data == {"submitted_at_clamped_from": "x"}


async def test_unknown_and_malformed_ids(store: Store) -> None:
    assert await store.get_lead(str(uuid.uuid4())) is None
    assert await store.get_lead("not-a-uuid") is None
    assert await store.list_events("not-a-uuid") == []
    assert await store.append_event(str(uuid.uuid4()), "note") is None


async def test_leads_without_external_id_never_collide(store: Store) -> None:
    first, created_first = await store.create_lead(new_lead())
    second, created_second = await store.create_lead(new_lead())
    assert created_first and created_second and first.id != second.id


async def test_same_source_and_external_id_returns_first_lead(store: Store) -> None:
    first, created = await store.create_lead(new_lead(external_id="e-1", name="First"))
    again, created_again = await store.create_lead(new_lead(external_id="e-1", name="Second"))
    assert created and not created_again
    assert again.id == first.id and again.name == "First"
    other_source, created_other = await store.create_lead(new_lead(external_id="e-1", source="crm"))
    assert created_other and other_source.id != first.id
    no_source, created_no_source = await store.create_lead(new_lead(external_id="e-1", source=None))
    no_source_again, created_again = await store.create_lead(
        new_lead(external_id="e-1", source=None)
    )
    assert created_no_source and not created_again and no_source_again.id == no_source.id


async def test_idempotency_key_returns_first_lead(store: Store) -> None:
    first, _ = await store.create_lead(new_lead(idempotency_key="k1", external_id="a"))
    again, created = await store.create_lead(new_lead(idempotency_key="k1", external_id="b"))
    assert not created and again.id == first.id


async def test_concurrent_duplicates_store_exactly_one(store: Store, db_pool: asyncpg.Pool) -> None:
    lead = new_lead(external_id="race")
    results = await asyncio.gather(*(store.create_lead(lead) for _ in range(30)))
    assert sum(created for _, created in results) == 1
    assert len({stored.id for stored, _ in results}) == 1
    assert await db_pool.fetchval("SELECT count(*) FROM leads") == 1
    assert await db_pool.fetchval("SELECT count(*) FROM lead_events") == 1


async def test_transition_moves_status_and_appends_event(store: Store) -> None:
    lead, _ = await store.create_lead(new_lead())
    moved = await store.transition(
        lead.id, [LeadStatus.RECEIVED], LeadStatus.ROUTING, "routing", {"by": "node-1"}
    )
    assert moved is not None and moved.status is LeadStatus.ROUTING
    # From the wrong status: nothing changes, no event.
    assert (
        await store.transition(lead.id, [LeadStatus.RECEIVED], LeadStatus.ROUTING, "routing")
        is None
    )
    events = await store.list_events(lead.id)
    assert [(e.seq, e.kind, dict(e.data)) for e in events] == [
        (1, "received", {}),
        (2, "routing", {"by": "node-1"}),
    ]
    stored = await store.get_lead(lead.id)
    assert stored is not None and stored.status is LeadStatus.ROUTING


async def test_concurrent_transitions_only_one_wins(store: Store) -> None:
    lead, _ = await store.create_lead(new_lead())
    results = await asyncio.gather(
        *(
            store.transition(lead.id, [LeadStatus.RECEIVED], LeadStatus.ROUTING, "routing")
            for _ in range(10)
        )
    )
    assert sum(result is not None for result in results) == 1
    assert len(await store.list_events(lead.id)) == 2


async def test_concurrent_appends_get_distinct_sequence_numbers(store: Store) -> None:
    lead, _ = await store.create_lead(new_lead())
    appended = await asyncio.gather(
        *(store.append_event(lead.id, "note", {"n": n}) for n in range(20))
    )
    seqs = sorted(event.seq for event in appended if event is not None)
    assert seqs == list(range(2, 22))
    events = await store.list_events(lead.id)
    assert [e.seq for e in events] == list(range(1, 22))


async def test_events_are_append_only(store: Store, db_pool: asyncpg.Pool) -> None:
    lead, _ = await store.create_lead(new_lead())
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db_pool.execute("UPDATE lead_events SET kind = 'x'")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db_pool.execute("DELETE FROM lead_events")
    assert len(await store.list_events(lead.id)) == 1


async def test_readiness_and_ping(store: Store) -> None:
    await store.ping()
    readiness = await store.readiness()
    assert readiness.ready and readiness.database_reachable
    assert readiness.pending_migrations == ()


async def test_readiness_reports_pending_migrations(empty_database_url: str) -> None:
    from dialer.store.pool import create_pool

    pool = await create_pool(empty_database_url)
    try:
        readiness = await Store(pool).readiness()
    finally:
        await pool.close()
    assert readiness.database_reachable and not readiness.ready
    assert "0001_leads.sql" in readiness.pending_migrations


async def test_readiness_when_database_is_gone(database_url: str) -> None:
    from dialer.store.pool import create_pool

    pool = await create_pool(database_url, min_size=0)
    await pool.close()
    readiness = await Store(pool).readiness()
    assert not readiness.database_reachable and not readiness.ready
    assert readiness.detail


def test_new_lead_id_is_a_time_ordered_uuid7() -> None:
    ids = [new_lead_id() for _ in range(50)]
    parsed = [uuid.UUID(value) for value in ids]
    assert all(value.version == 7 for value in parsed)
    assert all(value.variant == uuid.RFC_4122 for value in parsed)
    assert len(set(ids)) == 50
    timestamps = [value.int >> 80 for value in parsed]
    assert timestamps == sorted(timestamps)
