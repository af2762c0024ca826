"""The console and dashboard over HTTP (aiohttp test client, real PostgreSQL): sign-in, rep
isolation on the SSE stream, status/decline/disposition, dashboard data and its SLA colours."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from dialer.api import create_app, health, leads
from dialer.api import routing as routing_api
from dialer.api.keys import ALLOW_ANONYMOUS_KEY
from dialer.calls import CallEvent, CallEventKind, Leg, LegKind, LegResult
from dialer.config import Config, ConfigError, parse_config
from dialer.domain import Intent, Lead
from dialer.store import NewLead, Store
from dialer.store import notify as outbox_sql
from dialer.store.console import ConsoleStore
from dialer.web import (
    CONSOLE_SETTINGS_KEY,
    DECLINE_HANDLER_KEY,
    WEB_HUB_KEY,
    console_link,
    console_settings_for,
    publish_call_event,
    web_ctx,
)
from dialer.web import pages as web_pages
from dialer.web.auth import (
    issue_session,
    read_session,
    resolve_secret,
    verify_console_signature,
)
from dialer.web.events import EventHub, LiveEvent
from tests.support.notify import load_webhook_schema, schema_errors

TOKEN = "dashboard-test-token-42"
SECRET = b"console-secret-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Client = TestClient[web.Request, web.Application]


CRM_URL = "https://crm.example/{external_id}"


def make_config(*, sla_high_s: float = 300.0, crm_url: str = CRM_URL) -> Config:
    return parse_config(
        {
            "api": {"tokens": [TOKEN], "crm_url": crm_url},
            "reps": [
                {
                    "id": "alice",
                    "name": "Alice",
                    "sip_uri": "sip:alice@127.0.0.1",
                    "teams": ["west"],
                },
                {"id": "bob", "name": "Bob", "sip_uri": "sip:bob@127.0.0.1", "teams": ["east"]},
            ],
            "teams": [{"id": "west", "name": "West"}, {"id": "east", "name": "East"}],
            "sla": {"high": sla_high_s, "at_risk_fraction": 0.5},
            "notify": {
                "webhooks": [
                    {
                        "name": "crm",
                        "url": "http://127.0.0.1:9/hook",
                        "secret": "whsec-test",
                        "events": ["call.completed", "lead.disposition"],
                    }
                ]
            },
        },
        env={},
    )


@dataclass
class Clock:
    """The dashboard's injected clock."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Pages:
    client: Client
    app: web.Application
    store: Store
    clock: Clock
    declined: list[tuple[str, str]]

    @property
    def hub(self) -> EventHub:
        return self.app[WEB_HUB_KEY]


def build_web_app(config: Config, store: Store, clock: Clock) -> web.Application:
    app = create_app(config, store, route_modules=(health, leads, routing_api, web_pages))
    # The CRM link comes from the config's [api] crm_url, as in the daemon.
    app[CONSOLE_SETTINGS_KEY] = console_settings_for(
        config, env={}, secret=SECRET, heartbeat_s=0.2, retry_ms=500, clock=clock
    )
    app.cleanup_ctx.append(routing_api.routing_ctx)
    app.cleanup_ctx.append(web_ctx)
    return app


@pytest.fixture
async def pages(store: Store) -> AsyncIterator[Pages]:
    clock = Clock()
    app = build_web_app(make_config(), store, clock)
    declined: list[tuple[str, str]] = []

    async def decline(lead_id: str, rep_id: str) -> bool:
        declined.append((lead_id, rep_id))
        return True

    app[DECLINE_HANDLER_KEY] = decline
    async with TestClient(TestServer(app)) as client:
        yield Pages(client=client, app=app, store=store, clock=clock, declined=declined)


async def new_lead(store: Store, *, intent: Intent = Intent.HIGH, **kw: Any) -> Lead:
    lead, created = await store.create_lead(
        NewLead(
            phone=kw.pop("phone", "+15550101234"),
            name=kw.pop("name", "Dana Prospect"),
            company=kw.pop("company", "Acme"),
            source=kw.pop("source", "webform"),
            external_id=kw.pop("external_id", None),
            intent=intent,
            fields=kw.pop("fields", {"budget": "10k"}),
            received_at=kw.pop("received_at", datetime.now(UTC)),
        )
    )
    assert created
    return lead


