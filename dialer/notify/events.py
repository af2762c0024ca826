"""The lead lifecycle events sent to CRMs, Slack and email, and the JSON payload of each.

Pure: builders take domain values and explicit times and return a :class:`LifecycleEvent`
whose ``payload`` is the exact JSON object delivered (documented in ``docs/webhooks.md``,
formally in ``dialer/notify/webhook.schema.json``). Every payload has the same envelope::

    {"id": "evt_...", "type": "lead.received", "api_version": "1",
     "created_at": "2030-01-01T12:00:00.000Z", "data": {"lead": {...}, ...}}

Event ids should come from the lead's timeline (:func:`event_id_for` with the ``seq`` of the
``lead_events`` row written in the same transaction): the id is then stable, so enqueueing
the same event twice (a restart re-deriving an SLA breach) delivers it once.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from dialer.domain import Lead, LeadStatus, utc_timestamp

__all__ = [
    "API_VERSION",
    "EVENT_TYPES",
    "MAX_FIELDS_BYTES",
    "BreachReason",
    "EventType",
    "LifecycleEvent",
    "RepRef",
    "call_completed",
    "call_connected",
    "call_rep_answered",
    "event_id_for",
    "isoformat",
    "lead_assigned",
    "lead_disposition",
    "lead_failed",
    "lead_received",
    "lead_sla_at_risk",
    "lead_sla_breached",
]

#: Version of the payload format; bumped only for incompatible changes.
API_VERSION: Final = "1"
#: A lead's custom ``fields`` larger than this (JSON bytes) are left out of payloads
#: (``"fields_truncated": true``), which keeps every payload under the outbox's size limit.
MAX_FIELDS_BYTES: Final = 16 * 1024


class EventType(enum.StrEnum):
    """The lead lifecycle events, as named in payloads and in ``[notify] events = [...]``."""

    #: The lead was stored (the API answered 202).
    LEAD_RECEIVED = "lead.received"
    #: Routing picked a rep (the rep whose call answered, or the owner by rule).
    LEAD_ASSIGNED = "lead.assigned"
    #: A rep answered the ring; the prospect is being dialled.
    CALL_REP_ANSWERED = "call.rep_answered"
    #: Rep and prospect are bridged: the time-to-call clock stops here.
    CALL_CONNECTED = "call.connected"
    #: The bridged call ended.
    CALL_COMPLETED = "call.completed"
    #: The SLA window is partly used up (``[sla] at_risk_fraction``) without a connected call.
    LEAD_SLA_AT_RISK = "lead.sla_at_risk"
    #: The SLA deadline passed without a connected call.
    LEAD_SLA_BREACHED = "lead.sla_breached"
    #: The lead reached a terminal failure status (no rep, no answer, blocked, ...).
    LEAD_FAILED = "lead.failed"
    #: A rep saved the call's disposition (connected, voicemail, ...) in the console.
    LEAD_DISPOSITION = "lead.disposition"


#: Every event type, in lifecycle order.
EVENT_TYPES: Final[tuple[EventType, ...]] = tuple(EventType)


class BreachReason(enum.StrEnum):
    """Why a lead missed its SLA (recorded with ``lead.sla_breached``)."""

    NO_REP_AVAILABLE = "no_rep_available"
    ALL_MISSED = "all_missed"
    REP_REJECTED = "rep_rejected"
    PROSPECT_UNREACHABLE = "prospect_unreachable"
    OUTSIDE_CALLING_HOURS = "outside_calling_hours"
    #: Still being worked on (e.g. ringing) when the deadline passed.
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True, slots=True, kw_only=True)
class RepRef:
    """The rep an event is about."""

    id: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent:
    """One event to notify, with its finished JSON payload."""

    #: Stable event id (``payload["id"]``); outbox idempotency keys derive from it.
    id: str
    type: EventType
    lead_id: str
    #: When the event happened (``payload["created_at"]``).
    created_at: datetime
    #: The JSON object delivered to webhooks (Slack and email render it as text).
    payload: Mapping[str, Any]


def event_id_for(lead_id: str, seq: int) -> str:
    """The id of the event recorded as timeline entry ``seq`` of ``lead_id``."""
    return f"evt_{lead_id}_{seq}"


def isoformat(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``, as every payload timestamp is written."""
    return utc_timestamp(moment)


def _opt_iso(moment: datetime | None) -> str | None:
    return isoformat(moment) if moment is not None else None


