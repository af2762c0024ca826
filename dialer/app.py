"""The composition root: the one place that builds and wires the daemon's objects.

Start-up order (one ``cleanup_ctx`` generator per resource, so stop order mirrors it):

1. embedded PostgreSQL, when ``[database] url`` is empty (``pgserver`` in ``data_dir``);
2. the asyncpg pool, then the migrations, then the :class:`~dialer.store.Store`;
3. the outbox worker, the live pages' hub, the SIP endpoint, the pipeline, the SLA timers;
4. the systemd link (watchdog pings; :mod:`dialer.systemd`);
5. the HTTP site, bound last, so no request arrives before the store is ready; only then
   ``READY=1`` to systemd (:func:`dialer.systemd.notify_started`), once.

Shutdown (SIGTERM/SIGINT): first :meth:`Daemon.drain` (``/readyz`` 503, no new lead claimed,
calls in progress finish for up to ``[daemon] drain_timeout_s``, then are hung up, unfinished
leads handed back), then :meth:`Daemon.stop`: the listening socket closes, in-flight requests
finish, and the contexts unwind in reverse: pool closed, embedded PostgreSQL stopped.
SIGHUP reloads reps and rules (:mod:`dialer.reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from aiohttp import web

from dialer.api import DEFAULT_ROUTE_MODULES, create_app
from dialer.api.health import SERVING_STATE_KEY, ServingState
from dialer.api.keys import CONFIG_KEY, DATABASE_URL_KEY, ROUTER_KEY, STORE_KEY
from dialer.api.routing import routing_ctx
from dialer.config import Config
from dialer.logs import get_logger
from dialer.reload import Reloader, config_path_from_argv
from dialer.routing import Router
from dialer.store import Store
from dialer.store.embedded import EmbeddedPostgres
from dialer.store.migrate import apply_migrations
from dialer.store.pool import create_pool
from dialer.systemd import notify_started, notify_stopping

__all__ = [
    "Daemon",
    "build_app",
    "database_ctx",
    "embedded_postgres_ctx",
    "run_async",
    "serve",
]

_log = get_logger("dialer.app")
#: On shutdown, how long a config reload under way may take to finish before the drain.
_RELOAD_WAIT_S = 5.0
_T = TypeVar("_T")


async def embedded_postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    """Resolve the database URL: ``[database] url``, or start embedded PostgreSQL for it."""
    database = app[CONFIG_KEY].database
    if database.url:
        app[DATABASE_URL_KEY] = database.url
        yield
        return
    embedded = EmbeddedPostgres(database.data_dir)
    _log.info("starting embedded postgresql", data_dir=str(embedded.data_dir))
    app[DATABASE_URL_KEY] = await embedded.start()
    try:
        yield
    finally:
        await embedded.stop()
        _log.info("embedded postgresql released", data_dir=str(embedded.data_dir))


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the pool, apply pending migrations, publish the :class:`Store`; close the pool."""
    database = app[CONFIG_KEY].database
    pool = await create_pool(
        app[DATABASE_URL_KEY], min_size=database.pool_min, max_size=database.pool_max
    )
    try:
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn)
        if applied:
            _log.info("migrations applied", migrations=[m.name for m in applied])
        app[STORE_KEY] = Store(pool)
        yield
    finally:
        await pool.close()


