"""The reports' SQL: SLA attainment and conversion by response time, over a time range.

Definitions (also those of ``GET /v1/reports/...``):

- The leads of a report are those **received** in ``[from, to)`` (``leads.received_at``, the
  daemon's clock; indexed).
- **Time-to-call** is ``called_at - clock start`` (clock start: ``submitted_at``, else
  ``received_at``), in milliseconds; only leads whose prospect was dialled have one. Median
  and p90 are ``percentile_cont`` (linear interpolation between the two nearest values).
- A lead's **deadline** is ``sla_due_at`` (its routing decision), else its intent tier's
  window from the clock start (:class:`dialer.store.sla.SlaWindows`).
- SLA **outcome** at ``now``: ``met`` (dialled at or before the deadline), ``breached``
  (dialled after it, or not dialled and the deadline passed), else ``pending``. ``pct_met``
  is ``met / (met + breached)`` in percent; pending leads are not decided yet.
- **Breaches by reason**: the ``reason`` of the lead's ``sla_breached`` timeline event
  (``unrecorded`` when no SLA timer recorded one, e.g. a lead dialled late while timers were
  off).
- Grouping: ``rep`` = ``assigned_rep`` (the rep who answered; null: nobody did), ``source``,
  ``intent``, ``team`` = the teams of the assigned rep (given by the caller from ``[[reps]]``;
  a rep in two teams counts the lead in both; null: no rep or a rep without team).
- **Voicemail** (press-1 mode): the ``rep_voicemail`` timeline events of the range's leads (a
  rep leg picked up by a voicemail box: no key pressed within the accept timeout). With
  ``group_by=rep`` they count for the rep whose leg it was (not the assigned rep), so a rep
  with voicemails only has a group of zero leads; otherwise for the lead's group.
- **Conversion buckets** by time-to-call: ``[0, 1 min)``, ``[1, 5 min)``, ``[5, 30 min)``,
  ``[30, 60 min)``, ``>= 1 h``, and the leads never dialled; ``connected``: leads whose
  timeline has a ``connected`` event (rep and prospect were bridged).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

import asyncpg

from dialer.store.migrate import AnyConnection
from dialer.store.sla import SlaWindows, due_at_sql

__all__ = [
    "BUCKETS",
    "Bucket",
    "ConversionBucket",
    "ConversionReport",
    "GroupBy",
    "SlaGroup",
    "SlaReport",
    "conversion_buckets",
    "sla_report",
]


class GroupBy(enum.StrEnum):
    """How :func:`sla_report` groups leads."""

    REP = "rep"
    SOURCE = "source"
    TEAM = "team"
    INTENT = "intent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    """A response-time bucket: ``[lower_s, upper_s)``; ``upper_s`` None is unbounded."""

    key: str
    label: str
    lower_s: float
    upper_s: float | None


#: The conversion buckets, fastest first.
BUCKETS: Final[tuple[Bucket, ...]] = (
    Bucket(key="lt_1m", label="< 1 min", lower_s=0.0, upper_s=60.0),
    Bucket(key="1m_5m", label="1-5 min", lower_s=60.0, upper_s=300.0),
    Bucket(key="5m_30m", label="5-30 min", lower_s=300.0, upper_s=1800.0),
    Bucket(key="30m_60m", label="30-60 min", lower_s=1800.0, upper_s=3600.0),
    Bucket(key="gt_1h", label="> 1 h", lower_s=3600.0, upper_s=None),
)
#: Key of the row counting leads never dialled.
NOT_CALLED: Final = "not_called"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaGroup:
    """SLA figures of one group (``key`` None: the null group, e.g. no rep)."""

    key: str | None
    leads: int
    called: int
    met: int
    breached: int
    pending: int
    median_time_to_call_ms: float | None
    p90_time_to_call_ms: float | None
    breaches_by_reason: Mapping[str, int] = field(default_factory=dict)
    #: Rep legs that went to voicemail (``rep_voicemail`` events; see the module's definitions).
    voicemail: int = 0

    @property
    def pct_met(self) -> float | None:
        """``met / (met + breached)`` in percent; None when nothing is decided."""
        decided = self.met + self.breached
        return None if decided == 0 else 100.0 * self.met / decided


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaReport:
    """``GET /v1/reports/sla``."""

    start: datetime
    end: datetime
    group_by: GroupBy | None
    groups: tuple[SlaGroup, ...]
    total: SlaGroup


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversionBucket:
    """Leads dialled within one response-time bucket, and how many were connected."""

    key: str
    label: str
    leads: int
    connected: int

    @property
    def conversion(self) -> float | None:
        """``connected / leads``; None for an empty bucket."""
        return None if self.leads == 0 else self.connected / self.leads


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversionReport:
    """``GET /v1/reports/conversion-buckets``: the buckets in order, then the undialled."""

    start: datetime
    end: datetime
    buckets: tuple[ConversionBucket, ...]
    not_called: ConversionBucket


# $1..$4 windows, $5 from, $6 to, $7 now, $8/$9 rep -> team pairs.
_GRADED: Final = f"""
WITH base AS (
    SELECT l.id, l.source, l.intent, l.assigned_rep, l.called_at,
           {due_at_sql(1)} AS due_at,
           (extract(epoch FROM l.called_at - coalesce(l.submitted_at, l.received_at))
               * 1000.0)::float8 AS ttc_ms,
           (SELECT e.data ->> 'reason' FROM lead_events AS e
             WHERE e.lead_id = l.id AND e.kind = 'sla_breached' LIMIT 1) AS breach_reason,
           (SELECT count(*) FROM lead_events AS e
             WHERE e.lead_id = l.id AND e.kind = 'rep_voicemail') AS voicemail_n
    FROM leads AS l
    WHERE l.received_at >= $5 AND l.received_at < $6
), graded AS (
    SELECT base.*,
           CASE WHEN called_at IS NOT NULL AND called_at <= due_at THEN 'met'
                WHEN called_at IS NOT NULL OR $7::timestamptz >= due_at THEN 'breached'
                ELSE 'pending' END AS outcome
    FROM base
), keyed AS (
    SELECT graded.*, {{key}} AS group_key
    FROM graded
    LEFT JOIN unnest($8::text[], $9::text[]) AS rep_team (rep_id, team)
           ON rep_team.rep_id = graded.assigned_rep
), stats AS (
    SELECT group_key,
           count(*) AS leads,
           count(called_at) AS called,
           count(*) FILTER (WHERE outcome = 'met') AS met,
           count(*) FILTER (WHERE outcome = 'breached') AS breached,
           count(*) FILTER (WHERE outcome = 'pending') AS pending,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ttc_ms) AS median_ms,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY ttc_ms) AS p90_ms,
           coalesce(sum(voicemail_n), 0)::int8 AS voicemail
    FROM keyed GROUP BY group_key
), reasons AS (
    SELECT group_key, coalesce(breach_reason, 'unrecorded') AS reason, count(*) AS n
    FROM keyed WHERE outcome = 'breached'
    GROUP BY group_key, coalesce(breach_reason, 'unrecorded')
)
SELECT stats.*,
       coalesce((SELECT jsonb_object_agg(reasons.reason, reasons.n) FROM reasons
                  WHERE reasons.group_key IS NOT DISTINCT FROM stats.group_key),
                '{{{{}}}}'::jsonb) AS breaches_by_reason
