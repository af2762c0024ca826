"""``GET /v1/reports/...`` over HTTP against the 50-lead fixture (values by hand; see
tests/dialer/test_store_reports.py for the arithmetic)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dialer.api import create_app, health
from dialer.api import reports as reports_api
from dialer.store import Store
from tests.support.reports import insert_fixture, reports_config

AUTH = {"Authorization": "Bearer reports-token"}
RANGE = {"from": "2025-03-03T09:00:00Z", "to": "2025-03-04T09:00:00+00:00"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def bare_client(store: Store) -> AsyncIterator[Client]:
    """The reports API on an empty database (parameter checks need no data)."""
    app = create_app(reports_config(), store, route_modules=(health, reports_api))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def client(bare_client: Client, store: Store) -> Client:
    """The reports API over the 50-lead fixture."""
    await insert_fixture(store)
    return bare_client


async def get(client: Client, path: str, params: dict[str, str]) -> tuple[int, Any]:
    response = await client.get(path, params=params, headers=AUTH)
    return response.status, await response.json()


async def test_sla_report_by_team(client: Client) -> None:
    status, body = await get(client, "/v1/reports/sla", {**RANGE, "group_by": "team"})
    assert status == 200
    assert (body["from"], body["to"], body["group_by"]) == (
        "2025-03-03T09:00:00.000Z",
        "2025-03-04T09:00:00.000Z",
        "team",
    )
    assert [group["key"] for group in body["groups"]] == ["east", "north", "west", None]
    assert body["groups"][2] == {
        "key": "west",
        "leads": 20,
        "called": 20,
        "met": 16,
        "breached": 4,
        "pending": 0,
        "pct_met": 80.0,
        "median_time_to_call_ms": 110_000.0,
        "p90_time_to_call_ms": 1_860_000.0,
        "breaches_by_reason": {"all_missed": 2, "rep_rejected": 1, "unrecorded": 1},
        "voicemail": 3,  # ann's leads j=0 and j=8 (team of the lead's assigned rep)
    }
    total = body["total"]
    assert (total["leads"], total["met"], total["breached"], total["pct_met"]) == (50, 35, 15, 70.0)
    assert (total["median_time_to_call_ms"], total["p90_time_to_call_ms"]) == (270_000, 3_000_000)
    assert total["voicemail"] == 4


async def test_sla_report_by_rep_counts_voicemail_for_the_rep_of_the_leg(client: Client) -> None:
    status, body = await get(client, "/v1/reports/sla", {**RANGE, "group_by": "rep"})
    assert status == 200
    by_rep = {group["key"]: group["voicemail"] for group in body["groups"]}
    assert by_rep == {"ann": 1, "bob": 2, "cid": 1, "dee": 0, None: 0}


async def test_sla_report_without_grouping_has_one_group(client: Client) -> None:
    status, body = await get(client, "/v1/reports/sla", RANGE)
    assert status == 200
    assert body["group_by"] is None
    assert body["groups"] == [body["total"]]


async def test_empty_range_and_default_range(bare_client: Client) -> None:
    status, body = await get(bare_client, "/v1/reports/sla", {"group_by": "rep"})
    assert status == 200
    assert body["groups"] == []
    assert body["total"]["leads"] == 0 and body["total"]["pct_met"] is None
    status, body = await get(bare_client, "/v1/reports/conversion-buckets", {})
    assert status == 200
    assert [b["leads"] for b in body["buckets"]] == [0, 0, 0, 0, 0]


async def test_conversion_buckets(client: Client) -> None:
    status, body = await get(client, "/v1/reports/conversion-buckets", RANGE)
    assert status == 200
    assert [(b["label"], b["leads"], b["connected"]) for b in body["buckets"]] == [
        ("< 1 min", 12, 8),
        ("1-5 min", 8, 7),
        ("5-30 min", 12, 10),
        ("30-60 min", 5, 0),
        ("> 1 h", 3, 1),
    ]
    assert body["buckets"][1]["conversion"] == 0.875
    assert body["not_called"] == {
        "key": "not_called",
        "label": "not called",
        "leads": 10,
        "connected": 0,
        "conversion": 0.0,
    }


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/reports/sla", {**RANGE, "group_by": "planet"}, "group_by"),
        ("/v1/reports/sla", {"from": "yesterday"}, "from"),
        ("/v1/reports/sla", {"from": "2025-03-03T09:00:00"}, "from"),
        ("/v1/reports/conversion-buckets", {"to": "2025-13-01T00:00:00Z"}, "to"),
        ("/v1/reports/conversion-buckets", {"from": RANGE["to"], "to": RANGE["from"]}, "from"),
        ("/v1/reports/sla", {"from": "2020-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, "to"),
    ],
)
async def test_bad_parameters_are_422_naming_the_parameter(
    bare_client: Client, path: str, params: dict[str, str], field: str
) -> None:
    status, body = await get(bare_client, path, params)
    assert status == 422
    assert body["error"]["code"] == "invalid_field"
    assert body["error"]["field"] == field


async def test_reports_need_a_token(bare_client: Client) -> None:
    for path in ("/v1/reports/sla", "/v1/reports/conversion-buckets"):
        response = await bare_client.get(path, params=RANGE)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
        wrong = await bare_client.get(path, params=RANGE, headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
