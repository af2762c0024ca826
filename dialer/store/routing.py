"""Routing state in PostgreSQL: reps' live state, reservations, cursors, rule sets, DNC.

Everything several daemons must agree on lives here. Reserving reps is one transaction:
``SELECT ... FOR UPDATE SKIP LOCKED`` over the candidates in the router's order, so two daemons
never reserve the same rep; for round robin the pool's cursor row is locked first (a plain row
lock, not skipped), which serialises the turns of one pool across daemons and keeps them fair.
A reservation carries a lease: if its daemon dies, the rep frees itself when the lease lapses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from dialer.config import RepConfig
from dialer.domain import RepStatus
from dialer.routing.availability import RepState

__all__ = ["CapacityLimits", "RepRecord", "RoundRobinTurn", "RoutingStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRobinTurn:
    """Which round-robin cursor a reservation advances, and the pool it rotates over."""

    #: ``RoutingDecision.cursor_key``.
    key: str
    #: ``RoutingDecision.pool_reps``: every rep of the pool, in pool order.
    pool: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RepRecord:
    """A rep as stored: config mirror plus live state (``GET /v1/reps``)."""

    id: str
    name: str
    sip_uri: str
    timezone: str
    active: bool
    status: RepStatus
    status_changed_at: datetime
    reserved_by: str | None
    reserved_until: datetime | None
    reserved_by_daemon: str | None
    last_assigned_at: datetime | None
    calls_today: int
    leads_last_hour: int
    leads_today: int

    @property
    def state(self) -> RepState:
        """The live state the router reads."""
        return RepState(
            rep_id=self.id,
            status=self.status,
            reserved_by=self.reserved_by,
            reserved_until=self.reserved_until,
            last_assigned_at=self.last_assigned_at,
            leads_last_hour=self.leads_last_hour,
            leads_today=self.leads_today,
            calls_today=self.calls_today,
        )


_SYNC_REPS: Final = """
INSERT INTO reps (id, name, sip_uri, timezone, active, status_changed_at, updated_at)
SELECT id, name, sip_uri, timezone, true, $5, $5
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS r (id, name, sip_uri, timezone)
ON CONFLICT (id) DO UPDATE
SET name = EXCLUDED.name, sip_uri = EXCLUDED.sip_uri, timezone = EXCLUDED.timezone,
    active = true, updated_at = EXCLUDED.updated_at
"""

_DEACTIVATE_REMOVED: Final = """
UPDATE reps SET active = false, reserved_by = NULL, reserved_until = NULL,
                reserved_by_daemon = NULL, updated_at = $2
WHERE active AND NOT (id = ANY($1::text[]))
"""

# "Today" is the rep's calendar day; the last hour is a sliding window.
_REP_COLUMNS: Final = """
r.id, r.name, r.sip_uri, r.timezone, r.active, r.status, r.status_changed_at, r.reserved_by,
r.reserved_until, r.reserved_by_daemon, r.last_assigned_at,
CASE WHEN r.calls_day = ($1::timestamptz AT TIME ZONE r.timezone)::date
     THEN r.calls_today ELSE 0 END AS calls_today,
(SELECT count(*) FROM rep_assignments a
  WHERE a.rep_id = r.id AND a.assigned_at > $1::timestamptz - interval '1 hour'
    AND a.assigned_at <= $1::timestamptz) AS leads_last_hour,
(SELECT count(*) FROM rep_assignments a
  WHERE a.rep_id = r.id
    AND a.assigned_at >= (date_trunc('day', $1::timestamptz AT TIME ZONE r.timezone)
                          AT TIME ZONE r.timezone)
    AND a.assigned_at <= $1::timestamptz) AS leads_today
