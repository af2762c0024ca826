"""The compliance gate, evaluated before any prospect is called.

Blocks, in the order they are reported: the number is on the do-not-call list; consent is
required and missing; the lead has had its maximum call attempts today; it is outside calling
hours in the prospect's local time. When the prospect's zone is ambiguous (a mobile, toll-free
or unknown prefix) the lead may be called only when *every* possible zone is inside calling
hours, the most restrictive reading. When calling hours are the only block the verdict carries
the next allowed time, so the lead is scheduled rather than blocked.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dialer.config import ComplianceConfig, TimeRange
from dialer.routing.facts import zone

__all__ = ["ComplianceBlock", "CompliancePolicy", "ComplianceVerdict"]

# Candidate times are searched over this many days: calling hours repeat daily, so a week is
# far more than any DST shift needs.
_SEARCH_DAYS = 8


class ComplianceBlock(enum.StrEnum):
    """Why a prospect may not be called now."""

    DO_NOT_CALL = "do_not_call"
    NO_CONSENT = "no_consent"
    MAX_ATTEMPTS = "max_attempts_per_day"
    CALLING_HOURS = "calling_hours"


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplianceVerdict:
    """May the prospect be called now; if not, why, and (hours only) from when."""

    allowed: bool
    blocks: tuple[ComplianceBlock, ...] = ()
    #: Set when calling hours are the only block and a later time is allowed.
    next_allowed_at: datetime | None = None
    #: The zones the calling-hours check used.
    timezones: tuple[str, ...] = ()
    #: Human words for the verdict.
    detail: str = ""

    @property
    def reason(self) -> str | None:
        """The first block's code, ``None`` when allowed."""
        return self.blocks[0].value if self.blocks else None

    @property
    def scheduled(self) -> bool:
        """True when the lead should wait for ``next_allowed_at`` instead of being blocked."""
        return self.next_allowed_at is not None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view."""
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "reasons": [block.value for block in self.blocks],
            "next_allowed_at": (
                None if self.next_allowed_at is None else self.next_allowed_at.isoformat()
            ),
            "timezones": list(self.timezones),
            "detail": self.detail,
        }


_ALLOWED_ALWAYS = ComplianceVerdict(allowed=True, detail="allowed")


class CompliancePolicy:
    """``[compliance]`` ready to check leads; pure: DNC membership and attempts are inputs."""

    __slots__ = ("_hours", "max_attempts_per_day", "require_consent")

    def __init__(self, config: ComplianceConfig) -> None:
        self._hours: TimeRange | None = (
            None if config.calling_hours.is_all_day else config.calling_hours
        )
        self.require_consent = config.require_consent
        #: 0 means no limit.
        self.max_attempts_per_day = config.max_attempts_per_day

    def check(
        self,
        *,
        now: datetime,
        timezones: Sequence[str],
        consent: bool | None = None,
        on_dnc: bool = False,
        attempts_today: int = 0,
    ) -> ComplianceVerdict:
        """The verdict for a prospect at ``now`` (aware), given its possible ``timezones``."""
        blocks: list[ComplianceBlock] = []
        details: list[str] = []
        if on_dnc:
            blocks.append(ComplianceBlock.DO_NOT_CALL)
            details.append("number is on the do-not-call list")
        if self.require_consent and consent is not True:
            blocks.append(ComplianceBlock.NO_CONSENT)
            details.append("consent is required and the lead has not given it")
        if 0 < self.max_attempts_per_day <= attempts_today:
            blocks.append(ComplianceBlock.MAX_ATTEMPTS)
            details.append(
                f"{attempts_today} call attempts today (max {self.max_attempts_per_day})"
            )
        zones = tuple(timezones)
        if self._hours is None:
            if not blocks:
                return _ALLOWED_ALWAYS
            return ComplianceVerdict(
                allowed=False, blocks=tuple(blocks), timezones=zones, detail="; ".join(details)
            )
        hours = self._hours
        infos = [z for z in (zone(name) for name in zones) if z is not None]
        next_at: datetime | None = None
        if not infos:
            blocks.append(ComplianceBlock.CALLING_HOURS)
            details.append(f"prospect's timezone is unknown; calling hours are {hours}")
        elif not _inside(hours, infos, now):
            blocks.append(ComplianceBlock.CALLING_HOURS)
            next_at = _next_allowed(hours, infos, now)
            local = ", ".join(f"{now.astimezone(z):%a %H:%M} {z.key}" for z in infos[:4])
            more = f" (+{len(infos) - 4} more zones)" if len(infos) > 4 else ""
            details.append(f"outside calling hours {hours} in the prospect's time: {local}{more}")
            if next_at is None:
                details.append("no time of day is inside calling hours in every possible zone")
        if not blocks:
            return ComplianceVerdict(allowed=True, timezones=zones, detail="allowed")
        only_hours = blocks == [ComplianceBlock.CALLING_HOURS]
        return ComplianceVerdict(
            allowed=False,
            blocks=tuple(blocks),
            next_allowed_at=next_at if only_hours else None,
            timezones=zones,
            detail="; ".join(details),
        )


def _inside(hours: TimeRange, zones: Sequence[ZoneInfo], moment: datetime) -> bool:
    for tz in zones:
        local = moment.astimezone(tz)
        minute = local.hour * 60 + local.minute
        if not hours.start_minute <= minute < hours.end_minute:
            return False
    return True


def _next_allowed(hours: TimeRange, zones: Sequence[ZoneInfo], now: datetime) -> datetime | None:
    """The earliest instant after ``now`` inside calling hours in every zone, if any.

    The allowed set is an intersection of daily windows, so its first instant is the start of
    one zone's window: try those in time order.
    """
    start = time(hours.start_minute // 60, hours.start_minute % 60)
    candidates: set[datetime] = set()
    for tz in zones:
        today: date = now.astimezone(tz).date()
        for offset in range(-1, _SEARCH_DAYS):
            day = today + timedelta(days=offset)
            # A start inside a DST gap resolves forward, to the first real instant after it.
            opening = datetime.combine(day, start, tzinfo=tz).astimezone(UTC)
            if opening > now:
                candidates.add(opening)
    for candidate in sorted(candidates):
        if _inside(hours, zones, candidate):
            return candidate
    return None
