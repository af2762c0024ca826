"""The notification outbox in SQL: enqueue inside the caller's transaction, claim, settle.

Producers (pipeline, SLA timers) call :func:`enqueue` with the connection of the transaction
that records the cause (a lead transition and its timeline event), so a notification exists
exactly when its cause committed. Delivery workers (``dialer.notify.outbox``) call
:func:`claim_due`, deliver, then settle each row with :func:`mark_delivered`,
:func:`mark_failed` or :func:`dead_letter`.

Times are always passed in (``now``), never read from the database clock, so a worker's
injected clock decides what is due. Each claim gets a fresh ``claim_token``; settling a row
needs the token of the claim it settles, so the late answer of a worker whose lease lapsed
cannot undo the work of the worker that re-claimed the row.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg

from dialer.store.migrate import AnyConnection

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_PAYLOAD_BYTES",
    "NOTIFY_CHANNEL",
    "OutboxRow",
    "OutboxStatus",
    "claim_due",
    "dead_letter",
    "enqueue",
    "get_row",
    "list_for_lead",
    "mark_delivered",
    "mark_failed",
    "next_due_at",
]

#: PostgreSQL LISTEN/NOTIFY channel signalled (at commit) whenever rows are enqueued.
NOTIFY_CHANNEL: Final = "dialer_outbox"
#: Largest JSON payload accepted by :func:`enqueue` (UTF-8 bytes); receivers have limits too.
MAX_PAYLOAD_BYTES: Final = 64 * 1024
#: ``last_error`` is cut to this many characters.
MAX_ERROR_CHARS: Final = 1000
#: Endpoints per :func:`enqueue` call; a guard against a runaway fan-out.
MAX_ENDPOINTS_PER_EVENT: Final = 64


class OutboxStatus(enum.StrEnum):
    """Where an outbox row is in its delivery."""

    #: Waiting for ``next_attempt_at`` (first attempt or a retry).
    PENDING = "pending"
    #: Claimed by a worker until ``next_attempt_at`` (its lease).
    DELIVERING = "delivering"
    #: The endpoint acknowledged it.
    DELIVERED = "delivered"
    #: Gave up after too many failures (dead letter); kept for inspection and replay.
    DEAD = "dead"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    """One notification to one endpoint."""

    id: int
    lead_id: str
    endpoint: str
    event_type: str
    payload: Mapping[str, Any]
    #: Sent as the ``Idempotency-Key`` header (email: in the ``Message-ID``).
    idempotency_key: str
    status: OutboxStatus
    #: Attempts started so far, this one included when the row was just claimed.
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    claim_token: uuid.UUID | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


_COLUMNS: Final = (
    "id, lead_id, endpoint, event_type, payload, idempotency_key, status, attempts, "
    "next_attempt_at, claimed_by, claim_token, last_error, created_at, updated_at, delivered_at"
)


def _row(record: asyncpg.Record) -> OutboxRow:
    return OutboxRow(
        id=record["id"],
        lead_id=str(record["lead_id"]),
        endpoint=record["endpoint"],
        event_type=record["event_type"],
        payload=record["payload"],
        idempotency_key=record["idempotency_key"],
        status=OutboxStatus(record["status"]),
        attempts=record["attempts"],
        next_attempt_at=record["next_attempt_at"],
        claimed_by=record["claimed_by"],
        claim_token=record["claim_token"],
        last_error=record["last_error"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        delivered_at=record["delivered_at"],
    )


# The lead's row lock (the same one a status transition takes) serialises enqueuers of one
# lead until commit, so ids of a lead's rows follow commit order: the claim query's "no
# earlier unfinished row" rule then really means "the previous notification". pg_notify is
# queued with the transaction and sent at commit (never for a rollback).
_ENQUEUE: Final = f"""
WITH lead AS (
    SELECT id FROM leads WHERE id = $1 FOR NO KEY UPDATE
), inserted AS (
    INSERT INTO outbox (lead_id, endpoint, event_type, payload, idempotency_key,
                        next_attempt_at, created_at, updated_at)
    SELECT lead.id, target.endpoint, $2, $3, $4 || ':' || target.endpoint, $5, $5, $5
    FROM lead, unnest($6::text[]) WITH ORDINALITY AS target (endpoint, position)
    ORDER BY target.position
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING {_COLUMNS}
)
SELECT {_COLUMNS}, pg_notify('{NOTIFY_CHANNEL}', endpoint) AS notified FROM inserted ORDER BY id
"""  # noqa: S608 (interpolates constants only)

# Due rows of the given endpoints, at most ``free`` per endpoint (its unused concurrency),
# each the oldest unfinished row of its (lead, endpoint). SKIP LOCKED: rows another worker is
# claiming right now are left to it. A row still "delivering" whose lease lapsed is due again.
_CLAIM: Final = f"""
WITH picked AS (
    SELECT candidate.id
    FROM unnest($1::text[], $2::int[]) AS slot (endpoint, free)
    CROSS JOIN LATERAL (
        SELECT o.id FROM outbox o
        WHERE o.endpoint = slot.endpoint
          AND o.status IN ('pending', 'delivering')
          AND o.next_attempt_at <= $3
          AND NOT EXISTS (
              SELECT 1 FROM outbox earlier
              WHERE earlier.lead_id = o.lead_id
                AND earlier.endpoint = o.endpoint
                AND earlier.id < o.id
                AND earlier.status IN ('pending', 'delivering'))
        ORDER BY o.next_attempt_at, o.id
        LIMIT slot.free
        FOR UPDATE OF o SKIP LOCKED
    ) AS candidate
    WHERE slot.free > 0
)
UPDATE outbox SET
    status = 'delivering',
    attempts = outbox.attempts + 1,
    next_attempt_at = $4,
    claimed_by = $5,
    claim_token = gen_random_uuid(),
    updated_at = $3
