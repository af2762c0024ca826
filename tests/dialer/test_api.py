"""dialer.api over HTTP (aiohttp test client) against the real PostgreSQL of the test session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dialer.api import create_app
from dialer.api.keys import STORE_KEY
from dialer.config import Config, parse_config
from dialer.store import Store

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHONE = "+14155552671"


def make_config(**api: Any) -> Config:
    return parse_config({"api": {"tokens": [TOKEN], "max_body_bytes": 4096, **api}}, env={})


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_app(make_config(), store))) as test_client:
        yield test_client


Client = TestClient[web.Request, web.Application]


async def post_lead(client: Client, body: object, **headers: str) -> tuple[int, Any]:
    response = await client.post("/v1/leads", json=body, headers={**AUTH, **headers})
    return response.status, await response.json()


async def test_post_then_get_lead_with_timeline_and_sla(client: Client) -> None:
    submitted = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    status, body = await post_lead(
        client,
        {
            "phone": "(415) 555-2671",
            "name": "Ada",
            "source": "web",
            "external_id": "x-1",
            "intent": "high",
            "submitted_at": submitted,
            "fields": {"plan": "pro"},
        },
    )
    assert status == 202
    assert body["status"] == "received" and body["phone"] == PHONE
    assert body["url"] == f"/v1/leads/{body['id']}"
    response = await client.get(f"/v1/leads/{body['id']}", headers=AUTH)
    assert response.status == 200
    lead = await response.json()
    assert lead["id"] == body["id"] and lead["name"] == "Ada" and lead["intent"] == "high"
    assert lead["fields"] == {"plan": "pro"}
    assert lead["received_at"].endswith("Z")
    assert [event["kind"] for event in lead["timeline"]] == ["received"]
    assert lead["timeline"][0]["seq"] == 1
    assert lead["sla"]["status"] == "pending" and lead["sla"]["time_to_call_ms"] is None
    due = datetime.fromisoformat(lead["sla"]["due_at"])
    expected = datetime.fromisoformat(submitted) + timedelta(minutes=5)
    # API timestamps carry milliseconds (dialer.domain.utc_timestamp).
    assert due == expected.replace(microsecond=expected.microsecond // 1000 * 1000)


async def test_future_submitted_at_is_clamped_and_recorded(client: Client) -> None:
    status, body = await post_lead(client, {"phone": PHONE, "submitted_at": "2999-01-01T00:00:00Z"})
    assert status == 202
    assert body["submitted_at"] == body["received_at"]
    lead = await (await client.get(f"/v1/leads/{body['id']}", headers=AUTH)).json()
    assert lead["timeline"][0]["data"] == {"submitted_at_clamped_from": "2999-01-01T00:00:00Z"}


async def test_get_unknown_lead_is_404_json(client: Client) -> None:
    for lead_id in ("01890000-0000-7000-8000-000000000000", "not-a-uuid"):
        response = await client.get(f"/v1/leads/{lead_id}", headers=AUTH)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_fifty_concurrent_duplicates_make_one_lead(
    client: Client, db_pool: asyncpg.Pool
) -> None:
    body = {"phone": PHONE, "source": "crm", "external_id": "dup-1"}
    results = await asyncio.gather(*(post_lead(client, body) for _ in range(50)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 49 + [202]
    assert len({reply["id"] for _, reply in results}) == 1
    assert await db_pool.fetchval("SELECT count(*) FROM leads") == 1
    assert await db_pool.fetchval("SELECT count(*) FROM lead_events") == 1


async def test_idempotency_key_header(client: Client, db_pool: asyncpg.Pool) -> None:
    first_status, first = await post_lead(client, {"phone": PHONE}, **{"Idempotency-Key": "k-1"})
    again_status, again = await post_lead(
        client, {"phone": PHONE, "name": "changed"}, **{"Idempotency-Key": "k-1"}
    )
    other_status, other = await post_lead(client, {"phone": PHONE}, **{"Idempotency-Key": "k-2"})
    assert (first_status, again_status, other_status) == (202, 200, 202)
    assert again["id"] == first["id"] and again["name"] is None
    assert other["id"] != first["id"]
    assert await db_pool.fetchval("SELECT count(*) FROM leads") == 2


async def test_fifty_concurrent_posts_with_one_idempotency_key_make_one_lead(
    client: Client, db_pool: asyncpg.Pool
) -> None:
    results = await asyncio.gather(
        *(
            post_lead(client, {"phone": PHONE, "name": f"try {n}"}, **{"Idempotency-Key": "k-c"})
            for n in range(50)
        )
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 49 + [202]
    assert len({reply["id"] for _, reply in results}) == 1
    assert await db_pool.fetchval("SELECT count(*) FROM leads") == 1
    assert await db_pool.fetchval("SELECT count(*) FROM lead_events") == 1


async def assert_error(response: Any, status: int, code: str, field: str | None) -> None:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"name": "no phone"}, 422, "missing_field", "phone"),
        ({"phone": "12345"}, 422, "invalid_field", "phone"),
        ({"phone": PHONE, "intent": "urgent"}, 422, "invalid_field", "intent"),
        ({"phone": PHONE, "submitted_at": "last tuesday"}, 422, "invalid_field", "submitted_at"),
        (
            {"phone": PHONE, "submitted_at": "2024-01-01T10:00:00"},
            422,
            "invalid_field",
            "submitted_at",
        ),
        ({"phone": PHONE, "email": "nope"}, 422, "invalid_field", "email"),
        ({"phone": PHONE, "fields": [1]}, 422, "invalid_field", "fields"),
        ({"phone": PHONE, "fields": {"a": "\u0000"}}, 422, "invalid_field", "fields.a"),
        ({"phone": PHONE, "surname": "x"}, 422, "unknown_field", "surname"),
        ([PHONE], 400, "invalid_body", None),
    ],
)
async def test_invalid_fields_are_4xx_naming_the_field(
    client: Client, body: object, status: int, code: str, field: str | None
) -> None:
    response = await client.post("/v1/leads", json=body, headers=AUTH)
    await assert_error(response, status, code, field)


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b'{"phone": ', "application/json", 400, "malformed_json"),
        (b"", "application/json", 400, "malformed_json"),
        (b'{"phone": NaN}', "application/json", 400, "malformed_json"),
        (b"\xff\xfe{}", "application/json", 400, "malformed_json"),
        (b"[" * 2000 + b"]" * 2000, "application/json", 400, "malformed_json"),
        (b'{"phone": "\\ud800"}', "application/json", 422, "invalid_field"),
        (
            b'{"phone": "+14155552671", "fields": {"n": 1e999}}',
            "application/json",
            422,
            "invalid_field",
        ),
        (b"phone=+14155552671", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"phone": "+14155552671"}', "text/plain", 415, "unsupported_media_type"),
    ],
)
async def test_malformed_requests_are_4xx_json(
    client: Client, data: bytes, content_type: str, status: int, code: str
) -> None:
    response = await client.post(
        "/v1/leads", data=data, headers={**AUTH, "Content-Type": content_type}
    )
    assert response.status == status, await response.text()
    assert (await response.json())["error"]["code"] == code


async def test_oversize_body_is_413_declared_or_chunked(client: Client) -> None:
    big = json.dumps({"phone": PHONE, "fields": {"blob": "x" * 5000}}).encode()
    response = await client.post(
        "/v1/leads", data=big, headers={**AUTH, "Content-Type": "application/json"}
    )
    await assert_error(response, 413, "body_too_large", None)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    response = await client.post(
        "/v1/leads", data=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    await assert_error(response, 413, "body_too_large", None)


async def test_bad_idempotency_key_is_400(client: Client) -> None:
    response = await client.post(
        "/v1/leads", json={"phone": PHONE}, headers={**AUTH, "Idempotency-Key": "a b"}
    )
    await assert_error(response, 400, "invalid_header", "Idempotency-Key")


async def test_unknown_route_and_method_are_json(client: Client) -> None:
    await assert_error(await client.get("/v1/nothing", headers=AUTH), 404, "not_found", None)
    response = await client.delete("/v1/leads", headers=AUTH)
    await assert_error(response, 405, "method_not_allowed", None)
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("authorization", "invalid"),
    [
        (None, False),
        ("Bearer wrong-token", True),
        (f"Basic {TOKEN}", True),
        ("Bearer ", True),
        (f"Bearer {TOKEN}x", True),
    ],
)
async def test_auth_failures_are_401_with_challenge(
    client: Client, authorization: str | None, invalid: bool
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for response in (
        await client.post("/v1/leads", json={"phone": PHONE}, headers=headers),
        await client.get("/v1/leads/01890000-0000-7000-8000-000000000000", headers=headers),
    ):
        await assert_error(response, 401, "unauthorized", None)
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer")
        assert ('error="invalid_token"' in challenge) is invalid


async def test_second_token_and_case_insensitive_scheme_are_accepted(store: Store) -> None:
    config = make_config(tokens=["first", "second"])
    async with TestClient(TestServer(create_app(config, store))) as test_client:
        response = await test_client.post(
            "/v1/leads", json={"phone": PHONE}, headers={"Authorization": "bearer second"}
        )
        assert response.status == 202


async def test_anonymous_app_needs_no_token(store: Store) -> None:
    config = parse_config({"api": {"allow_anonymous": True}}, env={})
    async with TestClient(TestServer(create_app(config, store))) as test_client:
        response = await test_client.post("/v1/leads", json={"phone": PHONE})
        assert response.status == 202


async def test_health_endpoints_need_no_token(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200 and (await response.json())["status"] == "ok"
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready", "database": True, "pending_migrations": []}


async def test_readyz_is_503_when_not_migrated_or_not_started(empty_database_url: str) -> None:
    from dialer.store.pool import create_pool

    pool = await create_pool(empty_database_url)
    try:
        async with TestClient(TestServer(create_app(make_config(), Store(pool)))) as test_client:
            response = await test_client.get("/readyz")
            assert response.status == 503
            body = await response.json()
            assert body["database"] is True and "0001_leads.sql" in body["pending_migrations"]
    finally:
        await pool.close()
    app = create_app(make_config())
    assert STORE_KEY not in app
    async with TestClient(TestServer(app)) as test_client:
        response = await test_client.get("/readyz")
        assert response.status == 503


async def test_metrics_count_received_rejected_and_latency(client: Client) -> None:
    await post_lead(client, {"phone": PHONE, "external_id": "m1"})
    await post_lead(client, {"phone": PHONE, "external_id": "m1"})
    await post_lead(client, {"phone": "12"})
    await client.post("/v1/leads", data=b"{", headers={**AUTH, "Content-Type": "application/json"})
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'dialer_leads_received_total{outcome="created"} 1.0' in text
    assert 'dialer_leads_received_total{outcome="duplicate"} 1.0' in text
    assert 'dialer_leads_rejected_total{reason="invalid_field"} 1.0' in text
    assert 'dialer_leads_rejected_total{reason="malformed_json"} 1.0' in text
    assert "dialer_intake_latency_seconds_count 4.0" in text
    # A per-app registry: nothing from the process-global default registry leaks in.
    assert "python_gc_objects_collected_total" not in text


async def test_unreachable_database_is_503_with_retry_after(database_url: str) -> None:
    from dialer.store.pool import create_pool

    pool = await create_pool(database_url, min_size=0)
    await pool.close()
    async with TestClient(TestServer(create_app(make_config(), Store(pool)))) as test_client:
        response = await test_client.post("/v1/leads", json={"phone": PHONE}, headers=AUTH)
        await assert_error(response, 503, "unavailable", None)
        assert response.headers["Retry-After"] == "1"
        response = await test_client.get(
            "/v1/leads/01890000-0000-7000-8000-000000000000", headers=AUTH
        )
        await assert_error(response, 503, "unavailable", None)
        assert (await test_client.get("/readyz")).status == 503
