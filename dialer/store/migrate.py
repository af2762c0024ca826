"""Numbered SQL migrations, applied in order under an advisory lock.

Files are ``dialer/store/migrations/NNNN_name.sql`` (shipped as package data). Each pending
file runs in its own transaction together with its row in ``schema_migrations`` (version,
name, sha256 checksum, applied_at), so a failed migration leaves nothing half-applied. A
session-level ``pg_advisory_lock`` makes concurrent daemons (or ``dialer migrate`` next to a
running daemon) take turns: the second one finds nothing left to do.

A file edited after it was applied is an error (its checksum no longer matches): fix forward
with a new file instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: A plain connection or one borrowed from a pool.
AnyConnection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

__all__ = [
    "MIGRATIONS_LOCK_ID",
    "AnyConnection",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "apply_migrations",
    "discover_migrations",
    "migration_status",
]

#: Key of the advisory lock held while migrating (arbitrary, stable: "dialer" in ASCII).
MIGRATIONS_LOCK_ID = 0x6469616C6572

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """Migrations cannot be applied: bad file names, duplicates, or a changed applied file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One migration file."""

    version: int
    #: The file name, e.g. ``0001_leads.sql``.
    name: str
    sql: str
    #: sha256 of the file's text.
    checksum: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationStatus:
    """What the database has compared with the files shipped with this daemon."""

    applied: tuple[int, ...]
    pending: tuple[Migration, ...]

    @property
    def up_to_date(self) -> bool:
        """True when every shipped migration is applied."""
        return not self.pending


def _default_directory() -> Traversable:
    return resources.files("dialer.store").joinpath("migrations")


def discover_migrations(directory: Traversable | None = None) -> tuple[Migration, ...]:
    """The migration files of ``directory`` (default: the shipped ones), by version."""
    directory = directory if directory is not None else _default_directory()
    found: dict[int, Migration] = {}
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql"
            )
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations share version {version:04d}: "
                f"{found[version].name} and {entry.name}"
            )
        sql = entry.read_text(encoding="utf-8")
        found[version] = Migration(
            version=version,
            name=entry.name,
            sql=sql,
            checksum=hashlib.sha256(sql.encode("utf-8")).hexdigest(),
        )
    return tuple(found[version] for version in sorted(found))


async def _applied(conn: AnyConnection) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {int(row["version"]): str(row["checksum"]) for row in rows}


def _check_unchanged(migrations: tuple[Migration, ...], applied: dict[int, str]) -> None:
    for migration in migrations:
        checksum = applied.get(migration.version)
        if checksum is not None and checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} was changed after it was applied "
                "(checksum mismatch); add a new migration instead of editing it"
            )


async def migration_status(
    conn: AnyConnection, migrations: tuple[Migration, ...] | None = None
) -> MigrationStatus:
    """Which shipped migrations the database has and which are pending (no lock taken)."""
    migrations = migrations if migrations is not None else discover_migrations()
    applied = await _applied(conn)
    return MigrationStatus(
        applied=tuple(sorted(applied)),
        pending=tuple(m for m in migrations if m.version not in applied),
    )


async def apply_migrations(
    conn: AnyConnection, migrations: tuple[Migration, ...] | None = None
) -> tuple[Migration, ...]:
    """Apply every pending migration in version order; returns those applied now.

    Holds ``pg_advisory_lock(MIGRATIONS_LOCK_ID)`` for the duration, so concurrent callers
    serialise and the later ones apply nothing.
    """
    migrations = migrations if migrations is not None else discover_migrations()
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK_ID)
    try:
        await conn.execute(_CREATE_TABLE)
        applied = await _applied(conn)
        _check_unchanged(migrations, applied)
        done: list[Migration] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            done.append(migration)
        return tuple(done)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK_ID)
