"""The rep console and the manager dashboard: HTML pages, their SSE streams and JSON.

Rep console (session from a signed link, :mod:`dialer.web.auth`):

- ``GET /console`` the page; ``GET /console?rep=<id>&sig=<hex>`` signs the rep in.
- ``GET /console/events`` SSE: a ``snapshot`` of the rep's open cards on every (re)connect,
  then the rep's own live events (``ringing`` pops a card). Heartbeat comments keep it open;
  ``retry:`` and ids (``Last-Event-ID`` replay) make ``EventSource`` reconnect by itself after
  a daemon restart, without a page reload.
- ``POST /console/status`` ``{"status": "available" | "away"}``.
- ``POST /console/decline`` ``{"lead_id"}``: cancel this rep's ringing leg (on the daemon
  that placed the call: forwarded through the live relay when it is another one).
- ``POST /console/disposition`` ``{"lead_id", "disposition", "notes"}``: stored on the lead (a
  ``disposition`` timeline event too) and queued, in the same transaction, as a
  ``lead.disposition`` webhook (dialer.notify outbox).

Manager dashboard (API token, exchanged for a session cookie):

- ``GET /dashboard`` the page; ``GET /dashboard?token=<API token>`` signs in.
- ``GET /dashboard/events`` SSE of every live event (the page refreshes its data on them).
- ``GET /dashboard/data`` JSON: open leads with SLA colour and deadline, the rep board, 7- and
  30-day trends. ``?source=&intent=&team=`` filter.
- ``GET /dashboard/leads/{id}`` JSON: one lead's full timeline (drill-down).

API: ``GET /v1/leads/{id}/disposition`` (bearer token, like every ``/v1/`` route).

Pages render no lead data and no token server-side; the scripts fill them from JSON with
``textContent`` only, so lead data can never inject markup.
"""

from __future__ import annotations

import contextlib
import html
import json
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from dialer.api.auth import token_matches
from dialer.api.errors import ApiError
from dialer.api.keys import ALLOW_ANONYMOUS_KEY, CONFIG_KEY, ROUTING_STORE_KEY, STORE_KEY
from dialer.api.pipeline import sla_view
from dialer.config import Config
from dialer.domain import RepStatus, SlaStatus
from dialer.domain import optional_utc_timestamp as _iso
from dialer.notify import enqueue_event
from dialer.notify.events import RepRef, event_id_for, lead_disposition
from dialer.sla import sla_status
from dialer.store.console import (
    MAX_NOTES_CHARS,
    ConsoleStore,
    DispositionKind,
    OpenLead,
    SlaTiers,
)
from dialer.store.pipeline import PipelineStore
from dialer.store.routing import RoutingStore
from dialer.web import (
    CONSOLE_SETTINGS_KEY,
    DECLINE_HANDLER_KEY,
    LIVE_RELAY_KEY,
    WEB_HUB_KEY,
    ConsoleSettings,
    lead_card,
)
from dialer.web.auth import (
    CONSOLE_COOKIE,
    DASHBOARD_COOKIE,
    dashboard_subject,
    issue_session,
    read_session,
    set_session_cookie,
    valid_rep_id,
    verify_console_signature,
)
from dialer.web.events import EventHub, LiveEvent, Subscription

__all__ = ["STATIC_PREFIX", "routes", "sla_colour"]

routes = web.RouteTableDef()

#: URL prefix of the pages' CSS and JavaScript.
STATIC_PREFIX: Final = "/web-static"
_PACKAGE_DIR: Final = Path(str(resources.files("dialer.web")))
routes.static(STATIC_PREFIX, _PACKAGE_DIR / "static", append_version=False)

#: Presence a rep may set from the console (the pipeline owns busy and wrap-up).
_CONSOLE_STATUSES: Final = frozenset({RepStatus.AVAILABLE, RepStatus.AWAY})

#: Colour of each SLA status on the dashboard (issue 11: green / yellow / red).
_COLOURS: Final = {
    SlaStatus.PENDING: "green",
    SlaStatus.AT_RISK: "yellow",
    SlaStatus.BREACHED: "red",
    SlaStatus.MET: "green",
}

#: Security headers of every page: nothing loads from anywhere but this daemon.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def sla_colour(status: SlaStatus) -> str:
    """The dashboard colour of an SLA status."""
    return _COLOURS[status]


