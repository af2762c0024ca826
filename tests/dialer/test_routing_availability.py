"""Rep availability: working hours in the rep's zone (DST included), PTO, status, capacity."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dialer.config import DateRange, TimeRange, WorkingHours
from dialer.domain import RepStatus
from dialer.routing.availability import (
    AVAILABLE,
    RepSchedule,
    RepState,
    Unavailable,
    describe,
    state_block,
)


def window(text: str) -> TimeRange:
    start, end = (int(hhmm[:2]) * 60 + int(hhmm[3:]) for hhmm in text.split("-"))
    return TimeRange(start_minute=start, end_minute=end)


NINE_TO_FIVE = WorkingHours(
    mon=window("09:00-17:00"),
    tue=window("09:00-17:00"),
    wed=window("09:00-17:00"),
    thu=window("09:00-17:00"),
    fri=window("09:00-17:00"),
    sun=window("09:00-17:00"),
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timezone", "now", "expected"),
    [
        # New York, an ordinary Tuesday: 13:00 UTC is 09:00 EDT.
        ("America/New_York", utc(2024, 6, 4, 13, 0), None),
        ("America/New_York", utc(2024, 6, 4, 12, 59), Unavailable.OFF_HOURS),
        ("America/New_York", utc(2024, 6, 4, 20, 59), None),
        ("America/New_York", utc(2024, 6, 4, 21, 0), Unavailable.OFF_HOURS),  # end exclusive
        # Saturday has no window.
        ("America/New_York", utc(2024, 6, 8, 15, 0), Unavailable.OFF_HOURS),
        # DST change day (Sunday 2024-03-10, 02:00 EST -> 03:00 EDT): 09:00 local is 13:00 UTC,
        # one hour earlier in UTC than the Sunday before (14:00 UTC).
        ("America/New_York", utc(2024, 3, 10, 13, 0), None),
        ("America/New_York", utc(2024, 3, 10, 12, 59), Unavailable.OFF_HOURS),
        ("America/New_York", utc(2024, 3, 3, 13, 0), Unavailable.OFF_HOURS),
        ("America/New_York", utc(2024, 3, 3, 14, 0), None),
        # Fall back in Berlin (2024-10-27, 03:00 CEST -> 02:00 CET): 17:00 local is 16:00 UTC.
        ("Europe/Berlin", utc(2024, 10, 27, 15, 59), None),
        ("Europe/Berlin", utc(2024, 10, 27, 16, 0), Unavailable.OFF_HOURS),
        ("Europe/Berlin", utc(2024, 10, 20, 15, 0), Unavailable.OFF_HOURS),
        # The same instant is a work hour in Los Angeles and the middle of the night in Tokyo.
        ("America/Los_Angeles", utc(2024, 6, 4, 18, 0), None),
        ("Asia/Tokyo", utc(2024, 6, 4, 18, 0), Unavailable.OFF_HOURS),
        # Across the date line: 2024-06-03 23:30 UTC is Tuesday 08:30 in Tokyo.
        ("Asia/Tokyo", utc(2024, 6, 4, 0, 0), None),
        ("Asia/Tokyo", utc(2024, 6, 3, 23, 59), Unavailable.OFF_HOURS),
    ],
)
def test_working_hours_in_the_reps_zone(
    timezone: str, now: datetime, expected: Unavailable | None
) -> None:
    schedule = RepSchedule(timezone=timezone, working_hours=NINE_TO_FIVE)
    assert schedule.block(now) == expected


def test_no_working_hours_means_always_and_all_day_window_means_all_day() -> None:
    always = RepSchedule(timezone="UTC", working_hours=None)
    assert always.unrestricted
    assert always.block(utc(2024, 6, 8, 3, 0)) is None
    all_day = RepSchedule(
        timezone="Australia/Sydney", working_hours=WorkingHours(sat=window("00:00-24:00"))
    )
    assert not all_day.unrestricted
    assert all_day.block(utc(2024, 6, 7, 14, 0)) is None  # Sat 00:00 AEST
    assert all_day.block(utc(2024, 6, 8, 13, 59)) is None  # Sat 23:59
    assert all_day.block(utc(2024, 6, 8, 14, 0)) == Unavailable.OFF_HOURS  # Sunday


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # PTO 2024-06-03..07 inclusive, in Los Angeles time.
        (utc(2024, 6, 3, 6, 59), None),  # Sun 06-02 23:59 PDT
        (utc(2024, 6, 3, 7, 0), Unavailable.PTO),  # Mon 06-03 00:00 PDT
        (utc(2024, 6, 8, 3, 0), Unavailable.PTO),  # Fri 06-07 20:00 PDT, off hours anyway
        (utc(2024, 6, 8, 7, 0), None),  # Sat 06-08 00:00 PDT
    ],
)
def test_pto_dates_are_inclusive_in_the_reps_zone(
    now: datetime, expected: Unavailable | None
) -> None:
    pto = (DateRange(start=date(2024, 6, 3), end=date(2024, 6, 7)),)
    schedule = RepSchedule(timezone="America/Los_Angeles", working_hours=None, pto=pto)
    assert not schedule.unrestricted
    assert schedule.block(now) == expected


def test_pto_wins_over_off_hours_in_the_reason() -> None:
    pto = (DateRange(start=date(2024, 6, 8), end=date(2024, 6, 8)),)
    schedule = RepSchedule(timezone="UTC", working_hours=NINE_TO_FIVE, pto=pto)
    assert schedule.block(utc(2024, 6, 8, 12, 0)) == Unavailable.PTO
    assert "on PTO 2024-06-08..2024-06-08" in schedule.describe(utc(2024, 6, 8, 12, 0))


NOW = utc(2024, 6, 4, 15, 0)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, None),
        (RepState(rep_id="a"), None),
        (RepState(rep_id="a", status=RepStatus.BUSY), Unavailable.BUSY),
        (RepState(rep_id="a", status=RepStatus.WRAP_UP), Unavailable.WRAP_UP),
        (RepState(rep_id="a", status=RepStatus.AWAY), Unavailable.AWAY),
        (RepState(rep_id="a", status=RepStatus.OFFLINE), Unavailable.OFFLINE),
        (RepState(rep_id="a", reserved_by="other"), Unavailable.RESERVED),
        (
            RepState(rep_id="a", reserved_by="other", reserved_until=NOW + timedelta(seconds=1)),
            Unavailable.RESERVED,
        ),
        # An expired lease no longer holds the rep.
        (RepState(rep_id="a", reserved_by="other", reserved_until=NOW), None),
        # Reserved for this very lead (a retry after a restart): still a candidate.
        (RepState(rep_id="a", reserved_by="lead-1"), None),
        (RepState(rep_id="a", leads_last_hour=2), Unavailable.CAPACITY_HOUR),
        (RepState(rep_id="a", leads_last_hour=1, leads_today=5), Unavailable.CAPACITY_DAY),
        (RepState(rep_id="a", leads_last_hour=1, leads_today=4), None),
    ],
)
def test_state_block(state: RepState | None, expected: Unavailable | None) -> None:
    assert state_block(state, lead_id="lead-1", now=NOW, max_per_hour=2, max_per_day=5) == (
        expected
    )


def test_no_capacity_limits_means_unlimited() -> None:
    busy_day = RepState(rep_id="a", leads_last_hour=99, leads_today=999)
    assert state_block(busy_day, lead_id="x", now=NOW, max_per_hour=None, max_per_day=None) is (
        None
    )


@pytest.mark.parametrize(
    ("reason", "state", "words"),
    [
        (AVAILABLE, None, "available, working (now tue 11:00 America/New_York)"),
        (
            Unavailable.RESERVED,
            RepState(rep_id="a", reserved_by="L9", reserved_until=NOW),
            "reserved for lead L9 until 2024-06-04T15:00:00+00:00",
        ),
        (
            Unavailable.CAPACITY_HOUR,
            RepState(rep_id="a", leads_last_hour=3),
            "3 leads in the last hour (max 3)",
        ),
        (Unavailable.CAPACITY_DAY, RepState(rep_id="a", leads_today=9), "9 leads today (max 9)"),
        (Unavailable.BUSY, RepState(rep_id="a", status=RepStatus.BUSY), "status busy"),
    ],
)
def test_describe(reason: str, state: RepState | None, words: str) -> None:
    schedule = RepSchedule(timezone="America/New_York", working_hours=NINE_TO_FIVE)
    text = describe(reason, schedule=schedule, state=state, now=NOW, max_per_hour=3, max_per_day=9)
    assert words in text


def test_describe_off_hours_names_the_window_and_local_time() -> None:
    schedule = RepSchedule(timezone="America/New_York", working_hours=NINE_TO_FIVE)
    saturday = utc(2024, 6, 8, 15, 0)
    text = describe(
        Unavailable.OFF_HOURS,
        schedule=schedule,
        state=None,
        now=saturday,
        max_per_hour=None,
        max_per_day=None,
    )
    assert text == "off hours: not working today (now sat 11:00 America/New_York)"
    evening = schedule.describe(utc(2024, 6, 4, 22, 0))
    assert evening == "off hours: works 09:00-17:00 (now tue 18:00 America/New_York)"
