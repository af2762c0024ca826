"""Strategies: put a pool's eligible reps in the order they should be offered a lead.

Each function takes the eligible items in pool order (items are whatever the caller uses to
name reps: indices in the router, ids in tests) plus the state it needs, passed in as data, and
returns a new list; nothing here keeps state. Ties always keep pool order, so results are
deterministic except for the injected random generator.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

__all__ = [
    "fewest_calls",
    "least_recent",
    "owner_first",
    "random_order",
    "round_robin",
    "weighted",
]

T = TypeVar("T")


def round_robin(positions: Sequence[int], pool_size: int, cursor: int) -> list[int]:
    """Eligible pool ``positions`` (ascending) rotated to start at ``cursor % pool_size``.

    The cursor is the pool position after the rep who was first in line last time, so with
    everyone eligible each lead starts one rep further along the pool; ineligible reps are
    skipped without losing their turn for good.
    """
    if not positions:
        return []
    start = cursor % pool_size if pool_size > 0 else 0
    split = bisect_left(positions, start)
    return [*positions[split:], *positions[:split]]


def weighted(items: Sequence[T], weights: Sequence[float], rng: random.Random) -> list[T]:
    """A weighted random order without replacement (Efraimidis-Spirakis).

    The first item is ``item`` with probability ``weight / total``; each next one is drawn the
    same way from what is left. Weights must be > 0.
    """
    keyed = [(rng.random() ** (1.0 / weight), index) for index, weight in enumerate(weights)]
    keyed.sort(reverse=True)
    return [items[index] for _, index in keyed]


def least_recent(items: Sequence[T], last_assigned: Sequence[datetime | None]) -> list[T]:
    """Longest idle first: never assigned, then oldest ``last_assigned`` first."""

    def idle_key(index: int) -> tuple[bool, float]:
        when = last_assigned[index]
        return (when is not None, 0.0 if when is None else when.timestamp())

    order = sorted(range(len(items)), key=idle_key)
    return [items[index] for index in order]


def fewest_calls(items: Sequence[T], calls_today: Sequence[int]) -> list[T]:
    """Fewest calls today first."""
    order = sorted(range(len(items)), key=calls_today.__getitem__)
    return [items[index] for index in order]


def random_order(items: Sequence[T], rng: random.Random) -> list[T]:
    """A uniformly random order."""
    shuffled = list(items)
    rng.shuffle(shuffled)
    return shuffled


def owner_first(items: Sequence[T], owner: T | None) -> list[T]:
    """The account owner first when eligible, then the rest in pool order."""
    if owner is None or owner not in items:
        return list(items)
    return [owner, *(item for item in items if item != owner)]
