"""Every typed application key of the HTTP app, in one place (no globals, no string keys).

Add new keys here; handlers read them as ``request.app[STORE_KEY]``.
"""

from __future__ import annotations

from aiohttp import web

from dialer.config import Config
from dialer.metrics import Metrics
from dialer.routing import Router
from dialer.store import Store
from dialer.store.routing import RoutingStore

__all__ = [
    "ALLOW_ANONYMOUS_KEY",
    "CONFIG_KEY",
    "DATABASE_URL_KEY",
    "METRICS_KEY",
    "ROUTER_KEY",
    "ROUTING_STORE_KEY",
    "STORE_KEY",
]

#: The daemon's configuration.
CONFIG_KEY = web.AppKey("config", Config)
#: The database facade; set by ``create_app(store=...)`` or by the composition root at start-up.
STORE_KEY = web.AppKey("store", Store)
#: The per-app Prometheus collectors.
METRICS_KEY = web.AppKey("metrics", Metrics)
#: True when the API accepts requests without a token (``dialer demo``, or
#: ``[api] allow_anonymous = true`` with no tokens).
ALLOW_ANONYMOUS_KEY = web.AppKey("allow_anonymous", bool)
#: The DSN the pool connects to: ``[database] url``, or the embedded server's (set at start-up).
DATABASE_URL_KEY = web.AppKey("database_url", str)
#: The compiled rule set the daemon routes with (built before start-up: a bad rule stops it).
ROUTER_KEY = web.AppKey("router", Router)
#: Routing state in the database: live rep state, reservations, cursors, DNC.
ROUTING_STORE_KEY = web.AppKey("routing_store", RoutingStore)