def rep_event(kind: CallEventKind, rep: str, **kw: Any) -> CallEvent:
    return CallEvent(
        kind=kind, at=0.0, leg=Leg(LegKind.REP, 0), rep_id=rep, wall_at=datetime.now(UTC), **kw
    )


async def ring(pages: Pages, lead: Lead, rep: str) -> None:
    """What the pipeline does when a rep's phone rings: timeline row + live event."""
    await pages.store.append_event(lead.id, "rep_ringing", {"rep_id": rep})
    publish_call_event(pages.app, lead, rep_event(CallEventKind.REP_RINGING, rep, status=180))


async def sign_in_rep(client: Client, rep: str) -> None:
    response = await client.get(console_link(SECRET, rep))
    assert response.status == 200


async def read_frame(response: ClientResponse, timeout: float = 2.0) -> dict[str, str]:
    """The next SSE frame that is not a heartbeat comment, as its fields."""
    async with asyncio.timeout(timeout):
        while True:
            raw = await response.content.readuntil(b"\n\n")
            lines = [line for line in raw.decode().split("\n") if line]
            if all(line.startswith(":") for line in lines):
                continue
            fields: dict[str, str] = {}
            for line in lines:
                name, _, value = line.partition(": ")
                fields[name] = value
            return fields


# --------------------------------------------------------------------------- auth


def test_console_link_is_an_hmac_of_the_rep_id() -> None:
    link = console_link(SECRET, "alice", "http://127.0.0.1:8080/")
    assert link.startswith("http://127.0.0.1:8080/console?rep=alice&sig=")
    sig = link.rpartition("sig=")[2]
    assert len(sig) == 64
    assert verify_console_signature(SECRET, "alice", sig)
    assert not verify_console_signature(SECRET, "bob", sig)
    assert not verify_console_signature(b"other", "alice", sig)


def test_sessions_expire_and_resist_tampering() -> None:
    value = issue_session(SECRET, "alice", now=1000.0)
    assert read_session(SECRET, value, now=1001.0) == "alice"
    assert read_session(SECRET, value.replace("alice", "bob"), now=1001.0) is None
    assert read_session(SECRET, value, now=1000.0 + 13 * 3600) is None
    assert read_session(b"other", value, now=1001.0) is None
    assert read_session(SECRET, "nonsense", now=1001.0) is None


def test_secret_comes_from_env_then_tokens() -> None:
    assert resolve_secret(env={"DIALER_CONSOLE_SECRET": "abc"}) == b"abc"
    derived = resolve_secret(api_tokens=["t1"], env={})
    assert derived == resolve_secret(api_tokens=["t1"], env={}) != resolve_secret(env={})
    assert b"t1" not in derived


async def test_console_sign_in_sets_a_strict_httponly_cookie(pages: Pages) -> None:
    client = pages.client
    assert (await client.get("/console")).status == 401
    bad = await client.get("/console?rep=alice&sig=" + "0" * 64)
    assert bad.status == 403
    unknown = await client.get(console_link(SECRET, "mallory"))
    assert unknown.status == 403
    response = await client.get(console_link(SECRET, "alice"))
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    page = await client.get("/console")
    body = await page.text()
    assert page.status == 200 and "Alice" in body
    assert "sig=" not in body and TOKEN not in body
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


