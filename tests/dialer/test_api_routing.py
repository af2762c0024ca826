"""The routing HTTP endpoints (reps, explain, DNC) against the real PostgreSQL of the session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dialer.api import create_app, health, leads
from dialer.api import routing as routing_api
from dialer.config import Config, parse_config
from dialer.store import Store

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Client = TestClient[web.Request, web.Application]


def make_config() -> Config:
    return parse_config(
        {
            "api": {"tokens": [TOKEN]},
            "reps": [
                {"id": "ann", "sip_uri": "sip:ann@127.0.0.1", "teams": ["west"]},
                {"id": "bob", "sip_uri": "sip:bob@127.0.0.1", "teams": ["west"]},
            ],
            "routing": {
                "rules": [
                    {"name": "hot", "when": 'lead.intent == "high"', "pool": {"teams": ["west"]}}
                ]
            },
            "compliance": {"calling_hours": "00:00-24:00"},
        },
        env={},
    )


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    app = create_app(make_config(), store, route_modules=(health, leads, routing_api))
    app.cleanup_ctx.append(routing_api.routing_ctx)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def call(
    client: Client, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, Any]:
    response = await client.request(method, path, json=body, headers=AUTH, **kw)
    if response.status == 204:
        return 204, None
    return response.status, await response.json()


async def test_reps_are_synced_listed_and_their_status_set(client: Client) -> None:
    status, body = await call(client, "GET", "/v1/reps")
    assert status == 200
    assert [(r["id"], r["status"]) for r in body["reps"]] == [
        ("ann", "available"),
        ("bob", "available"),
    ]
    status, body = await call(client, "PUT", "/v1/reps/bob/status", {"status": "away"})
    assert (status, body["id"], body["status"]) == (200, "bob", "away")
    _, body = await call(client, "GET", "/v1/reps")
    assert body["reps"][1]["status"] == "away"


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/reps/zed/status", {"status": "busy"}, 404, "id"),
        ("/v1/reps/ann/status", {"status": "sleeping"}, 422, "status"),
        ("/v1/reps/ann/status", {"status": None}, 422, "status"),
        ("/v1/reps/ann/status", {"status": "busy", "mood": "x"}, 422, "mood"),
        ("/v1/reps/ann/status", ["busy"], 400, None),
    ],
)
async def test_bad_status_updates(
    client: Client, path: str, body: object, status: int, field: str | None
) -> None:
    got, answer = await call(client, "PUT", path, body)
    assert got == status
    assert answer["error"]["field"] == field


async def test_routes_need_a_token(client: Client) -> None:
    response = await client.get("/v1/reps")
    assert response.status == 401


async def test_explain_uses_live_state_and_dnc(client: Client) -> None:
    lead = {"phone": "+14155550123", "intent": "high"}
    status, body = await call(client, "POST", "/v1/routing/explain", lead)
    assert status == 200
    assert body["rule"] == "hot"
    assert body["ring_plan"]["targets"] == ["ann", "bob"]
    assert body["compliance"]["allowed"] is True

    await call(client, "PUT", "/v1/reps/ann/status", {"status": "busy"})
    assert (await call(client, "POST", "/v1/dnc/(415) 555-0123", {"reason": "asked"}))[0] == 201
    _, body = await call(
        client, "POST", "/v1/routing/explain", lead, params={"at": "2024-06-04T16:00:00+00:00"}
    )
    assert body["decided_at"] == "2024-06-04T16:00:00+00:00"
    assert body["ring_plan"]["targets"] == ["bob"]
    assert {"rep": "ann", "eligible": False, "reason": "busy"}.items() <= body["candidates"][
        0
    ].items()
    assert body["compliance"] == {**body["compliance"], "allowed": False, "reason": "do_not_call"}
    assert body["outcome"] == "blocked_compliance"


@pytest.mark.parametrize(
    ("body", "params", "status", "field"),
    [
        ({"intent": "high"}, {}, 422, "phone"),
        ({"phone": "+14155550123", "intent": "hot"}, {}, 422, "intent"),
        ({"phone": "+14155550123"}, {"at": "noon"}, 422, "at"),
        ({"phone": "+14155550123"}, {"at": "2024-06-04T16:00:00"}, 422, "at"),
        ([1], {}, 400, None),
    ],
)
async def test_explain_rejects_bad_input(
    client: Client, body: object, params: dict[str, str], status: int, field: str | None
) -> None:
    got, answer = await call(client, "POST", "/v1/routing/explain", body, params=params)
    assert got == status
    assert answer["error"]["field"] == field


async def test_dnc_add_check_remove(client: Client) -> None:
    assert await call(client, "POST", "/v1/dnc/+14155550123") == (
        201,
        {"phone": "+14155550123", "on_dnc": True},
    )
    assert (await call(client, "POST", "/v1/dnc/4155550123"))[0] == 200  # already listed
    assert (await call(client, "GET", "/v1/dnc/4155550123"))[1]["on_dnc"] is True
    assert (await call(client, "DELETE", "/v1/dnc/+14155550123"))[0] == 204
    status, body = await call(client, "DELETE", "/v1/dnc/+14155550123")
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert (await call(client, "GET", "/v1/dnc/+14155550123"))[1]["on_dnc"] is False
    status, body = await call(client, "POST", "/v1/dnc/12")
    assert (status, body["error"]["field"]) == (422, "phone")
    status, body = await call(client, "POST", "/v1/dnc/+14155550123", {"reason": 5})
    assert (status, body["error"]["field"]) == (422, "reason")