"""

_LIST_REPS: Final = f"""
SELECT {_REP_COLUMNS} FROM reps r WHERE r.active OR $2 ORDER BY r.id
"""  # noqa: S608 (interpolates constants only)

# What routing needs, per lead: the router only asks whether a rep *reached* a capacity
# limit, so only reps with a limit are counted, and no further than the limit ($2..$4: rep
# ids, max per hour, max per day; NULL: no such limit). Counting every assignment of the day
# for every rep, per lead, grows with the day's volume (thousands of index rows per lead by
# the afternoon); this reads at most the limits.
_ROUTING_REPS: Final = """
SELECT r.id, r.name, r.sip_uri, r.timezone, r.active, r.status, r.status_changed_at,
       r.reserved_by, r.reserved_until, r.reserved_by_daemon, r.last_assigned_at,
       CASE WHEN r.calls_day = ($1::timestamptz AT TIME ZONE r.timezone)::date
            THEN r.calls_today ELSE 0 END AS calls_today,
       CASE WHEN c.max_hour IS NULL THEN 0 ELSE (
           SELECT count(*) FROM (
               SELECT 1 FROM rep_assignments a
               WHERE a.rep_id = r.id AND a.assigned_at > $1::timestamptz - interval '1 hour'
                 AND a.assigned_at <= $1::timestamptz
               LIMIT c.max_hour) AS capped) END AS leads_last_hour,
       CASE WHEN c.max_day IS NULL THEN 0 ELSE (
           SELECT count(*) FROM (
               SELECT 1 FROM rep_assignments a
               WHERE a.rep_id = r.id
                 AND a.assigned_at >= (date_trunc('day', $1::timestamptz AT TIME ZONE r.timezone)
                                       AT TIME ZONE r.timezone)
                 AND a.assigned_at <= $1::timestamptz
               LIMIT c.max_day) AS capped) END AS leads_today
FROM reps r
LEFT JOIN unnest($2::text[], $3::int8[], $4::int8[]) AS c (rep_id, max_hour, max_day)
       ON c.rep_id = r.id
