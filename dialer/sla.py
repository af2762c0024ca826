"""Response-time SLA of a lead: deadline, status and time-to-call. Pure: ``now`` is passed in.

The clock starts at the lead's true submission time (``submitted_at``, else ``received_at``).
It stops when the prospect's phone is dialled with a rep already on the line (the
``calling_prospect`` moment, stored as ``called_at``): that interval is ``time_to_call_ms``.

Status at ``now``:

- ``met``: the prospect was dialled at or before ``due_at``;
- ``breached``: dialled after ``due_at``, or not dialled and ``now`` is past ``due_at``;
- ``at_risk``: not dialled yet and at least ``at_risk_fraction`` of the window has elapsed;
- ``pending``: not dialled yet, still early.

``due_at`` comes from the routing decision (the matched rule's ``sla``, else the intent tier);
before a lead has been routed it is the intent tier's window (:func:`default_due_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dialer.config import SlaConfig
from dialer.domain import Intent, SlaStatus
from dialer.domain import optional_utc_timestamp as _iso

__all__ = ["LeadSla", "default_due_at", "evaluate_sla", "sla_status", "time_to_call_ms"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadSla:
    """A lead's SLA as the API shows it (``GET /v1/leads/{id}`` ``sla``)."""

    due_at: datetime
    status: SlaStatus
    #: When a rep first answered for this lead (None: no rep has yet).
    first_touch_at: datetime | None
    #: From submission (or receipt) to the prospect's INVITE with a rep on the line.
    time_to_call_ms: int | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: ISO 8601 UTC times with a ``Z``."""
        return {
            "due_at": _iso(self.due_at),
            "status": self.status.value,
            "first_touch_at": _iso(self.first_touch_at),
            "time_to_call_ms": self.time_to_call_ms,
        }


def default_due_at(clock_start: datetime, intent: Intent | None, sla: SlaConfig) -> datetime:
    """The deadline from the intent tier (``[sla] high/medium/low``, or ``default``)."""
    return clock_start + timedelta(seconds=sla.for_intent(intent))


def time_to_call_ms(clock_start: datetime, called_at: datetime | None) -> int | None:
    """Milliseconds from the clock start to the prospect's dial (never negative); None when
    the prospect has not been dialled."""
    if called_at is None:
        return None
    return max(0, round((called_at - clock_start).total_seconds() * 1000))


def sla_status(
    *,
    clock_start: datetime,
    due_at: datetime,
    called_at: datetime | None,
    now: datetime,
    at_risk_fraction: float,
) -> SlaStatus:
    """The status at ``now`` (module docstring)."""
    if called_at is not None:
        return SlaStatus.MET if called_at <= due_at else SlaStatus.BREACHED
    if now >= due_at:
        return SlaStatus.BREACHED
    window = due_at - clock_start
    if window <= timedelta(0) or now >= clock_start + window * at_risk_fraction:
        return SlaStatus.AT_RISK
    return SlaStatus.PENDING


def evaluate_sla(
    *,
    clock_start: datetime,
    due_at: datetime,
    first_touch_at: datetime | None,
    called_at: datetime | None,
    now: datetime,
    at_risk_fraction: float,
) -> LeadSla:
    """Everything the API shows about a lead's SLA at ``now``."""
    return LeadSla(
        due_at=due_at,
        status=sla_status(
            clock_start=clock_start,
            due_at=due_at,
            called_at=called_at,
            now=now,
            at_risk_fraction=at_risk_fraction,
        ),
        first_touch_at=first_touch_at,
        time_to_call_ms=time_to_call_ms(clock_start, called_at),
    )
