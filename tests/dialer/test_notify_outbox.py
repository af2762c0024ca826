"""The outbox worker against real PostgreSQL and real local receivers (webhook, Slack, SMTP).

Backoff is shortened (10-50 ms) so retries and dead letters happen in well under a second.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from dialer.api.keys import CONFIG_KEY, DATABASE_URL_KEY, STORE_KEY
from dialer.config import Config
from dialer.domain import Lead, LeadStatus
from dialer.notify import (
    LifecycleEvent,
    NotifyConfig,
    RepRef,
    call_connected,
    enqueue_event,
    event_id_for,
    lead_assigned,
    lead_received,
    parse_notify,
)
from dialer.notify.channels import Delivery, DeliveryError, build_channels
from dialer.notify.outbox import (
    NOTIFY_CONFIG_KEY,
    OUTBOX_WORKER_KEY,
    OutboxWorker,
    backoff_delay_s,
    notify_ctx,
)
from dialer.store import NewLead, Store
from dialer.store import notify as outbox
from dialer.store.notify import OutboxRow, OutboxStatus
from tests.conftest import REPO_ROOT
from tests.support.notify import (
    SmtpReceiver,
    WebhookReceiver,
    load_webhook_schema,
    schema_errors,
)

FAST = {"max_attempts": 4, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "poll_interval_s": 0.2}


# --------------------------------------------------------------------------- helpers


async def make_leads(store: Store, count: int) -> list[Lead]:
    leads = []
    for n in range(count):
        lead, _ = await store.create_lead(
            NewLead(phone=f"+1415555{3000 + n}", name=f"Lead {n}", received_at=datetime.now(UTC))
        )
        leads.append(lead)
    return leads


def lifecycle(lead: Lead) -> list[LifecycleEvent]:
    """Three events of a lead, ids from its timeline seq (1, 2, 3)."""
    now = datetime.now(UTC)
    rep = RepRef(id="alice", name="Alice")
    assigned = Lead(
        **{
            **{name: getattr(lead, name) for name in Lead.__dataclass_fields__},
            "status": LeadStatus.CONNECTED,
            "assigned_rep": "alice",
        }
    )
    return [
        lead_received(lead, at=now, event_id=event_id_for(lead.id, 1)),
        lead_assigned(assigned, rep=rep, rule="r", at=now, event_id=event_id_for(lead.id, 2)),
        call_connected(assigned, rep=rep, call_id="c", at=now, event_id=event_id_for(lead.id, 3)),
    ]


async def enqueue_lifecycles(
    pool: asyncpg.Pool, config: NotifyConfig, leads: Sequence[Lead]
) -> dict[str, list[str]]:
    """Each lead's events, one transaction per event; returns lead id -> event ids in order."""
    order: dict[str, list[str]] = {}
    async with pool.acquire() as conn:
        for lead in leads:
            for event in lifecycle(lead):
                async with conn.transaction():
                    await enqueue_event(conn, config, event)
                order.setdefault(lead.id, []).append(event.id)
    return order


async def all_rows(pool: asyncpg.Pool) -> list[OutboxRow]:
    ids = await pool.fetch("SELECT id FROM outbox ORDER BY id")
    async with pool.acquire() as conn:
        rows = [await outbox.get_row(conn, record["id"]) for record in ids]
    return [row for row in rows if row is not None]


async def wait_until_settled(
    pool: asyncpg.Pool,
    *,
    timeout: float = 20.0,
    done: Callable[[OutboxRow], bool] = lambda row: (
        row.status in (OutboxStatus.DELIVERED, OutboxStatus.DEAD)
    ),
) -> list[OutboxRow]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await all_rows(pool)
        if rows and all(done(row) for row in rows):
            return rows
        if time.monotonic() > deadline:
            summary = [(r.endpoint, r.idempotency_key, r.status, r.attempts) for r in rows]
            raise AssertionError(f"outbox not settled in {timeout}s: {summary}")
        await asyncio.sleep(0.05)


