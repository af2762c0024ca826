"""The asyncpg connection pool the store runs on."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

__all__ = ["create_pool", "init_connection", "keep_session"]


def _dumps(value: Any) -> str:
    # allow_nan=False: PostgreSQL's json types reject NaN/Infinity; fail in Python, not in SQL.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection set-up: json/jsonb map to Python dicts/lists both ways."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does (roll back a
    transaction left open, drop the connection's listeners).

    asyncpg's default reset sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` after *every* pooled use: a second round trip and four statements per query,
    which under load was about 11% of the daemon's CPU and a good part of PostgreSQL's. It
    is not needed because pooled connections never keep session state here: no ``SET``
    (only ``SET LOCAL`` would be allowed), no ``LISTEN`` (the pipeline and the outbox listen
    on connections of their own), no cursors outside a transaction, and the one session
    advisory lock (migrations) is unlocked in a ``finally``.
    """
    del conn


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, command_timeout: float = 30.0
) -> asyncpg.Pool:
    """Open a pool on ``dsn`` with the JSON codecs installed on every connection.

    Statements run through ``Connection.fetch*`` are prepared once per connection and cached
    by asyncpg, so the hot paths pay one round trip, not parse + execute.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=init_connection,
        reset=keep_session,
        server_settings={"application_name": "dialer", "jit": "off"},
    )
    assert pool is not None  # create_pool only returns None when awaited without init
    return pool
