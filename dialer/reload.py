"""SIGHUP: re-read the config file and swap reps and routing rules without dropping a call.

What a reload changes, and what it does not:

- ``[[reps]]``, ``[[teams]]``, ``[[owners]]``, ``[ringing]``, ``[[routing.rules]]`` /
  ``[routing.fallback]``, ``[sla]``, ``[retry]`` and ``[compliance]`` take effect for every
  **new** routing decision: reps are mirrored into the database (a removed rep is deactivated,
  a new one becomes routable), the new rule set is recorded under its version, and the
  pipeline routes with the new :class:`~dialer.routing.Router`. Calls in progress keep the ring
  plan they started with.
- Everything bound at start-up (``[api]``, ``[database]``, ``[sip]``, ``[[trunks]]``,
  ``[media]``, ``[daemon]``, ``[log]``, ``[notify]``) is compared, and a change is logged as
  ``restart required`` and ignored: the daemon keeps running with the values it started with.
- The new file is validated in full first (:func:`dialer.config.load_config`, then
  ``Router(config)``, which compiles every CEL condition). An invalid file changes nothing:
  one error line naming the key, and the old config stays in force.

systemd sees ``RELOADING=1`` when a reload begins and ``READY=1`` when it is over, whatever the
outcome (``ExecReload=/bin/kill -HUP $MAINPID``).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from aiohttp import web

from dialer.api.keys import CONFIG_KEY, ROUTER_KEY, ROUTING_STORE_KEY
from dialer.config import Config, ConfigError, load_config
from dialer.logs import get_logger
from dialer.routing import Router, ruleset_document
from dialer.systemd import notify_ready, notify_reloading

__all__ = [
    "RELOADABLE_SECTIONS",
    "RESTART_REQUIRED_SECTIONS",
    "ReloadResult",
    "Reloader",
    "config_path_from_argv",
    "merge_reloadable",
]

_log = get_logger("dialer.reload")

#: Config sections a SIGHUP applies (attribute names of :class:`~dialer.config.Config`).
RELOADABLE_SECTIONS: Final = (
    "reps",
    "teams",
    "owners",
    "ringing",
    "routing",
    "sla",
    "retry",
    "compliance",
)
#: Config sections bound at start-up: a change needs a restart and is ignored by a reload.
RESTART_REQUIRED_SECTIONS: Final = (
    "api",
    "database",
    "sip",
    "trunks",
    "media",
    "daemon",
    "log",
    "notify",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadResult:
    """What one reload did."""

    #: True when the new reps and rules are in force.
    applied: bool
    #: The rule-set version in force after the reload.
    version: str
    #: The one-line reason the new file was rejected (``config error: <key>: <message>``).
    error: str = ""
    #: Sections that changed in the file but need a restart (ignored).
    restart_required: tuple[str, ...] = ()


def merge_reloadable(current: Config, new: Config) -> tuple[Config, tuple[str, ...]]:
    """``current`` with the reloadable sections of ``new``; and the names of the sections that
    differ but need a restart (kept as in ``current``)."""
    restart = tuple(
        name for name in RESTART_REQUIRED_SECTIONS if getattr(current, name) != getattr(new, name)
    )
    merged = replace(current, **{name: getattr(new, name) for name in RELOADABLE_SECTIONS})
    return merged, restart


def _uses_press1(config: Config) -> bool:
    rules = (*config.routing.rules, config.routing.fallback)
    return config.ringing.accept == "press1" or any(
        rule is not None and rule.accept == "press1" for rule in rules
    )


def config_path_from_argv(argv: Sequence[str]) -> Path | None:
    """The ``--config`` path of a ``dialer run`` command line (``--config X`` or
    ``--config=X``); None when absent."""
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--config="):
            return Path(arg.partition("=")[2])
    return None


class Reloader:
    """Applies SIGHUPs to a running daemon's app, one at a time.

    Drivers: :meth:`request` (the signal handler; never blocks, requests during a reload
    coalesce into one more reload) and :meth:`reload` (awaitable, for tests and callers that
    want the :class:`ReloadResult`).
    """

    def __init__(self, app: web.Application, config_path: Path | None) -> None:
        self.app = app
        self.config_path = config_path
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        """Reload soon (from a signal handler)."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run_requested(), name="config-reload")

    async def _run_requested(self) -> None:
        while True:
            self._again = False
            try:
                await self.reload()
            except Exception:  # a reload must never take the daemon down
                _log.exception("config reload crashed; old config kept")
            if not self._again:
                return

    async def wait_idle(self) -> None:
        """Wait for a requested reload to finish (shutdown)."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)

    async def reload(self) -> ReloadResult:
        """Re-read, validate, and apply the reloadable sections (module docstring)."""
        async with self._lock:
            notify_reloading("reloading config")
            try:
                return await self._reload()
            finally:
                notify_ready("config reload finished")

    async def _reload(self) -> ReloadResult:
        app = self.app
        current = app[CONFIG_KEY]
        router = app[ROUTER_KEY]
        if self.config_path is None:
            _log.error("config reload failed: the daemon was started without --config")
            return ReloadResult(applied=False, version=router.version, error="no config file")
        try:
            loaded = load_config(self.config_path)
            merged, restart = merge_reloadable(current, loaded)
            if _uses_press1(merged) and not _uses_press1(current):
                raise ConfigError(
                    "ringing.accept",
                    "press-1 accept needs the prompt loaded at start-up; restart to enable it",
                )
            new_router = Router(merged)
        except ConfigError as exc:
            _log.error(
                "config reload rejected; old config kept",
                key=exc.key_path,
                error=str(exc),
                path=str(self.config_path),
            )
            return ReloadResult(applied=False, version=router.version, error=str(exc))
        if restart:
            _log.warning(
                "config reload: restart required for changed sections; ignored",
                sections=list(restart),
            )
        routing_store = app[ROUTING_STORE_KEY]
        # The database first: if it is unreachable nothing changes and the next SIGHUP retries.
        try:
            await routing_store.sync_reps(merged.reps)
            new = await routing_store.record_ruleset(new_router.version, ruleset_document(merged))
        except Exception as exc:  # database trouble of any kind: keep the old config whole
            _log.error(
                "config reload failed: database unavailable; old config kept", error=str(exc)
            )
            return ReloadResult(
                applied=False,
                version=router.version,
                error=f"database: {exc}",
                restart_required=restart,
            )
        from dialer.pipeline import PIPELINE_KEY  # local: dialer.pipeline imports dialer.api

        pipeline = app.get(PIPELINE_KEY)
        if pipeline is not None:
            pipeline.replace_routing(merged, new_router)
        with warnings.catch_warnings():
            # The app's state is frozen once started; these two entries are meant to change.
            warnings.simplefilter("ignore", DeprecationWarning)
            app[CONFIG_KEY] = merged
            app[ROUTER_KEY] = new_router
        if pipeline is not None:
            pipeline.wake(rep_freed=True)  # a new rep may take a waiting lead now
        _log.info(
            "config reloaded",
            version=new_router.version,
            previous_version=router.version,
            new_ruleset=new,
            reps=len(merged.reps),
            rules=len(new_router.rule_names),
            restart_required=list(restart),
        )
        return ReloadResult(applied=True, version=new_router.version, restart_required=restart)
