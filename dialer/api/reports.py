"""Reports over HTTP: SLA attainment and conversion by response time.

- ``GET /v1/reports/sla?from=&to=&group_by=rep|source|team|intent``: per group and in total,
  leads, dialled leads, ``met`` / ``breached`` / ``pending``, ``pct_met``, median and p90
  time-to-call (ms), breaches by reason, and ``voicemail`` (press-1 rep legs a voicemail box
  picked up; with ``group_by=rep`` counted for the rep of the leg).
- ``GET /v1/reports/conversion-buckets?from=&to=``: leads and connected calls by time-to-call
  bucket (< 1 min, 1-5 min, 5-30 min, 30-60 min, > 1 h), plus the leads never dialled.

``from`` / ``to``: ISO 8601 with a UTC offset; the leads received in ``[from, to)``. Defaults:
``to`` now, ``from`` 7 days before ``to``; at most 366 days. Definitions are in
:mod:`dialer.store.reports`. Bad parameters are ``422 invalid_field`` naming the parameter.
Bearer-token auth as every ``/v1/`` route.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from dialer.api.errors import ApiError
from dialer.api.keys import CONFIG_KEY, STORE_KEY
from dialer.domain import utc_timestamp as _iso
from dialer.store.reports import (
    ConversionBucket,
    GroupBy,
    SlaGroup,
    conversion_buckets,
    sla_report,
)
from dialer.store.sla import SlaWindows

__all__ = ["MAX_RANGE", "routes", "sla_group_json"]

routes = web.RouteTableDef()

#: The widest range a report may cover.
MAX_RANGE: Final = timedelta(days=366)
#: ``from`` when not given: this long before ``to``.
DEFAULT_RANGE: Final = timedelta(days=7)


def _moment(query: Any, name: str) -> datetime | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(
            422, "invalid_field", f"{name}: expected an ISO 8601 date-time", field=name
        ) from None
    if moment.tzinfo is None:
        raise ApiError(422, "invalid_field", f"{name}: needs a UTC offset", field=name)
    return moment


def _range(request: web.Request) -> tuple[datetime, datetime]:
    query = request.query
    end = _moment(query, "to") or datetime.now(UTC)
    start = _moment(query, "from") or end - DEFAULT_RANGE
    if start >= end:
        raise ApiError(422, "invalid_field", "from must be before to", field="from")
    if end - start > MAX_RANGE:
        raise ApiError(
            422, "invalid_field", f"at most {MAX_RANGE.days} days from 'from' to 'to'", field="to"
        )
    return start, end


def _group_by(request: web.Request) -> GroupBy | None:
    text = request.query.get("group_by")
    if text is None or text == "":
        return None
    try:
        return GroupBy(text)
    except ValueError:
        choices = "|".join(item.value for item in GroupBy)
        raise ApiError(
            422, "invalid_field", f"group_by must be one of {choices}", field="group_by"
        ) from None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def sla_group_json(group: SlaGroup) -> dict[str, Any]:
    """The public JSON shape of one group of the SLA report."""
    pct = group.pct_met
    return {
        "key": group.key,
        "leads": group.leads,
        "called": group.called,
        "met": group.met,
        "breached": group.breached,
        "pending": group.pending,
        "pct_met": None if pct is None else round(pct, 2),
        "median_time_to_call_ms": _ms(group.median_time_to_call_ms),
        "p90_time_to_call_ms": _ms(group.p90_time_to_call_ms),
        "breaches_by_reason": dict(group.breaches_by_reason),
        "voicemail": group.voicemail,
    }


def _bucket_json(bucket: ConversionBucket) -> dict[str, Any]:
    conversion = bucket.conversion
    return {
        "key": bucket.key,
        "label": bucket.label,
        "leads": bucket.leads,
        "connected": bucket.connected,
        "conversion": None if conversion is None else round(conversion, 4),
    }


@routes.get("/v1/reports/sla")
async def get_sla_report(request: web.Request) -> web.Response:
    """SLA attainment of the leads received in the range, grouped."""
    start, end = _range(request)
    group_by = _group_by(request)
    config = request.app[CONFIG_KEY]
    sla = config.sla
    now = datetime.now(UTC)
    report = await sla_report(
        request.app[STORE_KEY].pool,
        start=start,
        end=end,
        now=now,
        windows=SlaWindows(high=sla.high, medium=sla.medium, low=sla.low, default=sla.default),
        group_by=group_by,
        rep_teams=[(rep.id, team) for rep in config.reps for team in rep.teams],
    )
    return web.json_response(
        {
            "from": _iso(report.start),
            "to": _iso(report.end),
            "group_by": group_by.value if group_by is not None else None,
            "generated_at": _iso(now),
            "groups": [sla_group_json(group) for group in report.groups],
            "total": sla_group_json(report.total),
        }
    )


@routes.get("/v1/reports/conversion-buckets")
async def get_conversion_buckets(request: web.Request) -> web.Response:
    """Leads and connected calls by time-to-call bucket."""
    start, end = _range(request)
    report = await conversion_buckets(request.app[STORE_KEY].pool, start=start, end=end)
    return web.json_response(
        {
            "from": _iso(report.start),
            "to": _iso(report.end),
            "buckets": [_bucket_json(bucket) for bucket in report.buckets],
            "not_called": _bucket_json(report.not_called),
        }
    )
