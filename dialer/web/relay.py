"""Live events across daemons: this daemon's hub relayed to and from the others.

Several daemons share one PostgreSQL (and sit behind one HTTP service), so the daemon holding
a rep's SSE stream is often not the one ringing that rep's phone. :class:`LiveRelay` joins
their hubs (:mod:`dialer.web.events`) over PostgreSQL ``LISTEN``/``NOTIFY`` on
:data:`~dialer.store.live.LIVE_CHANNEL` (the SQL is in :class:`dialer.store.live.LiveChannel`):

- every event published on this daemon's hub is handed to :meth:`LiveRelay.offer`, which only
  appends it to a bounded queue (publishing never awaits; past ``max_queued`` the oldest
  event is dropped and counted);
- one background task sends the queue every ``linger_s`` (20 ms; at once when
  ``batch_events`` are waiting) in ONE round trip: the events as JSON arrays, split into
  payloads under PostgreSQL's 8000-byte ``NOTIFY`` limit;
- every payload from another daemon is published on this hub (``relayed=True``, so it is not
  sent back), where rep isolation and console snapshots apply exactly as to local events. A
  daemon's own payloads, which PostgreSQL also delivers to it, are recognised by the random
  ``source`` id they start with and ignored.

A rep may also decline, on the daemon holding their console, a call another daemon placed:
:meth:`LiveRelay.request_decline` sends a ``decline_request`` control item the same way; the
daemon that has the call cancels that rep's leg (its console decline handler) and the leg's end
comes back as an ordinary live event. Control items are never published on a hub.

Wire format of one payload::

    {"src": "<source>", "seq": <n>, "events": [{"kind", "rep_id", "lead_id", "data"}, ...]}

An event too large for one payload (a lead with big custom ``fields``) is sent with as many of
the card's ``fields`` as fit (``data.lead.fields_trimmed: true``); if it still does not fit it
is skipped with a warning. Live events are a view, not a record (the timeline is in the
database), so the relay is best-effort: while the database is unreachable the relay retries
with a bounded backoff, logs one warning per outage, keeps the newest ``max_queued`` events
for when it is back, and never blocks or stops the daemon.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from dialer.logs import get_logger
from dialer.store import StoreUnavailableError
from dialer.store.live import MAX_PAYLOAD_BYTES, LiveChannel
from dialer.web.events import EventHub, LiveEvent

__all__ = ["DECLINE_REQUEST_KIND", "DeclineHandler", "LiveRelay", "RelaySettings"]

_log = get_logger("dialer.web.relay")

#: A control item: "cancel this rep's leg of this lead's call, if you have it".
DECLINE_REQUEST_KIND: Final = "decline_request"
#: Decline requests from other daemons being handled at once; more are dropped (logged).
_MAX_DECLINES_IN_FLIGHT: Final = 64

DeclineHandler = Callable[[str, str], Awaitable[bool]]
"""``(lead_id, rep_id) -> cancelled``: the daemon's console decline (``Pipeline.decline``),
True when it cancelled that rep's ringing leg."""

#: Room kept in a payload for its envelope (``{"src":…,"seq":…,"events":[…]}``).
_ENVELOPE_BYTES: Final = 96


@dataclass(frozen=True, slots=True, kw_only=True)
class RelaySettings:
    """How the relay batches and retries; every default is what the daemon uses."""

    #: How long the first queued event waits for others before the batch is sent.
    linger_s: float = 0.02
    #: Send at once, without lingering, when this many events are queued.
    batch_events: int = 128
    #: Events kept waiting at most; past it the oldest is dropped (and counted).
    max_queued: int = 2048
    #: Largest payload sent (UTF-8 bytes); PostgreSQL refuses 8000 and more.
    max_payload_bytes: int = 7500
    #: First wait before reconnecting (or resending) after a failure; doubles each time...
    retry_min_s: float = 0.5
    #: ...up to this.
    retry_max_s: float = 30.0
    #: While idle, how often the connection is checked (and re-opened if it was lost).
    check_s: float = 5.0

    def __post_init__(self) -> None:
        if not _ENVELOPE_BYTES * 2 <= self.max_payload_bytes <= MAX_PAYLOAD_BYTES:
            raise ValueError(f"max_payload_bytes must be in {_ENVELOPE_BYTES * 2}..7999")
        if self.batch_events < 1 or self.max_queued < 1:
            raise ValueError("batch_events and max_queued must be >= 1")


def _dumps(value: Any) -> str:
    # ASCII only: len() is the byte size, and no lone surrogate can break the encoding.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, default=str)


