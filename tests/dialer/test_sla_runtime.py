"""SLA timers: every transition and escalation action with an injected clock, real PostgreSQL.

The clock is a :class:`FakeClock` the test moves; :meth:`SlaRuntime.tick` handles what is due
at that moment (the asyncio timer only decides when ``tick`` runs, tested once with the real
clock at the end).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dialer.api import create_app, health
from dialer.api.keys import CONFIG_KEY, DATABASE_URL_KEY, STORE_KEY
from dialer.config import Config, SlaConfig, parse_config
from dialer.domain import Intent, LeadEvent, LeadStatus
from dialer.notify import BreachReason
from dialer.notify.outbox import OUTBOX_WORKER_KEY, notify_ctx
from dialer.sla_runtime import (
    ESCALATION_SCHEMA,
    SLA_RUNTIME_KEY,
    EscalationResult,
    SlaRuntime,
    SlaRuntimeSettings,
    breach_reason,
    sla_ctx,
    watch_lead,
)
from dialer.sla_watch import Milestone
from dialer.store import NewLead, Store
from dialer.store.notify import OutboxRow, OutboxStatus, list_for_lead
from dialer.store.pipeline import PipelineStore
from dialer.store.pool import create_pool
from dialer.store.sla import EscalationLead
from tests.support.notify import (
    SmtpReceiver,
    WebhookReceiver,
    load_webhook_schema,
    schema_errors,
)

T = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> FakeClock:
        self.now = T + timedelta(seconds=seconds)
        return self


def make_config() -> Config:
    # [sla] high = 300 s, at risk at 50%: at_risk at T + 150 s, breached at T + 300 s.
    return parse_config(
        {
            "reps": [
                {"id": "ann", "sip_uri": "sip:ann@127.0.0.1", "teams": ["west"]},
                {"id": "bob", "sip_uri": "sip:bob@127.0.0.1", "teams": ["west"]},
                {"id": "cid", "sip_uri": "sip:cid@127.0.0.1", "teams": ["east"]},
            ],
            "teams": [
                {"id": "west", "manager": {"name": "Wendy", "email": "wendy@example.com"}},
                {"id": "east", "manager": {"name": "Ed", "phone": "+14155550199"}},
            ],
            "routing": {
                "rules": [
                    {
                        "name": "hot",
                        "when": 'lead.intent == "high"',
                        "pool": {"teams": ["east"]},
                    }
                ]
            },
            "sla": {"high": "300s", "at_risk_fraction": 0.5},
            "notify": {
                "webhooks": [{"name": "crm", "url": "http://127.0.0.1:9/hook", "secret": "s"}],
                "slack": [
                    {
                        "name": "managers",
                        "url": "http://127.0.0.1:9/slack",
                        "events": ["lead.sla_breached"],
                    }
                ],
            },
        },
        env={},
    )


def runtime_for(pool: asyncpg.Pool, clock: FakeClock, **kw: Any) -> SlaRuntime:
    # No asyncio timer: the test alone decides when tick() runs, at the time it set.
    return SlaRuntime(pool=pool, config=make_config(), clock=clock, timer=False, **kw)


async def new_lead(
    store: Store,
    *,
    intent: Intent | None = Intent.HIGH,
    status: LeadStatus | None = None,
    events: Sequence[tuple[str, dict[str, Any]]] = (),
    **columns: Any,
) -> str:
    lead, _ = await store.create_lead(
        NewLead(phone="+14155550100", intent=intent, received_at=T, source="web")
    )
    for kind, data in events:
        await store.append_event(lead.id, kind, data, at=T + timedelta(seconds=1))
    if status is not None:
        columns["status"] = status.value
    for column, value in columns.items():
        await store.pool.execute(
            f"UPDATE leads SET {column} = $2 WHERE id = $1::uuid", lead.id, value
        )
    return lead.id


async def outbox_rows(store: Store, lead_id: str) -> list[OutboxRow]:
    async with store.pool.acquire() as conn:
        return await list_for_lead(conn, lead_id)


async def kinds(store: Store, lead_id: str) -> list[str]:
    return [event.kind for event in await store.list_events(lead_id)]


async def event(store: Store, lead_id: str, kind: str) -> LeadEvent:
    found = [e for e in await store.list_events(lead_id) if e.kind == kind]
    assert len(found) == 1, found
    return found[0]


async def status_of(store: Store, lead_id: str) -> tuple[str, str | None]:
    row = await store.pool.fetchrow(
        "SELECT status, status_reason FROM leads WHERE id = $1::uuid", lead_id
    )
    assert row is not None
    return row["status"], row["status_reason"]


# --------------------------------------------------------------------------- transitions


async def test_at_risk_then_breach_each_once_with_notifications(store: Store) -> None:
    lead_id = await new_lead(store)
    clock = FakeClock(T)
    runtime = runtime_for(store.pool, clock)
    assert await runtime.start() == []
    try:
        assert runtime.is_watching(lead_id)
        assert runtime.next_deadline() == T + timedelta(seconds=150)
        assert await runtime.tick(force_resync=True) == []
        assert await clock_tick(runtime, clock, 149.999) == []

        (at_risk,) = await clock_tick(runtime, clock, 150)
        assert (at_risk.milestone, at_risk.recorded, at_risk.endpoints) == (
            Milestone.AT_RISK,
            True,
            ("crm",),
        )
        recorded = await event(store, lead_id, "sla_at_risk")
        assert recorded.data["due_at"] == "2030-01-01T12:05:00.000Z"
        assert await clock_tick(runtime, clock, 200) == []

        (breach,) = await clock_tick(runtime, clock, 300)
        assert breach.milestone is Milestone.BREACHED
        # Never routed: nobody could be rung; no team known, so every manager is told.
        assert breach.reason is BreachReason.NO_REP_AVAILABLE
        assert [m.name for m in breach.managers] == ["Wendy", "Ed"]
        assert breach.endpoints == ("crm", "managers")
        assert breach.rerouted
        assert await clock_tick(runtime, clock, 10_000) == []
        assert not runtime.is_watching(lead_id)
    finally:
        await runtime.stop()

    assert (await kinds(store, lead_id))[-3:] == ["sla_at_risk", "sla_breached", "scheduled"]
    rows = await outbox_rows(store, lead_id)
    assert [(row.event_type, row.endpoint) for row in rows] == [
        ("lead.sla_at_risk", "crm"),
        ("lead.sla_breached", "crm"),
        ("lead.sla_breached", "managers"),
    ]
    breached = rows[1].payload
    assert breached["data"]["sla"]["reason"] == "no_rep_available"
    assert breached["data"]["escalation"]["notify"] == "manager"
    assert breached["data"]["escalation"]["managers"][0] == {
        "team": "west",
        "name": "Wendy",
        "email": "wendy@example.com",
        "phone": "",
    }
    assert rows[0].payload["data"]["sla"]["remaining_s"] == 150.0
    # Valid payloads: the shipped schema once data.escalation is described (ESCALATION_SCHEMA).
    schema = load_webhook_schema()
    for name in ("data_sla_at_risk", "data_sla_breached"):
        schema["$defs"][name]["properties"]["escalation"] = ESCALATION_SCHEMA
    for outbox_row in rows:
        assert schema_errors(outbox_row.payload, schema) == []
    assert rows[0].payload["data"]["escalation"]["notify"] == "assignee"
    # Reassigned: routed again at once by the pipeline's claim query.
    assert await status_of(store, lead_id) == ("scheduled", "sla_breached")


async def clock_tick(
    runtime: SlaRuntime, clock: FakeClock, seconds: float
) -> list[EscalationResult]:
    clock.at(seconds)
    return await runtime.tick()


async def test_a_lead_called_in_time_is_never_escalated(store: Store) -> None:
    lead_id = await new_lead(store)
    clock = FakeClock(T)
    runtime = runtime_for(store.pool, clock)
    await runtime.start()
    try:
        await store.pool.execute(
            "UPDATE leads SET called_at = $2 WHERE id = $1::uuid",
            lead_id,
            T + timedelta(seconds=60),
        )
        runtime.unwatch(lead_id)  # the pipeline's hook; without it the re-check finds the call
        assert await clock_tick(runtime, clock, 400) == []
        # Same lead watched again (no hook): the transaction re-checks and does nothing.
        runtime.watch(lead_id, clock_start=T, due_at=T + timedelta(seconds=300))
        assert await clock_tick(runtime, clock, 500) == []
    finally:
        await runtime.stop()
    assert "sla_at_risk" not in await kinds(store, lead_id)
    assert await outbox_rows(store, lead_id) == []


async def test_deadline_passed_while_stopped_is_handled_once_at_start_up(store: Store) -> None:
    lead_id = await new_lead(store)
    first = runtime_for(store.pool, FakeClock(T))
    await first.start()
    await first.stop()  # the daemon stops before the at-risk moment

    clock = FakeClock(T + timedelta(hours=2))
    second = runtime_for(store.pool, clock)
    results = await second.start()
    await second.stop()
    # Only the breach: warning that a breached lead is at risk helps nobody.
    assert [(r.lead_id, r.milestone, r.recorded) for r in results] == [
        (lead_id, Milestone.BREACHED, True)
    ]
    assert results[0].reason is BreachReason.NO_REP_AVAILABLE

    third = runtime_for(store.pool, FakeClock(T + timedelta(hours=3)))
    assert await third.start() == []
    assert third.watched == 0
    await third.stop()
    events = await kinds(store, lead_id)
    assert events.count("sla_breached") == 1 and "sla_at_risk" not in events
    assert len(await outbox_rows(store, lead_id)) == 2  # crm + managers, once


async def test_restart_after_at_risk_does_not_repeat_it(store: Store) -> None:
    lead_id = await new_lead(store)
    clock = FakeClock(T)
    first = runtime_for(store.pool, clock)
    await first.start()
    await clock_tick(first, clock, 160)
    await first.stop()

    clock.at(200)
    second = runtime_for(store.pool, clock)
    assert await second.start() == []
    assert second.next_deadline() == T + timedelta(seconds=300)
    (breach,) = await clock_tick(second, clock, 300)
    await second.stop()
    assert breach.milestone is Milestone.BREACHED
    events = await kinds(store, lead_id)
    assert events.count("sla_at_risk") == 1 and events.count("sla_breached") == 1


async def test_two_daemons_record_each_milestone_once(store: Store) -> None:
    lead_ids = [await new_lead(store) for _ in range(5)]
    clock = FakeClock(T)
    daemons = [runtime_for(store.pool, clock) for _ in range(2)]
    for daemon in daemons:
        await daemon.start()
    clock.at(301)
    try:
        both = await asyncio.gather(*(daemon.tick() for daemon in daemons))
    finally:
        for daemon in daemons:
            await daemon.stop()
    recorded = [r.lead_id for results in both for r in results if r.recorded]
    assert sorted(recorded) == sorted(lead_ids)
    for lead_id in lead_ids:
        assert (await kinds(store, lead_id)).count("sla_breached") == 1
        rows = await outbox_rows(store, lead_id)
        assert sorted(row.endpoint for row in rows) == ["crm", "managers"]


async def test_routing_moving_the_deadline_later_rewatches(store: Store) -> None:
    lead_id = await new_lead(store)
    clock = FakeClock(T)
    runtime = runtime_for(store.pool, clock)
    await runtime.start()
    try:
        # Routing chose a rule SLA of one hour after the watch started.
        due = T + timedelta(hours=1)
        await store.pool.execute(
            "UPDATE leads SET sla_due_at = $2 WHERE id = $1::uuid", lead_id, due
        )
        assert await clock_tick(runtime, clock, 150) == []
        assert runtime.next_deadline() == T + timedelta(minutes=30)
        (at_risk,) = await clock_tick(runtime, clock, 1800)
        assert at_risk.milestone is Milestone.AT_RISK
        # The pipeline's hook announces the same deadline again (it cannot know the at-risk
        # warning went out): the warning is due again, and is not recorded twice.
        runtime.watch(lead_id, clock_start=T, due_at=due)
        assert runtime.next_deadline() == T + timedelta(minutes=30)
        assert await clock_tick(runtime, clock, 1801) == [
            EscalationResult(lead_id=lead_id, milestone=Milestone.AT_RISK, recorded=False)
        ]
        (breach,) = await clock_tick(runtime, clock, 3600)
        assert breach.milestone is Milestone.BREACHED
    finally:
        await runtime.stop()


async def test_leads_closed_without_a_call_are_not_watched(store: Store) -> None:
    blocked = await new_lead(store, status=LeadStatus.BLOCKED_COMPLIANCE)
    failed = await new_lead(store, status=LeadStatus.FAILED, status_reason="invalid_lead")
    open_lead = await new_lead(store, status=LeadStatus.NO_REP_AVAILABLE)
    runtime = runtime_for(store.pool, FakeClock(T + timedelta(hours=1)))
    results = await runtime.start()
    await runtime.stop()
    assert [(r.lead_id, r.reason) for r in results] == [(open_lead, BreachReason.NO_REP_AVAILABLE)]
    for lead_id in (blocked, failed):
        assert "sla_breached" not in await kinds(store, lead_id)
    # A finished lead is not reassigned (the pipeline cannot route it).
    assert not results[0].rerouted


async def test_database_trouble_is_survived_and_retried(database_url: str, store: Store) -> None:
    lead_id = await new_lead(store)
    broken = await create_pool(database_url, min_size=1, max_size=1)
    await broken.close()
    clock = FakeClock(T + timedelta(seconds=400))
    runtime = runtime_for(broken, clock)
    assert await runtime.start() == []  # logged; retried after retry_s
    assert runtime.watched == 0
    await runtime.stop()
    healthy = runtime_for(store.pool, clock)
    (breach,) = await healthy.start()
    await healthy.stop()
    assert breach.lead_id == lead_id


# --------------------------------------------------------------------------- escalation


async def test_breach_after_reps_missed_escalates_to_their_manager_and_excludes_them(
    store: Store,
) -> None:
    lead_id = await new_lead(
        store,
        status=LeadStatus.WAITING_FOR_REP,
        events=[
            ("ringing_reps", {"targets": ["ann", "bob"]}),
            ("rep_leg_ended", {"rep_id": "ann", "result": "no_answer"}),
            ("rep_leg_ended", {"rep_id": "bob", "result": "rejected"}),
            ("waiting_for_rep", {"reason": "reps_no_answer"}),
        ],
        tried_reps=["ann", "bob"],
        status_reason="reps_no_answer",
    )
    clock = FakeClock(T + timedelta(seconds=300))
    runtime = runtime_for(store.pool, clock)
    (breach,) = await runtime.start()
    await runtime.stop()
    assert breach.reason is BreachReason.ALL_MISSED
    assert breach.missed_reps == ("ann", "bob")
    assert [m.name for m in breach.managers] == ["Wendy"]  # ann and bob are in west
    assert breach.rerouted
    assert await status_of(store, lead_id) == ("scheduled", "sla_breached")
    scheduled = (await store.list_events(lead_id))[-1]
    assert scheduled.kind == "scheduled"
    assert scheduled.data["exclude_reps"] == ["ann", "bob"]
    assert scheduled.data["prefer"] == "overflow"
    payload = (await outbox_rows(store, lead_id))[0].payload
    assert payload["data"]["escalation"]["missed_reps"] == ["ann", "bob"]
    assert payload["data"]["escalation"]["reassigned"] is True


async def test_a_reassigned_lead_is_claimed_by_the_pipeline_with_its_missed_reps(
    store: Store,
) -> None:
    now = datetime.now(UTC)
    lead, _ = await store.create_lead(
        NewLead(phone="+14155550100", intent=Intent.HIGH, received_at=now - timedelta(seconds=400))
    )
    await store.pool.execute(
        "UPDATE leads SET status = 'waiting_for_rep', tried_reps = '{ann}',"
        " status_reason = 'reps_no_answer' WHERE id = $1::uuid",
        lead.id,
    )
    woken: list[str] = []
    runtime = SlaRuntime(
        pool=store.pool,
        config=make_config(),
        clock=FakeClock(now),
        timer=False,
        on_reroute=woken.append,
    )
    (breach,) = await runtime.start()
    await runtime.stop()
    assert breach.rerouted and woken == [lead.id]
    # The pipeline's own claim query takes it at once, knowing why and whom to leave out.
    (claim,) = await PipelineStore(store.pool, "daemon-b", lease_s=30).claim_ready(10)
    assert claim.lead.id == lead.id
    assert claim.lead.status is LeadStatus.ROUTING
    assert claim.lead.status_reason == "sla_breached"
    assert claim.lead.tried_reps == ("ann",)


async def test_breach_of_a_lead_being_rung_is_recorded_but_not_reassigned(store: Store) -> None:
    lead_id = await new_lead(
        store,
        status=LeadStatus.RINGING_REPS,
        events=[("ringing_reps", {"targets": ["cid"]})],
        claimed_by="daemon-a",
    )
    await store.pool.execute(
        "UPDATE leads SET lease_until = now() + interval '1 hour' WHERE id = $1::uuid", lead_id
    )
    runtime = runtime_for(store.pool, FakeClock(T + timedelta(seconds=301)))
    (breach,) = await runtime.start()
    await runtime.stop()
    assert breach.reason is BreachReason.IN_PROGRESS
    assert not breach.rerouted
    assert await status_of(store, lead_id) == ("ringing_reps", None)


async def test_rule_pool_names_the_manager_when_no_rep_was_rung(store: Store) -> None:
    lead_id = await new_lead(store, status=LeadStatus.SCHEDULED, status_reason="calling_hours")
    await store.pool.execute(
        "INSERT INTO routing_rulesets VALUES ('v1', '{}', now(), now());"
        "INSERT INTO routing_decisions (lead_id, version, decided_at, rule, outcome, explanation)"
        f" VALUES ('{lead_id}', 'v1', now(), 'hot', 'scheduled', '{{}}')"
    )
    runtime = runtime_for(store.pool, FakeClock(T + timedelta(seconds=300)))
    (breach,) = await runtime.start()
    await runtime.stop()
    assert breach.reason is BreachReason.OUTSIDE_CALLING_HOURS
    assert [m.name for m in breach.managers] == ["Ed"]  # rule "hot" rings team east
    assert not breach.rerouted  # calling hours hold it: re-routing could not call anyway
    assert await status_of(store, lead_id) == ("scheduled", "calling_hours")


def escalation_lead(
    status: LeadStatus, events: Sequence[tuple[str, dict[str, Any]]], reason: str | None = None
) -> EscalationLead:
    from dialer.domain import Lead

    return EscalationLead(
        lead=Lead(id="l1", phone="+1", received_at=T, status=status),
        due_at=T,
        called_at=None,
        claimed_by=None,
        lease_until=None,
        status_reason=reason,
        tried_reps=(),
        sla_milestone=None,
        last_rule=None,
        events=tuple(
            LeadEvent(lead_id="l1", seq=i + 1, at=T, kind=kind, data=data)
            for i, (kind, data) in enumerate(events)
        ),
    )


@pytest.mark.parametrize(
    ("status", "events", "reason", "expected"),
    [
        (LeadStatus.RECEIVED, [], None, BreachReason.NO_REP_AVAILABLE),
        (
            LeadStatus.WAITING_FOR_REP,
            [("waiting_for_rep", {})],
            "no_rep_available",
            BreachReason.NO_REP_AVAILABLE,
        ),
        (
            LeadStatus.SCHEDULED,
            [("scheduled", {"reason": "calling_hours"})],
            "calling_hours",
            BreachReason.OUTSIDE_CALLING_HOURS,
        ),
        (
            LeadStatus.WAITING_FOR_REP,
            [
                ("rep_leg_ended", {"rep_id": "a", "result": "rejected"}),
                ("rep_leg_ended", {"rep_id": "b", "result": "rejected"}),
                ("rep_leg_ended", {"rep_id": "c", "result": "cancelled"}),
            ],
            "reps_no_answer",
            BreachReason.REP_REJECTED,
        ),
        (
            LeadStatus.SCHEDULED,
            [
                ("rep_leg_ended", {"rep_id": "a", "result": "rejected"}),
                ("rep_leg_ended", {"rep_id": "b", "result": "no_answer"}),
            ],
            "reps_no_answer",
            BreachReason.ALL_MISSED,
        ),
        (
            LeadStatus.SCHEDULED,
            [("prospect_leg_ended", {"result": "trunk_busy"})],
            "trunk_busy",
            BreachReason.PROSPECT_UNREACHABLE,
        ),
        (
            LeadStatus.RINGING_REPS,
            [("ringing_reps", {"targets": ["a"]})],
            None,
            BreachReason.IN_PROGRESS,
        ),
    ],
)
def test_breach_reason_from_the_timeline(
    status: LeadStatus,
    events: list[tuple[str, dict[str, Any]]],
    reason: str | None,
    expected: BreachReason,
) -> None:
    assert breach_reason(escalation_lead(status, events, reason)) is expected


# --------------------------------------------------------------------------- wiring


async def test_the_timer_fires_on_the_real_clock(store: Store) -> None:
    config = dataclasses.replace(make_config(), sla=SlaConfig(high=0.3, at_risk_fraction=0.5))
    runtime = SlaRuntime(pool=store.pool, config=config)
    await runtime.start()
    try:
        lead, _ = await store.create_lead(
            NewLead(phone="+14155550100", intent=Intent.HIGH, received_at=datetime.now(UTC))
        )
        runtime.watch(
            lead.id, clock_start=lead.clock_start, due_at=lead.clock_start + timedelta(seconds=0.3)
        )
        for _ in range(100):
            if "sla_breached" in await kinds(store, lead.id):
                break
            await asyncio.sleep(0.05)
        assert (await kinds(store, lead.id))[-3:-1] == ["sla_at_risk", "sla_breached"]
    finally:
        await runtime.stop()


@pytest.fixture
async def app_client(store: Store) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = create_app(make_config(), store, route_modules=(health,))
    app.cleanup_ctx.append(sla_ctx)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_sla_ctx_publishes_the_runtime_and_the_hook_feeds_it(
    app_client: TestClient[web.Request, web.Application], store: Store
) -> None:
    app = app_client.app
    assert app is not None
    runtime = app[SLA_RUNTIME_KEY]
    lead, _ = await store.create_lead(NewLead(phone="+14155550100", received_at=datetime.now(UTC)))
    due = lead.clock_start + timedelta(hours=1)
    watch_lead(app, lead.id, due_at=due, started_at=lead.clock_start)
    assert runtime.is_watching(lead.id)
    assert runtime.next_deadline() == lead.clock_start + timedelta(minutes=30)


# --------------------------------------------------------------------------- managers' own contacts
#
# Real receivers (aiosmtpd, an aiohttp "Slack"), the daemon's own outbox worker (notify_ctx),
# and lead times relative to the wall clock: the worker delivers rows as soon as they are due.

PAGE = "https://dialer.example.com"


def managers_config(smtp_port: int, west_slack: str, east_slack: str) -> Config:
    # ann and bob are in west (Wendy), cid in east (Ed); both managers have email and Slack.
    return parse_config(
        {
            "reps": [
                {"id": "ann", "sip_uri": "sip:ann@127.0.0.1", "teams": ["west"]},
                {"id": "bob", "sip_uri": "sip:bob@127.0.0.1", "teams": ["west"]},
                {"id": "cid", "name": "Cid", "sip_uri": "sip:cid@127.0.0.1", "teams": ["east"]},
            ],
            "teams": [
                {
                    "id": "west",
                    "manager": {
                        "name": "Wendy",
                        "email": "wendy@example.com",
                        "slack_webhook": west_slack,
                    },
                },
                {
                    "id": "east",
                    "manager": {
                        "name": "Ed",
                        "email": "ed@example.com",
                        "slack_webhook": east_slack,
                    },
                },
            ],
            "sla": {"high": "300s", "at_risk_fraction": 0.5},
            "notify": {
                "max_attempts": 4,
                "backoff_base_s": 0.01,
                "backoff_max_s": 0.05,
                "poll_interval_s": 0.2,
                "smtp": {
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "from": "dialer@example.com",
                    "timeout_s": "5s",
                },
            },
        },
        env={},
    )


async def missed_lead(store: Store, *, age_s: float, missed_by: Sequence[str]) -> str:
    """A high-intent lead received ``age_s`` ago that ``missed_by`` let ring out."""
    received = datetime.now(UTC) - timedelta(seconds=age_s)
    lead, _ = await store.create_lead(
        NewLead(
            phone="+14155552671",
            name="Ada Lovelace",
            company="Engines",
            source="web",
            intent=Intent.HIGH,
            received_at=received,
        )
    )
    await store.append_event(lead.id, "ringing_reps", {"targets": list(missed_by)}, at=received)
    for rep in missed_by:
        await store.append_event(
            lead.id, "rep_leg_ended", {"rep_id": rep, "result": "no_answer"}, at=received
        )
    await store.pool.execute(
        "UPDATE leads SET status = 'waiting_for_rep', status_reason = 'reps_no_answer',"
        " tried_reps = $2 WHERE id = $1::uuid",
        lead.id,
        list(missed_by),
    )
    return lead.id


async def escalate_now(store: Store, config: Config) -> list[EscalationResult]:
    """One daemon's SLA start-up at the wall clock (what is due is handled, once)."""
    runtime = SlaRuntime(
        pool=store.pool,
        config=config,
        clock=FakeClock(datetime.now(UTC)),
        timer=False,
        settings=SlaRuntimeSettings(page_url_base=PAGE),
    )
    try:
        return await runtime.start()
    finally:
        await runtime.stop()


