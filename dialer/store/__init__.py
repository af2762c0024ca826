"""The only code that speaks SQL: leads and their timeline in PostgreSQL.

:class:`Store` runs explicit SQL over an ``asyncpg.Pool`` and returns the typed values of
``dialer.domain`` (never asyncpg Records). Every state change is a single statement that also
appends its ``lead_events`` row, so the row and its history commit together.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from dialer.domain import Intent, Lead, LeadEvent, LeadStatus
from dialer.store.migrate import Migration, discover_migrations, migration_status

__all__ = [
    "RECEIVED_EVENT",
    "NewLead",
    "Readiness",
    "Store",
    "StoreUnavailableError",
    "new_lead_id",
]

#: Kind of the first event of every lead, written in the same statement as the lead.
RECEIVED_EVENT: Final = "received"


class StoreUnavailableError(RuntimeError):
    """The database cannot be reached or is shutting down; the operation may be retried."""


#: Connection-level failures (as opposed to errors in the statement itself).
_UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    # A pooled connection the server dropped mid-protocol (a restart under load) can surface
    # as "cannot switch to state N; another operation is in progress": still an outage.
    asyncpg.InternalClientError,
)


@contextlib.contextmanager
def _unavailable_as_store_error() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailableError(f"database unavailable: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class NewLead:
    """A validated, normalised lead ready to be stored (see ``dialer.intake``)."""

    phone: str  # E.164
    name: str | None = None
    email: str | None = None
    company: str | None = None
    source: str | None = None
    external_id: str | None = None
    idempotency_key: str | None = None
    intent: Intent | None = None
    consent: bool | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    #: The daemon's clock when the request arrived.
    received_at: datetime
    #: The client's submission time, already clamped to ``received_at``.
    submitted_at: datetime | None = None
    #: Extra data for the ``received`` event (e.g. that ``submitted_at`` was clamped).
    received_event_data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Readiness:
    """Whether the database can serve the daemon."""

    database_reachable: bool
    pending_migrations: tuple[str, ...] = ()
    detail: str = ""

    @property
    def ready(self) -> bool:
        """Reachable and fully migrated."""
        return self.database_reachable and not self.pending_migrations


def new_lead_id() -> str:
    """A UUIDv7 (RFC 9562) string: time-ordered, so inserts stay at the right of the index."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return str(uuid.UUID(int=value))


