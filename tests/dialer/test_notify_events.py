"""dialer.notify.events: one builder per lifecycle event, every payload valid per the schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dialer.domain import Intent, Lead, LeadStatus
from dialer.notify import events
from dialer.notify.events import BreachReason, EventType, LifecycleEvent, RepRef
from tests.support.notify import load_webhook_schema, schema_errors

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEAD = Lead(
    id="0190f000-0000-7000-8000-000000000001",
    phone="+14155552671",
    name="Ada Lovelace",
    email="ada@example.com",
    company="Engines",
    source="web",
    external_id="form-1",
    intent=Intent.HIGH,
    fields={"plan": "pro", "seats": 12},
    received_at=T0,
    submitted_at=T0 - timedelta(seconds=4),
    status=LeadStatus.CONNECTED,
    assigned_rep="alice",
)
ALICE = RepRef(id="alice", name="Alice")
URL = "https://dialer.example.com/v1/leads/" + LEAD.id


def one_of_each() -> list[LifecycleEvent]:
    later = T0 + timedelta(seconds=30)
    failed = Lead(**{**_fields(LEAD), "status": LeadStatus.REPS_NO_ANSWER})
    return [
        events.lead_received(LEAD, at=T0, event_id=events.event_id_for(LEAD.id, 1)),
        events.lead_assigned(LEAD, rep=ALICE, rule="hot", at=T0, lead_url=URL),
        events.call_rep_answered(LEAD, rep=ALICE, call_id="c1", at=T0 + timedelta(seconds=8)),
        events.call_connected(LEAD, rep=ALICE, call_id="c1", at=T0 + timedelta(seconds=10)),
        events.call_completed(
            LEAD, rep=ALICE, call_id=None, connected_at=T0 + timedelta(seconds=10), at=later
        ),
        events.lead_sla_at_risk(LEAD, due_at=T0 + timedelta(minutes=5), window_s=300.0, at=later),
        events.lead_sla_breached(
            LEAD,
            due_at=T0 + timedelta(minutes=5),
            window_s=300.0,
            reason=BreachReason.ALL_MISSED,
            at=T0 + timedelta(minutes=6),
        ),
        events.lead_failed(failed, reason="3 reps did not answer", at=later),
        events.lead_disposition(
            LEAD, rep=ALICE, disposition="qualified", notes="wants a demo", at=later
        ),
    ]


def _fields(lead: Lead) -> dict[str, Any]:
    return {name: getattr(lead, name) for name in Lead.__dataclass_fields__}


def test_catalogue_is_the_documented_list() -> None:
    assert [t.value for t in events.EVENT_TYPES] == [
        "lead.received",
        "lead.assigned",
        "call.rep_answered",
        "call.connected",
        "call.completed",
        "lead.sla_at_risk",
        "lead.sla_breached",
        "lead.failed",
        "lead.disposition",
    ]
    schema = load_webhook_schema()
    assert schema["properties"]["type"]["enum"] == [t.value for t in EventType]
    documented = (_repo_docs() / "webhooks.md").read_text()
    for event_type in EventType:
        assert f"`{event_type.value}`" in documented


def _repo_docs() -> Path:
    return Path(__file__).resolve().parents[2] / "docs"


def test_every_builder_matches_the_schema() -> None:
    schema = load_webhook_schema()
    built = one_of_each()
    assert [event.type for event in built] == list(EventType)
    for event in built:
        payload = json.loads(json.dumps(event.payload))  # what goes over the wire
        assert schema_errors(payload, schema) == [], event.type
        assert payload["id"] == event.id
        assert payload["type"] == event.type.value
        assert payload["data"]["lead"]["id"] == LEAD.id == event.lead_id


def test_schema_check_catches_wrong_payloads() -> None:
    schema = load_webhook_schema()
    good = json.loads(json.dumps(one_of_each()[3].payload))
    broken: list[dict[str, Any]] = []
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda p: p.pop("id"),
        lambda p: p.__setitem__("type", "lead.exploded"),
        lambda p: p.__setitem__("type", "lead.received"),  # data of call.connected
        lambda p: p["data"]["call"].__setitem__("time_to_call_ms", -1),
        lambda p: p["data"]["lead"].__setitem__("phone", "555-1234"),
        lambda p: p["data"]["lead"].__setitem__("received_at", "2030-01-01 12:00"),
        lambda p: p["data"].__setitem__("extra", 1),
        lambda p: p["data"]["rep"].pop("name"),
    ]
    for mutate in mutations:
        payload = copy.deepcopy(good)
        mutate(payload)
        broken.append(payload)
    for payload in broken:
        assert schema_errors(payload, schema), payload


def test_payload_fields() -> None:
    received, assigned, _, connected, completed, at_risk, breached, failed, _ = one_of_each()
    assert received.id == f"evt_{LEAD.id}_1"
    assert received.payload["created_at"] == "2030-01-01T12:00:00.000Z"
    lead = received.payload["data"]["lead"]
    assert lead["submitted_at"] == "2030-01-01T11:59:56.000Z"
    assert lead["intent"] == "high"
    assert lead["fields"] == {"plan": "pro", "seats": 12}
    assert lead["fields_truncated"] is False
    assert lead["url"] is None
    assert assigned.payload["data"]["lead"]["url"] == URL
    assert assigned.payload["data"]["rule"] == "hot"
    # time-to-call runs from the submission, not from receipt.
    assert connected.payload["data"]["call"]["time_to_call_ms"] == 14_000
    assert completed.payload["data"]["call"]["duration_ms"] == 20_000
    assert at_risk.payload["data"]["sla"]["remaining_s"] == 270.0
    assert breached.payload["data"]["sla"]["reason"] == "all_missed"
    assert failed.payload["data"]["failure"] == {
        "status": "reps_no_answer",
        "reason": "3 reps did not answer",
    }
    # Without an event id, each event gets its own.
    assert assigned.id.startswith("evt_")
    assert assigned.id != events.lead_assigned(LEAD, rep=ALICE, rule=None, at=T0).id


def test_oversized_fields_are_left_out() -> None:
    big = Lead(**{**_fields(LEAD), "fields": {"notes": "x" * (events.MAX_FIELDS_BYTES + 1)}})
    lead = events.lead_received(big, at=T0).payload["data"]["lead"]
    assert lead["fields"] == {}
    assert lead["fields_truncated"] is True


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="terminal failure"):
        events.lead_failed(LEAD, reason="x", at=T0)  # connected is not a failure
    with pytest.raises(ValueError, match="naive"):
        events.lead_received(LEAD, at=datetime(2030, 1, 1))


def test_disposition_payload_and_its_schema() -> None:
    schema = load_webhook_schema()
    event = events.lead_disposition(
        LEAD, rep=ALICE, disposition="callback", notes="", at=T0, event_id="evt_x_9"
    )
    payload = json.loads(json.dumps(event.payload))
    assert payload["type"] == "lead.disposition" and payload["id"] == "evt_x_9"
    assert payload["data"]["disposition"] == "callback"
    assert payload["data"]["rep"] == {"id": "alice", "name": "Alice"}
    assert schema_errors(payload, schema) == []
    wrong = copy.deepcopy(payload)
    wrong["data"]["disposition"] = "maybe"
    assert schema_errors(wrong, schema)
    missing = copy.deepcopy(payload)
    missing["data"].pop("notes")
    assert schema_errors(missing, schema)
