"""The SLA timers' SQL: open clocks to watch, the lead an escalation works on, milestones
recorded once, and the re-route request a breach leaves for the pipeline.

A lead's deadline is ``leads.sla_due_at`` (the routing decision's) or, before the lead was
routed, its clock start (``submitted_at``, else ``received_at``) plus its intent tier's window
(:class:`SlaWindows`, from ``[sla]``): :func:`due_at_sql` renders that expression.

Exactly once across daemons. An escalation runs in one transaction that first locks the
lead's row (:func:`lock_lead`, ``FOR UPDATE``), then records its milestone with
:func:`record_milestone`. In READ COMMITTED each statement sees what committed before it
started, so the second daemon to get the lock sees the first one's ``sla_breached`` row and
records nothing; the unique index ``lead_events_sla_milestone_key`` (0005) is the backstop.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from dialer.domain import Intent, Lead, LeadEvent, LeadStatus
from dialer.store.migrate import AnyConnection

__all__ = [
    "AT_RISK_EVENT",
    "BREACHED_EVENT",
    "CLOSED_STATUSES",
    "REROUTE_REASON",
    "EscalationLead",
    "OpenClock",
    "SlaWindows",
    "due_at_sql",
    "lock_lead",
    "open_clocks",
    "record_milestone",
    "request_reroute",
]

#: Timeline kinds of the two SLA milestones (one row each per lead, at most).
AT_RISK_EVENT: Final = "sla_at_risk"
BREACHED_EVENT: Final = "sla_breached"
#: Statuses whose SLA clock no longer runs although nobody was called (the predicate of
#: ``leads_sla_open_idx``): nothing to warn about or escalate.
CLOSED_STATUSES: Final = frozenset(
    {LeadStatus.COMPLETED, LeadStatus.BLOCKED_COMPLIANCE, LeadStatus.FAILED}
)
#: ``leads.status_reason`` (and ``scheduled`` event reason) of a lead re-queued on a breach.
REROUTE_REASON: Final = "sla_breached"


class _Milestone(enum.StrEnum):
    AT_RISK = "at_risk"
    BREACHED = "breached"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaWindows:
    """Response-time windows by intent, in seconds (``[sla] high/medium/low/default``)."""

    high: float
    medium: float
    low: float
    default: float

    def values(self) -> list[float]:
        """The windows in the order :func:`due_at_sql` numbers its parameters."""
        return [self.high, self.medium, self.low, self.default]


def due_at_sql(first_param: int, alias: str = "l") -> str:
    """SQL for a lead's deadline; parameters ``$first_param..$first_param+3`` are
    :meth:`SlaWindows.values`."""
    h, m, low, d = (f"${first_param + i}::float8" for i in range(4))
    return (
        f"coalesce({alias}.sla_due_at, coalesce({alias}.submitted_at, {alias}.received_at) "
        f"+ make_interval(secs => CASE {alias}.intent WHEN 'high' THEN {h} "
        f"WHEN 'medium' THEN {m} WHEN 'low' THEN {low} ELSE {d} END))"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenClock:
    """A lead whose SLA clock still runs: not called, not breached."""

    lead_id: str
    clock_start: datetime
    due_at: datetime
    #: ``sla_at_risk`` is already on its timeline.
    at_risk_recorded: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationLead:
    """A lead locked for an escalation, with what deciding it needs."""

    lead: Lead
    due_at: datetime
    called_at: datetime | None
    claimed_by: str | None
    lease_until: datetime | None
    status_reason: str | None
    tried_reps: tuple[str, ...]
    #: The last SLA milestone recorded (None, ``at_risk``, ``breached``).
    sla_milestone: str | None
    #: The rule of the lead's last routing decision (None: never routed).
    last_rule: str | None
    #: The whole timeline, oldest first.
    events: tuple[LeadEvent, ...]


# The index leads_sla_open_idx (0005) has exactly this predicate.
_OPEN_CLOCKS: Final = f"""
SELECT l.id, coalesce(l.submitted_at, l.received_at) AS clock_start,
       {due_at_sql(1)} AS due_at,
       l.sla_milestone = 'at_risk' AS at_risk_recorded
FROM leads AS l
WHERE l.called_at IS NULL AND l.sla_milestone IS DISTINCT FROM 'breached'
  AND l.status NOT IN ('completed', 'blocked_compliance', 'failed')
  AND ($5::timestamptz IS NULL OR l.received_at >= $5)
ORDER BY l.received_at
"""  # noqa: S608 (interpolates constants only)

_LOCK_LEAD: Final = f"""
SELECT l.id, l.status, l.phone, l.name, l.email, l.company, l.source, l.external_id, l.intent,
       l.consent, l.fields, l.received_at, l.submitted_at, l.assigned_rep, l.called_at,
       l.claimed_by, l.lease_until, l.status_reason, l.tried_reps, l.sla_milestone,
       {due_at_sql(2)} AS due_at,
       (SELECT d.rule FROM routing_decisions AS d WHERE d.lead_id = l.id
        ORDER BY d.decided_at DESC, d.id DESC LIMIT 1) AS last_rule
