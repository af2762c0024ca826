"""SQL behind the rep console and the manager dashboard: dispositions, open leads, rep board,
daily trends.

Times are passed in (``now``) so tests and the dashboard's clock agree; SLA deadlines of leads
not routed yet use the intent tiers the caller passes (``SlaTiers``), like ``dialer.sla``.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg

from dialer.domain import Intent, LeadStatus
from dialer.domain import optional_utc_timestamp as _iso
from dialer.store.migrate import AnyConnection

__all__ = [
    "MAX_NOTES_CHARS",
    "ConsoleStore",
    "DailyTrend",
    "Disposition",
    "DispositionKind",
    "OpenLead",
    "RepActivity",
    "SlaTiers",
]

#: Longest notes a disposition keeps (the table's CHECK).
MAX_NOTES_CHARS: Final = 4000
#: Most open leads the dashboard lists.
MAX_OPEN_LEADS: Final = 500


class DispositionKind(enum.StrEnum):
    """What came of a call, as the rep records it."""

    CONNECTED = "connected"
    VOICEMAIL = "voicemail"
    WRONG_NUMBER = "wrong_number"
    QUALIFIED = "qualified"
    NOT_INTERESTED = "not_interested"
    CALLBACK = "callback"


@dataclass(frozen=True, slots=True, kw_only=True)
class Disposition:
    """One disposition saved by a rep."""

    lead_id: str
    rep_id: str
    disposition: DispositionKind
    notes: str
    at: datetime
    #: ``seq`` of the ``disposition`` timeline event written with it.
    event_seq: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "lead_id": self.lead_id,
            "rep_id": self.rep_id,
            "disposition": self.disposition.value,
            "notes": self.notes,
            "at": _iso(self.at),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaTiers:
    """Deadline windows (seconds) by intent, for leads without a routed ``sla_due_at``."""

    high: float
    medium: float
    low: float
    default: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenLead:
    """A lead still being worked on, as the dashboard queue lists it."""

    id: str
    status: LeadStatus
    name: str | None
    company: str | None
    phone: str
    source: str | None
    intent: Intent | None
    assigned_rep: str | None
    clock_start: datetime
    due_at: datetime
    called_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RepActivity:
    """A rep's day, for the rep board (besides the live state of ``RoutingStore``)."""

    rep_id: str
    on_call: bool
    ringing: bool
    #: Median time-to-call of the leads the rep took today (ms), None without any.
    median_ttc_ms: int | None
    #: Rep legs missed today (no answer, rejected, unreachable).
    missed_today: int
    #: Rep legs a voicemail box picked up today (press-1: ``rep_voicemail`` events).
    voicemail_today: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyTrend:
    """One day of the trend charts."""

    day: str  # ISO date (UTC)
    leads: int
    median_ttc_ms: int | None
    #: Share of the day's leads called within their SLA (0-100), None without leads.
    within_sla_pct: float | None


_TERMINAL: Final = [status.value for status in LeadStatus if status.is_terminal]

# The deadline of a lead: the routed one, else its intent tier ($k..$k+3: high, medium, low,
# default seconds). Interpolated into queries that bind those four parameters at $2..$5.
_DUE_AT: Final = """coalesce(l.sla_due_at, coalesce(l.submitted_at, l.received_at)
    + make_interval(secs => CASE l.intent WHEN 'high' THEN $2::float8
                                          WHEN 'medium' THEN $3::float8
                                          WHEN 'low' THEN $4::float8 ELSE $5::float8 END))"""

_OPEN_LEADS: Final = f"""
SELECT l.id, l.status, l.name, l.company, l.phone, l.source, l.intent, l.assigned_rep,
       coalesce(l.submitted_at, l.received_at) AS clock_start, {_DUE_AT} AS due_at, l.called_at
FROM leads l
WHERE l.status <> ALL($1::text[])
  AND ($6::text IS NULL OR l.source = $6)
  AND ($7::text IS NULL OR l.intent = $7)
ORDER BY due_at, l.id
LIMIT $8
"""  # noqa: S608 (interpolates constants only)

