"""Live pages: the rep console (screen pop over SSE) and the manager dashboard.

Wiring (composition root)::

    from dialer.web import pages as web_pages, web_ctx
    app.router.add_routes(web_pages.routes)
    app.cleanup_ctx.append(web_ctx)          # before pipeline_ctx: the hub must exist first

The pipeline feeds the pages through :func:`publish_call_event` (one call per
:class:`~dialer.calls.CallEvent`, synchronous, never blocks) or :func:`publish` for anything
else (a lead's status changed). A rep's console receives only its own rep's events
(:mod:`dialer.web.events`); pages never contain a token (:mod:`dialer.web.auth`).

Several daemons on one database: a rep's browser may be connected to any of them, so the hub
is relayed to the other daemons' hubs over PostgreSQL ``LISTEN``/``NOTIFY``
(:mod:`dialer.web.relay`, started by :func:`web_ctx` when the app has a database URL and
``[daemon] relay_live_events`` is on).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, Protocol, TypeVar

from aiohttp import web

from dialer.api.keys import CONFIG_KEY, DATABASE_URL_KEY, STORE_KEY
from dialer.calls import CallEvent, CallEventKind, EventCallback
from dialer.calls.controller import EventBatchCallback
from dialer.config import CRM_URL_ENV, Config
from dialer.domain import Lead, LeadContext, RingPlan
from dialer.domain import optional_utc_timestamp as _iso
from dialer.logs import get_logger
from dialer.store.console import ConsoleStore
from dialer.store.live import LiveChannel
from dialer.web.auth import console_link, resolve_secret
from dialer.web.events import EventHub, LiveEvent
from dialer.web.relay import DeclineHandler, LiveRelay, RelaySettings

__all__ = [
    "CONSOLE_SETTINGS_KEY",
    "CRM_URL_ENV",
    "DECLINE_HANDLER_KEY",
    "LIVE_RELAY_KEY",
    "RELAY_SETTINGS_KEY",
    "WEB_HUB_KEY",
    "ConsoleSettings",
    "DeclineHandler",
    "EventHub",
    "LiveCalls",
    "LiveEvent",
    "console_link",
    "console_settings_for",
    "lead_card",
    "publish",
    "publish_call_event",
    "web_ctx",
]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSettings:
    """Settings of the live pages; every default is what the daemon uses."""

    #: Key signing console links and page sessions (:func:`dialer.web.auth.resolve_secret`).
    secret: bytes
    #: CRM link template for a lead's card ("" for none): ``[api] crm_url`` or
    #: :data:`~dialer.config.CRM_URL_ENV`.
    crm_url: str = ""
    #: Seconds between SSE heartbeat comments (keeps proxies from closing idle streams).
    heartbeat_s: float = 15.0
    #: What ``EventSource`` waits before reconnecting (SSE ``retry:``), in milliseconds.
    retry_ms: int = 1000
    #: Longest one SSE response lasts; the browser then reconnects (bounds every stream).
    max_stream_s: float = 3600.0
    #: The dashboard's clock (tests inject one to move SLA colours).
    clock: Callable[[], datetime] = field(default=_utc_now)


def console_settings_for(
    config: Config, env: Mapping[str, str] = os.environ, **overrides: Any
) -> ConsoleSettings:
    """Settings from the configuration (``[api] crm_url``, already overridden by
    ``DIALER_CRM_URL`` when the config was parsed), the environment (``DIALER_CONSOLE_SECRET``)
    and ``[api] tokens``; keyword arguments override any field."""
    values: dict[str, Any] = {
        "secret": resolve_secret(api_tokens=config.api.tokens, env=env),
        "crm_url": config.api.crm_url,
    }
    values.update(overrides)
    return ConsoleSettings(**values)


#: The live event hub of this daemon.
WEB_HUB_KEY = web.AppKey("web_hub", EventHub)
#: Settings of the live pages.
CONSOLE_SETTINGS_KEY = web.AppKey("console_settings", ConsoleSettings)
#: Cancels one rep's leg when the rep presses "decline" (absent: the decline is recorded only).
DECLINE_HANDLER_KEY: web.AppKey[DeclineHandler] = web.AppKey("decline_handler")
#: The relay joining this daemon's hub to the other daemons' (set by :func:`web_ctx`; absent
#: without a database URL or with ``[daemon] relay_live_events = false``).
LIVE_RELAY_KEY = web.AppKey("live_relay", LiveRelay)
#: How the relay batches and retries (absent: the defaults; tests set it).
RELAY_SETTINGS_KEY = web.AppKey("relay_settings", RelaySettings)


async def web_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start-up context: the event hub and page settings (kept when already set, e.g. by
    tests), and the hub's relay to the other daemons (:data:`LIVE_RELAY_KEY`). The hub is
    closed at shutdown *before* in-flight requests are awaited, so open SSE streams end at
    once instead of holding the drain for ``drain_timeout_s``; the relay stops after the
    contexts started later (the pipeline), so their last events still reach the others."""
    hub = app.get(WEB_HUB_KEY)
    if hub is None:
        hub = EventHub()
        app[WEB_HUB_KEY] = hub
    if CONSOLE_SETTINGS_KEY not in app:
        app[CONSOLE_SETTINGS_KEY] = console_settings_for(app[CONFIG_KEY])

    async def close_streams(_app: web.Application) -> None:
        hub.close()

    app.on_shutdown.append(close_streams)
    # The relay lives inside the hub's lifetime (started after it, stopped before it), so it
    # is started here rather than by a cleanup_ctx of its own.
    relay = await _start_relay(app, hub)
    try:
        yield
    finally:
        if relay is not None:
            await relay.stop()
        hub.close()


