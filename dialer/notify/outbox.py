"""The outbox delivery worker: claim due notifications, deliver, retry, dead-letter.

Guarantees (with ``dialer.store.notify``):

- **At least once.** A row leaves the outbox only when an endpoint accepted it (``delivered``)
  or after ``max_attempts`` failures (``dead``). A worker that dies mid-delivery leaves its
  rows ``delivering`` under a lease (``[notify] lease_s``); they are claimed again when it
  lapses. Receivers drop repeats by the ``Idempotency-Key`` (the same on every attempt).
- **Order per lead and endpoint.** Only the oldest unfinished row of a (lead, endpoint) can be
  claimed, so a lead's next notification waits until the previous one to that endpoint is
  delivered or dead-lettered. Other leads and other endpoints are not held up.
- **Bounded.** Per endpoint at most ``max_concurrency`` deliveries in flight (the claim asks
  for no more rows than free slots); every attempt has a timeout; retries back off
  exponentially with full jitter, ``uniform(0, min(backoff_max_s, backoff_base_s * 2**(n-1)))``;
  stopping waits at most ``drain_timeout_s``.

Wake-ups: PostgreSQL ``LISTEN dialer_outbox`` (enqueue signals it at commit, from any daemon)
on a dedicated connection, a finished delivery, or the earliest ``next_attempt_at``; polling
every ``poll_interval_s`` covers a lost listener. The clock and the jitter RNG are injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import aiohttp
import asyncpg
from aiohttp import web

from dialer.api.keys import CONFIG_KEY, DATABASE_URL_KEY, STORE_KEY
from dialer.logs import get_logger
from dialer.notify.channels import Channel, Delivery, DeliveryError, build_channels
from dialer.notify.config import NotifyConfig
from dialer.notify.managers import manager_endpoints, unsendable_manager_emails
from dialer.store import notify as outbox_sql
from dialer.store.migrate import AnyConnection
from dialer.store.notify import OutboxRow

__all__ = [
    "NOTIFY_CONFIG_KEY",
    "OUTBOX_WORKER_KEY",
    "Clock",
    "OutboxWorker",
    "WorkerStats",
    "backoff_delay_s",
    "notify_ctx",
    "utc_now",
]

_log = get_logger("dialer.notify")

#: A source of timezone-aware "now" (injected in tests).
Clock = Callable[[], datetime]

#: Database trouble that a worker survives (the next poll tries again).
_DB_ERRORS: Final = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
#: Shortest idle wait, so rows due but locked by another worker are not polled in a spin.
_MIN_IDLE_S: Final = 0.02
#: Extra time an attempt gets beyond its channel's own timeout before it is abandoned.
_ATTEMPT_GRACE_S: Final = 2.0
#: Bound on every bookkeeping statement (claim, settle).
_STATEMENT_TIMEOUT_S: Final = 10.0
#: How often a lost LISTEN connection is re-opened.
_LISTEN_RETRY_S: Final = 5.0


def utc_now() -> datetime:
    """The wall clock, timezone-aware (the default :data:`Clock`)."""
    return datetime.now(UTC)


def backoff_delay_s(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Wait before retry number ``attempt`` (1 = after the first failure), full jitter."""
    exponent = min(max(attempt - 1, 0), 60)  # 2**60 * any base is past every cap
    ceiling = min(max_s, base_s * 2.0**exponent)
    return rng.uniform(0.0, ceiling)


