"""dialer.intake: normalisation and every class of invalid lead body."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dialer.domain import Intent
from dialer.intake import (
    MAX_FIELDS_BYTES,
    ValidationError,
    normalize_phone,
    parse_lead,
    validate_idempotency_key,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def parse(body: object, **kwargs: Any) -> Any:
    return parse_lead(body, received_at=NOW, default_region="US", **kwargs)


def rejection(body: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse(body)
    return caught.value


def test_full_body_is_normalised() -> None:
    lead = parse(
        {
            "phone": " (415) 555-2671 ",
            "name": "  Ada ",
            "email": "Ada.L@Example.COM",
            "company": "Engines",
            "source": "web",
            "external_id": "42",
            "submitted_at": "2024-05-01T13:59:00+02:00",
            "intent": "HIGH",
            "consent": True,
            "fields": {"plan": "pro", "seats": 3, "tags": ["a", None]},
        },
        idempotency_key="key-1",
    )
    assert lead.phone == "+14155552671"
    assert lead.name == "Ada"
    assert lead.email == "Ada.L@example.com"
    assert lead.intent is Intent.HIGH
    assert lead.consent is True
    assert lead.submitted_at == datetime(2024, 5, 1, 11, 59, tzinfo=UTC)
    assert lead.received_at == NOW
    assert lead.idempotency_key == "key-1"
    assert lead.fields == {"plan": "pro", "seats": 3, "tags": ["a", None]}
    assert lead.received_event_data == {"idempotency_key": "key-1"}


def test_minimal_body_and_nulls_mean_absent() -> None:
    lead = parse({"phone": "+442071838750", "name": None, "intent": None, "fields": None})
    assert lead.phone == "+442071838750"
    assert lead.name is None and lead.intent is None and lead.fields == {}
    assert lead.submitted_at is None and lead.received_event_data == {}


def test_default_region_applies_to_national_numbers() -> None:
    lead = parse_lead({"phone": "020 7183 8750"}, received_at=NOW, default_region="GB")
    assert lead.phone == "+442071838750"
    assert normalize_phone("020 7183 8750", "GB") == "+442071838750"


def test_future_submitted_at_is_clamped_and_recorded() -> None:
    future = (NOW + timedelta(hours=1)).isoformat()
    lead = parse({"phone": "+14155552671", "submitted_at": future})
    assert lead.submitted_at == NOW
    assert lead.received_event_data == {"submitted_at_clamped_from": future}


def test_z_suffix_and_past_submitted_at_kept() -> None:
    lead = parse({"phone": "+14155552671", "submitted_at": "2024-05-01T11:00:00Z"})
    assert lead.submitted_at == NOW - timedelta(hours=1)
    assert lead.received_event_data == {}


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "phone", "missing_field"),
        ({"phone": "  "}, "phone", "missing_field"),
        ({"phone": 14155552671}, "phone", "invalid_field"),
        ({"phone": "12345"}, "phone", "invalid_field"),
        ({"phone": "not a number"}, "phone", "invalid_field"),
        ({"phone": "+1 555 010 0000"}, "phone", "invalid_field"),
        ({"phone": "+14155552671", "intent": "urgent"}, "intent", "invalid_field"),
        ({"phone": "+14155552671", "intent": 1}, "intent", "invalid_field"),
        ({"phone": "+14155552671", "submitted_at": "yesterday"}, "submitted_at", "invalid_field"),
        (
            {"phone": "+14155552671", "submitted_at": "2024-05-01T10:00:00"},
            "submitted_at",
            "invalid_field",
        ),
        ({"phone": "+14155552671", "submitted_at": 1714560000}, "submitted_at", "invalid_field"),
        ({"phone": "+14155552671", "email": "nobody"}, "email", "invalid_field"),
        ({"phone": "+14155552671", "email": "a@b"}, "email", "invalid_field"),
        ({"phone": "+14155552671", "consent": "yes"}, "consent", "invalid_field"),
        ({"phone": "+14155552671", "fields": [1, 2]}, "fields", "invalid_field"),
        ({"phone": "+14155552671", "fields": "x"}, "fields", "invalid_field"),
        ({"phone": "+14155552671", "name": "x" * 201}, "name", "invalid_field"),
        ({"phone": "+14155552671", "name": "a\x00b"}, "name", "invalid_field"),
        ({"phone": "+14155552671", "name": "\ud800"}, "name", "invalid_field"),
        ({"phone": "+14155552671", "fields": {"k": "a\x00"}}, "fields.k", "invalid_field"),
        ({"phone": "+14155552671", "fields": {"k": float("inf")}}, "fields.k", "invalid_field"),
        ({"phone": "+14155552671", "phonee": "x"}, "phonee", "unknown_field"),
        ([{"phone": "+14155552671"}], None, "invalid_body"),
        ("lead", None, "invalid_body"),
    ],
)
def test_invalid_bodies_name_the_field(body: object, field: str | None, code: str) -> None:
    error = rejection(body)
    assert error.field == field
    assert error.code == code
    assert error.message


def test_fields_depth_and_size_are_limited() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(12):
        node["n"] = {}
        node = node["n"]
    assert rejection({"phone": "+14155552671", "fields": deep}).field is not None
    big = {"blob": "x" * (MAX_FIELDS_BYTES + 1)}
    assert rejection({"phone": "+14155552671", "fields": big}).field == "fields"
    ok = {"blob": "x" * 1000}
    assert parse({"phone": "+14155552671", "fields": ok}).fields == ok
    assert len(json.dumps(ok)) < MAX_FIELDS_BYTES


def test_idempotency_key_validation() -> None:
    assert validate_idempotency_key(None) is None
    assert validate_idempotency_key("  ") is None
    assert validate_idempotency_key(" abc-123 ") == "abc-123"
    for bad in ["has space", "x" * 201, "caf\u00e9"]:
        with pytest.raises(ValidationError) as caught:
            validate_idempotency_key(bad)
        assert caught.value.field == "Idempotency-Key"
        assert caught.value.code == "invalid_header"