def assert_in_order(journal: list[tuple[str, str]], keys_in_order: list[str]) -> None:
    """Each key's first attempt comes after every attempt of the key before it."""
    position: dict[str, list[int]] = {}
    for index, (kind, key) in enumerate(journal):
        if kind == "attempt":
            position.setdefault(key, []).append(index)
    for earlier, later in itertools.pairwise(keys_in_order):
        assert max(position[earlier]) < min(position[later]), (earlier, later, journal)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# --------------------------------------------------------------------------- backoff


def test_backoff_is_exponential_with_full_jitter() -> None:
    rng = random.Random(3)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (8, 128.0), (12, 600.0), (500, 600.0)]:
        samples = [backoff_delay_s(attempt, base_s=1.0, max_s=600.0, rng=rng) for _ in range(2000)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # Full jitter: spread over the whole interval, not bunched at the ceiling.
        assert min(samples) < ceiling * 0.05
        assert max(samples) > ceiling * 0.95
    first = [backoff_delay_s(2, base_s=1, max_s=10, rng=random.Random(9)) for _ in range(3)]
    again = [backoff_delay_s(2, base_s=1, max_s=10, rng=random.Random(9)) for _ in range(3)]
    assert first == again  # the injected RNG decides


def test_worker_rejects_a_lease_shorter_than_an_attempt(db_pool: asyncpg.Pool) -> None:
    class Slow:
        name = "slow"
        max_concurrency = 1
        timeout_s = 30.0

        async def deliver(self, delivery: Delivery, *, now: datetime) -> None:
            return None

    with pytest.raises(ValueError, match="lease_s"):
        OutboxWorker(db_pool, {"slow": Slow()}, worker_id="w", lease_s=10)
    with pytest.raises(ValueError, match="max_attempts"):
        OutboxWorker(db_pool, {}, worker_id="w", max_attempts=0)


# --------------------------------------------------------------------------- acceptance 2


async def test_delivered_once_in_order_signed_and_dead_letters_do_not_block(
    store: Store, db_pool: asyncpg.Pool, database_url: str, session: aiohttp.ClientSession
) -> None:
    crm = WebhookReceiver(secret="crm-secret", fail_first=2, lost_ack=True, delay_s=0.02)
    broken = WebhookReceiver(secret="broken-secret", fail_always=True)
    slack = WebhookReceiver(secret="", slack=True, fail_first=1)
    smtp = SmtpReceiver(fail_first=1)
    receivers = [crm, broken, slack]
    for receiver in receivers:
        await receiver.start()
    smtp_port = await smtp.start()
    config = parse_notify(
        {
            **FAST,
            "webhooks": [
                {"name": "crm", "url": crm.url, "secret": "crm-secret", "max_concurrency": 3},
                {"name": "broken", "url": broken.url, "secret": "broken-secret"},
            ],
            "slack": [{"name": "alerts", "url": slack.url, "events": ["lead.received"]}],
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "from": "dialer@example.com"},
            "email": [
                {"name": "managers", "to": ["boss@example.com"], "events": ["call.connected"]}
            ],
        },
        env={},
    )
    worker = OutboxWorker.from_config(
        config,
        db_pool,
        build_channels(config, session),
        worker_id="w1",
        rng=random.Random(1),
        listen_dsn=database_url,
    )
    leads = await make_leads(store, 6)
    await worker.start()
    try:
        order = await enqueue_lifecycles(db_pool, config, leads)  # while the worker runs
        rows = await wait_until_settled(db_pool)
    finally:
        await worker.stop()
        for receiver in receivers:
            await receiver.stop()
        await smtp.stop()

    by_endpoint: dict[str, list[OutboxRow]] = {}
    for row in rows:
        by_endpoint.setdefault(row.endpoint, []).append(row)
    expected_crm = {f"{event_id}:crm" for ids in order.values() for event_id in ids}

    # CRM: every notification passed the receiver's idempotency check exactly once, after two
    # failed attempts each; the second failure had been processed (a lost answer), so the
    # third attempt was a duplicate that the check caught.
    assert set(crm.processed) == expected_crm
    assert [kind for kind, _ in crm.journal].count("processed") == len(expected_crm)
    assert crm.duplicates == len(expected_crm)
    assert all(crm.attempts[key] == 3 for key in expected_crm)
    assert crm.bad_signatures == 0
    assert all(r.status is OutboxStatus.DELIVERED and r.attempts == 3 for r in by_endpoint["crm"])
    for lead_id, event_ids in order.items():
        assert_in_order(crm.journal, [f"{event_id}:crm" for event_id in event_ids])
        processed = [key for kind, key in crm.journal if kind == "processed" and lead_id in key]
        assert processed == [f"{event_id}:crm" for event_id in event_ids]
    # Leads do not wait for each other, within the endpoint's limit.
    assert 2 <= crm.max_in_flight <= 3
    schema = load_webhook_schema()
    for payload in crm.processed.values():
        assert schema_errors(payload, schema) == []

    # The broken endpoint: each row dead after max_attempts, in order, and nobody waited on it.
    assert len(by_endpoint["broken"]) == 18
    for row in by_endpoint["broken"]:
        assert row.status is OutboxStatus.DEAD
        assert row.attempts == 4
        assert row.last_error == "HTTP 500: permanently broken"
        assert broken.attempts[row.idempotency_key] == 4
    for event_ids in order.values():
        assert_in_order(broken.journal, [f"{event_id}:broken" for event_id in event_ids])
    assert broken.bad_signatures == 0

    # Slack: only lead.received, one retry each.
    assert set(slack.processed) == {f"{ids[0]}:alerts" for ids in order.values()}
    assert all(set(body) == {"text", "blocks"} for body in slack.processed.values())
    assert all(slack.attempts[key] == 2 for key in slack.processed)

    # Email: only call.connected, after a 451 each.
    keys = sorted(str(message["Idempotency-Key"]) for message in smtp.messages)
    assert keys == sorted(f"{ids[2]}:managers" for ids in order.values())
    assert all(count == 2 for count in smtp.attempts.values())

    assert worker.stats.delivered == 18 + 6 + 6
    assert worker.stats.dead_lettered == 18
    assert not worker.running