@dataclass(slots=True)
class WorkerStats:
    """Counters since start (for logs, metrics and tests)."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0


class OutboxWorker:
    """Delivers outbox rows of the endpoints in ``channels`` (one worker per daemon)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: Mapping[str, Channel],
        *,
        worker_id: str,
        max_attempts: int = 8,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 600.0,
        poll_interval_s: float = 1.0,
        lease_s: float = 30.0,
        drain_timeout_s: float = 5.0,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        listen_dsn: str | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        longest = max((channel.timeout_s for channel in channels.values()), default=0.0)
        if lease_s <= longest + _ATTEMPT_GRACE_S:
            raise ValueError(
                f"lease_s ({lease_s:g}) must exceed the longest channel timeout plus "
                f"{_ATTEMPT_GRACE_S:g}s ({longest + _ATTEMPT_GRACE_S:g}s)"
            )
        self._pool = pool
        self._channels = dict(channels)
        self._worker_id = worker_id
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._poll_interval_s = poll_interval_s
        self._lease_s = lease_s
        self._drain_timeout_s = drain_timeout_s
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._listen_dsn = listen_dsn
        self._listener: asyncpg.Connection | None = None
        self._listen_tried_at: float | None = None
        self._in_flight: dict[str, int] = dict.fromkeys(self._channels, 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.stats = WorkerStats()

    @classmethod
    def from_config(
        cls,
        config: NotifyConfig,
        pool: asyncpg.Pool,
        channels: Mapping[str, Channel],
        *,
        worker_id: str,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
        listen_dsn: str | None = None,
    ) -> OutboxWorker:
        """A worker with the delivery policy of ``[notify]``."""
        return cls(
            pool,
            channels,
            worker_id=worker_id,
            max_attempts=config.max_attempts,
            backoff_base_s=config.backoff_base_s,
            backoff_max_s=config.backoff_max_s,
            poll_interval_s=config.poll_interval_s,
            lease_s=config.lease_s,
            drain_timeout_s=config.drain_timeout_s,
            clock=clock,
            rng=rng,
            listen_dsn=listen_dsn,
        )

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._runner is not None and not self._runner.done()

    def in_flight(self, endpoint: str) -> int:
        """Deliveries to ``endpoint`` in progress now."""
        return self._in_flight.get(endpoint, 0)

    def wake(self) -> None:
        """Look for due rows now (e.g. right after this process enqueued some)."""
        self._wake.set()

    async def start(self) -> None:
        """Start the claim loop (and the LISTEN connection when a DSN was given)."""
        if self._runner is not None:
            raise RuntimeError("outbox worker already started")
        await self._ensure_listener()
        self._runner = asyncio.create_task(self._run(), name="outbox-worker")

    async def stop(self) -> None:
        """Stop claiming; let deliveries in flight finish (bounded), then release the rest.

        Rows abandoned here go back to ``pending`` at once, so the next worker retries them
        without waiting for their lease.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._drain_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._close_listener()

    # -- the claim loop ----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            # Cleared before claiming: a wake-up during the claim is not lost.
            self._wake.clear()
            await self._ensure_listener()
            try:
                claimed = await self._claim()
            except _DB_ERRORS as exc:
                _log.warning("outbox claim failed", error=f"{type(exc).__name__}: {exc}")
                await self._idle(self._poll_interval_s)
                continue
            for row in claimed:
                self._start_delivery(row)
            if claimed:
                continue  # more may be due, and slots may be free
            try:
                delay = await self._idle_delay()
            except _DB_ERRORS:
                delay = self._poll_interval_s
            await self._idle(delay)

    def _free_slots(self) -> dict[str, int]:
        return {
            name: channel.max_concurrency - self._in_flight[name]
            for name, channel in self._channels.items()
            if channel.max_concurrency > self._in_flight[name]
        }

    async def _claim(self) -> list[OutboxRow]:
        free = self._free_slots()
        if not free:
            return []
        async with asyncio.timeout(_STATEMENT_TIMEOUT_S), self._pool.acquire() as conn:
            rows = await outbox_sql.claim_due(
                conn, free, now=self._clock(), lease_s=self._lease_s, worker_id=self._worker_id
            )
        self.stats.claimed += len(rows)
        return rows

    async def _idle_delay(self) -> float:
        free = list(self._free_slots())
        if not free:
            return self._poll_interval_s  # a finished delivery wakes the loop
        async with asyncio.timeout(_STATEMENT_TIMEOUT_S), self._pool.acquire() as conn:
            due = await outbox_sql.next_due_at(conn, free)
        if due is None:
            return self._poll_interval_s
        wait = (due - self._clock()).total_seconds()
        return min(max(wait, _MIN_IDLE_S), self._poll_interval_s)

    async def _idle(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    # -- deliveries --------------------------------------------------------------------

    def _start_delivery(self, row: OutboxRow) -> None:
        channel = self._channels[row.endpoint]
        self._in_flight[row.endpoint] += 1
        task = asyncio.create_task(self._deliver(row, channel), name=f"outbox-{row.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, row: OutboxRow, channel: Channel) -> None:
        try:
            error = await self._attempt(row, channel)
            await self._settle(row, error)
        except asyncio.CancelledError:
            with contextlib.suppress(*_DB_ERRORS):
                async with asyncio.timeout(2.0), self._pool.acquire() as conn:
                    await self._release(conn, row)
            raise
        finally:
            self._in_flight[row.endpoint] -= 1
            self._wake.set()

    async def _attempt(self, row: OutboxRow, channel: Channel) -> DeliveryError | None:
        delivery = Delivery(
            endpoint=row.endpoint,
            event_type=row.event_type,
            lead_id=row.lead_id,
            payload=row.payload,
            idempotency_key=row.idempotency_key,
            attempt=row.attempts,
        )
        try:
            async with asyncio.timeout(channel.timeout_s + _ATTEMPT_GRACE_S):
                await channel.deliver(delivery, now=self._clock())
        except DeliveryError as exc:
            return exc
        except TimeoutError:
            return DeliveryError(f"timed out after {channel.timeout_s:g}s")
        except Exception as exc:  # a bug in one channel must not stop every delivery
            _log.exception("notification channel crashed", endpoint=row.endpoint)
            return DeliveryError(f"{type(exc).__name__}: {exc}")
        return None

    async def _settle(self, row: OutboxRow, error: DeliveryError | None) -> None:
        log = _log.bind(
            outbox_id=row.id,
            lead_id=row.lead_id,
            endpoint=row.endpoint,
            event_type=row.event_type,
            attempt=row.attempts,
        )
        now = self._clock()
        assert row.claim_token is not None  # every claimed row has one
        try:
            async with asyncio.timeout(_STATEMENT_TIMEOUT_S), self._pool.acquire() as conn:
                if error is None:
                    await outbox_sql.mark_delivered(conn, row.id, now=now)
                    self.stats.delivered += 1
                    log.debug("notification delivered")
                elif not error.retryable or row.attempts >= self._max_attempts:
                    await outbox_sql.dead_letter(
                        conn, row.id, row.claim_token, error=str(error), now=now
                    )
                    self.stats.dead_lettered += 1
                    log.warning("notification dead-lettered", error=str(error))
                else:
                    delay = self._retry_delay_s(row.attempts, error)
                    await outbox_sql.mark_failed(
                        conn,
                        row.id,
                        row.claim_token,
                        next_attempt_at=now + timedelta(seconds=delay),
                        error=str(error),
                        now=now,
                    )
                    self.stats.retried += 1
                    log.info("notification failed, will retry", error=str(error), retry_in_s=delay)
        except _DB_ERRORS as exc:
            # The row stays claimed; when its lease lapses it is delivered (again).
            log.warning("outbox settle failed", error=f"{type(exc).__name__}: {exc}")

    def _retry_delay_s(self, attempt: int, error: DeliveryError) -> float:
        delay = backoff_delay_s(
            attempt, base_s=self._backoff_base_s, max_s=self._backoff_max_s, rng=self._rng
        )
        if error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, self._backoff_max_s))
        return delay

    async def _release(self, conn: AnyConnection, row: OutboxRow) -> None:
        assert row.claim_token is not None
        now = self._clock()
        await outbox_sql.mark_failed(
            conn,
            row.id,
            row.claim_token,
            next_attempt_at=now,
            error="delivery interrupted: worker stopping",
            now=now,
        )

    # -- LISTEN ------------------------------------------------------------------------

    async def _ensure_listener(self) -> None:
        if self._listen_dsn is None:
            return
        if self._listener is not None and not self._listener.is_closed():
            return
        loop = asyncio.get_running_loop()
        if self._listen_tried_at is not None and loop.time() - self._listen_tried_at < (
            _LISTEN_RETRY_S
        ):
            return
        self._listen_tried_at = loop.time()
        try:
            listener = await asyncpg.connect(self._listen_dsn, timeout=_STATEMENT_TIMEOUT_S)
            await listener.add_listener(outbox_sql.NOTIFY_CHANNEL, self._on_notify)
        except (*_DB_ERRORS, asyncpg.ClientConfigurationError) as exc:
            _log.warning("outbox listen failed; polling", error=f"{type(exc).__name__}: {exc}")
            return
        self._listener = listener

    def _on_notify(self, _conn: object, _pid: int, _channel: str, endpoint: object) -> None:
        if endpoint in self._channels:
            self._wake.set()

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(*_DB_ERRORS):
                await asyncio.wait_for(listener.close(), timeout=2.0)


# --------------------------------------------------------------------------- app wiring

#: ``[notify]`` for :func:`notify_ctx` when the composition root sets it explicitly
#: (otherwise ``Config.notify`` is used, and without it notifications are off).
NOTIFY_CONFIG_KEY = web.AppKey("notify_config", NotifyConfig)
#: The running worker (set by :func:`notify_ctx`).
OUTBOX_WORKER_KEY = web.AppKey("outbox_worker", OutboxWorker)


def _notify_config(app: web.Application) -> NotifyConfig:
    if NOTIFY_CONFIG_KEY in app:
        return app[NOTIFY_CONFIG_KEY]
    # Until dialer.config declares Config.notify; then this is app[CONFIG_KEY].notify.
    configured = getattr(app[CONFIG_KEY], "notify", None)
    return configured if isinstance(configured, NotifyConfig) else NotifyConfig()


async def notify_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: run the outbox worker while the app runs (after ``database_ctx``).

    Delivers to the ``[notify]`` endpoints and to the team managers' own contacts
    (:func:`dialer.notify.managers.manager_endpoints`); warns about manager emails that no
    ``[notify.smtp]`` can send. Needs ``STORE_KEY`` (its pool) and, for prompt wake-ups,
    ``DATABASE_URL_KEY``.
    """
    config = _notify_config(app)
    teams = app[CONFIG_KEY].teams
    for key in unsendable_manager_emails(teams, config):
        # A warning, not an error: the address still reaches webhooks (data.escalation), and
        # adding a manager's contact must not stop a daemon whose mail server is elsewhere.
        _log.warning(
            "manager email not sent: [notify.smtp] is not configured; SLA breaches reach "
            "this manager only through [notify] endpoints and their slack_webhook",
            key=key,
        )
    managers = manager_endpoints(teams, config)
    endpoints = (*config.endpoints, *managers)
    if not endpoints:
        _log.info("notifications off: no [notify] endpoints and no manager contacts")
        yield
        return
    worker_id = app[CONFIG_KEY].daemon.resolved_instance_id()
    connector = aiohttp.TCPConnector(limit=sum(e.max_concurrency for e in endpoints))
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        worker = OutboxWorker.from_config(
            config,
            app[STORE_KEY].pool,
            build_channels(config, session, managers),
            worker_id=worker_id,
            listen_dsn=app.get(DATABASE_URL_KEY),
        )
        await worker.start()
        app[OUTBOX_WORKER_KEY] = worker
        _log.info("notifications on", endpoints=[e.name for e in endpoints])
        try:
            yield
        finally:
            await worker.stop()
