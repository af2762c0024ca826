"""The HTTP API (aiohttp): the only layer that speaks HTTP.

Each API module exposes ``routes = web.RouteTableDef()``; :func:`create_app` adds the routes of
the modules it is given (default :data:`DEFAULT_ROUTE_MODULES`), installs the error and auth
middlewares and stores the shared objects under the typed keys of :mod:`dialer.api.keys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from aiohttp import web

from dialer.api import health, leads, routing
from dialer.api.auth import auth_middleware
from dialer.api.errors import ApiError, error_middleware, error_response
from dialer.api.keys import ALLOW_ANONYMOUS_KEY, CONFIG_KEY, METRICS_KEY, STORE_KEY
from dialer.config import Config
from dialer.metrics import Metrics
from dialer.store import Store

__all__ = [
    "ALLOW_ANONYMOUS_KEY",
    "CONFIG_KEY",
    "DEFAULT_ROUTE_MODULES",
    "METRICS_KEY",
    "STORE_KEY",
    "ApiError",
    "create_app",
    "error_response",
]

#: The API modules whose ``routes`` every app serves.
DEFAULT_ROUTE_MODULES: tuple[ModuleType, ...] = (health, leads, routing)


def create_app(
    config: Config,
    store: Store | None = None,
    *,
    metrics: Metrics | None = None,
    route_modules: Sequence[ModuleType] = DEFAULT_ROUTE_MODULES,
    allow_anonymous: bool | None = None,
) -> web.Application:
    """Build the aiohttp application.

    ``store`` may be omitted when a start-up context (``cleanup_ctx``, see ``dialer.app``)
    sets ``app[STORE_KEY]`` before the first request. ``allow_anonymous`` defaults to
    ``config.api.allow_anonymous and not config.api.tokens``; ``dialer demo`` passes True.
    """
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=config.api.max_body_bytes,
    )
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = metrics if metrics is not None else Metrics()
    if allow_anonymous is None:
        allow_anonymous = config.api.allow_anonymous and not config.api.tokens
    app[ALLOW_ANONYMOUS_KEY] = allow_anonymous
    if store is not None:
        app[STORE_KEY] = store
    for module in route_modules:
        route_table = getattr(module, "routes", None)
        if not isinstance(route_table, web.RouteTableDef):
            raise TypeError(f"{module.__name__} has no 'routes = web.RouteTableDef()'")
        app.router.add_routes(route_table)
    return app