async def deliver_with_the_daemons_worker(
    store: Store, config: Config, database_url: str, lead_id: str
) -> list[OutboxRow]:
    """Run ``notify_ctx`` as the daemon does until every row of the lead is settled."""
    app = web.Application()
    app[CONFIG_KEY] = config
    app[STORE_KEY] = store
    app[DATABASE_URL_KEY] = database_url
    app.cleanup_ctx.append(notify_ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert app[OUTBOX_WORKER_KEY].running  # manager contacts alone start the worker
        for _ in range(200):
            rows = await outbox_rows(store, lead_id)
            if rows and all(r.status in (OutboxStatus.DELIVERED, OutboxStatus.DEAD) for r in rows):
                return rows
            await asyncio.sleep(0.05)
        raise AssertionError(f"not delivered: {[(r.endpoint, r.status) for r in rows]}")
    finally:
        await runner.cleanup()


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[SmtpReceiver, WebhookReceiver, WebhookReceiver]]:
    smtp = SmtpReceiver(fail_first=1)  # a 451 first: the worker's retry delivers it
    west = WebhookReceiver(secret="", slack=True, fail_first=1)
    east = WebhookReceiver(secret="", slack=True)
    await smtp.start()
    await west.start()
    await east.start()
    try:
        yield smtp, west, east
    finally:
        await west.stop()
        await east.stop()
        await smtp.stop()


