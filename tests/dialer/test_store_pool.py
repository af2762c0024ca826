"""The daemon's asyncpg pool (dialer.store.pool) against real PostgreSQL."""

from __future__ import annotations

import pytest

from dialer.store.pool import create_pool

pytestmark = pytest.mark.postgres


async def test_a_use_of_the_pool_is_one_statement_without_a_reset_query(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    sent: list[str] = []
    try:
        async with pool.acquire() as conn:
            # A query logger stays on the connection across releases: it sees what is sent.
            conn.add_query_logger(lambda record: sent.append(record.query))
            await conn.fetchval("SELECT 1")
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 2")
        # asyncpg's default reset would stand between them ("SELECT pg_advisory_unlock_all();
        # CLOSE ALL; UNLISTEN *; RESET ALL;").
        assert sent == ["SELECT 1", "SELECT 2"]
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE pool_probe (n int)")
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")  # unmanaged: as if a task was cancelled mid-way
            await conn.execute("INSERT INTO pool_probe VALUES (1)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await pool.close()


async def test_json_codecs_are_installed_on_every_connection(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=2, max_size=2)
    try:
        async with pool.acquire() as first, pool.acquire() as second:
            for conn in (first, second):
                value = await conn.fetchval("SELECT $1::jsonb", {"a": [1, "é"]})
                assert value == {"a": [1, "é"]}
    finally:
        await pool.close()
