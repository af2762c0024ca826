"""The pipeline's SQL: claiming leads, leases, transitions with their event, rep lifecycle.

Ownership. A daemon works on a lead only while it holds the claim: ``leads.claimed_by`` is its
instance id and ``leads.lease_until`` is in the future. Claims are taken with
``FOR UPDATE SKIP LOCKED`` (two daemons never take the same lead), renewed by the owner's
heartbeat (:meth:`PipelineStore.renew`), and lapse when the owner dies; any daemon then claims
the lead again and resumes it from its status (:class:`Claim` says from what and whom). Every
write of the pipeline checks the claim (``claimed_by = <me>``), so a daemon that stalled past
its lease can no longer change a lead another daemon took over.

One transaction per step. A status change, its ``lead_events`` row and, for routing, its
``routing_decisions`` row and the reps' ``activity`` are one statement (data-modifying CTEs),
so the lead, its timeline and the explanation never disagree, and the pipeline pays one round
trip per step.

Clocks. Leases and rep wrap-ups are compared with the database's clock (``now()``), the one
clock every daemon sharing the database agrees on; timeline times are the moments things
happened (SIP events carry their own wall-clock time).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import asyncpg

from dialer.domain import Intent, Lead, LeadStatus
from dialer.store.migrate import AnyConnection

__all__ = [
    "IN_FLIGHT_STATUSES",
    "Claim",
    "DecisionRecord",
    "LeadChanges",
    "LeadPage",
    "PipelineLead",
    "PipelineStore",
    "RepLegOutcome",
    "RoutingContext",
    "StepHook",
    "decode_cursor",
    "encode_cursor",
]

#: Statuses in which a daemon is actively working on the lead (it holds a claim).
IN_FLIGHT_STATUSES: Final = frozenset(
    {
        LeadStatus.ROUTING,
        LeadStatus.RINGING_REPS,
        LeadStatus.CALLING_PROSPECT,
        LeadStatus.CONNECTED,
    }
)

_LEAD_COLUMNS: Final = (
    "id, status, phone, name, email, company, source, external_id, intent, consent, fields, "
    "received_at, submitted_at, assigned_rep, claimed_by, lease_until, next_attempt_at, "
    "sla_due_at, first_touch_at, called_at, ring_rounds, tried_reps, prospect_attempts, "
    "waiting_since, status_reason, updated_at"
)

# Claimable now: in-flight leads whose owner's lease lapsed (a daemon died), new leads, and
# leads whose retry time has come. Three locking reads, each from an index whose scan touches
# only candidates (0007_claim_index.sql; retries use leads_status_next_attempt_idx), so a claim
# never walks the leads in hand: a bridged call stays claimed (``connected``) for its whole
# duration, nor the leads scheduled for later. Their predicates are disjoint and
# together are exactly "open, and unclaimed or lease lapsed, and (if scheduled) due".
# Recovered leads come first: they are the oldest work, and their calls may still be up. The
# fresh and scheduled reads take only what recovery left room for; the one that loses the
# merge keeps its surplus rows locked (unchanged) until this statement commits, which a
# concurrent claimer skips for that instant. Statuses must match the indexes' predicates.
_CLAIM_READY: Final = f"""
WITH expired AS (
    SELECT id, status AS prior_status, claimed_by AS prior_owner, lease_until AS lapsed_at,
           coalesce(next_attempt_at, received_at) AS due_at
    FROM leads
    WHERE claimed_by IS NOT NULL AND lease_until <= now()
      AND status IN ('received', 'routing', 'ringing_reps', 'calling_prospect', 'connected',
                     'scheduled')
      AND (status <> 'scheduled' OR next_attempt_at <= now())
    ORDER BY lease_until, coalesce(next_attempt_at, received_at)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), fresh AS (
    SELECT id, status AS prior_status, claimed_by AS prior_owner,
           coalesce(next_attempt_at, received_at) AS due_at
    FROM leads
    WHERE claimed_by IS NULL
      AND status IN ('received', 'routing', 'ringing_reps', 'calling_prospect', 'connected')
    ORDER BY coalesce(next_attempt_at, received_at)
    LIMIT greatest($2 - (SELECT count(*) FROM expired), 0)
    FOR UPDATE SKIP LOCKED
), retries AS (
    SELECT id, status AS prior_status, claimed_by AS prior_owner, next_attempt_at AS due_at
    FROM leads
    WHERE claimed_by IS NULL AND status = 'scheduled' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT greatest($2 - (SELECT count(*) FROM expired), 0)
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, prior_status, prior_owner, 0 AS claim_rank, lapsed_at, due_at FROM expired
    UNION ALL
    (SELECT id, prior_status, prior_owner, 1, NULL::timestamptz, due_at FROM fresh
     UNION ALL
     SELECT id, prior_status, prior_owner, 1, NULL::timestamptz, due_at FROM retries
     ORDER BY due_at
     LIMIT greatest($2 - (SELECT count(*) FROM expired), 0))
), moved AS (
    UPDATE leads AS l
    SET claimed_by = $1,
        lease_until = now() + make_interval(secs => $3::float8),
        status = CASE WHEN p.prior_status IN ('received', 'scheduled') THEN 'routing'
                      ELSE p.prior_status END,
        next_attempt_at = NULL,
        event_seq = l.event_seq + 1,
        updated_at = now()
    FROM picked AS p
    WHERE l.id = p.id
    RETURNING l.*, p.prior_status, p.prior_owner, p.claim_rank, p.lapsed_at,
              p.due_at AS claim_due_at
), event AS (
    INSERT INTO lead_events (lead_id, seq, at, kind, data)
    SELECT id, event_seq, now(),
           CASE WHEN prior_status IN ('received', 'scheduled') THEN 'routing' ELSE 'recovered' END,
           jsonb_strip_nulls(jsonb_build_object(
               'daemon', $1::text, 'from', prior_status, 'previous_daemon', prior_owner))
    FROM moved
)
SELECT {_LEAD_COLUMNS}, event_seq, prior_status, prior_owner FROM moved
ORDER BY claim_rank, lapsed_at, claim_due_at
"""  # noqa: S608 (interpolates constants only)

# Waiting leads, oldest SLA first, a few per free rep (the first in line may not be able to use
# the rep that became free: it already rang them, or the rep is outside its pool). Claiming one
# changes nothing else: routing it again either rings reps (its status changes, with an event)
# or puts it back silently.
_CLAIM_WAITING: Final = f"""
WITH picked AS (
    SELECT id, status AS prior_status, claimed_by AS prior_owner
    FROM leads
    WHERE status = 'waiting_for_rep'
      AND (claimed_by IS NULL OR lease_until <= now())
      AND ($3::bool OR next_attempt_at IS NULL OR next_attempt_at <= now())
    ORDER BY sla_due_at NULLS LAST
    LIMIT least($2::int, 5 * (
        SELECT count(*) FROM reps
        WHERE active AND status = 'available'
          AND (reserved_by IS NULL OR reserved_until <= now())))
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE leads AS l
    SET claimed_by = $1, lease_until = now() + make_interval(secs => $4::float8)
    FROM picked AS p
    WHERE l.id = p.id
    RETURNING l.*, p.prior_status, p.prior_owner
)
SELECT {_LEAD_COLUMNS}, prior_status, prior_owner FROM moved
"""  # noqa: S608 (interpolates constants only)

_RENEW: Final = """
WITH renewed AS (
    UPDATE leads SET lease_until = now() + make_interval(secs => $3::float8)
    WHERE id = ANY($2::uuid[]) AND claimed_by = $1
    RETURNING id
), reps_renewed AS (
    UPDATE reps SET reserved_until = now() + make_interval(secs => $3::float8)
    WHERE reserved_by IN (SELECT id::text FROM renewed) AND reserved_by_daemon = $1
)
SELECT id FROM renewed
"""

# Reps the pipeline no longer holds: wrap-ups that are over, and reservations (ringing, on a
# call) whose lease lapsed because their daemon died.
_SWEEP_REPS: Final = """
WITH wrapped AS (
    UPDATE reps
    SET status = 'available', status_changed_at = now(), wrap_up_until = NULL, updated_at = now()
    WHERE status = 'wrap_up' AND wrap_up_until <= now()
    RETURNING id
), lapsed AS (
    UPDATE reps
    SET status = CASE WHEN activity = 'on_call' AND status = 'busy' THEN 'available'
                      ELSE status END,
        status_changed_at = CASE WHEN activity = 'on_call' AND status = 'busy' THEN now()
                                 ELSE status_changed_at END,
        activity = NULL, reserved_by = NULL, reserved_until = NULL, reserved_by_daemon = NULL,
        updated_at = now()
    WHERE (activity IS NOT NULL OR reserved_by IS NOT NULL)
      AND (reserved_until IS NULL OR reserved_until <= now())
    RETURNING id
)
SELECT id FROM wrapped UNION SELECT id FROM lapsed
"""

# Free every rep the lead holds. The rep it was bridged with goes to wrap-up (or straight back
# to available when wrap_up_s is 0); a rep put on a call by the pipeline becomes available.
_RELEASE_LEAD_REPS: Final = """
UPDATE reps
SET status = CASE
        WHEN activity = 'on_call' AND status = 'busy' AND id = $2 AND $3::float8 > 0
            THEN 'wrap_up'
        WHEN activity = 'on_call' AND status = 'busy' THEN 'available'
        ELSE status END,
    wrap_up_until = CASE
        WHEN activity = 'on_call' AND status = 'busy' AND id = $2 AND $3::float8 > 0
            THEN now() + make_interval(secs => $3::float8)
        ELSE wrap_up_until END,
    status_changed_at = CASE WHEN activity = 'on_call' AND status = 'busy' THEN now()
                             ELSE status_changed_at END,
    activity = NULL, reserved_by = NULL, reserved_until = NULL, reserved_by_daemon = NULL,
    updated_at = now()
