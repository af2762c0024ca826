"""Live events across daemons (:mod:`dialer.web.relay`): two hubs, each with its own relay
and connection, on one real PostgreSQL database, as two daemons behind one service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dialer.api.keys import DATABASE_URL_KEY
from dialer.calls import CallEventKind
from dialer.config import parse_config
from dialer.store import Store
from dialer.store.live import LiveChannel
from dialer.web import (
    DECLINE_HANDLER_KEY,
    LIVE_RELAY_KEY,
    RELAY_SETTINGS_KEY,
    WEB_HUB_KEY,
    publish_call_event,
)
from dialer.web.events import EventHub, LiveEvent, Subscription
from dialer.web.relay import LiveRelay, RelaySettings
from tests.web.test_pages import (
    Clock,
    build_web_app,
    make_config,
    new_lead,
    read_frame,
    rep_event,
    sign_in_rep,
)

#: Fast retries, so the reconnection tests take tenths of a second.
FAST = RelaySettings(retry_min_s=0.05, retry_max_s=0.2, check_s=0.2)


@dataclass
class Daemon:
    hub: EventHub
    relay: LiveRelay


@pytest.fixture
async def daemons(database_url: str) -> AsyncIterator[tuple[Daemon, Daemon]]:
    started: list[Daemon] = []
    for _ in range(2):
        hub = EventHub()
        relay = LiveRelay(hub, LiveChannel(database_url), settings=FAST)
        await relay.start()
        started.append(Daemon(hub, relay))
    try:
        yield started[0], started[1]
    finally:
        for daemon in started:
            await daemon.relay.stop()


async def take(subscription: Subscription, count: int, timeout: float = 5.0) -> list[LiveEvent]:
    """The next ``count`` events of ``subscription`` (fails after ``timeout``)."""
    events: list[LiveEvent] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            event = await subscription.next(timeout)
            if event is not None:
                events.append(event)
    return events


async def settle(*relays: LiveRelay, seconds: float = 0.3) -> None:
    """Let every queued batch go out and come back (several linger periods)."""
    async with asyncio.timeout(5):
        while any(relay.queued for relay in relays):
            await asyncio.sleep(0.01)
    await asyncio.sleep(seconds)


def ringing(rep: str, lead: str, **data: object) -> LiveEvent:
    return LiveEvent(kind="ringing", rep_id=rep, lead_id=lead, data={"lead": {"id": lead}, **data})


async def test_an_event_on_one_daemon_reaches_the_other_daemons_pages(
    daemons: tuple[Daemon, Daemon],
) -> None:
    a, b = daemons
    alice_on_b = b.hub.subscribe(rep_id="alice")
    bob_on_b = b.hub.subscribe(rep_id="bob")
    board_on_b = b.hub.subscribe(dashboard=True)
    board_on_a = a.hub.subscribe(dashboard=True)
    a.hub.publish(ringing("alice", "L1", state="ringing"))
    a.hub.publish(LiveEvent(kind="lead", lead_id="L2", data={"status": "routing"}))

    [event] = await take(alice_on_b, 1)
    assert (event.kind, event.rep_id, event.lead_id) == ("ringing", "alice", "L1")
    assert event.data == {"lead": {"id": "L1"}, "state": "ringing"}
    assert event.id.startswith(b.hub.boot + "-")  # B's ids: Last-Event-ID replay works on B
    assert [e.lead_id for e in await take(board_on_b, 2)] == ["L1", "L2"]
    # B's console snapshot knows the card, as for a call of its own.
    assert [card.lead_id for card in b.hub.open_cards("alice")] == ["L1"]
    await settle(a.relay, b.relay)
    assert bob_on_b.pending == 0  # never another rep's lead
    # A saw its two events once: its own payloads are not republished, B does not echo them.
    assert board_on_a.pending == 2
    assert a.relay.received == 0 and b.relay.sent == 0
    assert (a.relay.sent, b.relay.received) == (2, 2)

    # And the other way round: B's card closes on A.
    b.hub.publish(LiveEvent(kind="leg_ended", rep_id="alice", lead_id="L1"))
    assert [e.kind for e in await take(board_on_a, 3)][-1] == "leg_ended"
    await settle(a.relay, b.relay)
    assert a.hub.open_cards("alice") == []


async def test_a_burst_arrives_complete_in_order_in_payloads_under_the_limit(
    daemons: tuple[Daemon, Daemon], database_url: str
) -> None:
    a, b = daemons
    payloads: list[str] = []
    spy = LiveChannel(database_url)
    await spy.open(payloads.append)
    try:
        board = b.hub.subscribe(dashboard=True, buffer=1000)
        sent = [ringing("alice", f"L{index:03}", note="x" * 200) for index in range(300)]
        for event in sent:
            a.hub.publish(event)
        received = await take(board, 300)
        assert [e.lead_id for e in received] == [e.lead_id for e in sent]
        assert all(e.data["note"] == "x" * 200 for e in received)
        await settle(a.relay)
    finally:
        await spy.close()
    # ~75 KB of events: split into payloads, each under the limit, numbered in order.
    assert 10 <= len(payloads) < 300
    assert max(len(p.encode()) for p in payloads) <= FAST.max_payload_bytes
    assert [json.loads(p)["seq"] for p in payloads] == list(range(1, len(payloads) + 1))


async def test_an_oversized_event_is_trimmed_or_skipped_never_blocking_the_rest(
    daemons: tuple[Daemon, Daemon],
) -> None:
    a, b = daemons
    board = b.hub.subscribe(dashboard=True)
    fields = {f"field{index:02}": "v" * 500 for index in range(40)}  # ~21 KB of custom fields
    big_card = {"id": "L1", "name": "Dana", "fields": fields}
    a.hub.publish(LiveEvent(kind="ringing", rep_id="alice", lead_id="L1", data={"lead": big_card}))
    a.hub.publish(LiveEvent(kind="lead", lead_id="L2", data={"blob": "y" * 20_000}))
    a.hub.publish(LiveEvent(kind="lead", lead_id="L3"))
    trimmed, after = await take(board, 2)
    lead = trimmed.data["lead"]
    assert lead["name"] == "Dana" and lead["fields_trimmed"] is True
    assert 5 <= len(lead["fields"]) < 40  # as many fields as fit, the others left out
    assert all(fields[key] == value for key, value in lead["fields"].items())
    assert after.lead_id == "L3"  # L2 could not be trimmed: skipped, the next one goes on
    assert a.relay.skipped == 1


async def test_the_queue_is_bounded_and_keeps_the_newest_events(
    database_url: str, daemons: tuple[Daemon, Daemon]
) -> None:
    _a, b = daemons
    board = b.hub.subscribe(dashboard=True)
    hub = EventHub()
    relay = LiveRelay(
        hub, LiveChannel(database_url), settings=RelaySettings(max_queued=10, batch_events=5)
    )
    # Not started: nothing drains the queue, as when the database is slow.
    for index in range(25):
        relay.offer(LiveEvent(kind="lead", lead_id=f"L{index}"))
    assert (relay.queued, relay.dropped) == (10, 15)
    await relay.start()
    try:
        received = await take(board, 10)
        assert [e.lead_id for e in received] == [f"L{index}" for index in range(15, 25)]
        await settle(relay)
        assert board.pending == 0
    finally:
        await relay.stop()


async def test_an_unreachable_database_neither_blocks_nor_crashes_and_is_retried() -> None:
    hub = EventHub()
    console = hub.subscribe(rep_id="alice", buffer=5000)
    relay = LiveRelay(
        hub, LiveChannel("postgresql://nobody@127.0.0.1:1/none", timeout_s=1.0), settings=FAST
    )
    await relay.start()  # does not raise
    try:
        for index in range(3000):
            hub.publish(ringing("alice", f"L{index}"))  # never blocks: queued, bounded
        assert console.pending == 3000  # this daemon's own pages are not affected
        await asyncio.sleep(0.6)  # several retries (0.05, 0.1, 0.2, 0.2 ... s)
        assert not relay.connected
        assert relay.outages == 1  # one warning for the whole outage
        assert relay.queued == FAST.max_queued and relay.dropped == 3000 - FAST.max_queued
    finally:
        await relay.stop()


async def test_the_relay_reconnects_after_its_connection_is_killed(
    daemons: tuple[Daemon, Daemon], database_url: str
) -> None:
    a, b = daemons
    board = b.hub.subscribe(dashboard=True)
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'dialer-live'"
        )
    finally:
        await admin.close()

    async def reconnected() -> None:
        while not (a.relay.connected and b.relay.connected):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(reconnected(), 5)
    a.hub.publish(LiveEvent(kind="lead", lead_id="after"))
    [event] = await take(board, 1)
    assert event.lead_id == "after"


# --------------------------------------------------------------------------- over HTTP


def relayed_app(store: Store, database_url: str, **daemon: object) -> web.Application:
    config = make_config()
    if daemon:
        config = parse_config({"api": {"tokens": ["x"]}, "daemon": daemon}, env={})
    app = build_web_app(config, store, Clock())
    app[DATABASE_URL_KEY] = database_url
    app[RELAY_SETTINGS_KEY] = FAST
    return app


async def test_a_console_stream_on_one_daemon_pops_a_call_placed_by_another(
    store: Store, database_url: str
) -> None:
    app_a = relayed_app(store, database_url)
    app_b = relayed_app(store, database_url)
    lead = await new_lead(store, name="Relayed Lead")
    async with TestClient(TestServer(app_a)) as _client_a, TestClient(TestServer(app_b)) as b:
        assert app_a[LIVE_RELAY_KEY].connected and app_b[LIVE_RELAY_KEY].connected
        await sign_in_rep(b, "alice")
        async with b.get("/console/events") as stream:
            await stream.content.readuntil(b"\n\n")  # retry
            assert (await read_frame(stream))["event"] == "snapshot"
            # The pipeline of daemon A rings alice (bob first: never shown to alice).
            for rep in ("bob", "alice"):
                event = rep_event(CallEventKind.REP_RINGING, rep, status=180)
                publish_call_event(app_a, lead, event)
            frame = await read_frame(stream)
            event_json = json.loads(frame["data"])
            assert frame["event"] == "live"
            assert (event_json["kind"], event_json["rep_id"]) == ("ringing", "alice")
            assert event_json["data"]["lead"]["name"] == "Relayed Lead"


async def test_the_relay_is_off_when_the_config_says_so(store: Store, database_url: str) -> None:
    off = relayed_app(store, database_url, relay_live_events=False)
    async with TestClient(TestServer(off)):
        assert LIVE_RELAY_KEY not in off
    on = relayed_app(store, database_url, relay_live_events=True)
    async with TestClient(TestServer(on)):
        assert on[LIVE_RELAY_KEY].connected


async def test_a_decline_on_one_daemon_cancels_the_leg_where_the_call_is(
    store: Store, database_url: str
) -> None:
    """Alice's console is on daemon B; daemon A placed the call. B has no such call, so it
    forwards the decline; A's decline handler cancels alice's leg; B's card closes at once."""
    app_a = relayed_app(store, database_url)
    app_b = relayed_app(store, database_url)
    cancelled_on_a: list[tuple[str, str]] = []
    asked_b: list[tuple[str, str]] = []

    async def decline_on_a(lead_id: str, rep_id: str) -> bool:
        cancelled_on_a.append((lead_id, rep_id))
        return True

    async def decline_on_b(lead_id: str, rep_id: str) -> bool:
        asked_b.append((lead_id, rep_id))
        return False  # not B's call

    app_a[DECLINE_HANDLER_KEY] = decline_on_a
    app_b[DECLINE_HANDLER_KEY] = decline_on_b
    lead = await new_lead(store, name="Declined Elsewhere")
    async with TestClient(TestServer(app_a)) as _client_a, TestClient(TestServer(app_b)) as b:
        await sign_in_rep(b, "alice")
        publish_call_event(app_a, lead, rep_event(CallEventKind.REP_RINGING, "alice", status=180))
        async with asyncio.timeout(5):
            while not app_b[WEB_HUB_KEY].open_cards("alice"):
                await asyncio.sleep(0.01)  # the pop reached B
        response = await b.post("/console/decline", json={"lead_id": lead.id})
        assert response.status == 200
        reply = await response.json()
        assert (reply["leg_cancelled"], reply["forwarded"]) == (False, True)
        assert asked_b == [(lead.id, "alice")]
        assert app_b[WEB_HUB_KEY].open_cards("alice") == []
        async with asyncio.timeout(5):
            while not cancelled_on_a:
                await asyncio.sleep(0.01)
        assert cancelled_on_a == [(lead.id, "alice")]
        # A decline request is a control item: no page on either daemon ever sees it.
        assert all(
            event.kind != "decline_request"
            for hub in (app_a[WEB_HUB_KEY], app_b[WEB_HUB_KEY])
            for event in hub.replay_after(f"{hub.boot}-0", hub.subscribe(dashboard=True)) or []
        )
    [declined] = [e for e in await store.list_events(lead.id) if e.kind == "rep_declined"]
    assert declined.data == {"rep_id": "alice", "leg_cancelled": False, "forwarded": True}
