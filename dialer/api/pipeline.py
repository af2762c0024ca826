"""``GET /v1/leads``: leads page by page (keyset pagination), with their SLA.

Query: ``status`` (a lead status), ``since`` (ISO 8601 with offset: leads received at or after),
``limit`` (1-500, default 50), ``cursor`` (the ``next_cursor`` of the previous page). Leads come
oldest first by ``received_at`` (then id); a page costs the same however deep it is.

Also the SLA view of one lead (:func:`lead_sla_json`) that ``GET /v1/leads/{id}`` shows:
``due_at`` (from the routing decision, else the intent tier), ``status``, ``first_touch_at``
and ``time_to_call_ms``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from dialer.api.errors import ApiError
from dialer.api.keys import CONFIG_KEY, STORE_KEY
from dialer.api.leads import lead_json
from dialer.config import SlaConfig
from dialer.domain import Lead, LeadStatus
from dialer.sla import default_due_at, evaluate_sla
from dialer.store.pipeline import PipelineLead, PipelineStore

__all__ = ["lead_sla_json", "pipeline_lead_json", "routes", "sla_view"]

routes = web.RouteTableDef()

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500


def sla_view(lead: PipelineLead, sla: SlaConfig, now: datetime) -> dict[str, Any]:
    """The ``sla`` object of a lead at ``now``."""
    clock_start = lead.lead.clock_start
    due_at = lead.sla_due_at or default_due_at(clock_start, lead.lead.intent, sla)
    return evaluate_sla(
        clock_start=clock_start,
        due_at=due_at,
        first_touch_at=lead.first_touch_at,
        called_at=lead.called_at,
        now=now,
        at_risk_fraction=sla.at_risk_fraction,
    ).to_json()


def pipeline_lead_json(lead: PipelineLead, sla: SlaConfig, now: datetime) -> dict[str, Any]:
    """A lead as listed: its public shape, why it is in its status, and its SLA."""
    body = lead_json(lead.lead)
    body["status_reason"] = lead.status_reason
    body["sla"] = sla_view(lead, sla, now)
    return body


def _pipeline_store(app: web.Application) -> PipelineStore:
    config = app[CONFIG_KEY]
    return PipelineStore(
        app[STORE_KEY].pool, config.daemon.resolved_instance_id(), lease_s=config.daemon.lease_s
    )


async def lead_sla_json(app: web.Application, lead: Lead, *, now: datetime) -> dict[str, Any]:
    """The ``sla`` object of ``GET /v1/leads/{id}`` for a stored lead (one query)."""
    stored = await _pipeline_store(app).get(lead.id)
    if stored is None:  # deleted meanwhile: the SLA as the intent tier has it
        stored = PipelineLead(lead=lead)
    return sla_view(stored, app[CONFIG_KEY].sla, now)


def _status(text: str | None) -> LeadStatus | None:
    if text is None or text == "":
        return None
    try:
        return LeadStatus(text)
    except ValueError:
        choices = ", ".join(status.value for status in LeadStatus)
        raise ApiError(
            422, "invalid_field", f"status must be one of {choices}", field="status"
        ) from None


def _since(text: str | None) -> datetime | None:
    if text is None or text == "":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "invalid_field", "since: expected ISO 8601", field="since") from None
    if moment.tzinfo is None:
        raise ApiError(422, "invalid_field", "since: needs a UTC offset", field="since")
    return moment


def _limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(
            422, "invalid_field", f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit"
        )
    return limit


@routes.get("/v1/leads")
async def list_leads(request: web.Request) -> web.Response:
    """One page of leads, oldest first, and the cursor of the next page (null: last page)."""
    query = request.query
    status = _status(query.get("status"))
    since = _since(query.get("since"))
    limit = _limit(query.get("limit"))
    cursor = query.get("cursor") or None
    try:
        page = await _pipeline_store(request.app).list_leads(
            status=status, since=since, cursor=cursor, limit=limit
        )
    except ValueError:
        raise ApiError(422, "invalid_field", "cursor is not valid", field="cursor") from None
    now = datetime.now(UTC)
    sla = request.app[CONFIG_KEY].sla
    return web.json_response(
        {
            "leads": [pipeline_lead_json(lead, sla, now) for lead in page.leads],
            "next_cursor": page.next_cursor,
        }
    )