class LiveRelay:
    """Relays one hub's events to the other daemons and theirs to it (module docstring).

    Drivers: :meth:`offer` (the hub, synchronously, for each local event); the background
    task (batches, reconnection); :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self, hub: EventHub, channel: LiveChannel, *, settings: RelaySettings | None = None
    ) -> None:
        self.hub = hub
        self.channel = channel
        self.settings = settings or RelaySettings()
        #: Random per relay: marks this daemon's payloads, so they are not published twice.
        self.source = secrets.token_hex(8)
        self._own_prefix = f'{{"src":"{self.source}"'
        self._queue: collections.deque[LiveEvent] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._retry_s = self.settings.retry_min_s
        self._outage = False
        self._overflowing = False
        #: Events dropped because the queue was full.
        self.dropped = 0
        #: Events too large to relay even trimmed.
        self.skipped = 0
        #: Events lost because sending their batch failed.
        self.failed = 0
        #: Events sent, and events received from other daemons.
        self.sent = 0
        self.received = 0
        #: Outages seen (each logged once, with one warning).
        self.outages = 0
        #: Where another daemon's decline request goes: a callable giving this daemon's
        #: decline handler (looked up when a request arrives: the pipeline starts after the
        #: relay), or None when this daemon places no calls.
        self.decline_handler: Callable[[], DeclineHandler | None] | None = None
        self._declines: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        """Events waiting to be sent."""
        return len(self._queue)

    @property
    def connected(self) -> bool:
        """Whether the channel is up (this daemon hears the others)."""
        return self.channel.connected

    # ----------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Hook into the hub, try to connect once (a failure is retried in the background)
        and start the background task. Never raises for an unreachable database."""
        self.hub.set_relay(self.offer)
        await self._connect()
        self._task = asyncio.create_task(self._run(), name="live-relay")

    async def stop(self, *, flush_timeout_s: float = 1.0) -> None:
        """Unhook from the hub, send what is queued (for up to ``flush_timeout_s``: the last
        call events of a stopping daemon still reach the other dashboards) and disconnect."""
        self.hub.set_relay(None)
        for decline in list(self._declines):
            decline.cancel()
        if self._declines:
            await asyncio.gather(*self._declines, return_exceptions=True)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._queue and self.channel.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout_s):
                    await self._flush()
        await self.channel.close()

    # ----------------------------------------------------------------------- sending

    def offer(self, event: LiveEvent) -> None:
        """Queue a local event for the other daemons. Never blocks, never raises."""
        queue = self._queue
        if len(queue) >= self.settings.max_queued:
            queue.popleft()
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                _log.debug(
                    "live relay queue full; dropping the oldest events", dropped=self.dropped
                )
        queue.append(event)
        if len(queue) == 1 or len(queue) >= self.settings.batch_events:
            self._wake.set()

    def request_decline(self, lead_id: str, rep_id: str) -> None:
        """Ask the other daemons to cancel ``rep_id``'s leg of ``lead_id``'s call (the one
        that placed it does; the others have no such call). Never blocks."""
        self.offer(LiveEvent(kind=DECLINE_REQUEST_KIND, rep_id=rep_id, lead_id=lead_id))

    async def _run(self) -> None:
        while True:
            if not self.channel.connected and not await self._connect():
                await self._back_off()
                continue
            await self._wait_for_batch()
            if self._queue and self.channel.connected and not await self._flush():
                await self._back_off()

    async def _wait_for_batch(self) -> None:
        settings = self.settings
        if not self._queue:
            self._wake.clear()
            await self._wait(settings.check_s)
        if self._queue and len(self._queue) < settings.batch_events:
            # Linger, so a burst (a parallel ring: several reps' events) is one round trip.
            self._wake.clear()
            await self._wait(settings.linger_s)

    async def _wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()

    async def _flush(self) -> bool:
        events = list(self._queue)
        self._queue.clear()
        self._overflowing = False
        payloads = self._payloads(events)
        try:
            await self.channel.notify(payloads)
        except StoreUnavailableError as exc:
            self.failed += len(events)
            self._outage_begins(exc)
            return False
        except Exception:  # never let a bad event stop the relay
            self.failed += len(events)
            _log.exception("live relay could not send a batch", events=len(events))
            return False
        self.sent += len(events)
        self._outage_ends()
        return True

    def _payloads(self, events: list[LiveEvent]) -> list[str]:
        """``events`` as payloads of at most ``max_payload_bytes`` each, in order."""
        limit = self.settings.max_payload_bytes - _ENVELOPE_BYTES
        payloads: list[str] = []
        parts: list[str] = []
        size = 0
        for event in events:
            text = self._encode(event, limit)
            if text is None:
                continue
            if parts and size + len(text) + 1 > limit:
                payloads.append(self._envelope(parts))
                parts, size = [], 0
            parts.append(text)
            size += len(text) + 1
        if parts:
            payloads.append(self._envelope(parts))
        return payloads

    def _envelope(self, parts: list[str]) -> str:
        # The sequence number keeps payloads distinct: PostgreSQL folds identical payloads
        # sent in one transaction into one notification.
        self._seq += 1
        return f'{self._own_prefix},"seq":{self._seq},"events":[{",".join(parts)}]}}'

    def _encode(self, event: LiveEvent, limit: int) -> str | None:
        wire = event.to_json()
        del wire["id"]  # the receiving hub numbers the events it publishes
        text = _dumps(wire)
        if len(text) <= limit:
            return text
        trimmed = _trimmed(wire, limit)
        if trimmed is None:
            self.skipped += 1
            _log.warning(
                "live event too large to relay to other daemons; skipped",
                kind=event.kind,
                lead_id=event.lead_id,
                bytes=len(text),
            )
        return trimmed

    # ----------------------------------------------------------------------- receiving

    def _receive(self, payload: str) -> None:
        if payload.startswith(self._own_prefix):
            return  # our own batch, already published here
        try:
            message = json.loads(payload)
        except ValueError:
            _log.debug("live relay: unreadable payload ignored", size=len(payload))
            return
        if not isinstance(message, dict) or message.get("src") == self.source:
            return
        items = message.get("events")
        if not isinstance(items, list):
            return
        for item in items:
            event = _decode(item)
            if event is None:
                continue
            self.received += 1
            if event.kind == DECLINE_REQUEST_KIND:
                self._decline(event)
                continue
            try:
                self.hub.publish(event, relayed=True)
            except Exception:  # one bad event must not lose the rest of the batch
                _log.exception("live relay could not publish an event", kind=event.kind)

    def _decline(self, event: LiveEvent) -> None:
        """Hand another daemon's decline request to this daemon's decline handler."""
        handler = self.decline_handler() if self.decline_handler is not None else None
        if handler is None or event.lead_id is None or event.rep_id is None:
            return
        if len(self._declines) >= _MAX_DECLINES_IN_FLIGHT:
            _log.warning("live relay: too many decline requests at once; one dropped")
            return
        task = asyncio.get_running_loop().create_task(
            self._run_decline(handler, event.lead_id, event.rep_id), name="relayed-decline"
        )
        self._declines.add(task)
        task.add_done_callback(self._declines.discard)

    async def _run_decline(self, handler: DeclineHandler, lead_id: str, rep_id: str) -> None:
        try:
            if await handler(lead_id, rep_id):
                _log.info("declined for another daemon's console", lead_id=lead_id, rep=rep_id)
        except Exception:
            _log.exception("relayed decline failed", lead_id=lead_id, rep=rep_id)

    # ----------------------------------------------------------------------- connection

    async def _connect(self) -> bool:
        try:
            await self.channel.open(self._receive, self._wake.set)
        except StoreUnavailableError as exc:
            self._outage_begins(exc)
            return False
        self._retry_s = self.settings.retry_min_s
        self._outage_ends()
        return True

    async def _back_off(self) -> None:
        await asyncio.sleep(self._retry_s)
        self._retry_s = min(self._retry_s * 2, self.settings.retry_max_s)

    def _outage_begins(self, exc: Exception) -> None:
        if self._outage:
            _log.debug("live relay still cannot reach the database", error=str(exc))
            return
        self._outage = True
        self.outages += 1
        _log.warning(
            "live relay cannot reach the database; other daemons' live events are missed "
            "until it is back",
            error=str(exc),
        )

    def _outage_ends(self) -> None:
        if self._outage:
            self._outage = False
            _log.info("live relay reconnected", dropped=self.dropped, failed=self.failed)


