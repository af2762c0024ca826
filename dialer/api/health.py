"""Liveness, readiness and metrics: open endpoints for probes and scrapers."""

from __future__ import annotations

from aiohttp import web

from dialer.api.keys import METRICS_KEY, STORE_KEY

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """200 when the database is reachable and fully migrated, else 503 with the reason."""
    store = request.app.get(STORE_KEY)
    if store is None:
        return web.json_response(
            {"status": "starting", "database": False, "pending_migrations": []}, status=503
        )
    readiness = await store.readiness()
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
