"""``POST /v1/leads`` and ``GET /v1/leads/{id}``.

A lead is committed, with its ``received`` event, before ``202`` is returned; a duplicate (same
``(source, external_id)`` or ``Idempotency-Key``) gets ``200`` and the first lead. Nothing is
started in the background here: the pipeline picks stored leads up from the database.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from dialer.api.errors import ApiError
from dialer.api.keys import CONFIG_KEY, METRICS_KEY, STORE_KEY
from dialer.config import SlaConfig
from dialer.domain import Lead, LeadEvent, LeadStatus, SlaStatus
from dialer.intake import ValidationError, parse_lead, validate_idempotency_key
from dialer.logs import bound, get_logger
from dialer.store import StoreUnavailableError

__all__ = ["TIME_TO_CALL_EVENT", "lead_json", "routes", "sla_json", "timeline_json"]

routes = web.RouteTableDef()
_log = get_logger("dialer.api.leads")

#: How long ``POST /v1/leads`` waits for the database (a pool with every connection stuck,
#: a server that accepts but does not answer) before answering 503 + ``Retry-After``.
STORE_TIMEOUT_S: Final = 10.0

#: The timeline event that stops the time-to-call clock (the prospect is being rung with a
#: rep on the line); written by the call path.
TIME_TO_CALL_EVENT: Final = LeadStatus.CALLING_PROSPECT.value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_body(request: web.Request) -> object:
    """The decoded JSON body; 415/413/400 :class:`ApiError` for the wrong type, size or syntax."""
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected Content-Type: application/json; got {content_type or 'none'}",
        )
    limit = request.app[CONFIG_KEY].api.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"request body larger than {limit} bytes")
    raw = await request.read()  # aiohttp enforces client_max_size for chunked bodies too
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "request body is not UTF-8") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "JSON nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"malformed JSON: {exc}") from None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def lead_json(lead: Lead) -> dict[str, Any]:
    """The public JSON shape of a lead (without timeline)."""
    return {
        "id": lead.id,
        "status": lead.status.value,
        "phone": lead.phone,
        "name": lead.name,
        "email": lead.email,
        "company": lead.company,
        "source": lead.source,
        "external_id": lead.external_id,
        "intent": lead.intent.value if lead.intent else None,
        "consent": lead.consent,
        "fields": dict(lead.fields),
        "received_at": _iso(lead.received_at),
        "submitted_at": _iso(lead.submitted_at),
        "assigned_rep": lead.assigned_rep,
        "url": f"/v1/leads/{lead.id}",
    }


def timeline_json(events: Sequence[LeadEvent]) -> list[dict[str, Any]]:
    """The timeline as JSON, oldest first."""
    return [
        {"seq": event.seq, "at": _iso(event.at), "kind": event.kind, "data": dict(event.data)}
        for event in events
    ]


def sla_json(
    lead: Lead, events: Sequence[LeadEvent], sla: SlaConfig, now: datetime
) -> dict[str, Any]:
    """Response-time status: due time from the intent tier, met once the prospect is rung."""
    window = sla.for_intent(lead.intent)
    start = lead.clock_start
    due_at = start + timedelta(seconds=window)
    called_at = next((e.at for e in events if e.kind == TIME_TO_CALL_EVENT), None)
    time_to_call_ms: int | None = None
    if called_at is not None:
        time_to_call_ms = max(0, round((called_at - start).total_seconds() * 1000))
        status = SlaStatus.MET if called_at <= due_at else SlaStatus.BREACHED
    elif now >= due_at:
        status = SlaStatus.BREACHED
    elif now >= start + timedelta(seconds=window * sla.at_risk_fraction):
        status = SlaStatus.AT_RISK
    else:
        status = SlaStatus.PENDING
    return {
        "due_at": _iso(due_at),
        "status": status.value,
        "time_to_call_ms": time_to_call_ms,
    }


@routes.post("/v1/leads")
async def post_lead(request: web.Request) -> web.Response:
    """Validate, store durably, answer 202 (new) or 200 (duplicate) with the lead."""
    started = time.perf_counter()
    received_at = datetime.now(UTC)
    metrics = request.app[METRICS_KEY]
    config = request.app[CONFIG_KEY]
    try:
        idempotency_key = validate_idempotency_key(request.headers.get("Idempotency-Key"))
        body = await read_json_body(request)
        new_lead = parse_lead(
            body,
            received_at=received_at,
            default_region=config.api.default_region,
            idempotency_key=idempotency_key,
        )
    except (ApiError, ValidationError) as exc:
        metrics.leads_rejected.labels(reason=exc.code).inc()
        metrics.intake_latency.observe(time.perf_counter() - started)
        raise
    try:
        # Connection refused, lost mid-query or the server shutting down already raise
        # StoreUnavailableError (503 + Retry-After, by the error middleware); this bounds the
        # cases that would otherwise hang. A time-out after the commit answers 503 for a
        # stored lead, which a retry (same Idempotency-Key or external id) turns into 200:
        # never a 202 for a lead that is not stored.
        async with asyncio.timeout(STORE_TIMEOUT_S):
            lead, created = await request.app[STORE_KEY].create_lead(new_lead)
    except TimeoutError:
        metrics.leads_rejected.labels(reason="unavailable").inc()
        raise StoreUnavailableError(
            f"database did not answer within {STORE_TIMEOUT_S:g}s"
        ) from None
    except StoreUnavailableError:
        metrics.leads_rejected.labels(reason="unavailable").inc()
        raise
    metrics.leads_received.labels(outcome="created" if created else "duplicate").inc()
    with bound(lead_id=lead.id):
        _log.info(
            "lead received" if created else "duplicate lead",
            source=lead.source,
            external_id=lead.external_id,
            clamped=bool(new_lead.received_event_data.get("submitted_at_clamped_from")),
        )
    response = web.json_response(lead_json(lead), status=202 if created else 200)
    metrics.intake_latency.observe(time.perf_counter() - started)
    return response


@routes.get("/v1/leads/{lead_id}")
async def get_lead(request: web.Request) -> web.Response:
    """The lead, its timeline and its SLA status; 404 when unknown."""
    lead_id = request.match_info["lead_id"]
    store = request.app[STORE_KEY]
    lead = await store.get_lead(lead_id)
    if lead is None:
        raise ApiError(404, "not_found", f"no lead {lead_id[:64]!r}", field="id")
    events = await store.list_events(lead.id)
    body = lead_json(lead)
    body["timeline"] = timeline_json(events)
    from dialer.api.pipeline import lead_sla_json  # local: dialer.api.pipeline imports this

    body["sla"] = await lead_sla_json(request.app, lead, now=datetime.now(UTC))
    return web.json_response(body)