FROM leads AS l
WHERE l.id = $1
FOR UPDATE OF l
"""  # noqa: S608 (interpolates constants only)

_EVENTS: Final = (
    "SELECT lead_id, seq, at, kind, data FROM lead_events WHERE lead_id = $1 ORDER BY seq"
)

# Run after _LOCK_LEAD in the same transaction (a fresh snapshot: see the module docstring).
_RECORD_MILESTONE: Final = """
WITH bumped AS (
    UPDATE leads
    SET event_seq = event_seq + 1,
        sla_milestone = CASE WHEN $5 = 'breached' OR sla_milestone IS NULL THEN $5
                             ELSE sla_milestone END
    WHERE id = $1
      AND NOT EXISTS (SELECT 1 FROM lead_events WHERE lead_id = $1 AND kind = $3)
    RETURNING id, event_seq
)
INSERT INTO lead_events (lead_id, seq, at, kind, data)
SELECT id, event_seq, $2, $3, $4 FROM bumped
ON CONFLICT (lead_id, kind) WHERE kind IN ('sla_at_risk', 'sla_breached') DO NOTHING
RETURNING seq
"""

# Only a lead nobody works on and that may be called now: waiting for a rep, not routed yet,
# or waiting out a retry delay (not calling hours: re-routing it could not call anyway).
_REROUTE: Final = """
WITH moved AS (
    UPDATE leads
    SET status = 'scheduled', next_attempt_at = $2, status_reason = $3,
        claimed_by = NULL, lease_until = NULL, event_seq = event_seq + 1, updated_at = $2
    WHERE id = $1
      AND (status IN ('waiting_for_rep', 'received')
           OR (status = 'scheduled' AND status_reason IS DISTINCT FROM 'calling_hours'))
      AND (claimed_by IS NULL OR lease_until <= now())
    RETURNING id, event_seq
)
INSERT INTO lead_events (lead_id, seq, at, kind, data)
SELECT id, event_seq, $2, 'scheduled', $4 FROM moved
RETURNING seq
"""


def _uuid(lead_id: str) -> uuid.UUID:
    return uuid.UUID(lead_id)


async def open_clocks(
    conn: AnyConnection | asyncpg.Pool,
    windows: SlaWindows,
    *,
    received_since: datetime | None = None,
) -> list[OpenClock]:
    """Every lead whose SLA clock still runs (received at or after ``received_since``)."""
    rows = await conn.fetch(_OPEN_CLOCKS, *windows.values(), received_since)
    return [
        OpenClock(
            lead_id=str(row["id"]),
            clock_start=row["clock_start"],
            due_at=row["due_at"],
            at_risk_recorded=bool(row["at_risk_recorded"]),
        )
        for row in rows
    ]


async def lock_lead(
    conn: AnyConnection, lead_id: str, windows: SlaWindows
) -> EscalationLead | None:
    """Lock the lead's row for the caller's transaction and read it with its timeline."""
    row = await conn.fetchrow(_LOCK_LEAD, _uuid(lead_id), *windows.values())
    if row is None:
        return None
    events = await conn.fetch(_EVENTS, _uuid(lead_id))
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
    return EscalationLead(
        lead=lead,
        due_at=row["due_at"],
        called_at=row["called_at"],
        claimed_by=row["claimed_by"],
        lease_until=row["lease_until"],
        status_reason=row["status_reason"],
        tried_reps=tuple(row["tried_reps"]),
        sla_milestone=row["sla_milestone"],
        last_rule=row["last_rule"],
        events=tuple(
            LeadEvent(
                lead_id=str(event["lead_id"]),
                seq=event["seq"],
                at=event["at"],
                kind=event["kind"],
                data=event["data"],
            )
            for event in events
        ),
    )


async def record_milestone(
    conn: AnyConnection,
    lead_id: str,
    kind: str,
    *,
    at: datetime,
    data: Mapping[str, Any],
) -> int | None:
    """Append ``kind`` (:data:`AT_RISK_EVENT` or :data:`BREACHED_EVENT`) unless the lead's
    timeline has it already; the new event's ``seq``, or None when it was recorded before.

    Call it after :func:`lock_lead` in the same transaction.
    """
    milestone = {AT_RISK_EVENT: _Milestone.AT_RISK, BREACHED_EVENT: _Milestone.BREACHED}.get(kind)
    if milestone is None:
        raise ValueError(f"not an SLA milestone event: {kind!r}")
    seq: int | None = await conn.fetchval(
        _RECORD_MILESTONE, _uuid(lead_id), at, kind, dict(data), milestone.value
    )
    return seq


async def request_reroute(
    conn: AnyConnection,
    lead_id: str,
    *,
    at: datetime,
    exclude_reps: Sequence[str],
    prefer: str = "overflow",
) -> int | None:
    """Hand a breached lead back to the pipeline to be routed again at once: ``scheduled``
    with ``next_attempt_at = at`` and ``status_reason`` :data:`REROUTE_REASON`, plus a
    ``scheduled`` event naming the reps to leave out and the pool to prefer.

    Only for a lead nobody is working on (``waiting_for_rep``, ``received``, or ``scheduled``
    for a retry); a lead being rung or called, finished, or held by calling hours is left
    alone. Returns the event's ``seq``, or None when the lead was left alone.
    """
    data = {
        "reason": REROUTE_REASON,
        "retry_at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "exclude_reps": list(exclude_reps),
        "prefer": prefer,
    }
    seq: int | None = await conn.fetchval(_REROUTE, _uuid(lead_id), at, REROUTE_REASON, data)
    return seq
