"""Lead lifecycle notifications: a transactional outbox delivered to webhooks, Slack and email.

Producers (pipeline, SLA timers) build a :class:`LifecycleEvent` with the builders of
:mod:`dialer.notify.events` and call :func:`enqueue_event` with the connection of the
transaction that records its cause::

    async with conn.transaction():
        lead = ...  # the transition and its lead_events row (seq)
        event = lead_received(lead, at=now, event_id=event_id_for(lead.id, seq))
        await enqueue_event(conn, config.notify, event)

The worker that delivers them lives in :mod:`dialer.notify.outbox` (``notify_ctx`` for the
app's ``cleanup_ctx``), the transports in :mod:`dialer.notify.channels`. This package's own
imports stay free of ``dialer.config`` (which imports :mod:`dialer.notify.config`), so those
two modules are imported from their own paths, not re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence

from dialer.notify.config import (
    EmailEndpoint,
    Endpoint,
    NotifyConfig,
    SlackEndpoint,
    SmtpConfig,
    WebhookEndpoint,
    parse_notify,
)
from dialer.notify.events import (
    API_VERSION,
    EVENT_TYPES,
    BreachReason,
    EventType,
    LifecycleEvent,
    RepRef,
    call_completed,
    call_connected,
    call_rep_answered,
    event_id_for,
    lead_assigned,
    lead_failed,
    lead_received,
    lead_sla_at_risk,
    lead_sla_breached,
)
from dialer.store import notify as _outbox_sql
from dialer.store.migrate import AnyConnection
from dialer.store.notify import OutboxRow

__all__ = [
    "API_VERSION",
    "EVENT_TYPES",
    "BreachReason",
    "EmailEndpoint",
    "Endpoint",
    "EventType",
    "LifecycleEvent",
    "NotifyConfig",
    "RepRef",
    "SlackEndpoint",
    "SmtpConfig",
    "WebhookEndpoint",
    "call_completed",
    "call_connected",
    "call_rep_answered",
    "enqueue_event",
    "event_id_for",
    "lead_assigned",
    "lead_failed",
    "lead_received",
    "lead_sla_at_risk",
    "lead_sla_breached",
    "parse_notify",
]


async def enqueue_event(
    conn: AnyConnection,
    config: NotifyConfig,
    event: LifecycleEvent,
    *,
    also: Sequence[str] = (),
) -> list[OutboxRow]:
    """Queue ``event`` for every endpoint subscribed to its type, in the caller's transaction.

    ``also``: more endpoint names, after those (the team managers an SLA event is for,
    :func:`dialer.notify.managers.manager_targets`). Returns the rows added (none when no
    endpoint subscribes, or the event was queued before).
    """
    endpoints = config.endpoints_for(event.type)
    return await _outbox_sql.enqueue(
        conn,
        event.lead_id,
        event.type.value,
        event.payload,
        [*endpoints, *(name for name in also if name not in endpoints)],
        event_id=event.id,
        now=event.created_at,
    )
