"""The reports' SQL against the 50-lead fixture (tests/support/reports.py), values by hand.

Worked out on paper from the fixture table. Percentiles are ``percentile_cont``: for n sorted
values v, quantile q sits at position p = q * (n - 1), value v[floor p] + frac(p) * (v[floor p
+ 1] - v[floor p]). E.g. ann: v = 10 20 30 40 50 70 100 200 400 900 s; median p = 4.5 ->
(50 + 70) / 2 = 60 s; p90 p = 8.1 -> 400 + 0.1 * 500 = 450 s.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dialer.store import Store
from dialer.store.reports import GroupBy, SlaGroup, conversion_buckets, sla_report
from dialer.store.sla import SlaWindows
from tests.support.reports import RANGE_END, T0, insert_fixture

WINDOWS = SlaWindows(high=300.0, medium=3600.0, low=86400.0, default=3600.0)
#: Long after every deadline of the fixture: nothing is pending.
LATER = T0 + timedelta(days=30)
REP_TEAMS = [("ann", "west"), ("bob", "west"), ("cid", "east"), ("dee", "east"), ("dee", "north")]

NONE_GROUP_REASONS = {"no_rep_available": 4, "outside_calling_hours": 3, "unrecorded": 3}


def row(group: SlaGroup) -> tuple[object, ...]:
    return (
        group.key,
        group.leads,
        group.called,
        group.met,
        group.breached,
        group.pending,
        group.median_time_to_call_ms,
        group.p90_time_to_call_ms,
        dict(group.breaches_by_reason),
    )


@pytest.fixture
async def fixture_store(store: Store) -> Store:
    ids = await insert_fixture(store)
    assert len(ids) == 52
    return store


async def test_totals_of_the_50_leads(fixture_store: Store) -> None:
    report = await sla_report(
        fixture_store.pool, start=T0, end=RANGE_END, now=LATER, windows=WINDOWS
    )
    # 40 dialled values sorted; median p = 19.5 -> (240 + 300) / 2 = 270 s;
    # p90 p = 35.1 -> v[35] = v[36] = 3000 s.
    assert row(report.total) == (
        None,
        50,
        40,
        35,
        15,
        0,
        270_000.0,
        3_000_000.0,
        {
            "all_missed": 2,
            "rep_rejected": 1,
            "prospect_unreachable": 1,
            "no_rep_available": 4,
            "outside_calling_hours": 3,
            "unrecorded": 4,
        },
    )
    assert report.total.pct_met == pytest.approx(70.0)
    # rep_voicemail events only (their rep_leg_ended twins are not counted again); the one on
    # the lead received at T0 + 24 h is out of range.
    assert report.total.voicemail == 4
    assert report.groups == (report.total,)


async def test_grouped_by_rep(fixture_store: Store) -> None:
    report = await sla_report(
        fixture_store.pool,
        start=T0,
        end=RANGE_END,
        now=LATER,
        windows=WINDOWS,
        group_by=GroupBy.REP,
    )
    assert [row(group) for group in report.groups] == [
        ("ann", 10, 10, 8, 2, 0, 60_000.0, 450_000.0, {"all_missed": 1, "rep_rejected": 1}),
        # 1200 s lead: its rule's SLA is 900 s (breached); 2400 s lead: due at 2400 s (met).
        ("bob", 10, 10, 8, 2, 0, 420_000.0, 2_560_000.0, {"all_missed": 1, "unrecorded": 1}),
        # median (5 + 3000) / 2; p90 7200 + 0.1 * (90000 - 7200) = 15480 s.
        ("cid", 10, 10, 9, 1, 0, 1_502_500.0, 15_480_000.0, {"prospect_unreachable": 1}),
        ("dee", 10, 10, 10, 0, 0, 550_000.0, 910_000.0, {}),
        (None, 10, 0, 0, 10, 0, None, None, NONE_GROUP_REASONS),
    ]
    assert [group.pct_met for group in report.groups] == [80.0, 80.0, 90.0, 100.0, 0.0]
    assert report.total.leads == 50
    # Voicemail counts for the rep whose leg it was, not the lead's assigned rep: ann's one is
    # on a lead nobody took; bob's two and cid's one are on ann's leads.
    assert [(group.key, group.voicemail) for group in report.groups] == [
        ("ann", 1),
        ("bob", 2),
        ("cid", 1),
        ("dee", 0),
        (None, 0),
    ]
    assert report.total.voicemail == 4


async def test_grouped_by_source(fixture_store: Store) -> None:
    report = await sla_report(
        fixture_store.pool,
        start=T0,
        end=RANGE_END,
        now=LATER,
        windows=WINDOWS,
        group_by=GroupBy.SOURCE,
    )
    assert [row(group) for group in report.groups] == [
        # bob + dee: 30 45 60 100 120 200 240 300 400 500 | 600 600 700 800 900 1000 1200
        # 1800 2400 4000 -> median 550 s, p90 1800 + 0.1 * 600 = 1860 s.
        ("crm", 20, 20, 18, 2, 0, 550_000.0, 1_860_000.0, {"all_missed": 1, "unrecorded": 1}),
        ("partner", 10, 0, 0, 10, 0, None, None, NONE_GROUP_REASONS),
        # ann + cid: ... 50 | 70 ... -> median 60 s; p90 3000 + 0.1 * 4200 = 3420 s.
        (
            "web",
            20,
            20,
            17,
            3,
            0,
            60_000.0,
            3_420_000.0,
            {"all_missed": 1, "rep_rejected": 1, "prospect_unreachable": 1},
        ),
    ]
    # Other groupings count a lead's voicemails in the lead's group (ann's leads are web).
    assert [(group.key, group.voicemail) for group in report.groups] == [
        ("crm", 0),
        ("partner", 1),
        ("web", 3),
    ]


async def test_grouped_by_intent(fixture_store: Store) -> None:
    report = await sla_report(
        fixture_store.pool,
        start=T0,
        end=RANGE_END,
        now=LATER,
        windows=WINDOWS,
        group_by=GroupBy.INTENT,
    )
    assert [row(group) for group in report.groups] == [
        (
            "high",
            20,
            10,
            8,
            12,
            0,
            60_000.0,
            450_000.0,
            {"all_missed": 1, "rep_rejected": 1, **NONE_GROUP_REASONS},
        ),
        ("low", 10, 10, 9, 1, 0, 1_502_500.0, 15_480_000.0, {"prospect_unreachable": 1}),
        ("medium", 10, 10, 8, 2, 0, 420_000.0, 2_560_000.0, {"all_missed": 1, "unrecorded": 1}),
        (None, 10, 10, 10, 0, 0, 550_000.0, 910_000.0, {}),
    ]
    assert report.groups[0].pct_met == pytest.approx(40.0)


async def test_grouped_by_team_counts_a_rep_in_each_of_their_teams(fixture_store: Store) -> None:
    report = await sla_report(
        fixture_store.pool,
        start=T0,
        end=RANGE_END,
        now=LATER,
        windows=WINDOWS,
        group_by=GroupBy.TEAM,
        rep_teams=REP_TEAMS,
    )
    assert [row(group) for group in report.groups] == [
        # cid + dee: 5 5 5 5 5 100 200 300 400 500 | 600 ... -> 550 s; p90 3000 + 420 s.
        ("east", 20, 20, 19, 1, 0, 550_000.0, 3_420_000.0, {"prospect_unreachable": 1}),
        ("north", 10, 10, 10, 0, 0, 550_000.0, 910_000.0, {}),
        # ann + bob: ... 100 | 120 ... -> 110 s; p90 1800 + 0.1 * 600 = 1860 s.
        (
            "west",
            20,
            20,
            16,
            4,
            0,
            110_000.0,
            1_860_000.0,
            {"all_missed": 2, "rep_rejected": 1, "unrecorded": 1},
        ),
        (None, 10, 0, 0, 10, 0, None, None, NONE_GROUP_REASONS),
    ]
    assert report.total.leads == 50


async def test_undecided_leads_are_pending_until_their_deadline(fixture_store: Store) -> None:
    # Group none: clock starts T0 + 20 h + j min, due 300 s later. At + 600 s, j = 0..5 are
    # past due (300 + 60 j <= 600), j = 6..9 still pending.
    now = T0 + timedelta(hours=20, seconds=600)
    report = await sla_report(fixture_store.pool, start=T0, end=RANGE_END, now=now, windows=WINDOWS)
    total = report.total
    assert (total.met, total.breached, total.pending) == (35, 11, 4)
    assert total.pct_met == pytest.approx(100.0 * 35 / 46)
    assert total.breaches_by_reason == {
        "all_missed": 2,
        "rep_rejected": 1,
        "prospect_unreachable": 1,
        "unrecorded": 1,
        "no_rep_available": 4,
        "outside_calling_hours": 2,
    }


async def test_the_range_is_half_open_on_received_at(fixture_store: Store) -> None:
    # Only the lead received 1 s before T0 (ann, 10 s) and T0's own leads.
    report = await sla_report(
        fixture_store.pool,
        start=T0 - timedelta(seconds=1),
        end=T0 + timedelta(seconds=1),
        now=LATER,
        windows=WINDOWS,
    )
    # ann j=0 (received at T0, 10 s) and the early lead (10 s).
    assert (report.total.leads, report.total.median_time_to_call_ms) == (2, 10_000.0)
    by_rep = await sla_report(
        fixture_store.pool,
        start=T0 - timedelta(seconds=1),
        end=T0 + timedelta(seconds=1),
        now=LATER,
        windows=WINDOWS,
        group_by=GroupBy.REP,
    )
    # bob took none of these leads but his leg on ann's j=0 went to voicemail: a group of his
    # own with zero leads.
    assert [(g.key, g.leads, g.voicemail) for g in by_rep.groups] == [("ann", 2, 0), ("bob", 0, 1)]
    empty = await sla_report(
        fixture_store.pool,
        start=T0 - timedelta(days=2),
        end=T0 - timedelta(days=1),
        now=LATER,
        windows=WINDOWS,
        group_by=GroupBy.REP,
    )
    assert empty.groups == ()
    assert row(empty.total) == (None, 0, 0, 0, 0, 0, None, None, {})
    assert empty.total.pct_met is None


async def test_conversion_buckets(fixture_store: Store) -> None:
    report = await conversion_buckets(fixture_store.pool, start=T0, end=RANGE_END)
    assert [(b.key, b.leads, b.connected) for b in report.buckets] == [
        # ann 10 20 30 40 50, bob 30 45, cid 5 x5; connected ann 5 + bob 30 + cid 2.
        ("lt_1m", 12, 8),
        # exactly 60 s belongs here: ann 70 100 200, bob 60 120 240, dee 100 200.
        ("1m_5m", 8, 7),
        # ann 400 900, bob 600 1200, dee 300..1000; connected ann 400, bob 1200, dee 8.
        ("5m_30m", 12, 10),
        # exactly 1800 s belongs here: bob 1800 2400, cid 3000 x3; none connected.
        ("30m_60m", 5, 0),
        ("gt_1h", 3, 1),
    ]
    assert (report.not_called.leads, report.not_called.connected) == (10, 0)
    assert report.buckets[0].conversion == pytest.approx(8 / 12)
    assert report.buckets[3].conversion == 0.0
