"""dialer.sla_watch: SLA milestones as data, driven by a scripted clock."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.sla_watch import Milestone, SlaDue, SlaWatch, at_risk_at

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def watch(
    w: SlaWatch,
    lead: str,
    start_min: float,
    window_min: float,
    reached: Collection[Milestone] = (),
) -> None:
    start = T0 + start_min * MIN
    due = start + window_min * MIN
    w.watch(lead, clock_start=start, due_at=due, at_risk_fraction=0.5, reached=reached)


def test_at_risk_then_breached_each_once() -> None:
    w = SlaWatch()
    assert w.next_deadline() is None
    watch(w, "a", 0, 10)
    assert "a" in w
    assert len(w) == 1
    assert w.next_deadline() == T0 + 5 * MIN
    assert w.due(T0 + 4 * MIN) == []
    assert w.due(T0 + 5 * MIN) == [
        SlaDue(lead_id="a", milestone=Milestone.AT_RISK, at=T0 + 5 * MIN)
    ]
    assert w.due(T0 + 5 * MIN) == []  # once
    assert w.next_deadline() == T0 + 10 * MIN
    assert w.due(T0 + 11 * MIN) == [
        SlaDue(lead_id="a", milestone=Milestone.BREACHED, at=T0 + 10 * MIN)
    ]
    assert w.next_deadline() is None
    assert len(w) == 0


def test_many_leads_come_out_in_deadline_order() -> None:
    w = SlaWatch()
    watch(w, "slow", 0, 60)
    watch(w, "hot", 1, 5)
    watch(w, "medium", 0, 20)
    got = w.due(T0 + 100 * MIN)
    # Everything passed at once: only the breaches are reported, by deadline.
    assert [(d.lead_id, d.milestone) for d in got] == [
        ("hot", Milestone.BREACHED),
        ("medium", Milestone.BREACHED),
        ("slow", Milestone.BREACHED),
    ]


def test_deadline_passed_while_stopped_is_reported_once_at_start_up() -> None:
    # Start-up: the timeline says at_risk was handled before the stop; the deadline passed.
    w = SlaWatch()
    watch(w, "a", 0, 10, reached={Milestone.AT_RISK})
    assert w.next_deadline() == T0 + 10 * MIN
    assert w.due(T0 + 30 * MIN) == [
        SlaDue(lead_id="a", milestone=Milestone.BREACHED, at=T0 + 10 * MIN)
    ]
    # Already breached before the stop: nothing to do.
    watch(w, "b", 0, 10, reached={Milestone.BREACHED})
    assert "b" not in w
    assert w.due(T0 + 60 * MIN) == []


def test_unwatch_and_rewatch_replace_milestones() -> None:
    w = SlaWatch()
    watch(w, "a", 0, 10)
    w.unwatch("a")  # the prospect was called: SLA met
    w.unwatch("a")  # idempotent
    assert w.next_deadline() is None
    assert w.due(T0 + 99 * MIN) == []
    watch(w, "b", 0, 10)
    watch(w, "b", 0, 60)  # the routing rule set a longer SLA
    assert w.next_deadline() == T0 + 30 * MIN
    assert [d.at for d in w.due(T0 + 59 * MIN)] == [T0 + 30 * MIN]


def test_invalid_input() -> None:
    w = SlaWatch()
    with pytest.raises(ValueError, match="before clock_start"):
        w.watch("a", clock_start=T0, due_at=T0 - MIN, at_risk_fraction=0.5)
    with pytest.raises(ValueError, match=r"0\.\.1"):
        at_risk_at(T0, T0 + MIN, 1.5)


def test_memory_stays_bounded_under_churn() -> None:
    w = SlaWatch()
    for n in range(10_000):
        watch(w, f"lead-{n % 50}", n / 100, 10)
        if n % 3 == 0:
            w.unwatch(f"lead-{n % 50}")
    assert len(w) <= 50
    assert len(w._heap) <= 2 * 2 * 50 + 64


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 9), st.integers(0, 100), st.integers(1, 100), st.booleans()),
        max_size=40,
    ),
    st.lists(st.integers(0, 250), min_size=1, max_size=10),
)
def test_matches_a_simple_model(
    operations: list[tuple[int, int, int, bool]], checkpoints: list[int]
) -> None:
    """Whatever the order of watch/unwatch, each live milestone is reported once, in order."""
    w = SlaWatch()
    model: dict[str, dict[Milestone, datetime]] = {}
    for lead_n, start, window, drop in operations:
        lead = f"l{lead_n}"
        if drop:
            w.unwatch(lead)
            model.pop(lead, None)
        else:
            watch(w, lead, start, window)
            begin = T0 + start * MIN
            model[lead] = {
                Milestone.AT_RISK: begin + window * MIN * 0.5,
                Milestone.BREACHED: begin + window * MIN,
            }
    reported: list[SlaDue] = []
    for minute in sorted(checkpoints):
        now = T0 + minute * MIN
        batch = w.due(now)
        assert all(item.at <= now for item in batch)
        assert [item.at for item in batch] == sorted(item.at for item in batch)
        reported += batch
        nxt = w.next_deadline()
        assert nxt is None or nxt > now
    end = T0 + max(checkpoints) * MIN
    expected = {
        (lead, milestone)
        for lead, milestones in model.items()
        for milestone, at in milestones.items()
        if at <= end
    }
    got = [(item.lead_id, item.milestone) for item in reported]
    assert len(got) == len(set(got))  # never twice
    # Breaches are always reported; an at-risk only when a check fell before its breach.
    assert {g for g in got if g[1] is Milestone.BREACHED} == {
        e for e in expected if e[1] is Milestone.BREACHED
    }
    minutes = [T0 + c * MIN for c in checkpoints]
    at_risk_expected = {
        (lead, Milestone.AT_RISK)
        for lead, milestones in model.items()
        if any(milestones[Milestone.AT_RISK] <= c < milestones[Milestone.BREACHED] for c in minutes)
    }
    assert {g for g in got if g[1] is Milestone.AT_RISK} == at_risk_expected