def _lead_json(lead: Lead, lead_url: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": lead.id,
        "status": lead.status.value,
        "phone": lead.phone,
        "name": lead.name,
        "email": lead.email,
        "company": lead.company,
        "source": lead.source,
        "external_id": lead.external_id,
        "intent": lead.intent.value if lead.intent is not None else None,
        "received_at": isoformat(lead.received_at),
        "submitted_at": _opt_iso(lead.submitted_at),
        "assigned_rep": lead.assigned_rep,
        "url": lead_url,
    }
    fields = dict(lead.fields)
    encoded = json.dumps(fields, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(encoded.encode()) <= MAX_FIELDS_BYTES:
        body["fields"] = json.loads(encoded)  # plain JSON values only
        body["fields_truncated"] = False
    else:
        body["fields"] = {}
        body["fields_truncated"] = True
    return body


def _rep_json(rep: RepRef) -> dict[str, Any]:
    return {"id": rep.id, "name": rep.name}


def _event(
    event_type: EventType,
    lead: Lead,
    at: datetime,
    data: dict[str, Any],
    *,
    event_id: str | None,
    lead_url: str | None,
) -> LifecycleEvent:
    identifier = event_id or f"evt_{uuid.uuid4()}"
    payload: dict[str, Any] = {
        "id": identifier,
        "type": event_type.value,
        "api_version": API_VERSION,
        "created_at": isoformat(at),
        "data": {"lead": _lead_json(lead, lead_url), **data},
    }
    return LifecycleEvent(
        id=identifier, type=event_type, lead_id=lead.id, created_at=at, payload=payload
    )


def lead_received(
    lead: Lead, *, at: datetime, event_id: str | None = None, lead_url: str | None = None
) -> LifecycleEvent:
    """``lead.received``: the lead is stored."""
    return _event(EventType.LEAD_RECEIVED, lead, at, {}, event_id=event_id, lead_url=lead_url)


def lead_assigned(
    lead: Lead,
    *,
    rep: RepRef,
    rule: str | None,
    at: datetime,
    event_id: str | None = None,
    lead_url: str | None = None,
) -> LifecycleEvent:
    """``lead.assigned``: ``rep`` now owns the lead (``rule``: the routing rule that chose)."""
    data = {"rep": _rep_json(rep), "rule": rule}
    return _event(EventType.LEAD_ASSIGNED, lead, at, data, event_id=event_id, lead_url=lead_url)


def call_rep_answered(
    lead: Lead,
    *,
    rep: RepRef,
    call_id: str | None,
    at: datetime,
    event_id: str | None = None,
    lead_url: str | None = None,
) -> LifecycleEvent:
    """``call.rep_answered``: ``rep`` picked up; the prospect is dialled next."""
    data = {"rep": _rep_json(rep), "call": {"id": call_id, "rep_answered_at": isoformat(at)}}
    return _event(EventType.CALL_REP_ANSWERED, lead, at, data, event_id=event_id, lead_url=lead_url)


def call_connected(
    lead: Lead,
    *,
    rep: RepRef,
    call_id: str | None,
    at: datetime,
    event_id: str | None = None,
    lead_url: str | None = None,
) -> LifecycleEvent:
    """``call.connected``: bridged; ``time_to_call_ms`` runs from the lead's clock start."""
    time_to_call_ms = max(0, round((at - lead.clock_start).total_seconds() * 1000))
    data = {
        "rep": _rep_json(rep),
        "call": {"id": call_id, "connected_at": isoformat(at), "time_to_call_ms": time_to_call_ms},
    }
    return _event(EventType.CALL_CONNECTED, lead, at, data, event_id=event_id, lead_url=lead_url)


def call_completed(
    lead: Lead,
    *,
    rep: RepRef,
    call_id: str | None,
    connected_at: datetime,
    at: datetime,
    event_id: str | None = None,
    lead_url: str | None = None,
) -> LifecycleEvent:
    """``call.completed``: the bridged call (connected at ``connected_at``) ended at ``at``."""
    duration_ms = max(0, round((at - connected_at).total_seconds() * 1000))
    data = {
        "rep": _rep_json(rep),
        "call": {
            "id": call_id,
            "connected_at": isoformat(connected_at),
            "ended_at": isoformat(at),
            "duration_ms": duration_ms,
        },
    }
    return _event(EventType.CALL_COMPLETED, lead, at, data, event_id=event_id, lead_url=lead_url)


def lead_sla_at_risk(
    lead: Lead,
    *,
    due_at: datetime,
    window_s: float,
    at: datetime,
    event_id: str | None = None,
    lead_url: str | None = None,
) -> LifecycleEvent:
    """``lead.sla_at_risk``: no connected call yet and the deadline ``due_at`` is near."""
    data = {
        "sla": {
            "status": "at_risk",
            "due_at": isoformat(due_at),
            "window_s": window_s,
            "remaining_s": max(0.0, (due_at - at).total_seconds()),
        }
    }
    return _event(EventType.LEAD_SLA_AT_RISK, lead, at, data, event_id=event_id, lead_url=lead_url)


def lead_sla_breached(
    lead: Lead,
    *,
    due_at: datetime,
    window_s: float,
    reason: BreachReason,
    at: datetime,
    event_id: str | None = None,
    lead_url: str | None = None,
) -> LifecycleEvent:
    """``lead.sla_breached``: the deadline passed without a connected call, for ``reason``."""
    data = {
        "sla": {
            "status": "breached",
            "due_at": isoformat(due_at),
            "window_s": window_s,
            "reason": reason.value,
        }
    }
    return _event(EventType.LEAD_SLA_BREACHED, lead, at, data, event_id=event_id, lead_url=lead_url)


def lead_failed(
    lead: Lead,
    *,
    reason: str,
    at: datetime,
    event_id: str | None = None,
    lead_url: str | None = None,
) -> LifecycleEvent:
    """``lead.failed``: the lead ended in the failure status ``lead.status`` (why: ``reason``).

    Raises ``ValueError`` when ``lead.status`` is not a terminal failure.
    """
    if not lead.status.is_terminal or lead.status is LeadStatus.COMPLETED:
        raise ValueError(f"lead.failed needs a terminal failure status; got {lead.status.value}")
    data = {"failure": {"status": lead.status.value, "reason": reason}}
    return _event(EventType.LEAD_FAILED, lead, at, data, event_id=event_id, lead_url=lead_url)


def lead_disposition(
    lead: Lead,
    *,
    rep: RepRef,
    disposition: str,
    notes: str,
    at: datetime,
    event_id: str | None = None,
    lead_url: str | None = None,
) -> LifecycleEvent:
    """``lead.disposition``: ``rep`` recorded what came of the call (``disposition``, one of
    the console's choices) with free-text ``notes`` at ``at``."""
    data = {"rep": _rep_json(rep), "disposition": disposition, "notes": notes}
    return _event(EventType.LEAD_DISPOSITION, lead, at, data, event_id=event_id, lead_url=lead_url)