WHERE reserved_by = $1
RETURNING id, status
"""

# A rep leg that did not win ended: free the rep; a miss (no answer, rejected, unreachable)
# counts towards ``away``, an answer elsewhere (cancelled) does not.
_REP_LEG_OVER: Final = """
UPDATE reps
SET missed_in_row = CASE WHEN $3 THEN missed_in_row + 1 ELSE missed_in_row END,
    status = CASE WHEN $3 AND missed_in_row + 1 >= $4 AND status = 'available' THEN 'away'
                  ELSE status END,
    status_changed_at = CASE WHEN $3 AND missed_in_row + 1 >= $4 AND status = 'available'
                             THEN now() ELSE status_changed_at END,
    activity = NULL, reserved_by = NULL, reserved_until = NULL, reserved_by_daemon = NULL,
    updated_at = now()
WHERE id = $1 AND reserved_by = $2
RETURNING status, missed_in_row
"""

# The rep answered and won: on a call until the lead settles.
_REP_ON_CALL: Final = """
UPDATE reps
SET status = 'busy', status_changed_at = now(), activity = 'on_call', missed_in_row = 0,
    updated_at = now()
WHERE id = $1 AND reserved_by = $2
RETURNING id
"""

_ROUTING_CONTEXT: Final = """
SELECT EXISTS (SELECT 1 FROM dnc WHERE phone = $2) AS on_dnc,
       (SELECT count(*) FROM lead_events
         WHERE lead_id = $1 AND kind = 'calling_prospect'
           AND at > $3::timestamptz - interval '1 day') AS attempts_today
