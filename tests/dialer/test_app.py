"""dialer.app: start-up order, graceful drain of in-flight requests, clean failure."""

from __future__ import annotations

import asyncio
import socket
import types
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dialer.api import DEFAULT_ROUTE_MODULES
from dialer.api.keys import DATABASE_URL_KEY, STORE_KEY
from dialer.app import Daemon, serve
from dialer.config import Config, parse_config


def daemon_config(database_url: str, listen: str = "127.0.0.1:0") -> Config:
    return parse_config(
        {
            "api": {"listen": listen, "allow_anonymous": True},
            "sip": {"listen": "127.0.0.1:0"},
            "database": {"url": database_url, "pool_max": 2},
            "daemon": {"drain_timeout_s": 5},
        },
        env={},
    )


def slow_module(release: asyncio.Event, entered: asyncio.Event) -> types.ModuleType:
    module = types.ModuleType("slow_routes")
    routes = web.RouteTableDef()

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.json_response({"finished": True})

    module.routes = routes  # type: ignore[attr-defined]
    return module


async def test_start_serves_leads_then_stop_closes_the_pool(database_url: str) -> None:
    daemon = Daemon(daemon_config(database_url))
    await daemon.start()
    try:
        assert daemon.app[DATABASE_URL_KEY] == database_url
        async with aiohttp.ClientSession(daemon.url) as http:
            async with http.post("/v1/leads", json={"phone": "+14155552671"}) as response:
                assert response.status == 202
            async with http.get("/readyz") as response:
                assert response.status == 200
        pool = daemon.store.pool
    finally:
        await daemon.stop()
    assert pool.is_closing()


async def test_stop_finishes_in_flight_requests_and_refuses_new_ones(database_url: str) -> None:
    release, entered = asyncio.Event(), asyncio.Event()
    daemon = Daemon(
        daemon_config(database_url),
        route_modules=(*DEFAULT_ROUTE_MODULES, slow_module(release, entered)),
    )
    await daemon.start()
    url = daemon.url
    async with aiohttp.ClientSession() as http:
        in_flight = asyncio.create_task(http.get(f"{url}/slow"))
        await asyncio.wait_for(entered.wait(), 5)
        stopping = asyncio.create_task(daemon.stop())
        await asyncio.sleep(0.2)
        assert not stopping.done()  # waiting for the in-flight request
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=2)):
                pass
        release.set()
        response = await asyncio.wait_for(in_flight, 5)
        assert response.status == 200 and (await response.json()) == {"finished": True}
        await asyncio.wait_for(stopping, 10)


async def test_failed_start_cleans_up_what_started(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = Daemon(daemon_config(database_url, listen=f"127.0.0.1:{port}"))
        with pytest.raises(OSError):
            await daemon.start()
    assert daemon.app[STORE_KEY].pool.is_closing()


async def test_serve_runs_until_the_stop_event(database_url: str, tmp_path: Path) -> None:
    stop_event = asyncio.Event()
    seen: list[str] = []

    async def on_ready(daemon: Daemon) -> None:
        seen.append(daemon.url)
        stop_event.set()

    await asyncio.wait_for(
        serve(daemon_config(database_url), on_ready=on_ready, stop_event=stop_event), 20
    )
    assert seen and seen[0].startswith("http://127.0.0.1:")