FROM stats
ORDER BY group_key NULLS LAST
"""  # noqa: S608 (interpolates constants only)

#: The group key of each grouping; the join with rep_team only matters for ``team`` (a
#: lead's row is repeated once per team of its rep, and once when it has none).
_KEYS: Final = {
    None: "NULL::text",
    GroupBy.REP: "graded.assigned_rep",
    GroupBy.SOURCE: "graded.source",
    GroupBy.INTENT: "graded.intent",
    GroupBy.TEAM: "rep_team.team",
}

#: ``rep_voicemail`` events of the leads received in ``[$1, $2)``, by the rep of the leg.
_VOICEMAIL_BY_REP: Final = """
SELECT e.data ->> 'rep_id' AS rep_id, count(*) AS n
FROM lead_events AS e
JOIN leads AS l ON l.id = e.lead_id
WHERE e.kind = 'rep_voicemail' AND l.received_at >= $1 AND l.received_at < $2
  AND e.data ->> 'rep_id' IS NOT NULL
GROUP BY 1
"""

_CONVERSION: Final = """
WITH base AS (
    SELECT l.called_at,
           extract(epoch FROM l.called_at - coalesce(l.submitted_at, l.received_at)) AS ttc_s,
           EXISTS (SELECT 1 FROM lead_events AS e
                    WHERE e.lead_id = l.id AND e.kind = 'connected') AS connected
    FROM leads AS l
    WHERE l.received_at >= $1 AND l.received_at < $2
)
SELECT CASE WHEN called_at IS NULL THEN 'not_called'
            WHEN ttc_s < 60 THEN 'lt_1m'
            WHEN ttc_s < 300 THEN '1m_5m'
            WHEN ttc_s < 1800 THEN '5m_30m'
            WHEN ttc_s < 3600 THEN '30m_60m'
            ELSE 'gt_1h' END AS bucket,
       count(*) AS leads,
       count(*) FILTER (WHERE connected) AS connected