# --------------------------------------------------------------------------- crashes


async def test_rows_of_a_dead_worker_are_delivered_when_its_lease_lapses(
    store: Store, db_pool: asyncpg.Pool, session: aiohttp.ClientSession
) -> None:
    crm = WebhookReceiver(secret="s")
    await crm.start()
    config = parse_notify(
        {**FAST, "webhooks": [{"name": "crm", "url": crm.url, "secret": "s"}]}, env={}
    )
    (lead,) = await make_leads(store, 1)
    await enqueue_lifecycles(db_pool, config, [lead])
    async with db_pool.acquire() as conn:  # a worker that claims, then dies
        (claimed,) = await outbox.claim_due(
            conn, {"crm": 5}, now=datetime.now(UTC), lease_s=0.5, worker_id="dead"
        )
    worker = OutboxWorker.from_config(
        config, db_pool, build_channels(config, session), worker_id="w2"
    )
    await worker.start()
    try:
        rows = await wait_until_settled(db_pool, timeout=10)
    finally:
        await worker.stop()
        await crm.stop()
    assert all(row.status is OutboxStatus.DELIVERED for row in rows)
    first = next(row for row in rows if row.id == claimed.id)
    assert first.attempts == 2  # the dead worker's attempt counts
    assert first.claimed_by == "w2"
    assert len(crm.processed) == 3
    assert_in_order(crm.journal, [row.idempotency_key for row in rows])