_SAVE_DISPOSITION: Final = """
WITH allowed AS (
    SELECT l.id FROM leads l
    WHERE l.id = $1
      AND (l.assigned_rep = $2 OR $2 = ANY(l.tried_reps)
           OR EXISTS (SELECT 1 FROM lead_events e
                      WHERE e.lead_id = l.id AND e.data->>'rep_id' = $2))
    FOR UPDATE
), bumped AS (
    UPDATE leads SET event_seq = event_seq + 1, updated_at = $5
    WHERE id IN (SELECT id FROM allowed)
    RETURNING id, event_seq
), event AS (
    INSERT INTO lead_events (lead_id, seq, at, kind, data)
    SELECT id, event_seq, $5, 'disposition',
           jsonb_build_object('rep_id', $2::text, 'disposition', $3::text, 'notes', $4::text)
    FROM bumped
)
INSERT INTO lead_dispositions (lead_id, rep_id, disposition, notes, at)
SELECT id, $2, $3, $4, $5 FROM bumped
RETURNING lead_id, rep_id, disposition, notes, at,
          (SELECT event_seq FROM bumped) AS event_seq
"""

_LATEST_DISPOSITION: Final = """
SELECT d.lead_id, d.rep_id, d.disposition, d.notes, d.at,
       coalesce((SELECT max(e.seq) FROM lead_events e
                 WHERE e.lead_id = d.lead_id AND e.kind = 'disposition'), 0) AS event_seq
FROM lead_dispositions d WHERE d.lead_id = $1 ORDER BY d.id DESC LIMIT 1
"""

_REP_ACTIVITY: Final = """
WITH today_calls AS (
    SELECT l.assigned_rep AS rep_id,
           percentile_cont(0.5) WITHIN GROUP (
               ORDER BY extract(epoch FROM l.called_at - coalesce(l.submitted_at, l.received_at))
           ) AS median_s
    FROM leads l
    WHERE l.called_at >= $1 AND l.called_at < $2 AND l.assigned_rep IS NOT NULL
    GROUP BY l.assigned_rep
), missed AS (
    SELECT e.data->>'rep_id' AS rep_id, count(*) AS n
    FROM lead_events e
    WHERE e.kind = 'rep_leg_ended' AND e.at >= $1 AND e.at < $2
      AND e.data->>'result' IN ('no_answer', 'rejected', 'unreachable')
    GROUP BY 1
), voicemail AS (
    -- Press-1 legs a voicemail box picked up: the same rep_voicemail events the SLA report
    -- counts per rep (dialer.store.reports); their rep_leg_ended twins are not "missed".
    SELECT e.data->>'rep_id' AS rep_id, count(*) AS n
    FROM lead_events e
    WHERE e.kind = 'rep_voicemail' AND e.at >= $1 AND e.at < $2
    GROUP BY 1
)
SELECT r.id, r.activity, t.median_s, coalesce(m.n, 0) AS missed, coalesce(v.n, 0) AS voicemail
FROM reps r
LEFT JOIN today_calls t ON t.rep_id = r.id
LEFT JOIN missed m ON m.rep_id = r.id
LEFT JOIN voicemail v ON v.rep_id = r.id
WHERE r.active
ORDER BY r.id
"""

_TRENDS: Final = f"""
WITH days AS (
    SELECT generate_series($1::date, $6::date, interval '1 day')::date AS day
), scoped AS (
    SELECT (coalesce(l.submitted_at, l.received_at) AT TIME ZONE 'UTC')::date AS day,
           l.called_at, coalesce(l.submitted_at, l.received_at) AS clock_start,
           {_DUE_AT} AS due_at
    FROM leads l
    WHERE coalesce(l.submitted_at, l.received_at) >= $1::date
      AND coalesce(l.submitted_at, l.received_at) < $6::date + 1
      AND l.status <> 'blocked_compliance'
)
SELECT d.day, count(s.day) AS leads,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM s.called_at - s.clock_start)
       ) FILTER (WHERE s.called_at IS NOT NULL) AS median_s,
       count(*) FILTER (WHERE s.called_at IS NOT NULL AND s.called_at <= s.due_at) AS within
FROM days d LEFT JOIN scoped s ON s.day = d.day
GROUP BY d.day ORDER BY d.day
"""  # noqa: S608 (interpolates constants only)

_CONTACT_HISTORY: Final = """
SELECT (SELECT count(*) FROM leads WHERE phone = $1 AND id <> $2 AND received_at <= $3)
           AS earlier_leads,
       (SELECT count(*) FROM lead_events WHERE lead_id = $2 AND kind = 'ringing_reps')
           AS rounds
"""


def _tier_args(tiers: SlaTiers) -> tuple[float, float, float, float]:
    return (tiers.high, tiers.medium, tiers.low, tiers.default)


def _disposition(row: asyncpg.Record) -> Disposition:
    return Disposition(
        lead_id=str(row["lead_id"]),
        rep_id=row["rep_id"],
        disposition=DispositionKind(row["disposition"]),
        notes=row["notes"],
        at=row["at"],
        event_seq=int(row["event_seq"]),
    )