FROM base
GROUP BY 1
"""


def _ms(value: float | None) -> float | None:
    # Microsecond precision: percentile_cont's float arithmetic leaves 449999.9999999998.
    return None if value is None else round(value, 3)


def _group(row: asyncpg.Record) -> SlaGroup:
    reasons = row["breaches_by_reason"] or {}
    return SlaGroup(
        key=row["group_key"],
        leads=row["leads"],
        called=row["called"],
        met=row["met"],
        breached=row["breached"],
        pending=row["pending"],
        median_time_to_call_ms=_ms(row["median_ms"]),
        p90_time_to_call_ms=_ms(row["p90_ms"]),
        breaches_by_reason={str(k): int(v) for k, v in sorted(reasons.items())},
        voicemail=int(row["voicemail"]),
    )


def _empty_group() -> SlaGroup:
    return SlaGroup(
        key=None,
        leads=0,
        called=0,
        met=0,
        breached=0,
        pending=0,
        median_time_to_call_ms=None,
        p90_time_to_call_ms=None,
    )


async def _groups(
    conn: AnyConnection | asyncpg.Pool,
    group_by: GroupBy | None,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    windows: SlaWindows,
    rep_teams: Sequence[tuple[str, str]],
) -> list[SlaGroup]:
    sql = _GRADED.format(key=_KEYS[group_by])
    rows = await conn.fetch(
        sql,
        *windows.values(),
        start,
        end,
        now,
        [rep for rep, _ in rep_teams] if group_by is GroupBy.TEAM else [],
        [team for _, team in rep_teams] if group_by is GroupBy.TEAM else [],
    )
    return [_group(row) for row in rows]


async def _voicemail_by_rep(
    conn: AnyConnection | asyncpg.Pool,
    groups: Sequence[SlaGroup],
    *,
    start: datetime,
    end: datetime,
) -> list[SlaGroup]:
    """``groups`` (by assigned rep) with ``voicemail`` counted by the rep of the leg, plus a
    zero-lead group for each rep who only had voicemails; order: by rep, null last."""
    rows = await conn.fetch(_VOICEMAIL_BY_REP, start, end)
    counts = {str(row["rep_id"]): int(row["n"]) for row in rows}
    by_key = {
        group.key: replace(group, voicemail=counts.get(group.key or "", 0)) for group in groups
    }
    for rep_id, count in counts.items():
        if rep_id not in by_key:
            by_key[rep_id] = replace(_empty_group(), key=rep_id, voicemail=count)
    named = sorted((group for key, group in by_key.items() if key is not None), key=_key)
    return named + ([by_key[None]] if None in by_key else [])


def _key(group: SlaGroup) -> str:
    return group.key or ""


async def sla_report(
    conn: AnyConnection | asyncpg.Pool,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    windows: SlaWindows,
    group_by: GroupBy | None = None,
    rep_teams: Sequence[tuple[str, str]] = (),
) -> SlaReport:
    """SLA figures of the leads received in ``[start, end)``, graded at ``now``, per group and
    in total. ``rep_teams``: ``(rep, team)`` pairs for ``group_by=team``."""
    groups = await _groups(
        conn, group_by, start=start, end=end, now=now, windows=windows, rep_teams=rep_teams
    )
    if group_by is None:
        total = groups[0] if groups else _empty_group()
        groups = [total] if groups else []
    else:
        totals = await _groups(
            conn, None, start=start, end=end, now=now, windows=windows, rep_teams=()
        )
        total = totals[0] if totals else _empty_group()
        if group_by is GroupBy.REP:
            groups = await _voicemail_by_rep(conn, groups, start=start, end=end)
    return SlaReport(start=start, end=end, group_by=group_by, groups=tuple(groups), total=total)


async def conversion_buckets(
    conn: AnyConnection | asyncpg.Pool, *, start: datetime, end: datetime
) -> ConversionReport:
    """Leads received in ``[start, end)`` by time-to-call bucket, with connected calls."""
    rows = await conn.fetch(_CONVERSION, start, end)
    counts = {row["bucket"]: (int(row["leads"]), int(row["connected"])) for row in rows}

    def bucket(key: str, label: str) -> ConversionBucket:
        leads, connected = counts.get(key, (0, 0))
        return ConversionBucket(key=key, label=label, leads=leads, connected=connected)

    return ConversionReport(
        start=start,
        end=end,
        buckets=tuple(bucket(item.key, item.label) for item in BUCKETS),
        not_called=bucket(NOT_CALLED, "not called"),
    )
