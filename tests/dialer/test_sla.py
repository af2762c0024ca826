"""dialer.sla: deadline, status and time-to-call, with times passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dialer.config import SlaConfig
from dialer.domain import Intent, SlaStatus
from dialer.sla import default_due_at, evaluate_sla, sla_status, time_to_call_ms

T0 = datetime(2024, 6, 4, 16, 0, tzinfo=UTC)
DUE = T0 + timedelta(minutes=10)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("called_at", "now", "expected"),
    [
        (None, at(0), SlaStatus.PENDING),
        (None, at(299), SlaStatus.PENDING),
        (None, at(300), SlaStatus.AT_RISK),  # half of the 10 min window
        (None, at(599), SlaStatus.AT_RISK),
        (None, at(600), SlaStatus.BREACHED),
        (at(42), at(10_000), SlaStatus.MET),  # met stays met, however late we look
        (at(600), at(601), SlaStatus.MET),  # on the deadline counts
        (at(601), at(602), SlaStatus.BREACHED),
    ],
)
def test_status(called_at: datetime | None, now: datetime, expected: SlaStatus) -> None:
    status = sla_status(
        clock_start=T0, due_at=DUE, called_at=called_at, now=now, at_risk_fraction=0.5
    )
    assert status is expected


def test_a_window_of_zero_is_at_risk_until_breached() -> None:
    assert (
        sla_status(clock_start=T0, due_at=T0, called_at=None, now=at(-1), at_risk_fraction=0.5)
        is SlaStatus.AT_RISK
    )


def test_time_to_call() -> None:
    assert time_to_call_ms(T0, None) is None
    assert time_to_call_ms(T0, at(2.3456)) == 2346
    # A submission clock slightly ahead of ours never gives a negative time.
    assert time_to_call_ms(T0, at(-0.5)) == 0


def test_default_due_at_follows_the_intent_tier() -> None:
    sla = SlaConfig(high=300, medium=3600, low=86400, default=1800)
    assert default_due_at(T0, Intent.HIGH, sla) == at(300)
    assert default_due_at(T0, Intent.LOW, sla) == at(86400)
    assert default_due_at(T0, None, sla) == at(1800)


def test_evaluate_sla_json() -> None:
    view = evaluate_sla(
        clock_start=T0,
        due_at=DUE,
        first_touch_at=at(2),
        called_at=at(2.05),
        now=at(3),
        at_risk_fraction=0.5,
    )
    assert view.to_json() == {
        "due_at": "2024-06-04T16:10:00.000Z",
        "status": "met",
        "first_touch_at": "2024-06-04T16:00:02.000Z",
        "time_to_call_ms": 2050,
    }
    pending = evaluate_sla(
        clock_start=T0,
        due_at=DUE,
        first_touch_at=None,
        called_at=None,
        now=at(1),
        at_risk_fraction=0.5,
    )
    assert pending.to_json() == {
        "due_at": "2024-06-04T16:10:00.000Z",
        "status": "pending",
        "first_touch_at": None,
        "time_to_call_ms": None,
    }