FROM picked
WHERE outbox.id = picked.id
RETURNING {", ".join("outbox." + c for c in _COLUMNS.split(", "))}
"""  # noqa: S608 (interpolates constants only)

# When the next row of these endpoints falls due (rows waiting behind an earlier unfinished
# row of their lead are not due: they wait for that row).
_NEXT_DUE: Final = """
SELECT min(o.next_attempt_at) FROM outbox o
WHERE o.endpoint = ANY($1::text[])
  AND o.status IN ('pending', 'delivering')
  AND NOT EXISTS (
      SELECT 1 FROM outbox earlier
      WHERE earlier.lead_id = o.lead_id
        AND earlier.endpoint = o.endpoint
        AND earlier.id < o.id
        AND earlier.status IN ('pending', 'delivering'))
"""

# A delivery that happened is recorded even when the claim is stale: the receiver has it.
_MARK_DELIVERED: Final = f"""
UPDATE outbox SET status = 'delivered', delivered_at = $2, updated_at = $2, last_error = NULL
WHERE id = $1 AND status IN ('pending', 'delivering')
RETURNING {_COLUMNS}
"""  # noqa: S608 (interpolates constants only)

_MARK_FAILED: Final = f"""
UPDATE outbox SET status = 'pending', next_attempt_at = $3, last_error = $4, updated_at = $5
WHERE id = $1 AND claim_token = $2 AND status = 'delivering'
RETURNING {_COLUMNS}
"""  # noqa: S608 (interpolates constants only)

_DEAD_LETTER: Final = f"""
UPDATE outbox SET status = 'dead', last_error = $3, updated_at = $4
WHERE id = $1 AND claim_token = $2 AND status = 'delivering'
RETURNING {_COLUMNS}
"""  # noqa: S608 (interpolates constants only)

_GET: Final = f"SELECT {_COLUMNS} FROM outbox WHERE id = $1"  # noqa: S608
_LIST_FOR_LEAD: Final = f"SELECT {_COLUMNS} FROM outbox WHERE lead_id = $1 ORDER BY id"  # noqa: S608


def _cut(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


async def enqueue(
    conn: AnyConnection,
    lead_id: str,
    event_type: str,
    payload: Mapping[str, Any],
    endpoints: Sequence[str],
    *,
    event_id: str | None = None,
    now: datetime,
) -> list[OutboxRow]:
    """Add one row per endpoint for this event; run it inside the caller's transaction.

    ``event_id`` identifies the event (default: ``payload["id"]``, else a new UUID); each
    row's idempotency key is ``"<event_id>:<endpoint>"``, so enqueueing the same event again
    (a re-derived SLA breach after a restart) adds nothing. Returns the rows added now, in
    ``endpoints`` order: empty when every row existed already or the lead does not exist.

    Call it after the statement that changes the lead (the transition), in the same
    transaction: it locks the lead's row, which orders one lead's notifications by commit.
    Raises ``ValueError`` for a payload larger than :data:`MAX_PAYLOAD_BYTES`, too many
    endpoints, or an endpoint listed twice.
    """
    if not endpoints:
        return []
    if len(endpoints) > MAX_ENDPOINTS_PER_EVENT:
        raise ValueError(f"at most {MAX_ENDPOINTS_PER_EVENT} endpoints per event")
    if len(set(endpoints)) != len(endpoints):
        raise ValueError(f"endpoint listed twice: {list(endpoints)}")
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {size} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if event_id is None:
        given = payload.get("id")
        event_id = given if isinstance(given, str) and given else str(uuid.uuid4())
    records = await conn.fetch(
        _ENQUEUE,
        uuid.UUID(lead_id),
        event_type,
        dict(payload),
        event_id,
        now,
        list(endpoints),
    )
    return [_row(record) for record in records]


async def claim_due(
    conn: AnyConnection,
    free_slots: Mapping[str, int],
    *,
    now: datetime,
    lease_s: float,
    worker_id: str,
) -> list[OutboxRow]:
    """Claim due rows: at most ``free_slots[endpoint]`` per endpoint, oldest first.

    Each claimed row is ``delivering``, its ``attempts`` counts this attempt, and its
    ``next_attempt_at`` is ``now + lease_s``: if the worker never settles it, it becomes due
    again then. One statement (its own transaction unless the caller opened one).
    """
    endpoints = [name for name, free in free_slots.items() if free > 0]
    if not endpoints:
        return []
    records = await conn.fetch(
        _CLAIM,
        endpoints,
        [free_slots[name] for name in endpoints],
        now,
        now + timedelta(seconds=lease_s),
        worker_id,
    )
    rows = [_row(record) for record in records]
    rows.sort(key=lambda row: row.id)
    return rows


async def next_due_at(conn: AnyConnection, endpoints: Sequence[str]) -> datetime | None:
    """When the earliest claimable row of ``endpoints`` is due (None: nothing waits)."""
    if not endpoints:
        return None
    value: datetime | None = await conn.fetchval(_NEXT_DUE, list(endpoints))
    return value


async def mark_delivered(conn: AnyConnection, row_id: int, *, now: datetime) -> OutboxRow | None:
    """Record a successful delivery; None when the row was already delivered or dead."""
    record = await conn.fetchrow(_MARK_DELIVERED, row_id, now)
    return _row(record) if record is not None else None


async def mark_failed(
    conn: AnyConnection,
    row_id: int,
    claim_token: uuid.UUID,
    *,
    next_attempt_at: datetime,
    error: str,
    now: datetime,
) -> OutboxRow | None:
    """Back to ``pending`` until ``next_attempt_at``; None when the claim is no longer ours."""
    record = await conn.fetchrow(
        _MARK_FAILED, row_id, claim_token, next_attempt_at, _cut(error), now
    )
    return _row(record) if record is not None else None


async def dead_letter(
    conn: AnyConnection, row_id: int, claim_token: uuid.UUID, *, error: str, now: datetime
) -> OutboxRow | None:
    """Give up on the row (``dead``); None when the claim is no longer ours."""
    record = await conn.fetchrow(_DEAD_LETTER, row_id, claim_token, _cut(error), now)
    return _row(record) if record is not None else None


async def get_row(conn: AnyConnection, row_id: int) -> OutboxRow | None:
    """The row with ``row_id``, or None."""
    record = await conn.fetchrow(_GET, row_id)
    return _row(record) if record is not None else None


async def list_for_lead(conn: AnyConnection, lead_id: str) -> list[OutboxRow]:
    """Every outbox row of the lead, oldest first."""
    records = await conn.fetch(_LIST_FOR_LEAD, uuid.UUID(lead_id))
    return [_row(record) for record in records]