WHERE r.active
ORDER BY r.id
"""

_GET_REP: Final = f"""
SELECT {_REP_COLUMNS} FROM reps r WHERE r.id = $2
"""  # noqa: S608 (interpolates constants only)

# Upsert that returns the current position with the row locked until commit.
_LOCK_CURSOR: Final = """
INSERT INTO routing_cursors AS c (key, position, updated_at) VALUES ($1, 0, $2)
ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
RETURNING c.position
"""

_SET_CURSOR: Final = """
UPDATE routing_cursors SET position = $2, updated_at = $3 WHERE key = $1
"""

# Candidates in the given order; a rep locked by another transaction is skipped, not waited
# for. The WHERE re-checks live state: a rep who went busy since the router's snapshot is out.
_RESERVE: Final = """
WITH chosen AS (
    SELECT id FROM reps
    WHERE id = ANY($1::text[])
      AND active
      AND status = 'available'
      AND (reserved_by IS NULL OR reserved_by = $2 OR reserved_until <= $3)
    ORDER BY array_position($1::text[], id)
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE reps AS r
SET reserved_by = $2, reserved_until = $3::timestamptz + make_interval(secs => $5::float8),
    reserved_by_daemon = $6, updated_at = $3
FROM chosen WHERE r.id = chosen.id
RETURNING r.id
"""

_RELEASE: Final = """
UPDATE reps
SET reserved_by = NULL, reserved_until = NULL, reserved_by_daemon = NULL, updated_at = $3
WHERE reserved_by = $1 AND ($2::text[] IS NULL OR id = ANY($2::text[]))
RETURNING id
"""

_RELEASE_DAEMON: Final = """
UPDATE reps
SET reserved_by = NULL, reserved_until = NULL, reserved_by_daemon = NULL, updated_at = $2
WHERE reserved_by_daemon = $1
RETURNING id
"""

_RENEW: Final = """
UPDATE reps
SET reserved_until = $2::timestamptz + make_interval(secs => $3::float8), updated_at = $2
WHERE reserved_by = $1
RETURNING id
"""

_SET_STATUS: Final = """
UPDATE reps
SET status = $2,
    status_changed_at = CASE WHEN status = $2 THEN status_changed_at ELSE $3 END,
    updated_at = $3
WHERE id = $1 AND active
RETURNING id
"""

_RECORD_ASSIGNMENT: Final = """
WITH rep AS (
    UPDATE reps SET last_assigned_at = greatest(last_assigned_at, $3), updated_at = $3
    WHERE id = $1
    RETURNING id
)
INSERT INTO rep_assignments (rep_id, lead_id, assigned_at)
SELECT id, $2, $3 FROM rep
ON CONFLICT DO NOTHING
"""

_RECORD_CALL: Final = """
UPDATE reps
SET calls_today = CASE WHEN calls_day = ($2::timestamptz AT TIME ZONE timezone)::date
                       THEN calls_today + 1 ELSE 1 END,
    calls_day = ($2::timestamptz AT TIME ZONE timezone)::date,
    updated_at = $2
WHERE id = $1
RETURNING id
"""

# The winning rep answered (the prospect is being dialled now): what ``_REP_ON_CALL`` (in
# dialer.store.pipeline), ``_RECORD_ASSIGNMENT`` and ``_RECORD_CALL`` do, in one round trip. A
# row can be updated only once per statement, so the three updates of ``reps`` are one SET;
# the assignment row and both counters are written only when the rep is reserved for the lead
# (the pipeline skipped them when ``rep_on_call`` said no). ``status_changed_at`` keeps the
# database clock of ``_REP_ON_CALL``; ``updated_at`` ends as ``$3``, as after ``_RECORD_CALL``.
_REP_ANSWERED: Final = """
WITH answered AS (
    UPDATE reps
    SET status = 'busy', status_changed_at = now(), activity = 'on_call', missed_in_row = 0,
        last_assigned_at = greatest(last_assigned_at, $3::timestamptz),
        calls_today = CASE WHEN calls_day = ($3::timestamptz AT TIME ZONE timezone)::date
                           THEN calls_today + 1 ELSE 1 END,
        calls_day = ($3::timestamptz AT TIME ZONE timezone)::date,
        updated_at = $3::timestamptz
    WHERE id = $1 AND reserved_by = $2
    RETURNING id
), assignment AS (
    INSERT INTO rep_assignments (rep_id, lead_id, assigned_at)
    SELECT id, $2, $3::timestamptz FROM answered
    ON CONFLICT DO NOTHING
)
SELECT id FROM answered
"""

_RECORD_RULESET: Final = """
INSERT INTO routing_rulesets (version, body, first_activated_at, activated_at)
VALUES ($1, $2, $3, $3)
ON CONFLICT (version) DO UPDATE SET activated_at = EXCLUDED.activated_at
RETURNING (xmax = 0) AS inserted
"""

_RECORD_DECISION: Final = """
INSERT INTO routing_decisions (lead_id, version, decided_at, rule, outcome, explanation)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id
"""


#: Candidates offered to the first reservation statement of a lead (then 4x more each time).
_FIRST_CANDIDATES: Final = 16


@dataclass(frozen=True, slots=True)
class CapacityLimits:
    """A rep's ``max_leads_per_hour`` / ``max_leads_per_day`` (None: no limit)."""

    per_hour: int | None
    per_day: int | None

    @classmethod
    def from_config(cls, reps: Sequence[RepConfig]) -> dict[str, CapacityLimits]:
        """The limits of the reps in ``reps`` that have any, by rep id."""
        return {
            rep.id: cls(rep.max_leads_per_hour, rep.max_leads_per_day)
            for rep in reps
            if rep.max_leads_per_hour is not None or rep.max_leads_per_day is not None
        }


def _now(at: datetime | None) -> datetime:
    return at if at is not None else datetime.now(UTC)


def _record(row: asyncpg.Record) -> RepRecord:
    return RepRecord(
        id=row["id"],
        name=row["name"],
        sip_uri=row["sip_uri"],
        timezone=row["timezone"],
        active=row["active"],
        status=RepStatus(row["status"]),
        status_changed_at=row["status_changed_at"],
        reserved_by=row["reserved_by"],
        reserved_until=row["reserved_until"],
        reserved_by_daemon=row["reserved_by_daemon"],
        last_assigned_at=row["last_assigned_at"],
        calls_today=row["calls_today"],
        leads_last_hour=row["leads_last_hour"],
        leads_today=row["leads_today"],
    )


def _rotate(candidates: Sequence[str], pool: Sequence[str], position: int) -> list[str]:
    """``candidates`` in round-robin order starting at pool ``position``."""
    size = len(pool)
    if size == 0:
        return list(candidates)
    start = position % size
    at = {rep_id: index for index, rep_id in enumerate(pool)}

    def turn(rep_id: str) -> tuple[int, int]:
        index = at.get(rep_id)
        return (1, 0) if index is None else (0, (index - start) % size)

    return sorted(candidates, key=turn)


class RoutingStore:
    """Reps' live state, reservations, round-robin cursors, rule sets and the DNC list."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # ----------------------------------------------------------------------- reps

    async def sync_reps(self, reps: Sequence[RepConfig], *, at: datetime | None = None) -> None:
        """Mirror ``[[reps]]``: add new reps (``available``), update names and URIs, and
        deactivate reps no longer configured (their reservations are dropped). Live status is
        kept across restarts."""
        now = _now(at)
        ids = [rep.id for rep in reps]
        async with self._pool.acquire() as conn, conn.transaction():
            if reps:
                await conn.execute(
                    _SYNC_REPS,
                    ids,
                    [rep.name for rep in reps],
                    [rep.sip_uri for rep in reps],
                    [rep.timezone for rep in reps],
                    now,
                )
            await conn.execute(_DEACTIVATE_REMOVED, ids, now)

    async def list_reps(
        self, *, at: datetime | None = None, include_inactive: bool = False
    ) -> list[RepRecord]:
        """Every configured rep with live state and counters at ``at``, by id."""
        rows = await self._pool.fetch(_LIST_REPS, _now(at), include_inactive)
        return [_record(row) for row in rows]

    async def routing_reps(
        self, limits: Mapping[str, CapacityLimits], *, at: datetime | None = None
    ) -> list[RepRecord]:
        """The active reps as routing reads them at ``at``, by id: like :meth:`list_reps`, but
        ``leads_last_hour`` / ``leads_today`` are counted only for the reps in ``limits`` and
        only up to their limit (exact below it, equal to it at or above it: all the router's
        capacity check needs); 0 for a rep, or a period, without a limit."""
        ids = list(limits)
        rows = await self._pool.fetch(
            _ROUTING_REPS,
            _now(at),
            ids,
            [limits[rep_id].per_hour for rep_id in ids],
            [limits[rep_id].per_day for rep_id in ids],
        )
        return [_record(row) for row in rows]

    async def get_rep(self, rep_id: str, *, at: datetime | None = None) -> RepRecord | None:
        """One rep (active or not), or None."""
        row = await self._pool.fetchrow(_GET_REP, _now(at), rep_id)
        return None if row is None else _record(row)

    async def rep_states(self, *, at: datetime | None = None) -> dict[str, RepState]:
        """Live states of the active reps, as ``Router.decide`` takes them."""
        return {record.id: record.state for record in await self.list_reps(at=at)}

    async def set_status(
        self, rep_id: str, status: RepStatus, *, at: datetime | None = None
    ) -> RepRecord | None:
        """Set a rep's presence; None when no active rep has ``rep_id``."""
        now = _now(at)
        async with self._pool.acquire() as conn:
            updated = await conn.fetchval(_SET_STATUS, rep_id, RepStatus(status).value, now)
            if updated is None:
                return None
            row = await conn.fetchrow(_GET_REP, now, rep_id)
        return None if row is None else _record(row)

    async def record_assignment(
        self, rep_id: str, lead_id: str, *, at: datetime | None = None
    ) -> None:
        """The rep took the lead: counts for capacity and ``least_recent``."""
        await self._pool.execute(_RECORD_ASSIGNMENT, rep_id, lead_id, _now(at))

    async def record_call(self, rep_id: str, *, at: datetime | None = None) -> bool:
        """The rep was on a call (``fewest_calls`` counts these per day in the rep's zone)."""
        return await self._pool.fetchval(_RECORD_CALL, rep_id, _now(at)) is not None

    async def rep_answered(self, lead_id: str, rep_id: str, *, at: datetime | None = None) -> bool:
        """The rep answered and won the lead, in one statement: ``busy`` on a call until the
        lead settles (misses in a row forgiven), the lead counted as assigned to them at ``at``
        (capacity, ``least_recent``) and a call counted on their day (``fewest_calls``).
        False, and nothing changed, when the rep is not reserved for the lead.

        The same effects as ``PipelineStore.rep_on_call`` followed, when it succeeds, by
        :meth:`record_assignment` and :meth:`record_call`, in one round trip instead of three.
        """
        return await self._pool.fetchval(_REP_ANSWERED, rep_id, lead_id, _now(at)) is not None

    # ----------------------------------------------------------------------- reservations

    async def reserve_reps(
        self,
        lead_id: str,
        candidate_ids_in_order: Sequence[str],
        count: int,
        lease_s: float,
        daemon_id: str,
        *,
        round_robin: RoundRobinTurn | None = None,
        at: datetime | None = None,
    ) -> list[str]:
        """Reserve up to ``count`` reps for ``lead_id``, atomically, in candidate order.

        A rep already reserved for another lead (with a live lease), no longer available, or
        being reserved by a concurrent transaction is skipped. With ``round_robin`` the pool's
        cursor is locked for the transaction, candidates are rotated to start at its position
        and it moves past the first rep reserved. Returns the reserved rep ids in order (empty:
        nobody could be reserved).
        """
        if count <= 0 or not candidate_ids_in_order:
            return []
        now = _now(at)
        candidates = list(dict.fromkeys(candidate_ids_in_order))
        async with self._pool.acquire() as conn, conn.transaction():
            if round_robin is not None and round_robin.pool:
                position = await conn.fetchval(_LOCK_CURSOR, round_robin.key, now)
                candidates = _rotate(candidates, round_robin.pool, int(position))
            reserved: set[str] = set()
            # A few candidates at a time, in order: the statement orders its candidates by
            # their place in the array (a scan of the array per rep), and the first few are
            # nearly always enough; the rest only when those were taken meanwhile.
            start, size = 0, max(_FIRST_CANDIDATES, 4 * count)
            while start < len(candidates) and len(reserved) < count:
                chunk = candidates[start : start + size]
                rows = await conn.fetch(
                    _RESERVE, chunk, lead_id, now, count - len(reserved), float(lease_s), daemon_id
                )
                reserved.update(row["id"] for row in rows)
                start, size = start + size, size * 4
            ordered = [rep_id for rep_id in candidates if rep_id in reserved]
            if round_robin is not None and round_robin.pool and ordered:
                pool = round_robin.pool
                if ordered[0] in pool:
                    following = (pool.index(ordered[0]) + 1) % len(pool)
                    await conn.execute(_SET_CURSOR, round_robin.key, following, now)
        return ordered

    async def release_reps(
        self,
        lead_id: str,
        rep_ids: Sequence[str] | None = None,
        *,
        at: datetime | None = None,
    ) -> list[str]:
        """Release the lead's reservations (only ``rep_ids`` when given); returns who was freed."""
        rows = await self._pool.fetch(
            _RELEASE, lead_id, None if rep_ids is None else list(rep_ids), _now(at)
        )
        return sorted(row["id"] for row in rows)

    async def release_daemon(self, daemon_id: str, *, at: datetime | None = None) -> list[str]:
        """Release every reservation a daemon holds (its clean shutdown)."""
        rows = await self._pool.fetch(_RELEASE_DAEMON, daemon_id, _now(at))
        return sorted(row["id"] for row in rows)

    async def renew_reservations(
        self, lead_id: str, lease_s: float, *, at: datetime | None = None
    ) -> list[str]:
        """Push the lease of the lead's reservations to ``at + lease_s`` (still ringing)."""
        rows = await self._pool.fetch(_RENEW, lead_id, _now(at), float(lease_s))
        return sorted(row["id"] for row in rows)

    async def cursors(self) -> dict[str, int]:
        """Every round-robin cursor (``Router.decide(cursors=...)``)."""
        rows = await self._pool.fetch("SELECT key, position FROM routing_cursors")
        return {row["key"]: row["position"] for row in rows}

    # ----------------------------------------------------------------------- rule sets

    async def record_ruleset(
        self, version: str, document: Mapping[str, Any], *, at: datetime | None = None
    ) -> bool:
        """Store the rule set ``version`` (or mark it active again); True when it is new."""
        inserted = await self._pool.fetchval(_RECORD_RULESET, version, dict(document), _now(at))
        return bool(inserted)

    async def record_decision(
        self,
        *,
        lead_id: str,
        version: str,
        rule: str,
        outcome: str,
        explanation: Mapping[str, Any],
        at: datetime | None = None,
    ) -> int:
        """Keep a routing decision with its rule-set version and explanation; returns its id."""
        decision_id = await self._pool.fetchval(
            _RECORD_DECISION, lead_id, version, _now(at), rule, outcome, dict(explanation)
        )
        return int(decision_id)

    async def decisions(self, lead_id: str) -> list[dict[str, Any]]:
        """A lead's routing decisions, oldest first (explanations as stored)."""
        rows = await self._pool.fetch(
            "SELECT version, decided_at, rule, outcome, explanation FROM routing_decisions "
            "WHERE lead_id = $1 ORDER BY decided_at, id",
            lead_id,
        )
        return [dict(row) for row in rows]

    # ----------------------------------------------------------------------- do not call

    async def add_dnc(self, phone: str, reason: str = "", *, at: datetime | None = None) -> bool:
        """Put an E.164 number on the do-not-call list; True when it was not there yet."""
        inserted = await self._pool.fetchval(
            "INSERT INTO dnc (phone, reason, added_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (phone) DO NOTHING RETURNING true",
            phone,
            reason,
            _now(at),
        )
        return bool(inserted)

    async def remove_dnc(self, phone: str) -> bool:
        """Take a number off the list; True when it was on it."""
        removed = await self._pool.fetchval(
            "DELETE FROM dnc WHERE phone = $1 RETURNING true", phone
        )
        return bool(removed)

    async def on_dnc(self, phone: str) -> bool:
        """True when the number is on the do-not-call list."""
        return bool(
            await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM dnc WHERE phone = $1)", phone)
        )