def build_app(
    config: Config,
    *,
    allow_anonymous: bool | None = None,
    route_modules: Sequence[ModuleType] = DEFAULT_ROUTE_MODULES,
) -> web.Application:
    """The HTTP app with every start-up context of the daemon attached, in order."""
    # Compiled before anything starts, so a bad rule stops start-up with one line.
    router = Router(config)
    app = create_app(config, route_modules=route_modules, allow_anonymous=allow_anonymous)
    app[ROUTER_KEY] = router
    app.cleanup_ctx.append(embedded_postgres_ctx)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(routing_ctx)
    # Local imports: these modules import dialer.api (and dialer.app's keys) themselves.
    from dialer.api import pipeline as pipeline_api
    from dialer.api import reports as reports_api
    from dialer.notify.outbox import notify_ctx
    from dialer.notify.pipeline_hook import notify_step_hook
    from dialer.pipeline import STEP_HOOK_KEY, calls_ctx, pipeline_ctx
    from dialer.sla_runtime import sla_ctx
    from dialer.systemd import systemd_ctx
    from dialer.web import pages as web_pages
    from dialer.web import web_ctx

    for module in (pipeline_api, reports_api, web_pages):
        if module not in route_modules:
            app.router.add_routes(module.routes)
    step_hook = notify_step_hook(config.notify)
    if step_hook is not None:
        app[STEP_HOOK_KEY] = step_hook
    # Start order (stop order is the reverse): the outbox worker and the live pages' hub
    # exist before any call; the SIP endpoint before the pipeline that uses it; the SLA
    # timers after the pipeline they hand breached leads to; the systemd link last (its
    # READY waits for the HTTP bind in Daemon.start).
    app.cleanup_ctx.append(notify_ctx)
    app.cleanup_ctx.append(web_ctx)
    app.cleanup_ctx.append(calls_ctx)
    app.cleanup_ctx.append(live_calls_ctx)
    app.cleanup_ctx.append(pipeline_ctx)
    app.cleanup_ctx.append(sla_ctx)
    app.cleanup_ctx.append(systemd_ctx)
    return app


async def live_calls_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start-up context (after the call layer, before the pipeline): the pipeline starts its
    calls through :class:`dialer.web.LiveCalls`, so every call event also reaches the live
    console and dashboard."""
    from dialer.calls.controller import Call, CallController
    from dialer.pipeline import CALL_CONTROLLER_KEY, CALL_STARTER_KEY
    from dialer.web import LiveCalls

    controller: CallController = app[CALL_CONTROLLER_KEY]
    app[CALL_STARTER_KEY] = LiveCalls[Call](app, controller)
    yield


class Daemon:
    """The daemon's lifecycle: :meth:`start` brings everything up, :meth:`stop` drains it."""

    def __init__(
        self,
        config: Config,
        *,
        allow_anonymous: bool | None = None,
        route_modules: Sequence[ModuleType] = DEFAULT_ROUTE_MODULES,
    ) -> None:
        self.config = config
        self.app = build_app(config, allow_anonymous=allow_anonymous, route_modules=route_modules)
        self.serving = ServingState()
        self.app[SERVING_STATE_KEY] = self.serving
        self._runner = web.AppRunner(
            self.app,
            access_log=None,  # one log line per lead is written by the handler instead
            handle_signals=False,
            shutdown_timeout=config.daemon.drain_timeout_s,
        )
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL the API listens on (the real port when ``listen`` asked for port 0)."""
        if self._url is None:
            raise RuntimeError("daemon not started")
        return self._url

    @property
    def store(self) -> Store:
        """The store (after :meth:`start`)."""
        return self.app[STORE_KEY]

    async def start(self) -> None:
        """Start database, pool, migrations, SIP, then listen, then tell systemd READY.

        Cleans up after itself on failure (and then systemd hears no READY at all).
        """
        api = self.config.api
        try:
            await self._runner.setup()
            site = web.TCPSite(self._runner, api.host, api.port, reuse_address=True)
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        host, port = self._bound_address(api.host, api.port)
        shown_host = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown_host}:{port}"
        _log.info("listening", url=self._url)
        # The contexts ran inside setup(), before the bind: only now is everything up.
        notify_started(self.app, f"listening on {self._url}")

    def _bound_address(self, host: str, port: int) -> tuple[str, int]:
        for address in self._runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                return str(address[0]), int(address[1])
        return host, port

    async def drain(self, timeout_s: float | None = None) -> None:
        """SIGTERM's first half: ``/readyz`` answers 503 at once, the pipeline claims nothing
        more, calls in progress finish for up to ``[daemon] drain_timeout_s`` (then are hung
        up) and unfinished leads are handed back. HTTP keeps serving meanwhile (leads posted
        now are stored for any daemon). :meth:`stop` follows."""
        if self.serving.draining:
            return
        self.serving.draining = True
        timeout = self.config.daemon.drain_timeout_s if timeout_s is None else timeout_s
        _log.info("draining", timeout_s=timeout)
        notify_stopping("draining calls in progress")
        from dialer.pipeline import PIPELINE_KEY  # local: dialer.pipeline imports dialer.app's keys

        pipeline = self.app.get(PIPELINE_KEY)
        if pipeline is not None:
            await pipeline.drain(timeout)

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, then unwind every context."""
        _log.info("stopping")
        self.serving.draining = True
        notify_stopping()
        await self._runner.cleanup()
        _log.info("stopped")