async def test_dashboard_needs_the_token_and_never_renders_it(pages: Pages) -> None:
    client = pages.client
    assert (await client.get("/dashboard")).status == 401
    assert (await client.get("/dashboard/data")).status == 401
    assert (await client.get("/dashboard?token=wrong")).status == 403
    signed = await client.get(f"/dashboard?token={TOKEN}")
    assert signed.status == 200 and TOKEN not in await signed.text()
    assert "HttpOnly" in signed.headers["Set-Cookie"]
    assert TOKEN not in signed.headers["Set-Cookie"]
    page = await client.get("/dashboard")
    assert page.status == 200 and TOKEN not in await page.text()
    # A rep's console cookie does not open the dashboard.
    await sign_in_rep(client, "alice")
    client.session.cookie_jar.clear_domain("127.0.0.1")
    await sign_in_rep(client, "alice")
    assert (await client.get("/dashboard/data")).status == 401
    # The bearer header works too (scripts).
    assert (await client.get("/dashboard/data", headers=AUTH)).status == 200


# --------------------------------------------------------------------------- console SSE


async def test_console_stream_shows_only_the_reps_own_leads(pages: Pages) -> None:
    client = pages.client
    await sign_in_rep(client, "alice")
    alice_lead = await new_lead(pages.store, name="Alice's Lead")
    bob_lead = await new_lead(pages.store, name="Bob's Lead", phone="+15550109999")
    async with client.get("/console/events") as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert (await stream.content.readuntil(b"\n\n")).startswith(b"retry: 500")
        snapshot = await read_frame(stream)
        assert snapshot["event"] == "snapshot"
        assert json.loads(snapshot["data"])["cards"] == []
        await ring(pages, bob_lead, "bob")
        await ring(pages, alice_lead, "alice")
        frame = await read_frame(stream)
        event = json.loads(frame["data"])
        assert frame["event"] == "live" and frame["id"] == event["id"]
        assert event["kind"] == "ringing" and event["rep_id"] == "alice"
        assert event["data"]["lead"]["name"] == "Alice's Lead"
        assert event["data"]["lead"]["fields"] == {"budget": "10k"}
        # Heartbeats follow, never bob's lead.
        raw = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 2.0)
        assert raw == b": heartbeat\n\n"
    assert "Bob's Lead" not in json.dumps([e.to_json() for e in pages.hub.open_cards("alice")])


async def test_reconnect_replays_missed_events_or_sends_a_snapshot(pages: Pages) -> None:
    client = pages.client
    await sign_in_rep(client, "alice")
    first = await new_lead(pages.store, name="First")
    second = await new_lead(pages.store, name="Second", phone="+15550105555")
    await ring(pages, first, "alice")
    first_id = pages.hub.open_cards("alice")[0].id
    await ring(pages, second, "alice")
    async with client.get("/console/events", headers={"Last-Event-ID": first_id}) as stream:
        await stream.content.readuntil(b"\n\n")  # retry
        frame = await read_frame(stream)
        assert frame["event"] == "live"
        assert json.loads(frame["data"])["lead_id"] == second.id
    # An id from before a daemon restart: the whole state again.
    async with client.get("/console/events", headers={"Last-Event-ID": "0ldb00t-7"}) as stream:
        await stream.content.readuntil(b"\n\n")
        frame = await read_frame(stream)
        assert frame["event"] == "snapshot"
        cards = json.loads(frame["data"])["cards"]
        assert [card["lead_id"] for card in cards] == [first.id, second.id]


async def test_open_streams_do_not_hold_up_shutdown(store: Store) -> None:
    app = build_web_app(make_config(), store, Clock())
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        await sign_in_rep(client, "alice")
        stream = await client.get("/console/events")
        await stream.content.readuntil(b"\n\n")
        hub = app[WEB_HUB_KEY]
        assert hub.subscriber_count == 1
        # The server's shutdown (on_shutdown) closes the hub before awaiting handlers, so
        # this returns at once instead of after the drain timeout.
        async with asyncio.timeout(5.0):
            await client.server.close()
        assert hub.closed and hub.subscriber_count == 0
        stream.release()
    finally:
        await client.close()


# --------------------------------------------------------------------------- console actions


