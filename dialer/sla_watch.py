"""The SLA milestones of open leads, as data: which deadline comes next, which are due now.

Pure (no clock, no I/O, no asyncio), like the ``sip`` core: the driver asks
:meth:`SlaWatch.next_deadline` when to wake up, and at that moment calls
:meth:`SlaWatch.due` with its ``now``. Each lead has two milestones:

- ``at_risk`` at ``clock_start + at_risk_fraction * (due_at - clock_start)``;
- ``breached`` at ``due_at``.

A milestone is reported once. When both of a lead's milestones are due in the same call (the
daemon was stopped through the whole at-risk window), only ``breached`` is reported: warning
that a lead is at risk after it breached helps nobody. Re-watching a lead (its deadline
changed) replaces its milestones; :meth:`SlaWatch.unwatch` drops them (the prospect was
called: the SLA is met, or the lead is finished).

Implementation: a binary heap of ``(at, order, lead, milestone, generation)`` entries with
lazy deletion; a lead's generation changes when it is re-watched or dropped, so its stale
entries are skipped when they surface. The heap is rebuilt when stale entries outnumber live
ones, which bounds memory by twice the live milestones.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Milestone", "SlaDue", "SlaWatch", "at_risk_at"]


class Milestone(enum.StrEnum):
    """A point on a lead's SLA clock."""

    #: ``at_risk_fraction`` of the window has elapsed without a call.
    AT_RISK = "at_risk"
    #: The deadline passed without a call.
    BREACHED = "breached"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaDue:
    """A milestone that is due: what :meth:`SlaWatch.due` returns."""

    lead_id: str
    milestone: Milestone
    #: When it was due (not when it was noticed).
    at: datetime


def at_risk_at(clock_start: datetime, due_at: datetime, at_risk_fraction: float) -> datetime:
    """The moment a lead becomes at risk."""
    if not 0.0 <= at_risk_fraction <= 1.0:
        raise ValueError(f"at_risk_fraction must be within 0..1; got {at_risk_fraction}")
    return clock_start + (due_at - clock_start) * at_risk_fraction


_Entry = tuple[datetime, int, str, Milestone, int]


class SlaWatch:
    """The pending SLA milestones of the leads being watched."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._order = itertools.count()
        self._generations = itertools.count(1)
        #: lead -> its current generation; absent: not watched.
        self._current: dict[str, int] = {}
        #: lead -> milestones still pending (live heap entries).
        self._pending: dict[str, set[Milestone]] = {}
        self._live = 0

    def __len__(self) -> int:
        """Leads with at least one pending milestone."""
        return len(self._pending)

    def __contains__(self, lead_id: object) -> bool:
        return lead_id in self._pending

    def watch(
        self,
        lead_id: str,
        *,
        clock_start: datetime,
        due_at: datetime,
        at_risk_fraction: float,
        reached: Collection[Milestone] = (),
    ) -> None:
        """Watch (or re-watch) ``lead_id``; ``reached``: milestones already recorded.

        At start-up, the driver passes what the lead's timeline already holds, so a milestone
        handled before a restart is not handled again.
        """
        self.unwatch(lead_id)
        if due_at < clock_start:
            raise ValueError("due_at is before clock_start")
        if Milestone.BREACHED in reached:
            return  # nothing left to report
        generation = next(self._generations)
        pending: set[Milestone] = set()
        milestones = [(at_risk_at(clock_start, due_at, at_risk_fraction), Milestone.AT_RISK)]
        milestones.append((due_at, Milestone.BREACHED))
        for at, milestone in milestones:
            if milestone in reached:
                continue
            heapq.heappush(self._heap, (at, next(self._order), lead_id, milestone, generation))
            pending.add(milestone)
        self._current[lead_id] = generation
        self._pending[lead_id] = pending
        self._live += len(pending)

    def unwatch(self, lead_id: str) -> None:
        """Forget ``lead_id``'s pending milestones (no-op when not watched)."""
        pending = self._pending.pop(lead_id, None)
        self._current.pop(lead_id, None)
        if pending:
            self._live -= len(pending)
            self._maybe_compact()

    def next_deadline(self) -> datetime | None:
        """When the earliest pending milestone is due (None: nothing is watched)."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def due(self, now: datetime) -> list[SlaDue]:
        """Pop every milestone due at ``now``, earliest first (see the module docstring)."""
        popped: list[SlaDue] = []
        while True:
            self._drop_stale_top()
            if not self._heap or self._heap[0][0] > now:
                break
            at, _, lead_id, milestone, _ = heapq.heappop(self._heap)
            pending = self._pending[lead_id]
            pending.discard(milestone)
            self._live -= 1
            if not pending:
                del self._pending[lead_id]
                del self._current[lead_id]
            popped.append(SlaDue(lead_id=lead_id, milestone=milestone, at=at))
        breached = {item.lead_id for item in popped if item.milestone is Milestone.BREACHED}
        return [
            item
            for item in popped
            if item.milestone is Milestone.BREACHED or item.lead_id not in breached
        ]

    def _is_stale(self, entry: _Entry) -> bool:
        _, _, lead_id, milestone, generation = entry
        return self._current.get(lead_id) != generation or milestone not in self._pending.get(
            lead_id, ()
        )

    def _drop_stale_top(self) -> None:
        while self._heap and self._is_stale(self._heap[0]):
            heapq.heappop(self._heap)

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * self._live + 64:
            self._heap = [entry for entry in self._heap if not self._is_stale(entry)]
            heapq.heapify(self._heap)
