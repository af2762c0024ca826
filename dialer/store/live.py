"""The live pages' cross-daemon channel in SQL: PostgreSQL ``LISTEN``/``NOTIFY``.

Several daemons share one database; each keeps the events of its live pages in an in-process
hub (:mod:`dialer.web.events`). :class:`LiveChannel` is the SQL half of the relay that joins
those hubs (:mod:`dialer.web.relay` is the other half, which decides what is sent): one
dedicated connection per daemon that both ``LISTEN``\\s on :data:`LIVE_CHANNEL` and sends the
daemon's own batches with ``pg_notify``. It never touches the pool, so relaying live events
never competes with the pipeline for a pooled connection.

PostgreSQL delivers a notification to every session listening on the channel, the sender's
included, in the order they were committed; payloads must be shorter than 8000 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Final

import asyncpg

from dialer.store import StoreUnavailableError

__all__ = ["LIVE_CHANNEL", "MAX_PAYLOAD_BYTES", "LiveChannel"]

#: The ``LISTEN``/``NOTIFY`` channel the daemons' live events travel on.
LIVE_CHANNEL: Final = "dialer_live"
#: Longest ``NOTIFY`` payload PostgreSQL accepts (UTF-8 bytes; "shorter than 8000 bytes").
MAX_PAYLOAD_BYTES: Final = 7999

#: Every payload of one call, one notification each, in array order, in ONE round trip (one
#: implicit transaction: the notifications are delivered together and in this order).
_NOTIFY_MANY: Final = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"

#: Failures that mean the channel is unusable for now (the caller retries later).
_FAILURES: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.ClientConfigurationError,
)


class LiveChannel:
    """One dedicated connection that listens on, and notifies, :data:`LIVE_CHANNEL`.

    :meth:`open` connects and listens (payloads go to ``on_payload``; ``on_lost`` is called
    when the connection ends without :meth:`close`), :meth:`notify` sends payloads, and
    :meth:`close` hangs up. Every failure is a :class:`~dialer.store.StoreUnavailableError`;
    after one, :attr:`connected` tells whether :meth:`open` must be called again.
    """

    def __init__(self, dsn: str, *, channel: str = LIVE_CHANNEL, timeout_s: float = 5.0) -> None:
        self._dsn = dsn
        self.channel = channel
        self._timeout_s = timeout_s
        self._conn: asyncpg.Connection | None = None
        self._on_payload: Callable[[str], None] | None = None
        self._on_lost: Callable[[], None] | None = None

    @property
    def connected(self) -> bool:
        """Whether the connection is up (listening, and able to notify)."""
        return self._conn is not None and not self._conn.is_closed()

    async def open(
        self, on_payload: Callable[[str], None], on_lost: Callable[[], None] | None = None
    ) -> None:
        """Connect and ``LISTEN`` (a no-op when already connected)."""
        if self.connected:
            return
        await self._drop()
        self._on_payload, self._on_lost = on_payload, on_lost
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout_s,
                server_settings={"application_name": "dialer-live"},
            )
            await conn.add_listener(self.channel, self._deliver)
        except _FAILURES as exc:
            if conn is not None:
                conn.terminate()
            raise StoreUnavailableError(f"live channel: {type(exc).__name__}: {exc}") from exc
        except BaseException:  # cancelled half-way: leave no connection behind
            if conn is not None:
                conn.terminate()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn

    async def notify(self, payloads: Sequence[str]) -> None:
        """Send ``payloads`` in order, one notification each, in one round trip.

        Raises ValueError for a payload PostgreSQL would refuse (checked before sending).
        Identical payloads in one call are delivered once (PostgreSQL folds them).
        """
        if not payloads:
            return
        for payload in payloads:
            if len(payload.encode()) > MAX_PAYLOAD_BYTES:
                raise ValueError(f"NOTIFY payload over {MAX_PAYLOAD_BYTES} bytes")
        conn = self._conn
        if conn is None or conn.is_closed():
            raise StoreUnavailableError("live channel: not connected")
        try:
            await conn.execute(_NOTIFY_MANY, self.channel, list(payloads), timeout=self._timeout_s)
        except _FAILURES as exc:
            raise StoreUnavailableError(f"live channel: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Stop listening and hang up (idempotent; ``on_lost`` is not called)."""
        self._on_lost = None
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        conn.remove_termination_listener(self._terminated)
        try:
            await asyncio.wait_for(conn.close(), timeout=2.0)
        except _FAILURES:
            conn.terminate()

    def _deliver(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if self._on_payload is not None and isinstance(payload, str):
            self._on_payload(payload)

    def _terminated(self, conn: object) -> None:
        # The server went away (restart, outage, idle kill): the owner reconnects.
        if conn is self._conn:
            self._conn = None
            if self._on_lost is not None:
                with contextlib.suppress(Exception):
                    self._on_lost()
