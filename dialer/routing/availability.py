"""Whether a rep may be offered a lead right now, and if not, why.

Two kinds of reasons, checked in this order:

- time: PTO (inclusive dates in the rep's timezone), then working hours (weekly windows in the
  rep's timezone; ``zoneinfo`` makes DST changes right). These depend only on the rep and the
  clock, never on the lead, so the router caches them per minute.
- live state, kept by the store: status (only ``available`` qualifies), a reservation held for
  another lead (until its lease ends), then capacity (leads assigned in the last hour / today).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from dialer.config import DateRange, RepConfig, TimeRange, WorkingHours
from dialer.domain import RepStatus

__all__ = [
    "AVAILABLE",
    "RepSchedule",
    "RepState",
    "Unavailable",
    "describe",
    "state_block",
]

_WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Unavailable(enum.StrEnum):
    """Why a rep is not a candidate (the ``reason`` of an ineligible candidate)."""

    #: On paid time off today (rep's timezone).
    PTO = "pto"
    #: Outside this weekday's working hours (rep's timezone).
    OFF_HOURS = "off_hours"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    AWAY = "away"
    OFFLINE = "offline"
    #: Held for another lead whose lease has not ended.
    RESERVED = "reserved"
    #: ``max_leads_per_hour`` reached.
    CAPACITY_HOUR = "capacity_hour"
    #: ``max_leads_per_day`` reached.
    CAPACITY_DAY = "capacity_day"


#: The reason given for an eligible candidate.
AVAILABLE = "available"

_STATUS_BLOCK = {
    RepStatus.BUSY: Unavailable.BUSY,
    RepStatus.WRAP_UP: Unavailable.WRAP_UP,
    RepStatus.AWAY: Unavailable.AWAY,
    RepStatus.OFFLINE: Unavailable.OFFLINE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RepState:
    """A rep's live state as the store keeps it (reps start ``available`` with no history)."""

    rep_id: str
    status: RepStatus = RepStatus.AVAILABLE
    #: Lead the rep is reserved for, if any.
    reserved_by: str | None = None
    #: When that reservation lapses; ``None`` with ``reserved_by`` set means no expiry.
    reserved_until: datetime | None = None
    #: Last time a lead was assigned (``least_recent``).
    last_assigned_at: datetime | None = None
    #: Leads assigned in the last hour and today (capacity).
    leads_last_hour: int = 0
    leads_today: int = 0
    #: Calls today (``fewest_calls``).
    calls_today: int = 0


def state_block(
    state: RepState | None,
    *,
    lead_id: str,
    now: datetime,
    max_per_hour: int | None,
    max_per_day: int | None,
) -> Unavailable | None:
    """The live-state reason a rep is unavailable, or ``None`` (no state = fresh, available)."""
    if state is None:
        return None
    if state.status is not RepStatus.AVAILABLE:
        return _STATUS_BLOCK[RepStatus(state.status)]
    if (
        state.reserved_by is not None
        and state.reserved_by != lead_id
        and (state.reserved_until is None or state.reserved_until > now)
    ):
        return Unavailable.RESERVED
    if max_per_hour is not None and state.leads_last_hour >= max_per_hour:
        return Unavailable.CAPACITY_HOUR
    if max_per_day is not None and state.leads_today >= max_per_day:
        return Unavailable.CAPACITY_DAY
    return None


class RepSchedule:
    """A rep's PTO and working hours, ready to check against an instant."""

    __slots__ = ("_always", "_days", "_pto", "tz")

    def __init__(
        self,
        *,
        timezone: str,
        working_hours: WorkingHours | None,
        pto: tuple[DateRange, ...] = (),
    ) -> None:
        self.tz = ZoneInfo(timezone)
        self._always = working_hours is None
        self._days: tuple[TimeRange | None, ...] = (
            tuple(working_hours.for_weekday(day) for day in range(7))
            if working_hours is not None
            else (None,) * 7
        )
        self._pto = pto

    @classmethod
    def for_rep(cls, rep: RepConfig) -> RepSchedule:
        """The schedule configured for ``rep``."""
        return cls(timezone=rep.timezone, working_hours=rep.working_hours, pto=rep.pto)

    @property
    def unrestricted(self) -> bool:
        """True when no working hours and no PTO are configured (never off)."""
        return self._always and not self._pto

    def block(self, now: datetime) -> Unavailable | None:
        """``PTO`` or ``OFF_HOURS`` at ``now`` (an aware datetime), else ``None``."""
        if self.unrestricted:
            return None
        local = now.astimezone(self.tz)
        if self._pto:
            today = local.date()
            for period in self._pto:
                if period.start <= today <= period.end:
                    return Unavailable.PTO
        if self._always:
            return None
        window = self._days[local.weekday()]
        if window is None:
            return Unavailable.OFF_HOURS
        minute = local.hour * 60 + local.minute
        if window.start_minute <= minute < window.end_minute:
            return None
        return Unavailable.OFF_HOURS

    def describe(self, now: datetime) -> str:
        """Human words for ``block(now)``, used in explanations."""
        local = now.astimezone(self.tz)
        stamp = f"{_WEEKDAY_NAMES[local.weekday()]} {local:%H:%M} {self.tz.key}"
        reason = self.block(now)
        if reason is Unavailable.PTO:
            period = next(p for p in self._pto if p.start <= local.date() <= p.end)
            return f"on PTO {_day(period.start)}..{_day(period.end)} (now {stamp})"
        if reason is Unavailable.OFF_HOURS:
            window = self._days[local.weekday()]
            hours = "not working today" if window is None else f"works {window}"
            return f"off hours: {hours} (now {stamp})"
        return f"working (now {stamp})"


def _day(value: date) -> str:
    return value.isoformat()


def describe(
    reason: str,
    *,
    schedule: RepSchedule,
    state: RepState | None,
    now: datetime,
    max_per_hour: int | None,
    max_per_day: int | None,
) -> str:
    """One human sentence for a candidate's ``reason`` code."""
    if reason in (Unavailable.PTO, Unavailable.OFF_HOURS):
        return schedule.describe(now)
    if reason == AVAILABLE:
        return "available" if schedule.unrestricted else f"available, {schedule.describe(now)}"
    if reason == Unavailable.RESERVED and state is not None:
        until = "" if state.reserved_until is None else f" until {state.reserved_until.isoformat()}"
        return f"reserved for lead {state.reserved_by}{until}"
    if reason == Unavailable.CAPACITY_HOUR and state is not None:
        return f"capacity: {state.leads_last_hour} leads in the last hour (max {max_per_hour})"
    if reason == Unavailable.CAPACITY_DAY and state is not None:
        return f"capacity: {state.leads_today} leads today (max {max_per_day})"
    return f"status {reason}"