def _parse_id(lead_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(lead_id)
    except (ValueError, AttributeError, TypeError):
        return None


_LEAD_COLUMNS: Final = (
    "id, status, phone, name, email, company, source, external_id, intent, consent, fields, "
    "received_at, submitted_at, assigned_rep"
)

# One round trip: the lead and its first event in one statement (one implicit transaction).
# ON CONFLICT without a target covers both idempotency indexes (and the primary key).
_INSERT_LEAD: Final = f"""
WITH inserted AS (
    INSERT INTO leads (id, status, phone, name, email, company, source, external_id,
                       idempotency_key, intent, consent, fields, received_at, submitted_at,
                       event_seq, updated_at)
    VALUES ($1, 'received', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $12)
    ON CONFLICT DO NOTHING
    RETURNING {_LEAD_COLUMNS}
), event AS (
    INSERT INTO lead_events (lead_id, seq, at, kind, data)
    SELECT id, 1, received_at, '{RECEIVED_EVENT}', $14 FROM inserted
)
SELECT {_LEAD_COLUMNS} FROM inserted
"""  # noqa: S608 (interpolates constants only)

# The lead a duplicate refers to; the Idempotency-Key wins when both match different leads.
_FIND_DUPLICATE: Final = f"""
SELECT {_LEAD_COLUMNS} FROM leads
WHERE ($1::text IS NOT NULL AND idempotency_key = $1)
   OR ($3::text IS NOT NULL AND coalesce(source, '') = coalesce($2::text, '')
       AND external_id = $3)
ORDER BY (idempotency_key IS NOT DISTINCT FROM $1) DESC
LIMIT 1
"""  # noqa: S608 (interpolates constants only)

_GET_LEAD: Final = f"SELECT {_LEAD_COLUMNS} FROM leads WHERE id = $1"  # noqa: S608

_LIST_EVENTS: Final = """
SELECT lead_id, seq, at, kind, data FROM lead_events WHERE lead_id = $1 ORDER BY seq
"""

_APPEND_EVENT: Final = """
WITH bumped AS (
    UPDATE leads SET event_seq = event_seq + 1, updated_at = $2
    WHERE id = $1
    RETURNING id, event_seq
)
INSERT INTO lead_events (lead_id, seq, at, kind, data)
SELECT id, event_seq, $2, $3, $4 FROM bumped
RETURNING lead_id, seq, at, kind, data
"""

_TRANSITION: Final = f"""
WITH moved AS (
    UPDATE leads SET status = $3, event_seq = event_seq + 1, updated_at = $4
    WHERE id = $1 AND status = ANY($2::text[])
    RETURNING {_LEAD_COLUMNS}, event_seq
), event AS (
    INSERT INTO lead_events (lead_id, seq, at, kind, data)
    SELECT id, event_seq, $4, $5, $6 FROM moved
)
SELECT {_LEAD_COLUMNS} FROM moved
"""  # noqa: S608 (interpolates constants only)


def _lead(row: asyncpg.Record) -> Lead:
    intent = row["intent"]
    return Lead(
        id=str(row["id"]),
        status=LeadStatus(row["status"]),
        phone=row["phone"],
        name=row["name"],
        email=row["email"],
        company=row["company"],
        source=row["source"],
        external_id=row["external_id"],
        intent=Intent(intent) if intent is not None else None,
        consent=row["consent"],
        fields=row["fields"],
        received_at=row["received_at"],
        submitted_at=row["submitted_at"],
        assigned_rep=row["assigned_rep"],
    )


def _event(row: asyncpg.Record) -> LeadEvent:
    return LeadEvent(
        lead_id=str(row["lead_id"]),
        seq=row["seq"],
        at=row["at"],
        kind=row["kind"],
        data=row["data"],
    )


class Store:
    """Typed access to leads and their timeline over an asyncpg pool (owned by the caller)."""

    def __init__(self, pool: asyncpg.Pool, *, migrations: tuple[Migration, ...] | None = None):
        self._pool = pool
        #: The migrations this daemon ships, which readiness compares with the database.
        self._migrations = migrations if migrations is not None else discover_migrations()

    @property
    def pool(self) -> asyncpg.Pool:
        """The underlying pool, for other ``dialer.store`` modules only."""
        return self._pool

    async def create_lead(self, new: NewLead, *, lead_id: str | None = None) -> tuple[Lead, bool]:
        """Store ``new`` with its ``received`` event, unless it duplicates a stored lead.

        Returns ``(lead, True)`` when stored now, ``(first_lead, False)`` when the same
        ``(source, external_id)`` or ``idempotency_key`` was stored before (also when the two
        requests race: the unique indexes decide, not a read-then-write).
        """
        record_id = uuid.UUID(lead_id) if lead_id else uuid.UUID(new_lead_id())
        with _unavailable_as_store_error():
            return await self._create_lead(new, record_id)

    async def _create_lead(self, new: NewLead, record_id: uuid.UUID) -> tuple[Lead, bool]:
        async with self._pool.acquire() as conn:
            for _ in range(3):
                row = await conn.fetchrow(
                    _INSERT_LEAD,
                    record_id,
                    new.phone,
                    new.name,
                    new.email,
                    new.company,
                    new.source,
                    new.external_id,
                    new.idempotency_key,
                    new.intent.value if new.intent is not None else None,
                    new.consent,
                    dict(new.fields),
                    new.received_at,
                    new.submitted_at,
                    dict(new.received_event_data),
                )
                if row is not None:
                    return _lead(row), True
                if new.idempotency_key is None and new.external_id is None:
                    # Only the random id can have collided: draw another.
                    record_id = uuid.UUID(new_lead_id())
                    continue
                existing = await conn.fetchrow(
                    _FIND_DUPLICATE, new.idempotency_key, new.source, new.external_id
                )
                if existing is not None:
                    return _lead(existing), False
                # The conflicting row vanished (its transaction rolled back): insert again.
        raise RuntimeError("could not store lead after 3 attempts")  # pragma: no cover

    async def get_lead(self, lead_id: str) -> Lead | None:
        """The lead with ``lead_id``, or None (also for ids that are not UUIDs)."""
        parsed = _parse_id(lead_id)
        if parsed is None:
            return None
        with _unavailable_as_store_error():
            row = await self._pool.fetchrow(_GET_LEAD, parsed)
        return _lead(row) if row is not None else None

    async def list_events(self, lead_id: str) -> list[LeadEvent]:
        """The lead's timeline, oldest first (empty for an unknown lead)."""
        parsed = _parse_id(lead_id)
        if parsed is None:
            return []
        with _unavailable_as_store_error():
            rows = await self._pool.fetch(_LIST_EVENTS, parsed)
        return [_event(row) for row in rows]

    async def append_event(
        self,
        lead_id: str,
        kind: str,
        data: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> LeadEvent | None:
        """Append one event to the lead's timeline; None when the lead does not exist."""
        parsed = _parse_id(lead_id)
        if parsed is None:
            return None
        with _unavailable_as_store_error():
            row = await self._pool.fetchrow(
                _APPEND_EVENT, parsed, at or datetime.now(UTC), kind, dict(data or {})
            )
        return _event(row) if row is not None else None

    async def transition(
        self,
        lead_id: str,
        from_statuses: Collection[LeadStatus],
        to_status: LeadStatus,
        event_kind: str,
        data: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> Lead | None:
        """Move the lead to ``to_status`` and append ``event_kind``, atomically.

        Only when its current status is one of ``from_statuses``; otherwise nothing changes and
        None is returned (the caller lost a race or the lead is gone).
        """
        parsed = _parse_id(lead_id)
        if parsed is None:
            return None
        with _unavailable_as_store_error():
            row = await self._pool.fetchrow(
                _TRANSITION,
                parsed,
                [status.value for status in from_statuses],
                to_status.value,
                at or datetime.now(UTC),
                event_kind,
                dict(data or {}),
            )
        return _lead(row) if row is not None else None

    async def ping(self) -> None:
        """Round trip to the database; :class:`StoreUnavailableError` when it is unreachable."""
        with _unavailable_as_store_error():
            await self._pool.fetchval("SELECT 1")

    async def readiness(self, *, acquire_timeout_s: float = 2.0) -> Readiness:
        """Reachable and migrated? Never raises for database trouble."""
        try:
            async with self._pool.acquire(timeout=acquire_timeout_s) as conn:
                status = await migration_status(conn, self._migrations)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return Readiness(database_reachable=False, detail=f"{type(exc).__name__}: {exc}")
        return Readiness(
            database_reachable=True,
            pending_migrations=tuple(m.name for m in status.pending),
            detail="" if status.up_to_date else "migrations pending",
        )
