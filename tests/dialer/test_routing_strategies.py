"""Each strategy's order, table-driven; randomness comes from an injected, seeded generator."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from dialer.routing import strategies

T0 = datetime(2024, 6, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("positions", "pool_size", "cursor", "expected"),
    [
        ([0, 1, 2, 3], 4, 0, [0, 1, 2, 3]),
        ([0, 1, 2, 3], 4, 1, [1, 2, 3, 0]),
        ([0, 1, 2, 3], 4, 5, [1, 2, 3, 0]),  # the cursor wraps
        ([0, 2, 3], 5, 1, [2, 3, 0]),  # position 1 ineligible: next one in line
        ([0, 2, 3], 5, 4, [0, 2, 3]),
        ([4], 5, 2, [4]),
        ([], 5, 2, []),
    ],
)
def test_round_robin(
    positions: list[int], pool_size: int, cursor: int, expected: list[int]
) -> None:
    assert strategies.round_robin(positions, pool_size, cursor) == expected


def test_round_robin_with_cursor_feedback_is_fair() -> None:
    cursor = 0
    firsts: Counter[int] = Counter()
    for _ in range(30):
        order = strategies.round_robin([0, 1, 2, 3, 4], 5, cursor)
        firsts[order[0]] += 1
        cursor = order[0] + 1
    assert firsts == Counter(dict.fromkeys(range(5), 6))


@pytest.mark.parametrize(
    ("last_assigned", "expected"),
    [
        ([T0, None, T0 - timedelta(hours=1)], ["b", "c", "a"]),
        ([T0, T0, T0], ["a", "b", "c"]),  # ties keep pool order
        ([None, None, T0], ["a", "b", "c"]),
        ([T0 + timedelta(seconds=2), T0 + timedelta(seconds=1), T0], ["c", "b", "a"]),
    ],
)
def test_least_recent(last_assigned: list[datetime | None], expected: list[str]) -> None:
    assert strategies.least_recent(["a", "b", "c"], last_assigned) == expected


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        ([3, 1, 2], ["b", "c", "a"]),
        ([0, 0, 0], ["a", "b", "c"]),
        ([5, 0, 0], ["b", "c", "a"]),
    ],
)
def test_fewest_calls(calls: list[int], expected: list[str]) -> None:
    assert strategies.fewest_calls(["a", "b", "c"], calls) == expected


@pytest.mark.parametrize(
    ("items", "owner", "expected"),
    [
        (["a", "b", "c"], "b", ["b", "a", "c"]),
        (["a", "b", "c"], "a", ["a", "b", "c"]),
        (["a", "c"], "b", ["a", "c"]),  # the owner is not eligible: rest of pool in order
        (["a", "b", "c"], None, ["a", "b", "c"]),
    ],
)
def test_owner_first(items: list[str], owner: str | None, expected: list[str]) -> None:
    assert strategies.owner_first(items, owner) == expected


def test_random_order_is_a_permutation_driven_by_the_injected_rng() -> None:
    items = list(range(10))
    first = strategies.random_order(items, random.Random(3))
    again = strategies.random_order(items, random.Random(3))
    assert first == again
    assert sorted(first) == items
    assert items == list(range(10))  # input untouched
    leaders = Counter(strategies.random_order(items, rng)[0] for rng in [random.Random(1)] * 2000)
    assert set(leaders) == set(items)
    assert max(leaders.values()) < 2000 * 0.2


def test_weighted_prefers_heavier_reps_in_proportion() -> None:
    rng = random.Random(42)
    leaders = Counter(
        strategies.weighted(["a", "b", "c"], [3.0, 1.0, 0.0001], rng)[0] for _ in range(4000)
    )
    share_a = leaders["a"] / 4000
    assert 0.70 < share_a < 0.80  # 3 / (3 + 1)
    assert leaders["c"] < 10


def test_weighted_returns_every_item_once() -> None:
    order = strategies.weighted(["a", "b", "c", "d"], [1.0, 2.0, 3.0, 4.0], random.Random(0))
    assert sorted(order) == ["a", "b", "c", "d"]
    assert strategies.weighted([], [], random.Random(0)) == []