# --------------------------------------------------------------------------- helpers


def _template(name: str) -> Template:
    text = (_PACKAGE_DIR / "templates" / name).read_text(encoding="utf-8")
    return Template(text)


def _page(name: str, status: int = 200, **values: str) -> web.Response:
    body = _template(name).substitute({key: html.escape(value) for key, value in values.items()})
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=_PAGE_HEADERS,
    )


def _signed_in_redirect(target: str) -> web.Response:
    # A page, not a 302: a SameSite=Strict cookie set while following a link from another
    # site (a mail client) would not be sent on the redirect; a same-site refresh sends it.
    return _page("signed_in.html", target=target)


def _settings(request: web.Request) -> ConsoleSettings:
    return request.app[CONSOLE_SETTINGS_KEY]


def _hub(request: web.Request) -> EventHub:
    return request.app[WEB_HUB_KEY]


def _config(request: web.Request) -> Config:
    return request.app[CONFIG_KEY]


def _rep_session(request: web.Request) -> str | None:
    rep_id = read_session(_settings(request).secret, request.cookies.get(CONSOLE_COOKIE))
    if rep_id is None or rep_id == dashboard_subject():
        return None
    if all(rep.id != rep_id for rep in _config(request).reps):
        return None  # removed from the config since the link was issued
    return rep_id


def _require_rep(request: web.Request) -> str:
    rep_id = _rep_session(request)
    if rep_id is None:
        raise ApiError(401, "unauthorized", "open your personal console link to sign in")
    _check_origin(request)
    return rep_id


def _dashboard_allowed(request: web.Request) -> bool:
    if request.app.get(ALLOW_ANONYMOUS_KEY, False):
        return True  # ``dialer demo``: the API itself needs no token either
    subject = read_session(_settings(request).secret, request.cookies.get(DASHBOARD_COOKIE))
    if subject == dashboard_subject():
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    return scheme.lower() == "bearer" and token_matches(
        presented.strip(), _config(request).api.tokens
    )


def _require_dashboard(request: web.Request) -> None:
    if not _dashboard_allowed(request):
        raise ApiError(401, "unauthorized", "sign in to the dashboard with the API token")


def _check_origin(request: web.Request) -> None:
    """Refuse state-changing requests from other origins (SameSite=Strict is the first line)."""
    if request.method in ("GET", "HEAD"):
        return
    origin = request.headers.get("Origin")
    # Host only: behind a TLS-terminating proxy the scheme seen here is http.
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise ApiError(403, "forbidden", "cross-origin request refused")


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_body", "expected a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "expected a JSON object")
    return body