async def _start_relay(app: web.Application, hub: EventHub) -> LiveRelay | None:
    """Start relaying ``hub`` to the other daemons on the app's database (None: off)."""
    dsn = app.get(DATABASE_URL_KEY)
    if not dsn or not app[CONFIG_KEY].daemon.relay_live_events:
        return None
    relay = LiveRelay(hub, LiveChannel(dsn), settings=app.get(RELAY_SETTINGS_KEY))
    relay.decline_handler = lambda: app.get(DECLINE_HANDLER_KEY)
    await relay.start()
    app[LIVE_RELAY_KEY] = relay
    return relay


def crm_link(template: str, lead: Lead) -> str | None:
    """The lead's CRM link from ``template`` (None without a template or a needed value)."""
    if not template:
        return None
    values = {
        "lead_id": lead.id,
        "external_id": lead.external_id or "",
        "phone": lead.phone,
        "email": lead.email or "",
    }
    try:
        link = template.format(**values)
    except (KeyError, IndexError, ValueError):
        return None
    return link if link.startswith(("https://", "http://")) else None


def lead_card(lead: Lead, *, crm_url: str = "", previous_attempts: int = 0) -> dict[str, Any]:
    """What a rep's console card shows about ``lead`` (JSON-ready)."""
    return {
        "id": lead.id,
        "name": lead.name,
        "company": lead.company,
        "phone": lead.phone,
        "email": lead.email,
        "source": lead.source,
        "intent": lead.intent.value if lead.intent is not None else None,
        "fields": {str(key): value for key, value in dict(lead.fields).items()},
        "status": lead.status.value,
        "submitted_at": _iso(lead.clock_start),
        "previous_attempts": previous_attempts,
        "crm_url": crm_link(crm_url, lead),
    }


#: Call events shown on the winning rep's console (they carry no rep id themselves).
_WINNER_KINDS: Final = {
    CallEventKind.PROSPECT_INVITED: "prospect_dialled",
    CallEventKind.PROSPECT_RINGING: "prospect_ringing",
    CallEventKind.PROSPECT_ANSWERED: "prospect_answered",
    CallEventKind.PROSPECT_LEG_ENDED: "prospect_ended",
    CallEventKind.BRIDGED: "connected",
    CallEventKind.CALL_ENDED: "call_ended",
}

#: Call events of one rep's own leg.
_REP_KINDS: Final = {
    CallEventKind.REP_INVITED: "ringing",
    CallEventKind.REP_RINGING: "ringing",
    CallEventKind.REP_ANSWERED: "answered",
    CallEventKind.REP_LEG_ENDED: "leg_ended",
}


def _settings(app: web.Application) -> ConsoleSettings | None:
    return app.get(CONSOLE_SETTINGS_KEY)


def publish(app: web.Application, event: LiveEvent) -> LiveEvent | None:
    """Publish ``event`` on the app's hub (None when the live pages are not installed)."""
    hub = app.get(WEB_HUB_KEY)
    return hub.publish(event) if hub is not None else None