async def test_stop_releases_deliveries_in_flight(
    store: Store, db_pool: asyncpg.Pool, session: aiohttp.ClientSession
) -> None:
    gate = asyncio.Event()

    class Held(WebhookReceiver):
        async def _handle(self, request: web.Request) -> web.StreamResponse:
            await asyncio.wait_for(gate.wait(), 10)
            return await super()._handle(request)

    crm = Held(secret="s")
    await crm.start()
    config = parse_notify(
        {
            **FAST,
            "drain_timeout_s": 0.1,
            "webhooks": [{"name": "crm", "url": crm.url, "secret": "s"}],
        },
        env={},
    )
    (lead,) = await make_leads(store, 1)
    worker = OutboxWorker.from_config(
        config, db_pool, build_channels(config, session), worker_id="w1"
    )
    await worker.start()
    await enqueue_lifecycles(db_pool, config, [lead])
    for _ in range(200):
        if worker.in_flight("crm"):
            break
        await asyncio.sleep(0.01)
    assert worker.in_flight("crm") == 1
    await worker.stop()
    rows = await all_rows(db_pool)
    assert (rows[0].status, rows[0].last_error) == (
        OutboxStatus.PENDING,
        "delivery interrupted: worker stopping",
    )
    assert all(r.status is OutboxStatus.PENDING for r in rows)

    gate.set()
    again = OutboxWorker.from_config(
        config, db_pool, build_channels(config, session), worker_id="w2"
    )
    await again.start()
    try:
        rows = await wait_until_settled(db_pool, timeout=10)
    finally:
        await again.stop()
        await crm.stop()
    assert all(r.status is OutboxStatus.DELIVERED for r in rows)
    assert set(crm.processed) == {r.idempotency_key for r in rows}


# --------------------------------------------------------------------------- channel results


async def test_unretryable_errors_dead_letter_at_once_and_crashes_are_retried(
    store: Store, db_pool: asyncpg.Pool
) -> None:
    class Refusing:
        name = "refusing"
        max_concurrency = 2
        timeout_s = 1.0

        async def deliver(self, delivery: Delivery, *, now: datetime) -> None:
            raise DeliveryError("550 no such mailbox", retryable=False)

    class Buggy:
        name = "buggy"
        max_concurrency = 1
        timeout_s = 1.0
        calls = 0

        async def deliver(self, delivery: Delivery, *, now: datetime) -> None:
            Buggy.calls += 1
            if Buggy.calls == 1:
                raise KeyError("oops")

    config = NotifyConfig(**FAST)  # type: ignore[arg-type]
    (lead,) = await make_leads(store, 1)
    event = lifecycle(lead)[0]
    async with db_pool.acquire() as conn:
        await outbox.enqueue(
            conn,
            lead.id,
            event.type.value,
            event.payload,
            ["refusing", "buggy"],
            now=datetime.now(UTC),
        )
    worker = OutboxWorker.from_config(
        config, db_pool, {"refusing": Refusing(), "buggy": Buggy()}, worker_id="w"
    )
    await worker.start()
    try:
        rows = await wait_until_settled(db_pool, timeout=10)
    finally:
        await worker.stop()
    refused, buggy = rows
    assert (refused.status, refused.attempts, refused.last_error) == (
        OutboxStatus.DEAD,
        1,
        "550 no such mailbox",
    )
    assert (buggy.status, buggy.attempts) == (OutboxStatus.DELIVERED, 2)
    assert Buggy.calls == 2


async def test_retry_after_and_clock_are_honoured(store: Store, db_pool: asyncpg.Pool) -> None:
    clock_at = datetime(2030, 1, 1, tzinfo=UTC)

    class Busy:
        name = "busy"
        max_concurrency = 1
        timeout_s = 1.0

        async def deliver(self, delivery: Delivery, *, now: datetime) -> None:
            assert now == clock_at
            raise DeliveryError("HTTP 503", retry_after_s=120)

    (lead,) = await make_leads(store, 1)
    async with db_pool.acquire() as conn:
        await outbox.enqueue(conn, lead.id, "t", {"id": "e"}, ["busy"], now=clock_at)
    worker = OutboxWorker(
        db_pool,
        {"busy": Busy()},
        worker_id="w",
        backoff_base_s=0.01,
        backoff_max_s=60,
        clock=lambda: clock_at,
        poll_interval_s=0.1,
    )
    await worker.start()
    try:
        (row,) = await wait_until_settled(
            db_pool, done=lambda r: r.status is OutboxStatus.PENDING and r.attempts == 1
        )
    finally:
        await worker.stop()
    # Retry-After beats the 10 ms backoff, capped by backoff_max_s; times from the clock.
    assert row.next_attempt_at == clock_at + timedelta(seconds=60)
    assert row.updated_at == clock_at


# --------------------------------------------------------------------------- app wiring


