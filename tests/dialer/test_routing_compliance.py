"""The compliance gate: each block reason, ambiguous zones, next allowed time across DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dialer.config import ComplianceConfig, TimeRange
from dialer.routing.compliance import ComplianceBlock, CompliancePolicy

NEW_YORK = ("America/New_York",)
LOS_ANGELES = ("America/Los_Angeles",)


def policy(
    hours: tuple[int, int] = (8 * 60, 21 * 60),
    *,
    require_consent: bool = False,
    max_attempts: int = 3,
) -> CompliancePolicy:
    return CompliancePolicy(
        ComplianceConfig(
            calling_hours=TimeRange(start_minute=hours[0], end_minute=hours[1]),
            require_consent=require_consent,
            max_attempts_per_day=max_attempts,
        )
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# 2024-06-04 16:00 UTC is 12:00 in New York and 09:00 in Los Angeles.
MIDDAY = utc(2024, 6, 4, 16, 0)


def test_allowed_inside_hours_with_nothing_against_it() -> None:
    verdict = policy().check(now=MIDDAY, timezones=NEW_YORK)
    assert verdict.allowed
    assert verdict.reason is None
    assert verdict.next_allowed_at is None
    assert verdict.to_json()["allowed"] is True


@pytest.mark.parametrize(
    ("kwargs", "settings", "block"),
    [
        ({"on_dnc": True}, {}, ComplianceBlock.DO_NOT_CALL),
        ({"consent": None}, {"require_consent": True}, ComplianceBlock.NO_CONSENT),
        ({"consent": False}, {"require_consent": True}, ComplianceBlock.NO_CONSENT),
        ({"attempts_today": 3}, {}, ComplianceBlock.MAX_ATTEMPTS),
        ({"attempts_today": 1}, {"max_attempts": 1}, ComplianceBlock.MAX_ATTEMPTS),
    ],
)
def test_each_non_time_block_reason(
    kwargs: dict[str, object], settings: dict[str, object], block: ComplianceBlock
) -> None:
    verdict = policy(**settings).check(now=MIDDAY, timezones=NEW_YORK, **kwargs)  # type: ignore[arg-type]
    assert not verdict.allowed
    assert verdict.blocks == (block,)
    assert verdict.reason == block.value
    assert verdict.next_allowed_at is None  # blocked, not scheduled
    assert not verdict.scheduled


@pytest.mark.parametrize(
    ("kwargs", "settings"),
    [
        ({"consent": True}, {"require_consent": True}),
        ({"attempts_today": 2}, {}),
        ({"attempts_today": 50}, {"max_attempts": 0}),  # 0 = no limit
        ({"consent": None}, {}),
    ],
)
def test_not_blocked(kwargs: dict[str, object], settings: dict[str, object]) -> None:
    assert policy(**settings).check(now=MIDDAY, timezones=NEW_YORK, **kwargs).allowed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "zones", "allowed", "next_at"),
    [
        # 07:59 in New York: opens at 08:00 local.
        (utc(2024, 6, 4, 11, 59), NEW_YORK, False, utc(2024, 6, 4, 12, 0)),
        (utc(2024, 6, 4, 12, 0), NEW_YORK, True, None),
        (utc(2024, 6, 5, 0, 59), NEW_YORK, True, None),  # 20:59
        (utc(2024, 6, 5, 1, 0), NEW_YORK, False, utc(2024, 6, 5, 12, 0)),  # 21:00: tomorrow
        # Ambiguous New York + Los Angeles: only when both are inside, i.e. 08:00 LA.
        (MIDDAY, ("America/New_York", "America/Los_Angeles"), True, None),
        (
            utc(2024, 6, 4, 14, 0),
            ("America/New_York", "America/Los_Angeles"),
            False,
            utc(2024, 6, 4, 15, 0),
        ),
        # ... and until 21:00 New York.
        (
            utc(2024, 6, 5, 1, 30),
            ("America/Los_Angeles", "America/New_York"),
            False,
            utc(2024, 6, 5, 15, 0),
        ),
        # DST change night in New York (2024-03-10): 08:00 EDT is 12:00 UTC, not 13:00.
        (utc(2024, 3, 10, 3, 0), NEW_YORK, False, utc(2024, 3, 10, 12, 0)),
        # Fall back (2024-11-03): 08:00 EST is 13:00 UTC.
        (utc(2024, 11, 3, 5, 0), NEW_YORK, False, utc(2024, 11, 3, 13, 0)),
    ],
)
def test_calling_hours_in_the_prospects_local_time(
    now: datetime, zones: tuple[str, ...], allowed: bool, next_at: datetime | None
) -> None:
    verdict = policy().check(now=now, timezones=zones)
    assert verdict.allowed is allowed
    assert verdict.next_allowed_at == next_at
    if not allowed:
        assert verdict.blocks == (ComplianceBlock.CALLING_HOURS,)
        assert verdict.scheduled
        assert "outside calling hours 08:00-21:00" in verdict.detail


def test_zones_too_far_apart_are_never_allowed() -> None:
    # UTC, UTC+8 and (June) UTC-7: each pair overlaps, all three never do.
    zones = ("UTC", "Asia/Shanghai", "America/Los_Angeles")
    verdict = policy().check(now=MIDDAY, timezones=zones)
    assert not verdict.allowed
    assert verdict.next_allowed_at is None
    assert "no time of day" in verdict.detail


def test_far_apart_pair_still_has_a_shared_window() -> None:
    # Honolulu (UTC-10) and Guam (UTC+10) are only 4 hours apart around the date line.
    verdict = policy().check(now=MIDDAY, timezones=("Pacific/Honolulu", "Pacific/Guam"))
    assert verdict.next_allowed_at == utc(2024, 6, 4, 22, 0)  # 12:00 Honolulu, 08:00 Guam


def test_unknown_zone_blocks_unless_hours_are_always() -> None:
    verdict = policy().check(now=MIDDAY, timezones=())
    assert verdict.blocks == (ComplianceBlock.CALLING_HOURS,)
    assert "unknown" in verdict.detail
    assert policy((0, 24 * 60)).check(now=MIDDAY, timezones=()).allowed


def test_always_hours_allow_any_time() -> None:
    always = policy((0, 24 * 60))
    assert always.check(now=utc(2024, 6, 4, 7, 0), timezones=NEW_YORK).allowed  # 03:00


def test_hours_with_another_block_are_blocked_not_scheduled() -> None:
    verdict = policy().check(now=utc(2024, 6, 4, 6, 0), timezones=NEW_YORK, on_dnc=True)
    assert verdict.blocks == (ComplianceBlock.DO_NOT_CALL, ComplianceBlock.CALLING_HOURS)
    assert verdict.next_allowed_at is None
    assert verdict.to_json()["reasons"] == ["do_not_call", "calling_hours"]


def test_dnc_reported_first_among_several_blocks() -> None:
    verdict = policy(require_consent=True).check(
        now=MIDDAY, timezones=LOS_ANGELES, on_dnc=True, attempts_today=9
    )
    assert verdict.reason == "do_not_call"
    assert len(verdict.blocks) == 3