"""

_EXPIRE_OWN: Final = """
WITH leads_expired AS (
    UPDATE leads SET lease_until = now() WHERE claimed_by = $1 RETURNING id
), reps_expired AS (
    UPDATE reps SET reserved_until = now() WHERE reserved_by_daemon = $1 RETURNING id
)
SELECT (SELECT count(*) FROM leads_expired) AS leads, (SELECT count(*) FROM reps_expired) AS reps
"""

_UNCLAIM_OWN: Final = """
WITH unclaimed AS (
    UPDATE leads SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = $1 RETURNING id
), reps_freed AS (
    UPDATE reps
    SET status = CASE WHEN activity = 'on_call' AND status = 'busy' THEN 'available'
                      ELSE status END,
        activity = NULL, reserved_by = NULL, reserved_until = NULL, reserved_by_daemon = NULL,
        updated_at = now()
    WHERE reserved_by_daemon = $1
    RETURNING id
)
SELECT (SELECT count(*) FROM unclaimed) AS leads, (SELECT count(*) FROM reps_freed) AS reps
"""

_GET_LEAD: Final = f"SELECT {_LEAD_COLUMNS} FROM leads WHERE id = $1"  # noqa: S608

# n events of a claimed lead in one statement: event_seq moves by n under the lead's row lock
# and the rows take the n seqs just handed out, in the order given (ordinality 1..n).
_APPEND_EVENTS: Final = f"""
WITH moved AS (
    UPDATE leads SET event_seq = event_seq + cardinality($3::text[]), updated_at = $6
    WHERE id = $1 AND claimed_by = $2
    RETURNING {_LEAD_COLUMNS}, event_seq
), event AS (
    INSERT INTO lead_events (lead_id, seq, at, kind, data)
    SELECT moved.id, moved.event_seq - cardinality($3::text[]) + e.n, e.at, e.kind, e.data
    FROM moved, unnest($3::text[], $4::jsonb[], $5::timestamptz[]) WITH ORDINALITY
        AS e(kind, data, at, n)
)
SELECT {_LEAD_COLUMNS}, event_seq FROM moved
"""  # noqa: S608 (interpolates constants only)


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineLead:
    """A lead with the pipeline's bookkeeping."""

    lead: Lead
    claimed_by: str | None = None
    lease_until: datetime | None = None
    next_attempt_at: datetime | None = None
    #: The deadline the routing decision chose (None until first routed).
    sla_due_at: datetime | None = None
    #: When a rep first answered for the lead.
    first_touch_at: datetime | None = None
    #: When the prospect was first dialled with a rep on the line (time-to-call).
    called_at: datetime | None = None
    #: Ring rounds started so far.
    ring_rounds: int = 0
    #: Every rep rung for this lead, in order.
    tried_reps: tuple[str, ...] = ()
    #: Prospect INVITEs sent so far.
    prospect_attempts: int = 0
    waiting_since: datetime | None = None
    status_reason: str | None = None
    updated_at: datetime | None = None

    @property
    def id(self) -> str:
        """The lead's id."""
        return self.lead.id

    @property
    def status(self) -> LeadStatus:
        """The lead's status."""
        return self.lead.status


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A lead this daemon just claimed, and what it was before the claim."""

    lead: PipelineLead
    prior_status: LeadStatus
    #: The daemon that held the lead before (its lease lapsed or it stopped); None for a lead
    #: nobody held.
    previous_owner: str | None

    @property
    def recovered(self) -> bool:
        """True when another daemon (or an earlier run of this one) was working on the lead."""
        return self.prior_status in IN_FLIGHT_STATUSES


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecord:
    """A routing decision to keep with the transition it caused (``routing_decisions``)."""

    version: str
    rule: str
    outcome: str
    explanation: Mapping[str, Any]
    decided_at: datetime


_UNSET: Any = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadChanges:
    """Columns a step changes besides status (unset fields are left alone)."""

    assigned_rep: str | None = None
    #: Set only when the lead has none yet (the first routing decision decides the SLA).
    sla_due_at: datetime | None = None
    #: Set only the first time (``coalesce``).
    first_touch_at: datetime | None = None
    called_at: datetime | None = None
    #: ``_UNSET`` leaves it; None clears it; a time sets it.
    next_attempt_at: datetime | None = field(default=_UNSET)
    waiting_since: datetime | None = field(default=_UNSET)
    status_reason: str | None = field(default=_UNSET)
    add_ring_round: bool = False
    #: Appended to ``tried_reps`` (duplicates skipped).
    tried_reps: Sequence[str] = ()
    add_prospect_attempt: bool = False
    #: Give up the claim (the lead is waiting, scheduled or finished).
    release: bool = False
    #: Reps reserved for this lead whose legs start ringing now.
    ringing_reps: Sequence[str] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingContext:
    """Per-lead inputs of a routing decision that live in the database."""

    on_dnc: bool
    attempts_today: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RepLegOutcome:
    """A rep after one of their legs ended: their status, and misses in a row."""

    status: str
    missed_in_row: int

    @property
    def away(self) -> bool:
        """True when the rep is now ``away``."""
        return self.status == "away"


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadPage:
    """One page of ``GET /v1/leads``: the leads, and the cursor of the next page."""

    leads: tuple[PipelineLead, ...]
    next_cursor: str | None


def encode_cursor(received_at: datetime, lead_id: str) -> str:
    """An opaque keyset cursor: the sort key of the last lead of a page."""
    raw = json.dumps([received_at.isoformat(), lead_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The sort key inside a cursor; ValueError when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        received_text, lead_text = json.loads(base64.urlsafe_b64decode(padded.encode()))
        received_at = datetime.fromisoformat(received_text)
        lead_id = uuid.UUID(lead_text)
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ValueError("invalid cursor") from exc
    if received_at.tzinfo is None:
        raise ValueError("invalid cursor")
    return received_at, lead_id


def _pipeline_lead(row: asyncpg.Record) -> PipelineLead:
    intent = row["intent"]
    lead = Lead(
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
    return PipelineLead(
        lead=lead,
        claimed_by=row["claimed_by"],
        lease_until=row["lease_until"],
        next_attempt_at=row["next_attempt_at"],
        sla_due_at=row["sla_due_at"],
        first_touch_at=row["first_touch_at"],
        called_at=row["called_at"],
        ring_rounds=row["ring_rounds"],
        tried_reps=tuple(row["tried_reps"]),
        prospect_attempts=row["prospect_attempts"],
        waiting_since=row["waiting_since"],
        status_reason=row["status_reason"],
        updated_at=row["updated_at"],
    )


#: Prior statuses a claim moves to ``routing`` (with a ``routing`` event; see _CLAIM_READY).
_ROUTED_FROM: Final = frozenset({LeadStatus.RECEIVED, LeadStatus.SCHEDULED})


def _claim(row: asyncpg.Record) -> Claim:
    return Claim(
        lead=_pipeline_lead(row),
        prior_status=LeadStatus(row["prior_status"]),
        previous_owner=row["prior_owner"],
    )


def _parse_id(lead_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(lead_id)
    except (ValueError, AttributeError, TypeError):
        return None


class _Params:
    """Positional parameters of a statement being built: ``add`` returns the placeholder."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


