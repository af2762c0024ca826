"""Reps' presence, routing explanations and the do-not-call list over HTTP.

- ``GET /v1/reps``: every configured rep with live status, reservation and counters.
- ``PUT /v1/reps/{id}/status`` ``{"status": "busy"}``: set a rep's presence.
- ``POST /v1/routing/explain``: a lead (the ``POST /v1/leads`` body) in, the routing
  explanation out, against live rep states, without placing a call. ``?at=<ISO 8601>``
  explains at another instant.
- ``POST /v1/dnc/{phone}`` (optional ``{"reason": "..."}``), ``DELETE /v1/dnc/{phone}``,
  ``GET /v1/dnc/{phone}``.

The router (compiled rule set) and the routing store are read from the app keys below; when the
composition root did not set them, handlers fall back to building them from the config and the
store's pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dialer.api.errors import ApiError
from dialer.api.keys import CONFIG_KEY, ROUTER_KEY, ROUTING_STORE_KEY, STORE_KEY
from dialer.api.leads import read_json_body
from dialer.domain import RepStatus
from dialer.domain import optional_utc_timestamp as _iso
from dialer.intake import normalize_phone
from dialer.logs import get_logger
from dialer.routing import InvalidLeadError, Router, facts_from_json, ruleset_document
from dialer.store.routing import RepRecord, RoutingStore

__all__ = ["ROUTER_KEY", "ROUTING_STORE_KEY", "rep_json", "routes", "routing_ctx"]

routes = web.RouteTableDef()
_log = get_logger("dialer.api.routing")

_MAX_DNC_REASON = 500


def rep_json(record: RepRecord) -> dict[str, Any]:
    """The public JSON shape of a rep."""
    return {
        "id": record.id,
        "name": record.name,
        "sip_uri": record.sip_uri,
        "timezone": record.timezone,
        "status": record.status.value,
        "status_changed_at": _iso(record.status_changed_at),
        "reserved_by": record.reserved_by,
        "reserved_until": _iso(record.reserved_until),
        "last_assigned_at": _iso(record.last_assigned_at),
        "calls_today": record.calls_today,
        "leads_last_hour": record.leads_last_hour,
        "leads_today": record.leads_today,
    }


async def routing_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start-up context (after the database one): mirror ``[[reps]]`` into the database, record
    the rule-set version, and publish the router and routing store on the app.

    The router is built here unless the composition root already set ``ROUTER_KEY`` (better:
    build it before anything starts, so a bad rule stops start-up before the database does).
    """
    config = app[CONFIG_KEY]
    router = app.get(ROUTER_KEY)
    if router is None:
        router = Router(config)
        app[ROUTER_KEY] = router
    store = RoutingStore(app[STORE_KEY].pool)
    await store.sync_reps(config.reps)
    new = await store.record_ruleset(router.version, ruleset_document(config))
    _log.info("rule set active", version=router.version, new=new, rules=len(router.rule_names))
    app[ROUTING_STORE_KEY] = store
    yield


def _routing_store(request: web.Request) -> RoutingStore:
    store = request.app.get(ROUTING_STORE_KEY)
    if store is not None:
        return store
    return RoutingStore(request.app[STORE_KEY].pool)


def _router(request: web.Request) -> Router:
    router = request.app.get(ROUTER_KEY)
    if router is not None:
        return router
    # Only explanations get here without a composition root; the config was validated at load.
    return Router(request.app[CONFIG_KEY])


def _phone(request: web.Request) -> str:
    raw = request.match_info["phone"]
    try:
        return normalize_phone(raw, request.app[CONFIG_KEY].api.default_region)
    except ValueError as exc:
        raise ApiError(422, "invalid_field", str(exc), field="phone") from None


@routes.get("/v1/reps")
async def list_reps(request: web.Request) -> web.Response:
    """Every configured rep with live state."""
    records = await _routing_store(request).list_reps()
    return web.json_response({"reps": [rep_json(record) for record in records]})


@routes.put("/v1/reps/{rep_id}/status")
async def put_rep_status(request: web.Request) -> web.Response:
    """Set a rep's presence: ``{"status": "available|busy|wrap_up|away|offline"}``."""
    rep_id = request.match_info["rep_id"]
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "expected a JSON object")
    unknown = sorted(set(body) - {"status"})
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field {unknown[0]!r}", field=unknown[0])
    value = body.get("status")
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        status = RepStatus(value)
    except ValueError:
        choices = ", ".join(item.value for item in RepStatus)
        raise ApiError(
            422, "invalid_field", f"status must be one of {choices}", field="status"
        ) from None
    record = await _routing_store(request).set_status(rep_id, status)
    if record is None:
        raise ApiError(404, "not_found", f"no rep {rep_id[:64]!r}", field="id")
    _log.info("rep status", rep_id=rep_id, status=status.value)
    return web.json_response(rep_json(record))


@routes.post("/v1/routing/explain")
async def explain(request: web.Request) -> web.Response:
    """The routing explanation for a lead, against live rep state; no call is placed."""
    at_text = request.query.get("at")
    now = datetime.now(UTC)
    if at_text is not None:
        try:
            now = datetime.fromisoformat(at_text)
        except ValueError:
            raise ApiError(422, "invalid_field", "at: expected ISO 8601", field="at") from None
        if now.tzinfo is None:
            raise ApiError(422, "invalid_field", "at: needs a UTC offset", field="at")
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "expected a JSON object")
    config = request.app[CONFIG_KEY]
    try:
        facts = facts_from_json(body, now=now, default_region=config.api.default_region)
    except InvalidLeadError as exc:
        raise ApiError(422, "invalid_field", str(exc), field=exc.field) from None
    store = _routing_store(request)
    explanation = _router(request).explain(
        facts,
        await store.rep_states(at=now),
        now,
        cursors=await store.cursors(),
        on_dnc=await store.on_dnc(facts.phone),
    )
    return web.json_response(explanation)


@routes.post("/v1/dnc/{phone}")
async def add_dnc(request: web.Request) -> web.Response:
    """Put a number on the do-not-call list: 201 when added, 200 when it already was."""
    phone = _phone(request)
    reason = ""
    if request.can_read_body:
        body = await read_json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_body", "expected a JSON object")
        value = body.get("reason", "")
        if not isinstance(value, str) or len(value) > _MAX_DNC_REASON:
            raise ApiError(
                422,
                "invalid_field",
                f"reason must be a string of at most {_MAX_DNC_REASON} characters",
                field="reason",
            )
        reason = value
    added = await _routing_store(request).add_dnc(phone, reason)
    _log.info("dnc added" if added else "dnc already listed", phone=phone)
    return web.json_response({"phone": phone, "on_dnc": True}, status=201 if added else 200)


@routes.delete("/v1/dnc/{phone}")
async def remove_dnc(request: web.Request) -> web.Response:
    """Take a number off the list: 204, or 404 when it was not on it."""
    phone = _phone(request)
    if not await _routing_store(request).remove_dnc(phone):
        raise ApiError(404, "not_found", f"{phone} is not on the do-not-call list", field="phone")
    _log.info("dnc removed", phone=phone)
    return web.Response(status=204)


@routes.get("/v1/dnc/{phone}")
async def get_dnc(request: web.Request) -> web.Response:
    """Whether a number is on the list."""
    phone = _phone(request)
    return web.json_response(
        {"phone": phone, "on_dnc": await _routing_store(request).on_dnc(phone)}
    )
