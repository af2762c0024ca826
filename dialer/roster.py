"""The reps' live state as routing reads it, shared by the leads routed at about the same time.

Reading every active rep for every lead made routing cost grow with the floor: with 700 reps a
lead spent about a third of the daemon's time reading and decoding rows that had not changed
since the lead before. :class:`RepRoster` keeps one snapshot (:meth:`RoutingStore.routing_reps`)
and hands it to every decision for up to ``max_age_s``; one read at a time refreshes it.

Why a slightly old snapshot is safe. The router only *proposes*: ``RoutingStore.reserve_reps``
re-checks each rep's live state in the same statement that reserves it and moves on to the next
rep in the router's order. So a snapshot may err in two ways:

- it shows a rep as free who is not any more (busy, away, reserved by another lead or daemon):
  harmless, the reservation skips them;
- it hides a rep who became free: that could make a lead wait while someone is free. Every rep
  that becomes free in the database is announced by the ``reps_notify_free`` trigger with its
  id (``rep:<id>`` on ``dialer_pipeline``, migration 0008); :meth:`rep_freed` marks them free
  in the snapshot at once, also when the announcement overtakes a read in flight.

What this daemon does itself is applied at once too (:meth:`reserved`, :meth:`answered`), so
leads routed from one snapshot do not all reach for the same reps first, and a rep's capacity
count does not lag behind its own answers. A decision that would leave a lead waiting is taken
again on a fresh read (the pipeline asks :meth:`snapshot` with ``fresh=True``), and without a
working listener there are no announcements, so the pipeline asks for a fresh read for every
lead until it listens again. Ordering hints other daemons change (``last_assigned_at``,
counters) are at most ``max_age_s`` old: the same race two daemons always had between reading
and reserving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from dialer.domain import RepStatus
from dialer.routing.availability import RepState
from dialer.store.routing import CapacityLimits, RoutingStore

__all__ = ["DEFAULT_MAX_AGE_S", "RepRoster", "RosterSnapshot"]

#: How long one read of the reps serves the decisions after it (``[daemon] rep_snapshot_s``).
DEFAULT_MAX_AGE_S: Final = 0.25


@dataclass(slots=True)
class RosterSnapshot:
    """One read of the active reps, patched since with what is known to have changed."""

    #: Live state by rep id, as ``Router.decide`` takes it.
    states: dict[str, RepState]
    #: When each rep's status last changed (``[retry]``: who came back since a lead waited).
    status_changed_at: dict[str, datetime]
    #: Loop time of the read.
    read_at: float


class RepRoster:
    """One shared, patched snapshot of the reps for routing (module docstring)."""

    def __init__(
        self,
        store: RoutingStore,
        limits: Mapping[str, CapacityLimits],
        *,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        self._limits = dict(limits)
        self.max_age_s = max_age_s
        self._clock = clock
        self._current: RosterSnapshot | None = None
        #: Bumped by :meth:`invalidate`: a read begun before is not kept as the snapshot.
        self._generation = 0
        self._reading: asyncio.Task[RosterSnapshot] | None = None
        self._reads_in_flight = 0
        #: Reps announced free while a read is in flight: re-applied on top of its result,
        #: which may have been taken before they were freed.
        self._freed_while_reading: set[str] = set()
        #: Reads taken (for tests and the metrics of a benchmark run).
        self.reads = 0

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def replace_limits(self, limits: Mapping[str, CapacityLimits]) -> None:
        """A config reload: new capacity limits (and maybe new reps); the next decision reads
        afresh."""
        self._limits = dict(limits)
        self.invalidate()

    def invalidate(self) -> None:
        """Forget the snapshot: the next :meth:`snapshot` reads the database (a read already
        in flight serves the callers waiting for it, but is not kept)."""
        self._current = None
        self._reading = None
        self._generation += 1

    async def snapshot(self, at: datetime, *, fresh: bool = False) -> RosterSnapshot:
        """The reps as routing reads them at ``at``: the current snapshot while it is younger
        than ``max_age_s``, else (or with ``fresh``) a new read. Concurrent callers share one
        read; a ``fresh`` caller never gets a read that started before it asked."""
        current = self._current
        if (
            not fresh
            and current is not None
            and self.max_age_s > 0
            and self._now() - current.read_at < self.max_age_s
        ):
            return current
        reading = self._reading
        if reading is None or fresh:
            # A task of its own: a caller cancelled while waiting does not cancel the read the
            # others are waiting for.
            reading = asyncio.get_running_loop().create_task(self._read(at), name="rep-roster")
            self._reading = reading
        return await asyncio.shield(reading)

    async def _read(self, at: datetime) -> RosterSnapshot:
        self._reads_in_flight += 1
        generation = self._generation
        started = self._now()
        try:
            records = await self._store.routing_reps(self._limits, at=at)
            snapshot = RosterSnapshot(
                states={record.id: record.state for record in records},
                status_changed_at={record.id: record.status_changed_at for record in records},
                read_at=started,
            )
            for rep_id in self._freed_while_reading:
                _mark_free(snapshot, rep_id)
        finally:
            self._reads_in_flight -= 1
            if self._reading is asyncio.current_task():
                self._reading = None
            if not self._reads_in_flight:
                self._freed_while_reading = set()
        self.reads += 1
        if generation == self._generation and (
            self._current is None or self._current.read_at <= started
        ):
            self._current = snapshot
        return snapshot

    def rep_freed(self, rep_id: str) -> None:
        """The database announced ``rep_id`` available and unreserved."""
        if self._current is not None:
            _mark_free(self._current, rep_id)
        if self._reads_in_flight:
            self._freed_while_reading.add(rep_id)

    def reserved(self, lead_id: str, rep_ids: list[str], until: datetime) -> None:
        """This daemon reserved ``rep_ids`` for ``lead_id`` until ``until``."""
        current = self._current
        if current is None:
            return
        for rep_id in rep_ids:
            state = current.states.get(rep_id)
            if state is not None:
                current.states[rep_id] = replace(state, reserved_by=lead_id, reserved_until=until)

    def answered(self, rep_id: str, at: datetime) -> None:
        """``rep_id`` answered and took a lead at ``at``: busy, and one more lead assigned."""
        current = self._current
        if current is None:
            return
        state = current.states.get(rep_id)
        if state is not None:
            current.states[rep_id] = replace(
                state,
                status=RepStatus.BUSY,
                last_assigned_at=at
                if state.last_assigned_at is None
                else max(state.last_assigned_at, at),
                leads_last_hour=state.leads_last_hour + 1,
                leads_today=state.leads_today + 1,
                calls_today=state.calls_today + 1,
            )
            current.status_changed_at[rep_id] = at


def _mark_free(snapshot: RosterSnapshot, rep_id: str) -> None:
    state = snapshot.states.get(rep_id)
    if state is None:
        # Not active when read (a config reload adds reps; invalidate() covers it).
        return
    if state.status is not RepStatus.AVAILABLE or state.reserved_by is not None:
        snapshot.states[rep_id] = replace(
            state, status=RepStatus.AVAILABLE, reserved_by=None, reserved_until=None
        )