def _string_field(body: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ApiError(422, "invalid_field", f"{name}: expected a string", field=name)
    return value


def _console_store(request: web.Request) -> ConsoleStore:
    return ConsoleStore(request.app[STORE_KEY].pool)


def _routing_store(request: web.Request) -> RoutingStore:
    found = request.app.get(ROUTING_STORE_KEY)
    return found if found is not None else RoutingStore(request.app[STORE_KEY].pool)


def _tiers(config: Config) -> SlaTiers:
    sla = config.sla
    return SlaTiers(high=sla.high, medium=sla.medium, low=sla.low, default=sla.default)


# --------------------------------------------------------------------------- SSE


async def _stream(
    request: web.Request,
    subscription: Subscription,
    snapshot: dict[str, Any],
) -> web.StreamResponse:
    """Serve ``subscription`` as ``text/event-stream`` until the page goes, the hub closes,
    the subscriber falls behind, or ``max_stream_s`` passes (the browser reconnects)."""
    settings = _settings(request)
    hub = _hub(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    with subscription:
        try:
            await response.write(f"retry: {settings.retry_ms}\n\n".encode())
            last_id = request.headers.get("Last-Event-ID", "")
            replay = hub.replay_after(last_id, subscription) if last_id else None
            if replay is None:
                # Fresh page, or a page from before a restart: send the whole current state.
                await response.write(_frame("snapshot", f"{hub.boot}-snapshot", snapshot))
            else:
                for missed in replay:
                    await response.write(_event_frame(missed))
            deadline = time.monotonic() + settings.max_stream_s
            while not subscription.closed and time.monotonic() < deadline:
                event = await subscription.next(settings.heartbeat_s)
                if event is None:
                    await response.write(b": heartbeat\n\n")
                    continue
                await response.write(_event_frame(event))
        except ConnectionResetError:
            pass  # the page went away
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response


def _frame(kind: str, event_id: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n".encode()


def _event_frame(event: LiveEvent) -> bytes:
    return _frame("live", event.id, event.to_json())


# --------------------------------------------------------------------------- rep console


@routes.get("/console")
async def console_page(request: web.Request) -> web.Response:
    """The rep's console; with ``rep`` and ``sig`` it signs the rep in first."""
    settings = _settings(request)
    rep_param = request.query.get("rep")
    sig = request.query.get("sig")
    if rep_param is not None or sig is not None:
        known = any(rep.id == rep_param for rep in _config(request).reps)
        if (
            rep_param is None
            or sig is None
            or not valid_rep_id(rep_param)
            or not known
            or not verify_console_signature(settings.secret, rep_param, sig)
        ):
            return _page("signin_failed.html", status=403, what="console link")
        response = _signed_in_redirect("/console")
        set_session_cookie(
            response,
            request,
            CONSOLE_COOKIE,
            issue_session(settings.secret, rep_param),
            "/console",
        )
        return response
    rep_id = _rep_session(request)
    if rep_id is None:
        return _page("signin_failed.html", status=401, what="console link")
    rep_name = next((rep.name for rep in _config(request).reps if rep.id == rep_id), rep_id)
    return _page("console.html", rep_id=rep_id, rep_name=rep_name)


@routes.get("/console/events")
async def console_events(request: web.Request) -> web.StreamResponse:
    """SSE: this rep's cards and live events only."""
    rep_id = _require_rep(request)
    hub = _hub(request)
    subscription = hub.subscribe(rep_id=rep_id)
    cards = [event.to_json() for event in hub.open_cards(rep_id)]
    status = None
    with contextlib.suppress(Exception):
        record = await _routing_store(request).get_rep(rep_id)
        status = record.status.value if record is not None else None
    return await _stream(request, subscription, {"cards": cards, "rep_status": status})


@routes.post("/console/status")
async def console_status(request: web.Request) -> web.Response:
    """Set the signed-in rep's presence to ``available`` or ``away``."""
    rep_id = _require_rep(request)
    body = await _json_object(request)
    text = _string_field(body, "status")
    try:
        status = RepStatus(text)
    except ValueError:
        status = None
    if status not in _CONSOLE_STATUSES or status is None:
        raise ApiError(422, "invalid_field", "status must be available or away", field="status")
    record = await _routing_store(request).set_status(rep_id, status)
    if record is None:
        raise ApiError(404, "not_found", "rep not found")
    _hub(request).publish(
        LiveEvent(kind="rep_status", rep_id=rep_id, data={"status": record.status.value})
    )
    return web.json_response({"rep_id": rep_id, "status": record.status.value})


@routes.post("/console/decline")
async def console_decline(request: web.Request) -> web.Response:
    """Decline the lead ringing on this rep's phone: cancel that rep's leg."""
    rep_id = _require_rep(request)
    body = await _json_object(request)
    lead_id = _string_field(body, "lead_id")
    hub = _hub(request)
    if all(card.lead_id != lead_id for card in hub.open_cards(rep_id)):
        raise ApiError(404, "not_found", "no such lead ringing for you", field="lead_id")
    cancelled = False
    handler = request.app.get(DECLINE_HANDLER_KEY)
    if handler is not None:
        cancelled = await handler(lead_id, rep_id)
    # Not this daemon's call (behind one service, the console's daemon is often not the one
    # ringing the rep): the daemon that placed it cancels the leg when the request reaches it.
    relay = request.app.get(LIVE_RELAY_KEY)
    forwarded = False
    if not cancelled and relay is not None:
        relay.request_decline(lead_id, rep_id)
        forwarded = True
    await request.app[STORE_KEY].append_event(
        lead_id,
        "rep_declined",
        {"rep_id": rep_id, "leg_cancelled": cancelled, "forwarded": forwarded},
    )
    hub.publish(
        LiveEvent(
            kind="declined",
            rep_id=rep_id,
            lead_id=lead_id,
            data={"cancelled": cancelled, "forwarded": forwarded},
        )
    )
    return web.json_response(
        {"lead_id": lead_id, "declined": True, "leg_cancelled": cancelled, "forwarded": forwarded}
    )


@routes.post("/console/disposition")
async def console_disposition(request: web.Request) -> web.Response:
    """Save what came of the call, on a lead this rep was rung for."""
    rep_id = _require_rep(request)
    body = await _json_object(request)
    lead_id = _string_field(body, "lead_id")
    try:
        kind = DispositionKind(_string_field(body, "disposition"))
    except ValueError:
        choices = ", ".join(item.value for item in DispositionKind)
        raise ApiError(
            422, "invalid_field", f"disposition must be one of {choices}", field="disposition"
        ) from None
    notes = _string_field(body, "notes", required=False).strip()
    if len(notes) > MAX_NOTES_CHARS:
        raise ApiError(
            422, "invalid_field", f"notes: at most {MAX_NOTES_CHARS} characters", field="notes"
        )
    config = _config(request)
    store = request.app[STORE_KEY]
    lead = await store.get_lead(lead_id)
    if lead is None:
        raise ApiError(404, "not_found", "no such lead", field="lead_id")
    at = datetime.now(UTC)
    rep_name = next((rep.name for rep in config.reps if rep.id == rep_id), None)
    async with store.pool.acquire() as conn, conn.transaction():
        saved = await ConsoleStore(store.pool).save_disposition(
            lead_id, rep_id, kind, notes, at=at, conn=conn
        )
        if saved is None:
            raise ApiError(404, "not_found", "no such lead rung for you", field="lead_id")
        event = lead_disposition(
            lead,
            rep=RepRef(id=rep_id, name=rep_name),
            disposition=saved.disposition.value,
            notes=saved.notes,
            at=at,
            event_id=event_id_for(lead.id, saved.event_seq),
            lead_url=_lead_url(config, lead.id),
        )
        await enqueue_event(conn, config.notify, event)
    _hub(request).publish(
        LiveEvent(kind="disposition", rep_id=rep_id, lead_id=lead_id, data=saved.to_json())
    )
    return web.json_response(saved.to_json(), status=201)


def _lead_url(config: Config, lead_id: str) -> str | None:
    base = config.api.public_url
    return f"{base}/v1/leads/{lead_id}" if base else None


@routes.get("/v1/leads/{lead_id}/disposition")
async def get_disposition(request: web.Request) -> web.Response:
    """The lead's current disposition (404 when none was saved)."""
    lead_id = request.match_info["lead_id"]
    saved = await _console_store(request).latest_disposition(lead_id)
    if saved is None:
        raise ApiError(404, "not_found", "no disposition for this lead", field="id")
    return web.json_response(saved.to_json())


# --------------------------------------------------------------------------- dashboard


@routes.get("/dashboard")
async def dashboard_page(request: web.Request) -> web.Response:
    """The manager dashboard; ``?token=`` (the API token) signs in first."""
    settings = _settings(request)
    token = request.query.get("token")
    if token is not None:
        if not token_matches(token, _config(request).api.tokens):
            return _page("signin_failed.html", status=403, what="dashboard token")
        response = _signed_in_redirect("/dashboard")
        set_session_cookie(
            response,
            request,
            DASHBOARD_COOKIE,
            issue_session(settings.secret, dashboard_subject()),
            "/dashboard",
        )
        return response
    if not _dashboard_allowed(request):
        return _page("signin_failed.html", status=401, what="dashboard token")
    return _page("dashboard.html")


@routes.get("/dashboard/events")
async def dashboard_events(request: web.Request) -> web.StreamResponse:
    """SSE of every live event (the page reloads its data when something changes)."""
    _require_dashboard(request)
    hub = _hub(request)
    subscription = hub.subscribe(dashboard=True)
    return await _stream(request, subscription, {"cards": []})


def _lead_row(lead: OpenLead, config: Config, now: datetime) -> dict[str, Any]:
    status = sla_status(
        clock_start=lead.clock_start,
        due_at=lead.due_at,
        called_at=lead.called_at,
        now=now,
        at_risk_fraction=config.sla.at_risk_fraction,
    )
    window = lead.due_at - lead.clock_start
    at_risk_at = lead.clock_start + window * config.sla.at_risk_fraction
    return {
        "id": lead.id,
        "status": lead.status.value,
        "name": lead.name,
        "company": lead.company,
        "phone": lead.phone,
        "source": lead.source,
        "intent": lead.intent.value if lead.intent is not None else None,
        "assigned_rep": lead.assigned_rep,
        "submitted_at": _iso(lead.clock_start),
        "sla": {
            "status": status.value,
            "colour": sla_colour(status),
            "due_at": _iso(lead.due_at),
            "at_risk_at": _iso(at_risk_at),
        },
    }


def _team_reps(config: Config, team: str) -> set[str]:
    return {rep.id for rep in config.reps if team in rep.teams}


@routes.get("/dashboard/data")
async def dashboard_data(request: web.Request) -> web.Response:
    """Open leads by SLA, the rep board and the trends (filters: source, intent, team)."""
    _require_dashboard(request)
    config = _config(request)
    now = _settings(request).clock()
    source = request.query.get("source") or None
    intent = request.query.get("intent") or None
    team = request.query.get("team") or None
    console = _console_store(request)
    tiers = _tiers(config)
    open_leads = await console.open_leads(tiers, source=source, intent=intent)
    team_reps = _team_reps(config, team) if team else None
    if team_reps is not None:
        open_leads = [lead for lead in open_leads if lead.assigned_rep in team_reps]
    reps = await _routing_store(request).list_reps(at=now)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    activity = await console.rep_activity(day_start=day_start)
    hub = _hub(request)
    ringing = {event.rep_id for event in hub.all_open_cards() if event.kind == "ringing"}
    board = []
    for record in reps:
        if team_reps is not None and record.id not in team_reps:
            continue
        day = activity.get(record.id)
        board.append(
            {
                "id": record.id,
                "name": record.name,
                "status": record.status.value,
                "on_call": bool(day and day.on_call),
                "ringing": bool(day and day.ringing) or record.id in ringing,
                "leads_today": record.leads_today,
                "median_ttc_ms": day.median_ttc_ms if day else None,
                "missed_today": day.missed_today if day else 0,
                "voicemail_today": day.voicemail_today if day else 0,
            }
        )
    trends = await console.daily_trends(tiers, days=30, now=now)
    trend_rows = [
        {
            "day": item.day,
            "leads": item.leads,
            "median_ttc_ms": item.median_ttc_ms,
            "within_sla_pct": item.within_sla_pct,
        }
        for item in trends
    ]
    return web.json_response(
        {
            "now": _iso(now),
            "at_risk_fraction": config.sla.at_risk_fraction,
            "leads": [_lead_row(lead, config, now) for lead in open_leads],
            "reps": board,
            "trends": {"days_7": trend_rows[-7:], "days_30": trend_rows},
            "filters": {
                "teams": sorted(team_config.id for team_config in config.teams),
                "sources": sorted({lead.source for lead in open_leads if lead.source}),
                "intents": ["high", "medium", "low"],
            },
        }
    )


@routes.get("/dashboard/leads/{lead_id}")
async def dashboard_lead(request: web.Request) -> web.Response:
    """Drill-down: one lead, its SLA, disposition and full timeline."""
    _require_dashboard(request)
    lead_id = request.match_info["lead_id"]
    config = _config(request)
    store = request.app[STORE_KEY]
    pipeline_store = PipelineStore(
        store.pool, config.daemon.resolved_instance_id(), lease_s=config.daemon.lease_s
    )
    stored = await pipeline_store.get(lead_id)
    if stored is None:
        raise ApiError(404, "not_found", "no such lead", field="id")
    events = await store.list_events(lead_id)
    disposition = await _console_store(request).latest_disposition(lead_id)
    now = _settings(request).clock()
    return web.json_response(
        {
            "lead": lead_card(stored.lead, crm_url=_settings(request).crm_url),
            "sla": sla_view(stored, config.sla, now),
            "disposition": disposition.to_json() if disposition else None,
            "timeline": [
                {
                    "seq": event.seq,
                    "at": _iso(event.at),
                    "kind": event.kind,
                    "data": dict(event.data),
                }
                for event in events
            ],
        }
    )