async def test_breach_emails_and_slacks_the_teams_manager_exactly_once(
    store: Store,
    database_url: str,
    receivers: tuple[SmtpReceiver, WebhookReceiver, WebhookReceiver],
) -> None:
    smtp, west, east = receivers
    config = managers_config(smtp.port, west.url, east.url)
    lead_id = await missed_lead(store, age_s=301, missed_by=["ann", "bob"])

    (breach,) = await escalate_now(store, config)
    assert breach.milestone is Milestone.BREACHED and breach.reason is BreachReason.ALL_MISSED
    # ann and bob are west's: Wendy alone, by email and Slack, in the breach's transaction.
    assert breach.endpoints == ("manager:west:email", "manager:west:slack")
    rows = await deliver_with_the_daemons_worker(store, config, database_url, lead_id)
    event_id = f"evt_{lead_id}_{breach.seq}"
    assert [(r.endpoint, r.idempotency_key, r.status) for r in rows] == [
        ("manager:west:email", f"{event_id}:manager:west:email", OutboxStatus.DELIVERED),
        ("manager:west:slack", f"{event_id}:manager:west:slack", OutboxStatus.DELIVERED),
    ]

    # Exactly one email, to Wendy, with the lead's context.
    (message,) = smtp.messages
    assert smtp.envelopes == [("dialer@example.com", ["wendy@example.com"])]
    assert message["To"] == "wendy@example.com"
    assert message["Subject"] == "SLA breached: lead Ada Lovelace"
    assert message["Idempotency-Key"] == f"{event_id}:manager:west:email"
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    for fact in ("Ada Lovelace", "+14155552671", "Engines", "web", "high", "all_missed"):
        assert fact in body, fact
    assert "Reps tried     ann, bob" in body
    assert f"Lead: {PAGE}/v1/leads/{lead_id}" in body

    # Exactly one Slack message, to Wendy's webhook (after its one failed attempt).
    assert list(west.processed) == [f"{event_id}:manager:west:slack"]
    (slack_body,) = west.processed.values()
    assert slack_body["text"] == "SLA breached: lead Ada Lovelace"
    fields = [f["text"] for f in slack_body["blocks"][1]["fields"]]
    assert "*Breach reason*\nall_missed" in fields and "*Reps tried*\nann, bob" in fields
    assert f"<{PAGE}/v1/leads/{lead_id}|open lead>" in str(slack_body["blocks"][2])
    assert east.journal == []  # Ed's team never had the lead

    # A restart (or a second daemon) re-derives nothing and sends nothing again.
    assert await escalate_now(store, config) == []
    rows_after = await deliver_with_the_daemons_worker(store, config, database_url, lead_id)
    assert [r.id for r in rows_after] == [r.id for r in rows]
    assert len(smtp.messages) == 1 and sum(smtp.attempts.values()) == 2
    assert len(west.processed) == 1 and west.duplicates == 0 and len(west.journal) == 3