async def serve(
    config: Config,
    *,
    allow_anonymous: bool | None = None,
    on_ready: Callable[[Daemon], Awaitable[None]] | None = None,
    stop_event: asyncio.Event | None = None,
    config_path: Path | None = None,
) -> None:
    """Run the daemon until SIGTERM/SIGINT (or ``stop_event``), then drain and shut down.

    ``on_ready`` runs once the API listens (the demo posts its sample leads there).
    SIGHUP reloads reps and rules from ``config_path`` (default: the ``--config`` of this
    process's command line; see :mod:`dialer.reload`). The first SIGTERM drains
    (:meth:`Daemon.drain`); a second one during the drain cuts it short.
    """
    stop_event = stop_event if stop_event is not None else asyncio.Event()
    hurry = asyncio.Event()
    if config_path is None:
        config_path = config_path_from_argv(sys.argv)
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    reloader: Reloader | None = None
    reload_pending = False

    def on_hangup() -> None:
        nonlocal reload_pending
        _log.info("signal received, reloading config", signal="SIGHUP")
        if reloader is None:
            reload_pending = True  # still starting: reload once up
        else:
            reloader.request()

    # Handlers first: a SIGTERM during start-up then stops the daemon cleanly once it is up,
    # instead of killing the process with the embedded PostgreSQL half attached; a SIGHUP
    # (systemd's ExecReload) must never kill it.
    handlers: list[tuple[signal.Signals, Callable[[], None]]] = [
        (signal.SIGTERM, lambda: _on_signal(signal.SIGTERM, stop_event, hurry)),
        (signal.SIGINT, lambda: _on_signal(signal.SIGINT, stop_event, hurry)),
        (signal.SIGHUP, on_hangup),
    ]
    for signum, handler in handlers:
        try:
            loop.add_signal_handler(signum, handler)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread / Windows
            pass
    try:
        daemon = Daemon(config, allow_anonymous=allow_anonymous)
        await daemon.start()
        reloader = Reloader(daemon.app, config_path)
        try:
            if reload_pending:
                reloader.request()
            if on_ready is not None and not stop_event.is_set():
                await on_ready(daemon)
            await stop_event.wait()
            # A reload under way finishes first (bounded: its database calls may hang).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RELOAD_WAIT_S):
                    await reloader.wait_idle()
            await _drain_unless_hurried(daemon, hurry)
        finally:
            await daemon.stop()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


async def _drain_unless_hurried(daemon: Daemon, hurry: asyncio.Event) -> None:
    drain = asyncio.create_task(daemon.drain(), name="daemon-drain")
    hurried = asyncio.create_task(hurry.wait(), name="daemon-drain-hurry")
    try:
        await asyncio.wait({drain, hurried}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hurried.cancel()
        if not drain.done():
            _log.warning("second signal: drain cut short")
            drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
        await asyncio.gather(hurried, return_exceptions=True)


def _on_signal(signum: signal.Signals, stop_event: asyncio.Event, hurry: asyncio.Event) -> None:
    if stop_event.is_set():
        _log.info("signal received again, stopping now", signal=signum.name)
        hurry.set()
        return
    _log.info("signal received, shutting down", signal=signum.name)
    stop_event.set()


def run_async(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` on uvloop when it is importable, else on the default asyncio loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(main)
    result: _T = uvloop.run(main)
    return result