def _parse_id(lead_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(lead_id)
    except (ValueError, AttributeError, TypeError):
        return None


class ConsoleStore:
    """Queries of the console and dashboard over an asyncpg pool (owned by the caller)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save_disposition(
        self,
        lead_id: str,
        rep_id: str,
        disposition: DispositionKind,
        notes: str,
        *,
        at: datetime,
        conn: AnyConnection | None = None,
    ) -> Disposition | None:
        """Record the rep's disposition with its timeline event, atomically.

        None when the lead does not exist or ``rep_id`` was never rung for it (a rep cannot
        disposition another rep's lead). Pass ``conn`` to run inside the caller's transaction
        (the webhook outbox rows then commit with it).
        """
        parsed = _parse_id(lead_id)
        if parsed is None:
            return None
        if len(notes) > MAX_NOTES_CHARS:
            raise ValueError(f"notes longer than {MAX_NOTES_CHARS} characters")
        args = (parsed, rep_id, DispositionKind(disposition).value, notes, at)
        if conn is not None:
            row = await conn.fetchrow(_SAVE_DISPOSITION, *args)
        else:
            row = await self._pool.fetchrow(_SAVE_DISPOSITION, *args)
        return _disposition(row) if row is not None else None

    async def latest_disposition(self, lead_id: str) -> Disposition | None:
        """The lead's current disposition (the latest saved), or None."""
        parsed = _parse_id(lead_id)
        if parsed is None:
            return None
        row = await self._pool.fetchrow(_LATEST_DISPOSITION, parsed)
        return _disposition(row) if row is not None else None

    async def open_leads(
        self,
        tiers: SlaTiers,
        *,
        source: str | None = None,
        intent: str | None = None,
        limit: int = MAX_OPEN_LEADS,
    ) -> list[OpenLead]:
        """Leads not in a terminal status, earliest deadline first."""
        rows = await self._pool.fetch(
            _OPEN_LEADS, _TERMINAL, *_tier_args(tiers), source, intent, limit
        )
        return [
            OpenLead(
                id=str(row["id"]),
                status=LeadStatus(row["status"]),
                name=row["name"],
                company=row["company"],
                phone=row["phone"],
                source=row["source"],
                intent=Intent(row["intent"]) if row["intent"] is not None else None,
                assigned_rep=row["assigned_rep"],
                clock_start=row["clock_start"],
                due_at=row["due_at"],
                called_at=row["called_at"],
            )
            for row in rows
        ]

    async def rep_activity(self, *, day_start: datetime) -> dict[str, RepActivity]:
        """Each active rep's day from ``day_start`` (24 h), by rep id."""
        rows = await self._pool.fetch(_REP_ACTIVITY, day_start, day_start + timedelta(days=1))
        return {
            row["id"]: RepActivity(
                rep_id=row["id"],
                on_call=row["activity"] == "on_call",
                ringing=row["activity"] == "ringing",
                median_ttc_ms=round(row["median_s"] * 1000)
                if row["median_s"] is not None
                else None,
                missed_today=int(row["missed"]),
                voicemail_today=int(row["voicemail"]),
            )
            for row in rows
        }

    async def daily_trends(self, tiers: SlaTiers, *, days: int, now: datetime) -> list[DailyTrend]:
        """The last ``days`` days (UTC, today included), oldest first."""
        last = now.date()
        first = last - timedelta(days=days - 1)
        rows = await self._pool.fetch(_TRENDS, first, *_tier_args(tiers), last)
        trends = []
        for row in rows:
            leads = int(row["leads"])
            trends.append(
                DailyTrend(
                    day=row["day"].isoformat(),
                    leads=leads,
                    median_ttc_ms=round(row["median_s"] * 1000)
                    if row["median_s"] is not None
                    else None,
                    within_sla_pct=round(100.0 * int(row["within"]) / leads, 1) if leads else None,
                )
            )
        return trends

    async def previous_attempts(self, lead_id: str, phone: str, received_at: datetime) -> int:
        """What the card calls previous attempts: earlier leads from the same phone number,
        plus the ring rounds this lead had before the current one."""
        parsed = _parse_id(lead_id)
        if parsed is None:
            return 0
        row = await self._pool.fetchrow(_CONTACT_HISTORY, phone, parsed, received_at)
        if row is None:
            return 0
        return int(row["earlier_leads"]) + max(0, int(row["rounds"]) - 1)