async def test_at_risk_is_a_slack_heads_up_to_the_team_manager_only(
    store: Store,
    database_url: str,
    receivers: tuple[SmtpReceiver, WebhookReceiver, WebhookReceiver],
) -> None:
    smtp, west, east = receivers
    config = managers_config(smtp.port, west.url, east.url)
    lead_id = await missed_lead(store, age_s=160, missed_by=["cid"])  # at risk from 150 s

    (at_risk,) = await escalate_now(store, config)
    assert at_risk.milestone is Milestone.AT_RISK
    # cid is east's: Ed's Slack; no email for a warning, nothing for west.
    assert at_risk.endpoints == ("manager:east:slack",)
    (row,) = await deliver_with_the_daemons_worker(store, config, database_url, lead_id)
    assert row.status is OutboxStatus.DELIVERED
    assert row.idempotency_key == f"evt_{lead_id}_{at_risk.seq}:manager:east:slack"
    (slack_body,) = east.processed.values()
    assert slack_body["text"] == "SLA at risk: lead Ada Lovelace"
    fields = [f["text"] for f in slack_body["blocks"][1]["fields"]]
    assert any(f.startswith("*SLA due*\n") for f in fields)
    assert any(f.startswith("*Time left*\n") for f in fields)
    assert smtp.messages == [] and sum(smtp.attempts.values()) == 0
    assert west.journal == []
    # Restarted before the deadline: the heads-up is not repeated.
    assert await escalate_now(store, config) == []
    assert len(await outbox_rows(store, lead_id)) == 1


async def test_without_smtp_managers_get_slack_but_no_email(
    store: Store, receivers: tuple[SmtpReceiver, WebhookReceiver, WebhookReceiver]
) -> None:
    smtp, west, east = receivers
    config = managers_config(smtp.port, west.url, east.url)
    config = dataclasses.replace(
        config, notify=dataclasses.replace(config.notify, smtp_configured=False)
    )
    await missed_lead(store, age_s=301, missed_by=["ann"])
    (breach,) = await escalate_now(store, config)
    assert breach.endpoints == ("manager:west:slack",)
