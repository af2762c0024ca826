"""An in-process pub/sub hub for the live pages (rep console, manager dashboard).

The pipeline publishes a :class:`LiveEvent` whenever something a page shows changes (a rep's
phone starts ringing, a leg ends, a lead changes status, a rep changes presence). Each open
page holds one :class:`Subscription`:

- a rep console subscribes with its rep id and receives **only** events whose ``rep_id`` is
  that rep (an event without a rep id never reaches a console), so a console can never see
  another rep's leads;
- the dashboard subscribes with ``dashboard=True`` and receives every event.

Publishing never blocks and never awaits: each subscriber has a bounded buffer; a subscriber
whose buffer is full is too slow (a stalled TCP connection) and is dropped. Its page's
``EventSource`` reconnects, and the snapshot sent on connect brings it up to date.

Across daemons: a hub may have a *relay* (:meth:`EventHub.set_relay`, installed by
:mod:`dialer.web.relay`) that is handed every event published here, and that publishes the
events of the other daemons sharing the database back on this hub with ``relayed=True`` (so
they are not sent out again). Relayed events take the same path as local ones: the same rep
isolation, the same console snapshots, ids of this hub.

Event ids are ``<boot>-<seq>``: ``boot`` is random per hub, so after a daemon restart a
``Last-Event-ID`` from the previous run is recognised as stale (replay impossible, send a
snapshot) instead of being confused with a new event of the same number.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

__all__ = [
    "DEFAULT_BUFFER",
    "DEFAULT_HISTORY",
    "EventHub",
    "LiveEvent",
    "Subscription",
]

#: Events a subscriber may have waiting before it counts as too slow and is dropped.
DEFAULT_BUFFER: Final = 256
#: Recent events kept for ``Last-Event-ID`` replay.
DEFAULT_HISTORY: Final = 512
#: Ringing cards remembered per rep for the snapshot a console gets on (re)connect.
_MAX_CARDS_PER_REP: Final = 20
#: Calls whose winning rep is remembered at once (bounds memory if call_ended never comes).
_MAX_WINNERS: Final = 10_000

#: Event kinds that put a card on a rep's console, and those that take it off.
CARD_OPEN_KINDS: Final = frozenset({"ringing", "answered"})
CARD_CLOSE_KINDS: Final = frozenset({"leg_ended", "call_ended", "declined", "disposition"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveEvent:
    """One change a live page shows.

    ``kind``: ``ringing`` (the rep's phone rings: the card pops), ``answered``, ``connected``,
    ``leg_ended``, ``call_ended``, ``declined``, ``disposition``, ``lead`` (a lead changed,
    dashboard only when ``rep_id`` is None), ``rep_status``. ``data`` is JSON-ready.
    """

    kind: str
    #: The rep this concerns; None for events only the dashboard may see.
    rep_id: str | None = None
    lead_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    #: Assigned by :meth:`EventHub.publish` (``<boot>-<seq>``); empty before publishing.
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        """The SSE ``data:`` payload."""
        return {
            "id": self.id,
            "kind": self.kind,
            "rep_id": self.rep_id,
            "lead_id": self.lead_id,
            "data": dict(self.data),
        }


class Subscription:
    """One page's view of the hub: a bounded buffer of the events it may see.

    Use :meth:`next` (with a timeout, so the caller can send heartbeats) until
    :attr:`closed`. Always :meth:`close` it (``with hub.subscribe(...) as sub``).
    """

    def __init__(self, hub: EventHub, *, rep_id: str | None, dashboard: bool, buffer: int) -> None:
        if rep_id is None and not dashboard:
            raise ValueError("a subscription needs a rep id or dashboard=True")
        self._hub = hub
        self.rep_id = rep_id
        self.dashboard = dashboard
        self._buffer = buffer
        self._queue: collections.deque[LiveEvent] = collections.deque()
        self._wakeup = asyncio.Event()
        #: True once closed by the page, by the hub shutting down, or because it was too slow.
        self.closed = False
        #: True when the hub dropped this subscriber for falling behind.
        self.dropped = False

    def wants(self, event: LiveEvent) -> bool:
        """Whether this subscriber may see ``event`` (the rep-isolation rule)."""
        if self.dashboard:
            return True
        return event.rep_id is not None and event.rep_id == self.rep_id

    def _offer(self, event: LiveEvent) -> None:
        if self.closed or not self.wants(event):
            return
        if len(self._queue) >= self._buffer:
            self.dropped = True
            self.close()
            return
        self._queue.append(event)
        self._wakeup.set()

    async def next(self, wait_s: float) -> LiveEvent | None:
        """The next event, or None after ``wait_s`` seconds without one (or once closed)."""
        if not self._queue and not self.closed:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait_s)
            except TimeoutError:
                return None
        if self._queue:
            return self._queue.popleft()
        return None

    @property
    def pending(self) -> int:
        """Events buffered and not yet taken."""
        return len(self._queue)

    def close(self) -> None:
        """Stop receiving (idempotent); a waiting :meth:`next` returns None."""
        if self.closed:
            return
        self.closed = True
        self._wakeup.set()
        self._hub._forget(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventHub:
    """Fan-out of :class:`LiveEvent` to the open pages of this daemon (module docstring)."""

    def __init__(self, *, buffer: int = DEFAULT_BUFFER, history: int = DEFAULT_HISTORY) -> None:
        if buffer < 1 or history < 0:
            raise ValueError("buffer must be >= 1 and history >= 0")
        #: Random per hub: ids from a previous daemon run never match this one's.
        self.boot = secrets.token_hex(4)
        self._seq = 0
        self._buffer = buffer
        self._history: collections.deque[LiveEvent] = collections.deque(maxlen=history)
        self._subscribers: set[Subscription] = set()
        # rep id -> lead id -> the latest card-opening event (for console snapshots).
        self._cards: dict[str, dict[str, LiveEvent]] = {}
        # lead id -> the rep who answered for it, while its call lasts.
        self._winners: dict[str, str] = {}
        self._relay: Callable[[LiveEvent], None] | None = None
        self.closed = False

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions."""
        return len(self._subscribers)

    def set_relay(self, relay: Callable[[LiveEvent], None] | None) -> None:
        """Hand every event published from now on (except relayed ones) to ``relay`` too,
        which must not block or raise (:meth:`dialer.web.relay.LiveRelay.offer`); None
        removes it."""
        self._relay = relay

    def publish(self, event: LiveEvent, *, relayed: bool = False) -> LiveEvent:
        """Give ``event`` an id and deliver it to every subscriber allowed to see it.

        Never blocks: a subscriber that cannot keep up is dropped. Returns the event as sent.
        ``relayed``: the event comes from another daemon, so it is not relayed again.
        """
        self._seq += 1
        sent = replace(event, id=f"{self.boot}-{self._seq}")
        self._history.append(sent)
        self._remember_card(sent)
        for subscriber in list(self._subscribers):
            subscriber._offer(sent)
        if self._relay is not None and not relayed:
            self._relay(sent)
        return sent

    def subscribe(
        self, *, rep_id: str | None = None, dashboard: bool = False, buffer: int | None = None
    ) -> Subscription:
        """A new subscription for one rep's console (``rep_id``) or the dashboard."""
        subscription = Subscription(
            self, rep_id=rep_id, dashboard=dashboard, buffer=buffer or self._buffer
        )
        if self.closed:
            subscription.closed = True
            return subscription
        self._subscribers.add(subscription)
        return subscription

    def replay_after(
        self, last_event_id: str, subscription: Subscription
    ) -> list[LiveEvent] | None:
        """Events after ``last_event_id`` that ``subscription`` may see, oldest first.

        None when they cannot be replayed (an id of another daemon run, or older than the
        history kept): the caller sends a snapshot instead.
        """
        boot, _, seq_text = last_event_id.partition("-")
        if boot != self.boot or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        if seq > self._seq:
            return None
        oldest = self._seq - len(self._history) + 1
        if seq + 1 < oldest:
            return None
        return [
            event
            for event in self._history
            if int(event.id.rpartition("-")[2]) > seq and subscription.wants(event)
        ]

    def open_cards(self, rep_id: str) -> list[LiveEvent]:
        """The cards currently open on ``rep_id``'s console (ringing or on a call), oldest first."""
        return list(self._cards.get(rep_id, {}).values())

    def all_open_cards(self) -> Iterator[LiveEvent]:
        """Every open card of every rep (dashboard: who is ringing or on a call)."""
        for cards in self._cards.values():
            yield from cards.values()

    def winner_of(self, lead_id: str) -> str | None:
        """The rep who answered for ``lead_id``'s current call (None: nobody yet, or over)."""
        return self._winners.get(lead_id)

    def _remember_card(self, event: LiveEvent) -> None:
        if event.rep_id is None or event.lead_id is None:
            return
        if event.kind == "answered":
            self._winners[event.lead_id] = event.rep_id
            while len(self._winners) > _MAX_WINNERS:
                self._winners.pop(next(iter(self._winners)))
        elif event.kind == "call_ended":
            self._winners.pop(event.lead_id, None)
        if event.kind in CARD_OPEN_KINDS:
            cards = self._cards.setdefault(event.rep_id, {})
            cards.pop(event.lead_id, None)
            cards[event.lead_id] = event
            while len(cards) > _MAX_CARDS_PER_REP:
                cards.pop(next(iter(cards)))
        elif event.kind in CARD_CLOSE_KINDS:
            cards = self._cards.get(event.rep_id, {})
            cards.pop(event.lead_id, None)
            if not cards:
                self._cards.pop(event.rep_id, None)

    def _forget(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """End every subscription (daemon shutdown: SSE handlers return at once)."""
        self.closed = True
        for subscriber in list(self._subscribers):
            subscriber.close()
