"""Liveness, readiness and metrics: open endpoints for probes and scrapers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from dialer.api.keys import METRICS_KEY, STORE_KEY

__all__ = ["READINESS_TIMEOUT_S", "SERVING_STATE_KEY", "ServingState", "routes"]

routes = web.RouteTableDef()


@dataclass(slots=True)
class ServingState:
    """What the composition root tells the probes beyond the database: set ``draining`` on
    SIGTERM so load balancers and Kubernetes stop sending work while calls finish."""

    draining: bool = False


#: A readiness probe answers within this (probes have their own short time-outs): a database
#: that accepts connections but does not answer is "not ready", not a hung probe.
READINESS_TIMEOUT_S: Final = 3.0

#: Set by the composition root before start-up; absent means "not draining".
SERVING_STATE_KEY = web.AppKey("serving_state", ServingState)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """200 when the database is reachable and fully migrated, else 503 with the reason
    (also 503, ``status: draining``, once shutdown began)."""
    serving = request.app.get(SERVING_STATE_KEY)
    if serving is not None and serving.draining:
        return web.json_response({"status": "draining"}, status=503)
    store = request.app.get(STORE_KEY)
    if store is None:
        return web.json_response(
            {"status": "starting", "database": False, "pending_migrations": []}, status=503
        )
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            readiness = await store.readiness()
    except TimeoutError:
        return web.json_response(
            {
                "status": "not_ready",
                "database": False,
                "pending_migrations": [],
                "detail": f"database did not answer within {READINESS_TIMEOUT_S:g}s",
            },
            status=503,
        )
    body = {
        "status": "ready" if readiness.ready else "not_ready",
        "database": readiness.database_reachable,
        "pending_migrations": list(readiness.pending_migrations),
    }
    if readiness.detail:
        body["detail"] = readiness.detail
    return web.json_response(body, status=200 if readiness.ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this daemon's registry."""
    payload, content_type = request.app[METRICS_KEY].render()
    response = web.Response(body=payload)
    # aiohttp refuses a charset inside content_type=, so set the header verbatim.
    response.headers["Content-Type"] = content_type
    return response