def publish_call_event(
    app: web.Application,
    lead: Lead,
    call_event: CallEvent,
    *,
    winner_rep_id: str | None = None,
    previous_attempts: int = 0,
) -> LiveEvent | None:
    """Show one call event on the live pages (synchronous, never blocks, never raises for a
    missing hub).

    ``rep_invited``/``rep_ringing`` pop the lead's card on that rep's console; ``rep_answered``,
    ``rep_leg_ended`` update or close it; prospect events, ``bridged`` and ``call_ended`` go to
    the winning rep (``winner_rep_id``, else the rep who answered, remembered by the hub) so the
    console can ask for a disposition. Every event also reaches the dashboard.
    """
    hub = app.get(WEB_HUB_KEY)
    if hub is None:
        return None
    settings = _settings(app)
    crm_url = settings.crm_url if settings is not None else ""
    data: dict[str, Any] = {
        "call_event": call_event.kind.value,
        **call_event.timeline_data(),
        "at": _iso(call_event.wall_at),
    }
    kind = _REP_KINDS.get(call_event.kind)
    rep_id = call_event.rep_id
    if kind is None:
        kind = _WINNER_KINDS.get(call_event.kind, call_event.kind.value)
        rep_id = winner_rep_id or hub.winner_of(lead.id)
    if kind in ("ringing", "answered"):
        data["lead"] = lead_card(lead, crm_url=crm_url, previous_attempts=previous_attempts)
        data["state"] = "calling" if call_event.kind is CallEventKind.REP_INVITED else kind
    return hub.publish(LiveEvent(kind=kind, rep_id=rep_id, lead_id=lead.id, data=data))


_log = get_logger("dialer.web")
_Handle_co = TypeVar("_Handle_co", covariant=True)


class CallStarterLike(Protocol[_Handle_co]):
    """What :class:`LiveCalls` wraps: the call layer's ``start_call``."""

    def start_call(
        self,
        plan: RingPlan,
        *,
        on_event: EventCallback | None = None,
        on_events: EventBatchCallback | None = None,
    ) -> _Handle_co: ...


class LiveCalls(Generic[_Handle_co]):
    """The call layer, with every call event also shown on the live pages.

    Give it to the pipeline instead of the bare controller
    (``calls=LiveCalls(app, app[CALL_CONTROLLER_KEY])``): each event reaches the hub first
    (the rep's card pops before the timeline write), then the pipeline's own callback; with
    ``on_events`` every event of a batch reaches the hub, then the batch goes on whole. The
    lead's card data is read once per call from the store (falling back to the ring plan's
    screen-pop context when the store cannot answer).
    """

    def __init__(self, app: web.Application, calls: CallStarterLike[_Handle_co]) -> None:
        self._app = app
        self._calls = calls

    def start_call(
        self,
        plan: RingPlan,
        *,
        on_event: EventCallback | None = None,
        on_events: EventBatchCallback | None = None,
    ) -> _Handle_co:
        """Start the call like the wrapped layer does, teeing its events to the hub."""
        if on_event is not None and on_events is not None:
            raise ValueError("give on_event or on_events, not both")
        app = self._app
        context = plan.lead
        found: list[tuple[Lead, int]] = []

        async def publish(events: Sequence[CallEvent]) -> None:
            if not found:
                found.append(await _lead_for(app, context))
            lead, previous = found[0]
            for event in events:
                try:
                    publish_call_event(app, lead, event, previous_attempts=previous)
                except Exception:  # the pages must never break a call
                    _log.exception("live event failed", lead_id=context.lead_id)

        async def tee(event: CallEvent) -> None:
            await publish((event,))
            if on_event is not None:
                result = on_event(event)
                if inspect.isawaitable(result):
                    await result

        async def tee_batch(events: Sequence[CallEvent]) -> None:
            await publish(events)
            if on_events is not None:
                result = on_events(events)
                if inspect.isawaitable(result):
                    await result

        if on_events is not None:
            return self._calls.start_call(plan, on_events=tee_batch)
        return self._calls.start_call(plan, on_event=tee)


async def _lead_for(app: web.Application, context: LeadContext) -> tuple[Lead, int]:
    """The lead of a ring plan and its previous attempts, for the card (one or two queries)."""
    store = app.get(STORE_KEY)
    if store is not None:
        try:
            lead = await store.get_lead(context.lead_id)
            if lead is not None:
                previous = await ConsoleStore(store.pool).previous_attempts(
                    lead.id, lead.phone, lead.received_at
                )
                return lead, previous
        except Exception:  # database trouble: show what the ring plan knows
            _log.warning("lead lookup failed for the live pages", lead_id=context.lead_id)
    fallback = Lead(
        id=context.lead_id,
        phone=context.phone,
        name=context.name,
        company=context.company,
        source=context.source,
        received_at=datetime.now(UTC),
    )
    return fallback, 0
