"""CEL rule conditions: compiled once, load errors name the rule, runtime errors do not match."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dialer.config import ConfigError
from dialer.domain import Intent
from dialer.routing.facts import derive_facts
from dialer.routing.rules import Condition, RoutingConfigError, new_activation

NOW = datetime(2024, 6, 4, 16, 0, tzinfo=UTC)


def lead_map(**fields: Any) -> dict[str, Any]:
    facts = derive_facts(
        lead_id="L",
        phone="+14155550123",
        clock_start=NOW,
        email="buyer@Acme.com",
        intent=Intent.HIGH,
        source="web",
        fields=fields,
    )
    return facts.cel_value(NOW)


def evaluate(source: str, **fields: Any) -> tuple[bool, str | None]:
    condition = Condition(source, key_path="routing.rules[0].when", rule="r")
    activation = new_activation(lead_map(**fields), condition.extension_functions)
    result = condition.evaluate(activation)
    return result.matched, result.error


@pytest.mark.parametrize(
    ("source", "fields", "matched"),
    [
        ("true", {}, True),
        ("false", {}, False),
        ('lead.intent == "high" && lead.country == "US"', {}, True),
        ('lead.intent == "low" || lead.country == "CA"', {}, False),
        ('lead.email_domain == "acme.com"', {}, True),
        ('lead.region.contains("San Francisco")', {}, True),
        ('lead.timezone == "America/Los_Angeles"', {}, True),
        ('"America/Los_Angeles" in lead.timezones', {}, True),
        ("lead.local_hour >= 9 && lead.local_hour < 17", {}, True),  # 09:00 PDT
        ('lead.local_weekday == "tue"', {}, True),
        ("lead.score >= 50", {"score": 70}, True),
        ("lead.score >= 50", {"score": 20}, False),
        ("lead.score > 10.5", {"score": 11}, True),
        ('lead.product == "crm"', {"product": "crm"}, True),
        ('lead.fields.campaign == "spring"', {"campaign": "spring"}, True),
        ('has(lead.fields.campaign) && lead.fields.campaign == "x"', {}, False),
        ('lead.fields.tags.exists(t, t == "vip")', {"tags": ["a", "vip"]}, True),
        ('lead.email.lowerAscii().endsWith("@acme.com")', {}, True),
        ('lead.source in ["web", "ads"]', {}, True),
        ("lead.consent == null", {}, True),
        ('lead["source"] == "web"', {}, True),
    ],
)
def test_condition_results(source: str, fields: dict[str, Any], matched: bool) -> None:
    assert evaluate(source, **fields) == (matched, None)


@pytest.mark.parametrize(
    ("source", "fields", "error_part"),
    [
        ('lead.fields.campaign == "x"', {}, "no such key: campaign"),
        ("lead.score > 3", {}, "No such overload"),  # score is null
        ("lead.score / 0 == 1", {"score": 3}, "division by zero"),
        ("lead.score", {"score": 3}, "expression gave int, not bool"),
        ('lead.source + "x"', {}, "expression gave str, not bool"),
    ],
)
def test_evaluation_error_means_no_match_and_is_explained(
    source: str, fields: dict[str, Any], error_part: str
) -> None:
    matched, error = evaluate(source, **fields)
    assert matched is False
    assert error is not None and error_part in error
    assert "\n" not in error


@pytest.mark.parametrize(
    ("source", "message_part"),
    [
        ("lead.intent ==", "invalid CEL"),
        ("lead.intent == 'high", "invalid CEL"),
        ("(lead.score > 1", "invalid CEL"),
        ("foo.bar == 1", 'unknown variable "foo"'),
        ('lead.intnet == "high"', 'unknown lead fact "lead.intnet"'),
        ("lower(lead.email) == 'x'", 'unknown function "lower"'),
        ("lead.email.toLower() == 'x'", 'unknown function "toLower"'),
    ],
)
def test_bad_condition_raises_one_line_error_naming_the_rule(
    source: str, message_part: str
) -> None:
    with pytest.raises(RoutingConfigError) as info:
        Condition(source, key_path="routing.rules[3].when", rule="hot-us")
    text = str(info.value)
    assert text.startswith('config error: routing.rules[3].when: rule "hot-us": ')
    assert message_part in text
    assert "\n" not in text
    assert info.value.rule == "hot-us"
    assert isinstance(info.value, ConfigError)


def test_lead_names_inside_string_literals_are_not_facts() -> None:
    condition = Condition('lead.source != "lead.bogus"', key_path="routing.rules[0].when", rule="r")
    assert condition.lead_keys == frozenset({"source"})


def test_lead_keys_are_collected_for_a_narrow_activation() -> None:
    narrow = Condition('lead.intent == "high" && has(lead.fields.x)', key_path="k", rule="r")
    assert narrow.lead_keys == frozenset({"intent", "fields"})
    whole = Condition('lead["intent"] == "high"', key_path="k", rule="r")
    assert whole.lead_keys is None


def test_literal_true_skips_cel() -> None:
    condition = Condition(" true ", key_path="k", rule="r")
    assert condition.always
    assert Condition("1 == 1", key_path="k", rule="r").always is False