async def test_notify_ctx_runs_the_worker_with_the_app(
    store: Store, db_pool: asyncpg.Pool, database_url: str
) -> None:
    crm = WebhookReceiver(secret="s")
    await crm.start()
    config = parse_notify(
        {**FAST, "webhooks": [{"name": "crm", "url": crm.url, "secret": "s"}]}, env={}
    )
    app = web.Application()
    app[CONFIG_KEY] = Config()
    app[STORE_KEY] = store
    app[DATABASE_URL_KEY] = database_url
    app[NOTIFY_CONFIG_KEY] = config
    app.cleanup_ctx.append(notify_ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        worker = app[OUTBOX_WORKER_KEY]
        assert worker.running
        (lead,) = await make_leads(store, 1)
        await enqueue_lifecycles(db_pool, config, [lead])
        rows = await wait_until_settled(db_pool, timeout=10)
    finally:
        await runner.cleanup()
        await crm.stop()
    assert not worker.running
    assert all(r.status is OutboxStatus.DELIVERED for r in rows)
    assert len(crm.processed) == 3


async def test_notify_ctx_without_endpoints_starts_nothing(store: Store) -> None:
    app = web.Application()
    app[CONFIG_KEY] = Config()
    app[STORE_KEY] = store
    app.cleanup_ctx.append(notify_ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert OUTBOX_WORKER_KEY not in app
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- kill -9

_WORKER_SCRIPT = """
import asyncio, json, sys
import aiohttp
from dialer.notify.channels import build_channels
from dialer.notify.config import parse_notify
from dialer.notify.outbox import OutboxWorker
from dialer.store.pool import create_pool

async def main() -> None:
    dsn, raw = sys.argv[1], json.loads(sys.argv[2])
    config = parse_notify(raw, env={})
    pool = await create_pool(dsn, min_size=1, max_size=2)
    async with aiohttp.ClientSession() as session:
        worker = OutboxWorker.from_config(
            config, pool, build_channels(config, session), worker_id=sys.argv[3], listen_dsn=dsn
        )
        await worker.start()
        print("worker started", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def _start_worker_process(script: Path, dsn: str, raw: dict[str, Any], name: str) -> Any:
    return subprocess.Popen(
        [sys.executable, str(script), dsn, json.dumps(raw), name],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def test_kill_9_mid_delivery_then_restart_delivers_everything(
    store: Store, db_pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    gate = asyncio.Event()

    class HeldOnce(WebhookReceiver):
        """Holds the first request until the test lets go (the worker is killed meanwhile)."""

        async def _handle(self, request: web.Request) -> web.StreamResponse:
            if not self.journal:
                await asyncio.wait_for(gate.wait(), 20)
            return await super()._handle(request)

    crm = HeldOnce(secret="s")
    await crm.start()
    raw = {
        **FAST,
        "lease_s": 3.5,
        "webhooks": [{"name": "crm", "url": crm.url, "secret": "s", "timeout_s": 0.5}],
    }
    config = parse_notify(raw, env={})
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER_SCRIPT))
    (lead,) = await make_leads(store, 1)
    first_events = lifecycle(lead)
    processes = [_start_worker_process(script, database_url, raw, "first")]
    try:
        async with db_pool.acquire() as conn, conn.transaction():
            await enqueue_event(conn, config, first_events[0])
        for _ in range(300):  # the first worker has claimed it and is mid-request
            row = (await all_rows(db_pool))[0]
            if row.status is OutboxStatus.DELIVERING:
                break
            await asyncio.sleep(0.05)
        assert row.status is OutboxStatus.DELIVERING
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(timeout=10)
        # Written while no worker runs: committed, never delivered yet.
        async with db_pool.acquire() as conn:
            for event in first_events[1:]:
                async with conn.transaction():
                    await enqueue_event(conn, config, event)
        gate.set()  # the held request may now finish at the receiver, unacknowledged
        processes.append(_start_worker_process(script, database_url, raw, "second"))
        rows = await wait_until_settled(db_pool, timeout=20)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        await crm.stop()
    assert [r.status for r in rows] == [OutboxStatus.DELIVERED] * 3
    assert rows[0].claimed_by == "second"
    assert set(crm.processed) == {r.idempotency_key for r in rows}
    assert_in_order(crm.journal, [r.idempotency_key for r in rows])
