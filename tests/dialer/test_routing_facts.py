"""Lead facts derived from the phone number, email and fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dialer.domain import Intent, Lead
from dialer.routing.facts import (
    CEL_LEAD_KEYS,
    InvalidLeadError,
    derive_facts,
    facts_for_lead,
    facts_from_json,
)

NOW = datetime(2024, 6, 4, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phone", "country", "region_part", "zones"),
    [
        ("+14155550123", "US", "San Francisco", ("America/Los_Angeles",)),
        ("+12125550123", "US", "New York", ("America/New_York",)),
        ("(415) 555-0123", "US", "San Francisco", ("America/Los_Angeles",)),
        ("+16135550123", "CA", "Ontario", ("America/Toronto",)),
        ("+442079460000", "GB", "London", ("Europe/London",)),
        ("+33612345678", "FR", "France", ("Europe/Paris",)),
    ],
)
def test_phone_number_gives_country_region_and_zone(
    phone: str, country: str, region_part: str, zones: tuple[str, ...]
) -> None:
    facts = derive_facts(lead_id="L", phone=phone, clock_start=NOW)
    assert facts.country == country
    assert facts.region is not None and region_part in facts.region
    assert facts.timezones == zones
    assert facts.phone.startswith("+")


def test_toll_free_number_has_every_zone_of_its_country_code() -> None:
    facts = derive_facts(lead_id="L", phone="+18005550123", clock_start=NOW)
    assert "America/New_York" in facts.timezones
    assert "America/Los_Angeles" in facts.timezones
    assert facts.cel_value(NOW)["timezone"] is None
    assert facts.local_now(NOW) is None  # the zones disagree on the wall clock


def test_unknown_prefix_falls_back_to_country_level_zones() -> None:
    # Area code 555 is not assigned: phonenumbers knows no zone for the prefix.
    facts = derive_facts(lead_id="L", phone="+15555550100", clock_start=NOW)
    assert facts.country is None
    assert "America/Chicago" in facts.timezones
    assert "Etc/Unknown" not in facts.timezones


def test_zones_with_the_same_wall_clock_give_a_local_time() -> None:
    facts = derive_facts(lead_id="L", phone="+447911123456", clock_start=NOW)
    assert len(facts.timezones) > 1
    local = facts.local_now(NOW)
    assert local is not None and local.hour == 17  # BST


@pytest.mark.parametrize(
    ("now", "local_time", "weekday"),
    [
        # America/New_York springs forward at 2024-03-10 07:00 UTC (02:00 EST -> 03:00 EDT).
        (datetime(2024, 3, 10, 6, 59, tzinfo=UTC), "01:59", "sun"),
        (datetime(2024, 3, 10, 7, 0, tzinfo=UTC), "03:00", "sun"),
        (datetime(2024, 3, 11, 3, 30, tzinfo=UTC), "23:30", "sun"),
    ],
)
def test_local_time_facts_follow_dst(now: datetime, local_time: str, weekday: str) -> None:
    facts = derive_facts(lead_id="L", phone="+12125550123", clock_start=now)
    value = facts.cel_value(now)
    assert value["local_time"] == local_time
    assert value["local_hour"] == int(local_time[:2])
    assert value["local_weekday"] == weekday


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("Joe@Acme.COM", "acme.com"),
        ("a@b@sub.example.org.", "sub.example.org"),
        ("no-at-sign", None),
        (None, None),
        ("trailing@", None),
    ],
)
def test_email_domain(email: str | None, domain: str | None) -> None:
    facts = derive_facts(lead_id="L", phone="+14155550123", clock_start=NOW, email=email)
    assert facts.email_domain == domain


@pytest.mark.parametrize(
    ("fields", "score", "product"),
    [
        ({"score": 42, "product": "crm"}, 42, "crm"),
        ({"score": 4.5}, 4.5, None),
        ({"score": True, "product": 7}, None, None),
        ({"score": "high"}, None, None),
        ({}, None, None),
    ],
)
def test_score_and_product_are_lifted_from_fields(
    fields: dict[str, object], score: float | None, product: str | None
) -> None:
    facts = derive_facts(lead_id="L", phone="+14155550123", clock_start=NOW, fields=fields)
    assert facts.score == score
    assert facts.product == product
    assert facts.cel_value(NOW)["fields"] == fields


def test_cel_value_has_every_documented_key_and_can_be_narrowed() -> None:
    facts = derive_facts(
        lead_id="L",
        phone="+14155550123",
        clock_start=NOW,
        intent=Intent.HIGH,
        source="web",
        fields={"campaign": "x", "nested": {"a": [1, 2]}},
    )
    full = facts.cel_value(NOW)
    assert set(full) == CEL_LEAD_KEYS
    assert full["intent"] == "high"
    assert full["fields"]["nested"] == {"a": [1, 2]}
    narrow = facts.cel_value(NOW, frozenset({"intent", "local_hour"}))
    assert narrow == {
        "intent": "high",
        "local_hour": 9,
        "local_time": "09:00",
        "local_minute": 0,
        "local_weekday": "tue",
    }


def test_facts_for_stored_lead_use_submission_time() -> None:
    submitted = NOW - timedelta(minutes=3)
    lead = Lead(
        id="lead-1",
        phone="+14155550123",
        email="x@y.com",
        intent=Intent.LOW,
        consent=True,
        received_at=NOW,
        submitted_at=submitted,
        fields={"product": "crm"},
    )
    facts = facts_for_lead(lead)
    assert facts.lead_id == "lead-1"
    assert facts.clock_start == submitted
    assert facts.consent is True
    assert facts.product == "crm"
    assert facts.lead_context().lead_id == "lead-1"


def test_unparseable_phone_is_an_invalid_lead() -> None:
    with pytest.raises(InvalidLeadError) as info:
        derive_facts(lead_id="L", phone="not a number", clock_start=NOW)
    assert info.value.field == "phone"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "phone"),
        ({"phone": 5}, "phone"),
        ({"phone": "+14155550123", "intent": "urgent"}, "intent"),
        ({"phone": "+14155550123", "consent": "yes"}, "consent"),
        ({"phone": "+14155550123", "fields": [1]}, "fields"),
        ({"phone": "+14155550123", "submitted_at": "yesterday"}, "submitted_at"),
        ({"phone": "+14155550123", "submitted_at": "2024-06-04T10:00:00"}, "submitted_at"),
        ({"phone": "+14155550123", "email": 3}, "email"),
    ],
)
def test_facts_from_json_rejects_bad_fields(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidLeadError) as info:
        facts_from_json(data, now=NOW)
    assert info.value.field == field


def test_facts_from_json_clamps_future_submission_to_now() -> None:
    facts = facts_from_json(
        {"phone": "4155550123", "submitted_at": "2030-01-01T00:00:00+00:00", "intent": "high"},
        now=NOW,
    )
    assert facts.clock_start == NOW
    assert facts.lead_id == "explain"
    assert facts.intent is Intent.HIGH
    assert facts.to_json(NOW)["local_time"] == "09:00"
