"""dialer.store.migrate: order, bookkeeping, checksums, concurrency, file discovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from dialer.store.migrate import (
    MigrationError,
    apply_migrations,
    discover_migrations,
    migration_status,
)


def write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


def test_shipped_migrations_are_found_in_order() -> None:
    migrations = discover_migrations()
    assert migrations[0].name == "0001_leads.sql"
    versions = [m.version for m in migrations]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert all(len(m.checksum) == 64 for m in migrations)


def test_bad_file_names_and_duplicate_versions_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "1_short.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_"):
        discover_migrations(tmp_path)
    (tmp_path / "1_short.sql").unlink()
    write(tmp_path, "0001_a.sql", "SELECT 1;")
    write(tmp_path, "0001_b.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="share version 0001"):
        discover_migrations(tmp_path)


async def test_apply_in_order_once_and_record(empty_database_url: str, tmp_path: Path) -> None:
    write(tmp_path, "0002_second.sql", "ALTER TABLE t ADD COLUMN b int;")
    write(tmp_path, "0001_first.sql", "CREATE TABLE t (a int);")
    write(tmp_path, "README.txt", "ignored")
    migrations = discover_migrations(tmp_path)
    conn = await asyncpg.connect(empty_database_url)
    try:
        status = await migration_status(conn, migrations)
        assert [m.name for m in status.pending] == ["0001_first.sql", "0002_second.sql"]
        applied = await apply_migrations(conn, migrations)
        assert [m.name for m in applied] == ["0001_first.sql", "0002_second.sql"]
        assert await apply_migrations(conn, migrations) == ()
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
        assert [(r["version"], r["name"]) for r in rows] == [
            (1, "0001_first.sql"),
            (2, "0002_second.sql"),
        ]
        assert rows[0]["checksum"] == migrations[0].checksum
        await conn.execute("INSERT INTO t (a, b) VALUES (1, 2)")
        assert (await migration_status(conn, migrations)).up_to_date
    finally:
        await conn.close()


async def test_failed_migration_leaves_nothing_half_applied(
    empty_database_url: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_ok.sql", "CREATE TABLE ok (a int);")
    write(tmp_path, "0002_bad.sql", "CREATE TABLE half (a int); SELECT no_such_function();")
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await apply_migrations(conn, discover_migrations(tmp_path))
        assert await conn.fetchval("SELECT to_regclass('half')") is None
        assert await conn.fetchval("SELECT to_regclass('ok')") is not None
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        assert [r["version"] for r in versions] == [1]
        # The advisory lock was released despite the failure.
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()


async def test_changed_applied_migration_is_refused(
    empty_database_url: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_first.sql", "CREATE TABLE t (a int);")
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn, discover_migrations(tmp_path))
        write(tmp_path, "0001_first.sql", "CREATE TABLE t (a bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, discover_migrations(tmp_path))
    finally:
        await conn.close()


async def test_concurrent_migrators_apply_each_file_once(
    empty_database_url: str, tmp_path: Path
) -> None:
    # Not idempotent on purpose: a second application would fail with "already exists".
    write(tmp_path, "0001_first.sql", "CREATE TABLE t (a int); SELECT pg_sleep(0.2);")
    migrations = discover_migrations(tmp_path)
    conns = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c, migrations) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert sorted(len(applied) for applied in results) == [0, 0, 0, 1]


async def test_shipped_migrations_apply_on_an_empty_database(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        applied = await apply_migrations(conn)
        assert applied[0].name == "0001_leads.sql"
        for table in ("leads", "lead_events", "schema_migrations"):
            assert await conn.fetchval("SELECT to_regclass($1)", table) is not None
    finally:
        await conn.close()
