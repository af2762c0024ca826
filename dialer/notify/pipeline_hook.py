"""Lifecycle webhooks from the pipeline's steps, queued in the step's own transaction.

The pipeline calls a :data:`dialer.store.pipeline.StepHook` inside the transaction of every
step that appends a timeline event. This hook maps those steps to the lifecycle events of
``docs/webhooks.md`` and queues them in the outbox, so a notification commits with the state
change that caused it (and is delivered after a crash, never for a step that rolled back).

Event ids come from the timeline (``event_id_for(lead_id, seq)``), so a step replayed after a
crash queues nothing twice. ``lead.received`` is queued at the lead's first routing step with
the id of its ``received`` event (seq 1): every later routing step maps to the same id and is
skipped by the outbox's unique idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dialer.domain import LeadStatus
from dialer.notify.config import NotifyConfig
from dialer.notify.events import (
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
)
from dialer.store.migrate import AnyConnection
from dialer.store.pipeline import PipelineLead, StepHook

__all__ = ["lifecycle_events_for_step", "notify_step_hook"]

#: The ``received`` event is the first of every lead's timeline.
_RECEIVED_SEQ = 1


def lifecycle_events_for_step(
    lead: PipelineLead, kind: str, data: Mapping[str, Any], seq: int, *, at: datetime
) -> list[LifecycleEvent]:
    """The lifecycle events one pipeline step stands for (often none)."""
    stored = lead.lead
    event_id = event_id_for(stored.id, seq)
    rep_id = data.get("rep_id") or stored.assigned_rep
    rep = RepRef(id=str(rep_id)) if rep_id else None
    call_id = data.get("call_id")
    events: list[LifecycleEvent] = []
    if kind == LeadStatus.ROUTING.value:
        received_id = event_id_for(stored.id, _RECEIVED_SEQ)
        events.append(lead_received(stored, at=stored.received_at, event_id=received_id))
    elif kind == "rep_answered" and rep is not None:
        events.append(
            lead_assigned(stored, rep=rep, rule=data.get("rule"), at=at, event_id=event_id + ":a")
        )
        events.append(call_rep_answered(stored, rep=rep, call_id=call_id, at=at, event_id=event_id))
    elif kind == LeadStatus.CONNECTED.value and rep is not None:
        events.append(call_connected(stored, rep=rep, call_id=call_id, at=at, event_id=event_id))
    elif kind == LeadStatus.COMPLETED.value and rep is not None:
        connected_at = lead.called_at or lead.first_touch_at or at
        events.append(
            call_completed(
                stored,
                rep=rep,
                call_id=call_id,
                connected_at=connected_at,
                at=at,
                event_id=event_id,
            )
        )
    elif (
        kind == stored.status.value
        and stored.status.is_terminal
        and stored.status is not LeadStatus.COMPLETED
    ):
        reason = str(data.get("reason") or lead.status_reason or stored.status.value)
        events.append(lead_failed(stored, reason=reason, at=at, event_id=event_id))
    return events


def notify_step_hook(config: NotifyConfig) -> StepHook | None:
    """A pipeline step hook queueing lifecycle webhooks, or None when nothing subscribes."""
    from dialer.notify import enqueue_event

    if not any(config.endpoints_for(event_type) for event_type in EventType):
        return None

    async def on_step(
        conn: AnyConnection, lead: PipelineLead, kind: str, data: Mapping[str, Any], seq: int
    ) -> None:
        at = lead.updated_at or datetime.now(UTC)
        for event in lifecycle_events_for_step(lead, kind, data, seq, at=at):
            if config.endpoints_for(event.type):
                await enqueue_event(conn, config, event)

    return on_step
