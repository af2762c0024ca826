"""The rule-set version: a content hash of the canonical routing policy."""

from __future__ import annotations

import json
from typing import Any

from dialer.config import Config, parse_config
from dialer.routing import Router, canonical_json, ruleset_document, ruleset_version

CHAIN: dict[str, Any] = {
    "rules": [
        {
            "name": "hot",
            "when": 'lead.intent == "high"',
            "pool": {"teams": ["west"]},
            "overflow": {"teams": ["east"]},
            "sla": "2m",
        }
    ],
    "fallback": {"pool": {"reps": ["eve"]}, "strategy": "least_recent"},
}


def make_config(**sections: Any) -> Config:
    data: dict[str, Any] = {
        "reps": [
            {"id": "ann", "sip_uri": "sip:ann@127.0.0.1", "teams": ["west"]},
            {"id": "cat", "sip_uri": "sip:cat@127.0.0.1", "teams": ["east"]},
            {"id": "eve", "sip_uri": "sip:eve@127.0.0.1"},
        ],
        "teams": [{"id": "west"}, {"id": "east"}],
    }
    data.update(sections)
    return parse_config(data, env={})


def test_version_is_a_content_hash_of_the_rule_set() -> None:
    base = make_config(routing=CHAIN)
    same = make_config(
        routing=json.loads(json.dumps(CHAIN)), teams=[{"id": "east"}, {"id": "west"}]
    )
    changed_rule = make_config(routing={**CHAIN, "rules": [{**CHAIN["rules"][0], "sla": "3m"}]})
    changed_owner = make_config(routing=CHAIN, owners=[{"domain": "x.com", "rep": "ann"}])
    assert ruleset_version(base) == ruleset_version(same) == Router(base).version
    assert len({ruleset_version(c) for c in (base, changed_rule, changed_owner)}) == 3
    # "5m" and 300 seconds are the same policy.
    minutes = make_config(routing={"rules": [{"name": "r", "sla": "5m"}]})
    seconds = make_config(routing={"rules": [{"name": "r", "sla": 300}]})
    assert ruleset_version(minutes) == ruleset_version(seconds)


def test_document_is_canonical_json() -> None:
    document = ruleset_document(make_config(routing=CHAIN))
    assert document["rules"][0]["name"] == "hot"
    assert document["compliance"]["calling_hours"] == "08:00-21:00"
    text = canonical_json(document)
    assert json.loads(text) == document
    assert ": " not in text and ", " not in text