def _trimmed(wire: dict[str, Any], limit: int) -> str | None:
    """``wire`` with as many of ``data.lead.fields`` as fit in ``limit`` (None: nothing
    else can be trimmed, or it still does not fit)."""
    data = wire["data"]
    lead = data.get("lead")
    if not isinstance(lead, dict) or not isinstance(lead.get("fields"), dict):
        return None
    kept: dict[str, Any] = {}
    slim = {**wire, "data": {**data, "lead": {**lead, "fields": kept, "fields_trimmed": True}}}
    room = limit - len(_dumps(slim))
    for key, value in lead["fields"].items():
        cost = len(_dumps({key: value}))  # "key":value, plus the braces for a comma
        if cost <= room:
            kept[key] = value
            room -= cost
    text = _dumps(slim)
    return text if len(text) <= limit else None


def _decode(item: object) -> LiveEvent | None:
    """One event of a payload, or None when it is not one."""
    if not isinstance(item, dict):
        return None
    kind, rep_id, lead_id, data = (item.get(k) for k in ("kind", "rep_id", "lead_id", "data"))
    if not isinstance(kind, str) or not kind or not isinstance(data, dict):
        return None
    if not (rep_id is None or isinstance(rep_id, str)):
        return None
    if not (lead_id is None or isinstance(lead_id, str)):
        return None
    return LiveEvent(kind=kind, rep_id=rep_id, lead_id=lead_id, data=data)