async def test_status_switch(pages: Pages) -> None:
    client = pages.client
    assert (await client.post("/console/status", json={"status": "away"})).status == 401
    await sign_in_rep(client, "alice")
    response = await client.post("/console/status", json={"status": "away"})
    assert response.status == 200 and (await response.json())["status"] == "away"
    reps = await (await client.get("/v1/reps", headers=AUTH)).json()
    assert {rep["id"]: rep["status"] for rep in reps["reps"]}["alice"] == "away"
    assert (await client.post("/console/status", json={"status": "busy"})).status == 422
    cross = await client.post(
        "/console/status", json={"status": "available"}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status == 403


async def test_decline_cancels_only_a_lead_ringing_for_this_rep(pages: Pages) -> None:
    client = pages.client
    await sign_in_rep(client, "alice")
    lead = await new_lead(pages.store)
    other = await new_lead(pages.store, phone="+15550107777")
    await ring(pages, lead, "alice")
    await ring(pages, other, "bob")
    refused = await client.post("/console/decline", json={"lead_id": other.id})
    assert refused.status == 404
    response = await client.post("/console/decline", json={"lead_id": lead.id})
    assert response.status == 200 and (await response.json())["leg_cancelled"] is True
    assert pages.declined == [(lead.id, "alice")]
    assert pages.hub.open_cards("alice") == []
    kinds = [event.kind for event in await pages.store.list_events(lead.id)]
    assert kinds[-1] == "rep_declined"


async def test_disposition_is_stored_shown_over_the_api_and_queued_as_webhook(
    pages: Pages,
) -> None:
    client = pages.client
    await sign_in_rep(client, "alice")
    lead = await new_lead(pages.store, external_id="crm-1")
    await ring(pages, lead, "alice")
    body = {"lead_id": lead.id, "disposition": "qualified", "notes": "wants a demo"}
    response = await client.post("/console/disposition", json=body)
    assert response.status == 201, await response.text()
    saved = await client.get(f"/v1/leads/{lead.id}/disposition", headers=AUTH)
    assert saved.status == 200
    shown = await saved.json()
    assert shown["disposition"] == "qualified" and shown["rep_id"] == "alice"
    assert shown["notes"] == "wants a demo"
    assert (await client.get(f"/v1/leads/{lead.id}/disposition")).status == 401
    detail = await (await client.get(f"/v1/leads/{lead.id}", headers=AUTH)).json()
    assert detail["timeline"][-1]["kind"] == "disposition"
    async with pages.store.pool.acquire() as conn:
        rows = await outbox_sql.list_for_lead(conn, lead.id)
    assert [row.endpoint for row in rows] == ["crm"]
    assert rows[0].payload["type"] == "lead.disposition"
    assert rows[0].payload["data"]["disposition"] == "qualified"
    assert rows[0].payload["data"]["notes"] == "wants a demo"
    assert rows[0].payload["data"]["lead"]["id"] == lead.id
    assert schema_errors(rows[0].payload, load_webhook_schema()) == []


async def test_a_rep_cannot_disposition_another_reps_lead(pages: Pages) -> None:
    client = pages.client
    lead = await new_lead(pages.store)
    await ring(pages, lead, "bob")
    await sign_in_rep(client, "alice")
    body = {"lead_id": lead.id, "disposition": "connected"}
    assert (await client.post("/console/disposition", json=body)).status == 404
    bad = {"lead_id": lead.id, "disposition": "maybe"}
    assert (await client.post("/console/disposition", json=bad)).status == 422
    long_notes = {"lead_id": lead.id, "disposition": "connected", "notes": "x" * 5000}
    assert (await client.post("/console/disposition", json=long_notes)).status == 422
    assert (await client.get(f"/v1/leads/{lead.id}/disposition", headers=AUTH)).status == 404


# --------------------------------------------------------------------------- dashboard


async def test_dashboard_colours_follow_the_sla_clock(pages: Pages) -> None:
    client = pages.client
    start = datetime.now(UTC)
    lead = await new_lead(pages.store, received_at=start)
    await new_lead(pages.store, phone="+15550102222", intent=Intent.LOW, source="import")

    async def colour(at: datetime) -> str:
        pages.clock.now = at
        data = await (await client.get("/dashboard/data", headers=AUTH)).json()
        row = next(item for item in data["leads"] if item["id"] == lead.id)
        return str(row["sla"]["colour"])

    # high intent: 300 s window, at risk after half of it.
    assert await colour(start + timedelta(seconds=10)) == "green"
    assert await colour(start + timedelta(seconds=160)) == "yellow"
    assert await colour(start + timedelta(seconds=301)) == "red"

    filtered = await (await client.get("/dashboard/data?source=import", headers=AUTH)).json()
    assert [row["source"] for row in filtered["leads"]] == ["import"]
    data = await (await client.get("/dashboard/data?team=west", headers=AUTH)).json()
    assert [rep["id"] for rep in data["reps"]] == ["alice"]
    assert len(data["trends"]["days_7"]) == 7 and len(data["trends"]["days_30"]) == 30
    today = data["trends"]["days_30"][-1]
    assert today["leads"] == 2 and today["median_ttc_ms"] is None


async def test_dashboard_rep_board_and_drill_down(pages: Pages) -> None:
    client = pages.client
    lead = await new_lead(pages.store)
    await ring(pages, lead, "alice")
    await pages.store.append_event(
        lead.id, "rep_leg_ended", {"rep_id": "bob", "result": LegResult.NO_ANSWER.value}
    )
    data = await (await client.get("/dashboard/data", headers=AUTH)).json()
    board = {rep["id"]: rep for rep in data["reps"]}
    assert board["alice"]["ringing"] is True and board["bob"]["ringing"] is False
    assert board["bob"]["missed_today"] == 1
    drill = await (await client.get(f"/dashboard/leads/{lead.id}", headers=AUTH)).json()
    assert [event["kind"] for event in drill["timeline"]] == [
        "received",
        "rep_ringing",
        "rep_leg_ended",
    ]
    assert drill["sla"]["status"] in ("pending", "at_risk")
    assert (await client.get("/dashboard/leads/nope", headers=AUTH)).status == 404
    # A press-1 leg a voicemail box picked up: counted as voicemail, not as one more miss.
    await pages.store.append_event(lead.id, "rep_voicemail", {"leg": 2, "rep_id": "bob"})
    await pages.store.append_event(
        lead.id, "rep_leg_ended", {"rep_id": "bob", "result": LegResult.VOICEMAIL.value}
    )
    data = await (await client.get("/dashboard/data", headers=AUTH)).json()
    board = {rep["id"]: rep for rep in data["reps"]}
    assert (board["bob"]["missed_today"], board["bob"]["voicemail_today"]) == (1, 1)
    assert board["alice"]["voicemail_today"] == 0


async def test_dashboard_stream_sees_every_reps_events(pages: Pages) -> None:
    client = pages.client
    await client.get(f"/dashboard?token={TOKEN}")
    lead = await new_lead(pages.store)
    async with client.get("/dashboard/events") as stream:
        await stream.content.readuntil(b"\n\n")
        assert (await read_frame(stream))["event"] == "snapshot"
        await ring(pages, lead, "bob")
        pages.hub.publish(LiveEvent(kind="lead", lead_id=lead.id))
        first = json.loads((await read_frame(stream))["data"])
        second = json.loads((await read_frame(stream))["data"])
        assert (first["rep_id"], second["kind"]) == ("bob", "lead")


# --------------------------------------------------------------------------- CRM link


async def test_the_cards_crm_link_comes_from_the_config(store: Store) -> None:
    config = make_config(crm_url="https://crm.test/leads/{external_id}?tel={phone}")
    app = create_app(config, store, route_modules=(health, leads, web_pages))
    app.cleanup_ctx.append(web_ctx)  # settings built from the config, as the daemon does
    async with TestClient(TestServer(app)) as client:
        lead = await new_lead(store, external_id="crm-9")
        publish_call_event(app, lead, rep_event(CallEventKind.REP_RINGING, "alice", status=180))
        [card] = app[WEB_HUB_KEY].open_cards("alice")
        expected = f"https://crm.test/leads/crm-9?tel={lead.phone}"
        assert card.data["lead"]["crm_url"] == expected
        drill = await (await client.get(f"/dashboard/leads/{lead.id}", headers=AUTH)).json()
        assert drill["lead"]["crm_url"] == expected


def test_the_crm_url_env_var_overrides_the_config_and_bad_templates_are_refused() -> None:
    raw = {"api": {"crm_url": "https://crm.test/{lead_id}"}}
    assert parse_config(raw, env={}).api.crm_url == "https://crm.test/{lead_id}"
    overridden = parse_config(raw, env={"DIALER_CRM_URL": "https://other.test/{email}"})
    assert overridden.api.crm_url == "https://other.test/{email}"
    assert console_settings_for(overridden, env={}).crm_url == "https://other.test/{email}"
    assert parse_config(raw, env={"DIALER_CRM_URL": " "}).api.crm_url == raw["api"]["crm_url"]
    assert parse_config({}, env={}).api.crm_url == ""
    for bad, message in [
        ("crm.test/{lead_id}", "expected an http:// or https:// URL"),
        ("https://crm.test/{name}", "unknown placeholder {name}"),
        ("https://crm.test/{}", "unknown placeholder {}"),
        ("https://crm.test/{lead_id", "bad template"),
    ]:
        with pytest.raises(ConfigError, match=r"api\.crm_url: ") as error:
            parse_config({"api": {"crm_url": bad}}, env={})
        assert message in str(error.value)


# --------------------------------------------------------------------------- pipeline hook


def test_publish_call_event_routes_prospect_events_to_the_winner() -> None:
    app = web.Application()
    hub = EventHub()
    app[WEB_HUB_KEY] = hub
    lead = Lead(id="L1", phone="+15550100001", name="Pat", received_at=datetime.now(UTC))
    alice = hub.subscribe(rep_id="alice")
    bob = hub.subscribe(rep_id="bob")
    publish_call_event(app, lead, rep_event(CallEventKind.REP_INVITED, "alice"))
    publish_call_event(app, lead, rep_event(CallEventKind.REP_INVITED, "bob"))
    publish_call_event(app, lead, rep_event(CallEventKind.REP_ANSWERED, "alice", status=200))
    publish_call_event(
        app, lead, rep_event(CallEventKind.REP_LEG_ENDED, "bob", result=LegResult.CANCELLED)
    )
    bridged = CallEvent(kind=CallEventKind.BRIDGED, at=1.0)
    assert publish_call_event(app, lead, bridged) is not None
    ended = CallEvent(kind=CallEventKind.CALL_ENDED, at=2.0)
    published = publish_call_event(app, lead, ended)
    assert published is not None and published.rep_id == "alice"
    assert [event.kind for event in _drain(alice)] == [
        "ringing",
        "answered",
        "connected",
        "call_ended",
    ]
    assert [event.kind for event in _drain(bob)] == ["ringing", "leg_ended"]
    assert publish_call_event(web.Application(), lead, ended) is None


def _drain(subscription: Any) -> list[LiveEvent]:
    events = []
    while subscription.pending:
        events.append(subscription._queue.popleft())
    return events


async def test_previous_attempts_count_earlier_leads_and_rounds(store: Store) -> None:
    console = ConsoleStore(store.pool)
    first = await new_lead(store, phone="+15550103333")
    second = await new_lead(store, phone="+15550103333")
    other = await new_lead(store, phone="+15550104444")
    assert await console.previous_attempts(first.id, first.phone, first.received_at) == 0
    assert await console.previous_attempts(second.id, second.phone, second.received_at) == 1
    for _ in range(3):
        await store.append_event(other.id, "ringing_reps", {})
    assert await console.previous_attempts(other.id, other.phone, other.received_at) == 2
    assert await console.previous_attempts("not-a-uuid", other.phone, other.received_at) == 0


async def test_an_anonymous_demo_opens_the_dashboard_without_a_token(store: Store) -> None:
    app = build_web_app(parse_config({}, env={}), store, Clock())
    app[ALLOW_ANONYMOUS_KEY] = True
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/dashboard")).status == 200
        assert (await client.get("/dashboard/data")).status == 200
        assert (await client.get("/console")).status == 401