StepHook = Callable[[AnyConnection, PipelineLead, str, Mapping[str, Any], int], Awaitable[None]]
"""Runs inside the transaction of every step that appends an event: ``(conn, lead as updated,
event kind, event data, event seq)``. For work that must commit with the step (a notification
outbox row); an exception rolls the step back."""


class PipelineStore:
    """The pipeline's view of the database, for one daemon (``instance_id``).

    ``on_step`` (optional) is called in the transaction of each step that appends an event.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        instance_id: str,
        *,
        lease_s: float,
        on_step: StepHook | None = None,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self._pool = pool
        self.instance_id = instance_id
        self.lease_s = float(lease_s)
        self._on_step = on_step

    @property
    def pool(self) -> asyncpg.Pool:
        """The underlying pool."""
        return self._pool

    # ----------------------------------------------------------------------- claiming

    async def claim_ready(self, limit: int) -> list[Claim]:
        """Claim up to ``limit`` leads to work on now, oldest first: new leads (moved to
        ``routing``), scheduled leads whose time came (``routing``), and in-flight leads whose
        owner's lease lapsed (status kept; event ``recovered``).

        The ``routing`` step of a claim runs the step hook in the claim's transaction, like
        every other step (it is where ``lead.received`` is queued); ``recovered`` does not."""
        if limit <= 0:
            return []
        if self._on_step is None:
            rows = await self._pool.fetch(_CLAIM_READY, self.instance_id, limit, self.lease_s)
            return [_claim(row) for row in rows]
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM_READY, self.instance_id, limit, self.lease_s)
            claims = [_claim(row) for row in rows]
            for claim, row in zip(claims, rows, strict=True):
                if claim.lead.status is LeadStatus.ROUTING and claim.prior_status in _ROUTED_FROM:
                    data = {"daemon": self.instance_id, "from": claim.prior_status.value}
                    await self._on_step(conn, claim.lead, "routing", data, int(row["event_seq"]))
        return claims

    async def claim_waiting(self, limit: int, *, any_time: bool = False) -> list[Claim]:
        """Claim up to ``limit`` leads waiting for a rep (oldest SLA first), at most five per
        free rep; only those whose re-check time came unless ``any_time`` (a rep just became
        free)."""
        if limit <= 0:
            return []
        rows = await self._pool.fetch(
            _CLAIM_WAITING, self.instance_id, limit, any_time, self.lease_s
        )
        return [_claim(row) for row in rows]

    async def renew(self, lead_ids: Sequence[str]) -> set[str]:
        """Extend the leases of the leads (and of their reps' reservations) this daemon still
        holds; returns the ids it still holds (a missing one was taken over)."""
        ids = [parsed for parsed in map(_parse_id, lead_ids) if parsed is not None]
        if not ids:
            return set()
        rows = await self._pool.fetch(_RENEW, self.instance_id, ids, self.lease_s)
        return {str(row["id"]) for row in rows}

    async def expire_own(self) -> tuple[int, int]:
        """Start-up: leases and reservations held under this instance id belong to an earlier
        run of this daemon; expire them so they are recovered at once. Returns (leads, reps)."""
        row = await self._pool.fetchrow(_EXPIRE_OWN, self.instance_id)
        assert row is not None
        return int(row["leads"]), int(row["reps"])

    async def unclaim_own(self) -> tuple[int, int]:
        """Shutdown: give up every claim and reservation of this daemon so another one takes
        over at once. Returns (leads, reps)."""
        row = await self._pool.fetchrow(_UNCLAIM_OWN, self.instance_id)
        assert row is not None
        return int(row["leads"]), int(row["reps"])

    # ----------------------------------------------------------------------- leads

    async def get(self, lead_id: str) -> PipelineLead | None:
        """The lead with its pipeline columns, or None."""
        parsed = _parse_id(lead_id)
        if parsed is None:
            return None
        row = await self._pool.fetchrow(_GET_LEAD, parsed)
        return None if row is None else _pipeline_lead(row)

    async def routing_context(self, lead_id: str, phone: str, now: datetime) -> RoutingContext:
        """DNC membership of the lead's number and its prospect calls in the last day."""
        row = await self._pool.fetchrow(_ROUTING_CONTEXT, uuid.UUID(lead_id), phone, now)
        assert row is not None
        return RoutingContext(on_dnc=bool(row["on_dnc"]), attempts_today=int(row["attempts_today"]))

    async def update(
        self,
        lead_id: str,
        *,
        at: datetime,
        kind: str | None,
        data: Mapping[str, Any] | None = None,
        status: LeadStatus | None = None,
        from_statuses: Sequence[LeadStatus] | None = None,
        changes: LeadChanges | None = None,
        decision: DecisionRecord | None = None,
    ) -> PipelineLead | None:
        """One step of a claimed lead, in one statement: optionally move it to ``status``
        (only from ``from_statuses`` when given), apply ``changes``, append event ``kind``
        (None: no event) with ``data``, and keep ``decision``.

        Returns the lead as updated, or None when this daemon no longer holds the claim or the
        lead is not in one of ``from_statuses`` (nothing changed).
        """
        parsed = _parse_id(lead_id)
        if parsed is None:
            return None
        changes = changes or LeadChanges()
        params = _Params()
        id_ref = params.add(parsed)
        owner = params.add(self.instance_id)
        at_ref = params.add(at, "::timestamptz")
        sets = ["updated_at = " + at_ref]
        if kind is not None:
            sets.append("event_seq = event_seq + 1")
        if status is not None:
            sets.append(f"status = {params.add(status.value)}")
        next_attempt = changes.next_attempt_at
        if (
            next_attempt is _UNSET
            and status is not None
            and status
            not in (
                LeadStatus.SCHEDULED,
                LeadStatus.WAITING_FOR_REP,
            )
        ):
            next_attempt = None
        if next_attempt is not _UNSET:
            sets.append(f"next_attempt_at = {params.add(next_attempt, '::timestamptz')}")
        if changes.waiting_since is not _UNSET:
            sets.append(f"waiting_since = {params.add(changes.waiting_since, '::timestamptz')}")
        if changes.status_reason is not _UNSET:
            sets.append(f"status_reason = {params.add(changes.status_reason, '::text')}")
        if changes.assigned_rep is not None:
            sets.append(f"assigned_rep = {params.add(changes.assigned_rep)}")
        for column in ("sla_due_at", "first_touch_at", "called_at"):
            value = getattr(changes, column)
            if value is not None:
                sets.append(f"{column} = coalesce({column}, {params.add(value)})")
        if changes.add_ring_round:
            sets.append("ring_rounds = ring_rounds + 1")
        if changes.add_prospect_attempt:
            sets.append("prospect_attempts = prospect_attempts + 1")
        if changes.tried_reps:
            new = params.add(list(changes.tried_reps), "::text[]")
            sets.append(
                f"tried_reps = tried_reps || ARRAY(SELECT r FROM unnest({new}) AS r "  # noqa: S608
                f"WHERE NOT r = ANY(tried_reps))"
            )
        if changes.release:
            sets.append("claimed_by = NULL, lease_until = NULL")
        where = f"id = {id_ref} AND claimed_by = {owner}"
        if from_statuses is not None:
            allowed = params.add([s.value for s in from_statuses], "::text[]")
            where += f" AND status = ANY({allowed})"
        ctes = [
            f"moved AS (UPDATE leads SET {', '.join(sets)} WHERE {where} "  # noqa: S608
            f"RETURNING {_LEAD_COLUMNS}, event_seq)"
        ]
        if kind is not None:
            kind_ref = params.add(kind)
            data_ref = params.add(dict(data or {}), "::jsonb")
            ctes.append(
                "event AS (INSERT INTO lead_events (lead_id, seq, at, kind, data) "  # noqa: S608
                f"SELECT id, event_seq, {at_ref}, {kind_ref}, {data_ref} FROM moved)"
            )
        if decision is not None:
            ctes.append(
                "decision AS (INSERT INTO routing_decisions "  # noqa: S608
                "(lead_id, version, decided_at, rule, outcome, explanation) "
                f"SELECT id, {params.add(decision.version)}, "
                f"{params.add(decision.decided_at, '::timestamptz')}, "
                f"{params.add(decision.rule)}, {params.add(decision.outcome)}, "
                f"{params.add(dict(decision.explanation), '::jsonb')} FROM moved)"
            )
        if changes.ringing_reps:
            reps_ref = params.add(list(changes.ringing_reps), "::text[]")
            ctes.append(
                "ringing AS (UPDATE reps SET activity = 'ringing', updated_at = now() "  # noqa: S608
                f"WHERE reserved_by = {params.add(lead_id)} AND id = ANY({reps_ref}) "
                "AND EXISTS (SELECT 1 FROM moved))"
            )
        sql = f"WITH {', '.join(ctes)} SELECT {_LEAD_COLUMNS}, event_seq FROM moved"  # noqa: S608
        if self._on_step is None or kind is None:
            row = await self._pool.fetchrow(sql, *params.values)
            return None if row is None else _pipeline_lead(row)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql, *params.values)
            if row is None:
                return None
            lead = _pipeline_lead(row)
            await self._on_step(conn, lead, kind, dict(data or {}), int(row["event_seq"]))
        return lead

    async def append_events(
        self, lead_id: str, events: Sequence[tuple[str, Mapping[str, Any], datetime]]
    ) -> PipelineLead | None:
        """Append ``events`` (``(kind, data, at)``, in order) to a claimed lead's timeline in
        one statement, changing nothing else but ``updated_at`` (the last event's ``at``).

        The timeline and the step hook see exactly what n :meth:`update` calls with
        ``kind``/``data``/``at`` and no other change would write: consecutive seqs in order,
        and with ``on_step`` the hook runs once per event (its own seq; the lead with that
        event's ``updated_at``), all in one transaction that rolls back as a whole.

        Returns the lead as updated, or None when this daemon no longer holds the claim
        (nothing written). An empty ``events`` writes nothing and returns the stored lead.
        """
        parsed = _parse_id(lead_id)
        if parsed is None:
            return None
        if not events:
            return await self.get(lead_id)
        kinds = [kind for kind, _, _ in events]
        datas = [dict(data) for _, data, _ in events]
        ats = [at for _, _, at in events]
        args = (parsed, self.instance_id, kinds, datas, ats, ats[-1])
        if self._on_step is None:
            row = await self._pool.fetchrow(_APPEND_EVENTS, *args)
            return None if row is None else _pipeline_lead(row)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_APPEND_EVENTS, *args)
            if row is None:
                return None
            lead = _pipeline_lead(row)
            first_seq = int(row["event_seq"]) - len(events) + 1
            for offset, (kind, data, at) in enumerate(zip(kinds, datas, ats, strict=True)):
                # One by one, the hook would have seen the lead as of its own step.
                step_lead = replace(lead, updated_at=at)
                await self._on_step(conn, step_lead, kind, data, first_seq + offset)
        return lead

    async def list_leads(
        self,
        *,
        status: LeadStatus | None = None,
        since: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> LeadPage:
        """Leads by ``received_at`` (then id), oldest first: keyset pagination, so a page costs
        the same however deep it is. ``cursor`` is a previous page's ``next_cursor``
        (ValueError when it is not a cursor)."""
        params = _Params()
        where: list[str] = []
        if status is not None:
            where.append(f"status = {params.add(status.value)}")
        if since is not None:
            where.append(f"received_at >= {params.add(since, '::timestamptz')}")
        if cursor is not None:
            after_at, after_id = decode_cursor(cursor)
            where.append(
                f"(received_at, id) > ({params.add(after_at, '::timestamptz')}, "
                f"{params.add(after_id, '::uuid')})"
            )
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        # One more row than asked tells whether a next page exists.
        sql = (
            f"SELECT {_LEAD_COLUMNS} FROM leads {clause} "  # noqa: S608
            f"ORDER BY received_at, id LIMIT {params.add(limit + 1)}"
        )
        rows = await self._pool.fetch(sql, *params.values)
        leads = tuple(_pipeline_lead(row) for row in rows[:limit])
        next_cursor = None
        if len(rows) > limit and leads:
            last = leads[-1]
            next_cursor = encode_cursor(last.lead.received_at, last.id)
        return LeadPage(leads=leads, next_cursor=next_cursor)

    # ----------------------------------------------------------------------- reps

    async def rep_on_call(self, lead_id: str, rep_id: str) -> bool:
        """The rep answered for the lead: ``busy`` (on a call) until the lead settles; their
        misses in a row are forgiven. False when the rep is not reserved for the lead."""
        return await self._pool.fetchval(_REP_ON_CALL, rep_id, lead_id) is not None

    async def rep_leg_over(
        self, lead_id: str, rep_id: str, *, missed: bool, max_missed: int
    ) -> RepLegOutcome | None:
        """A rep leg of the lead ended without winning: free the rep, count a miss (and put
        them ``away`` after ``max_missed`` in a row). None when not reserved for the lead."""
        row = await self._pool.fetchrow(_REP_LEG_OVER, rep_id, lead_id, missed, max_missed)
        if row is None:
            return None
        return RepLegOutcome(status=row["status"], missed_in_row=row["missed_in_row"])

    async def release_lead_reps(
        self, lead_id: str, *, wrap_up_rep: str | None = None, wrap_up_s: float = 0.0
    ) -> dict[str, str]:
        """Free every rep reserved for the lead; ``wrap_up_rep`` (the bridged rep) goes to
        ``wrap_up`` for ``wrap_up_s``. Returns each freed rep's new status."""
        rows = await self._pool.fetch(_RELEASE_LEAD_REPS, lead_id, wrap_up_rep, float(wrap_up_s))
        return {row["id"]: row["status"] for row in rows}

    async def sweep_reps(self) -> list[str]:
        """Make available again the reps whose wrap-up is over or whose holder's lease lapsed
        (its daemon died); returns them."""
        rows = await self._pool.fetch(_SWEEP_REPS)
        return sorted(row["id"] for row in rows)
