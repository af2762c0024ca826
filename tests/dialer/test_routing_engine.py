"""The router end to end (pure): rules, pools, strategies, chain, ring plan, SLA, explanation."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from dialer.config import (
    Config,
    ConfigError,
    PoolConfig,
    RoutingConfig,
    RuleConfig,
    Strategy,
    parse_config,
)
from dialer.domain import Intent, RepStatus, RingMode
from dialer.routing import (
    LeadFacts,
    Outcome,
    PoolStage,
    RepState,
    Router,
    RoutingConfigError,
    derive_facts,
    ruleset_version,
)
from dialer.routing.engine import EXCLUDED

# Tuesday 2024-06-04 16:00 UTC: 12:00 New York, 09:00 Los Angeles.
NOW = datetime(2024, 6, 4, 16, 0, tzinfo=UTC)
SF_PHONE = "+14155550123"


def rep(rep_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": rep_id, "sip_uri": f"sip:{rep_id}@127.0.0.1:5062", **extra}


def make_config(**sections: Any) -> Config:
    data: dict[str, Any] = {
        "reps": [
            rep("ann", teams=["west"], skills=["spanish"]),
            rep("bob", teams=["west"]),
            rep("cat", teams=["east"]),
            rep("dan", teams=["east"], skills=["spanish"]),
            rep("eve"),
        ],
        "teams": [{"id": "west"}, {"id": "east"}],
    }
    data.update(sections)
    return parse_config(data, env={})


def facts(**overrides: Any) -> LeadFacts:
    values: dict[str, Any] = {
        "lead_id": "lead-1",
        "phone": SF_PHONE,
        "clock_start": NOW - timedelta(seconds=30),
        "email": "buyer@acme.com",
        "intent": Intent.HIGH,
        "source": "web",
    }
    values.update(overrides)
    return derive_facts(**values)


def states(**by_rep: RepStatus | RepState) -> dict[str, RepState]:
    result: dict[str, RepState] = {}
    for rep_id, value in by_rep.items():
        result[rep_id] = (
            value if isinstance(value, RepState) else RepState(rep_id=rep_id, status=value)
        )
    return result


BUSY = RepStatus.BUSY


# --------------------------------------------------------------------------- rule matching


def test_no_rules_sends_every_lead_to_the_default_fallback() -> None:
    router = Router(make_config())
    decision = router.decide(facts(), {}, NOW)
    assert decision.outcome is Outcome.ROUTED
    assert decision.rule == "fallback"
    assert decision.pool is PoolStage.FALLBACK
    assert decision.strategy == "round_robin"
    assert decision.targets == ("ann", "bob", "cat", "dan", "eve")
    plan = decision.ring_plan
    assert plan is not None
    assert plan.mode is RingMode.PARALLEL
    assert plan.ring_timeout_s == 20.0
    assert plan.targets[0].uri == "sip:ann@127.0.0.1:5062"
    assert plan.prospect_number == SF_PHONE
    assert plan.caller_id == "+15550100000"
    assert plan.lead.lead_id == "lead-1"


def test_first_matching_rule_wins_and_later_rules_are_not_evaluated() -> None:
    config = make_config(
        routing={
            "rules": [
                {"name": "ca", "when": 'lead.country == "CA"', "pool": {"reps": ["eve"]}},
                {"name": "hot", "when": 'lead.intent == "high"', "pool": {"teams": ["west"]}},
                {"name": "us", "when": 'lead.country == "US"', "pool": {"teams": ["east"]}},
            ]
        }
    )
    router = Router(config)
    decision = router.decide(facts(), {}, NOW)
    assert decision.rule == "hot"
    assert decision.targets == ("ann", "bob")
    assert [(e.rule, e.matched, e.used) for e in decision.rules_evaluated] == [
        ("ca", False, False),
        ("hot", True, True),
    ]
    explained = router.decide(facts(), {}, NOW, explain=True)
    assert [(e.rule, e.matched, e.used) for e in explained.rules_evaluated] == [
        ("ca", False, False),
        ("hot", True, True),
        ("us", True, False),
    ]
    assert explained.targets == decision.targets


def test_rule_with_evaluation_error_does_not_match_and_says_why() -> None:
    config = make_config(
        routing={
            "rules": [
                {
                    "name": "campaign",
                    "when": 'lead.fields.campaign == "x"',
                    "pool": {"reps": ["eve"]},
                }
            ]
        }
    )
    decision = Router(config).decide(facts(), {}, NOW)
    assert decision.rule == "fallback"
    (evaluation,) = decision.rules_evaluated
    assert not evaluation.matched
    assert evaluation.error == "no such key: campaign"
    assert Router(config).decide(facts(fields={"campaign": "x"}), {}, NOW).rule == "campaign"


def test_pool_order_lists_reps_then_teams_and_filters_skills() -> None:
    config = make_config(
        routing={
            "rules": [
                {
                    "name": "r",
                    "pool": {"reps": ["eve", "cat"], "teams": ["west", "east"]},
                    "strategy": "owner",
                },
                {"name": "es", "pool": {"skills": ["spanish"]}},
            ]
        }
    )
    decision = Router(config).decide(facts(email=None), {}, NOW)
    assert decision.targets == ("eve", "cat", "ann", "bob", "dan")
    spanish_only = replace(config, routing=RoutingConfig(rules=config.routing.rules[1:]))
    assert Router(spanish_only).decide(facts(), {}, NOW).targets == ("ann", "dan")


# --------------------------------------------------------------------------- strategies


def strategy_config(strategy: str) -> Config:
    return make_config(
        reps=[rep("ann", weight=1.0), rep("bob", weight=1.0), rep("cat", weight=50.0)],
        owners=[{"domain": "acme.com", "rep": "bob"}],
        routing={"rules": [{"name": "r", "strategy": strategy, "ring": {"size": 1}}]},
    )


T0 = NOW - timedelta(hours=1)

STRATEGY_TABLE: list[tuple[str, dict[str, RepState], dict[str, Any], list[str]]] = [
    ("round_robin", {}, {}, ["ann", "bob", "cat"]),
    (
        "least_recent",
        {
            "ann": RepState(rep_id="ann", last_assigned_at=T0 + timedelta(minutes=5)),
            "bob": RepState(rep_id="bob", last_assigned_at=T0),
            "cat": RepState(rep_id="cat", last_assigned_at=T0 + timedelta(minutes=1)),
        },
        {},
        ["bob", "cat", "ann"],
    ),
    (
        "least_recent",
        {"ann": RepState(rep_id="ann", last_assigned_at=T0)},
        {},
        ["bob", "cat", "ann"],  # never assigned = longest idle
    ),
    (
        "fewest_calls",
        {
            "ann": RepState(rep_id="ann", calls_today=4),
            "bob": RepState(rep_id="bob", calls_today=9),
            "cat": RepState(rep_id="cat", calls_today=1),
        },
        {},
        ["cat", "ann", "bob"],
    ),
    ("owner", {}, {"email": "joe@ACME.com"}, ["bob", "ann", "cat"]),
    ("owner", {}, {"email": "joe@other.com"}, ["ann", "bob", "cat"]),
    ("owner", {"bob": RepState(rep_id="bob", status=BUSY)}, {}, ["ann", "cat"]),
]


@pytest.mark.parametrize(("strategy", "rep_states", "lead", "order"), STRATEGY_TABLE)
def test_deterministic_strategies(
    strategy: str, rep_states: dict[str, RepState], lead: dict[str, Any], order: list[str]
) -> None:
    decision = Router(strategy_config(strategy)).decide(facts(**lead), rep_states, NOW)
    assert decision.strategy == strategy
    assert list(decision.ordered_reps) == order
    assert decision.targets == (order[0],)
    assert decision.ring_size == 1


def test_round_robin_cursor_rotates_and_skips_ineligible_reps() -> None:
    router = Router(strategy_config("round_robin"))
    cursors: dict[str, int] = {}
    picked = []
    for number in range(7):
        rep_states = states(bob=BUSY) if number in (1, 4) else {}
        decision = router.decide(facts(lead_id=f"L{number}"), rep_states, NOW, cursors=cursors)
        assert decision.cursor_key == "r"
        assert decision.pool_reps == ("ann", "bob", "cat")
        assert decision.cursor_after is not None
        cursors[decision.cursor_key] = decision.cursor_after
        picked.append(decision.targets[0])
    assert picked == ["ann", "cat", "ann", "bob", "cat", "ann", "bob"]


@pytest.mark.parametrize("strategy", ["weighted", "random"])
def test_random_strategies_use_the_injected_rng(strategy: str) -> None:
    first = Router(strategy_config(strategy), rng=random.Random(5))
    second = Router(strategy_config(strategy), rng=random.Random(5))
    orders = [first.decide(facts(), {}, NOW).ordered_reps for _ in range(20)]
    assert orders == [second.decide(facts(), {}, NOW).ordered_reps for _ in range(20)]
    assert all(sorted(order) == ["ann", "bob", "cat"] for order in orders)
    assert first.decide(facts(), {}, NOW).cursor_key is None


def test_weighted_favours_the_heavy_rep() -> None:
    router = Router(strategy_config("weighted"), rng=random.Random(1))
    leaders = [router.decide(facts(), {}, NOW).targets[0] for _ in range(300)]
    assert leaders.count("cat") > 250  # weight 50 of 52


# --------------------------------------------------------------------------- availability chain

CHAIN = {
    "rules": [
        {
            "name": "hot",
            "when": 'lead.intent == "high"',
            "pool": {"teams": ["west"]},
            "overflow": {"teams": ["east"]},
            "sla": "2m",
        }
    ],
    "fallback": {
        "pool": {"reps": ["eve"]},
        "strategy": "least_recent",
        "ring": {"mode": "sequential"},
    },
}


@pytest.mark.parametrize(
    ("busy", "outcome", "pool", "targets"),
    [
        ((), Outcome.ROUTED, PoolStage.RULE, ("ann", "bob")),
        (("ann",), Outcome.ROUTED, PoolStage.RULE, ("bob",)),
        (("ann", "bob"), Outcome.ROUTED, PoolStage.OVERFLOW, ("cat", "dan")),
        (("ann", "bob", "cat", "dan"), Outcome.ROUTED, PoolStage.FALLBACK, ("eve",)),
        (("ann", "bob", "cat", "dan", "eve"), Outcome.WAITING_FOR_REP, None, ()),
    ],
)
def test_rule_pool_then_overflow_then_fallback_then_waiting(
    busy: tuple[str, ...], outcome: Outcome, pool: PoolStage | None, targets: tuple[str, ...]
) -> None:
    router = Router(make_config(routing=CHAIN))
    decision = router.decide(facts(), states(**dict.fromkeys(busy, BUSY)), NOW)
    assert decision.outcome is outcome
    assert decision.rule == "hot"  # the matched rule, wherever the reps came from
    assert decision.pool is pool
    assert decision.targets == targets
    assert decision.sla_seconds == 120.0  # the matched rule's SLA throughout
    if pool is PoolStage.FALLBACK:
        assert decision.ring_plan is not None
        assert decision.ring_plan.mode is RingMode.SEQUENTIAL
        assert decision.strategy == "least_recent"
    if outcome is Outcome.WAITING_FOR_REP:
        assert decision.ring_plan is None
        assert decision.to_json()["ring_plan"]["targets"] == []
    stages = [c.pool for c in decision.candidates]
    assert stages[0] is PoolStage.RULE


def test_candidates_explain_each_reason() -> None:
    config = make_config(
        reps=[
            rep("ann"),
            rep(
                "bob",
                timezone="Asia/Tokyo",
                working_hours={"mon": "09:00-17:00", "tue": "09:00-17:00"},
            ),
            rep("cat", pto=[{"start": "2024-06-04", "end": "2024-06-05"}]),
            rep("dan", max_leads_per_hour=2),
            rep("eve", max_leads_per_day=10),
            rep("fay"),
            rep("gus"),
            rep("hal"),
        ]
    )
    rep_states = states(
        dan=RepState(rep_id="dan", leads_last_hour=2),
        eve=RepState(rep_id="eve", leads_today=10),
        fay=RepState(rep_id="fay", reserved_by="other", reserved_until=NOW + timedelta(seconds=9)),
        gus=RepStatus.WRAP_UP,
        hal=RepStatus.OFFLINE,
    )
    decision = Router(make_config(reps=[])).decide(facts(), {}, NOW)
    assert decision.outcome is Outcome.WAITING_FOR_REP  # no reps at all
    explained = Router(config).explain(facts(), rep_states, NOW)
    reasons = {c["rep"]: (c["eligible"], c["reason"]) for c in explained["candidates"]}
    assert reasons == {
        "ann": (True, "available"),
        "bob": (False, "off_hours"),  # 01:00 Wednesday in Tokyo
        "cat": (False, "pto"),
        "dan": (False, "capacity_hour"),
        "eve": (False, "capacity_day"),
        "fay": (False, "reserved"),
        "gus": (False, "wrap_up"),
        "hal": (False, "offline"),
    }
    details = {c["rep"]: c["detail"] for c in explained["candidates"]}
    assert "Asia/Tokyo" in details["bob"]
    assert "reserved for lead other" in details["fay"]
    assert explained["ring_plan"]["targets"] == ["ann"]


def test_stored_explanation_lists_a_bounded_number_of_candidates() -> None:
    config = make_config(
        reps=[rep(f"r{n:03d}", teams=["west"] if n < 100 else []) for n in range(150)],
        teams=[{"id": "west"}],
        routing={"rules": [{"name": "west", "pool": {"teams": ["west"]}}]},
    )
    router = Router(config)
    # Every west rep but the last 3 is busy: the rule's pool has 3 eligible, then the
    # fallback is not reached (a rule pool with eligible reps wins).
    busy = {f"r{n:03d}": BUSY for n in range(97)}
    decision = router.decide(facts(), states(**busy), NOW)
    full = decision.to_json()
    assert len(full["candidates"]) == 100 and "candidate_counts" not in full
    # Under the limit the bounded form is the full one.
    assert decision.to_json(max_candidates=100) == full
    bounded = decision.to_json(max_candidates=2)
    assert bounded["candidates"] == [
        {"rep": "r097", "eligible": True, "reason": "available", "pool": "rule"},
        {"rep": "r098", "eligible": True, "reason": "available", "pool": "rule"},
    ]
    assert bounded["candidates_listed"] == "eligible_first_only"
    assert bounded["candidate_counts"] == {"rule": {"available": 3, "busy": 97}}
    assert {k: v for k, v in bounded.items() if not k.startswith("candidate")} == {
        k: v for k, v in full.items() if k != "candidates"
    }
    assert len(json.dumps(bounded)) < len(json.dumps(full)) / 5


def test_working_hours_cache_follows_the_clock() -> None:
    config = make_config(
        reps=[rep("ann", timezone="America/New_York", working_hours={"tue": "09:00-17:00"})]
    )
    router = Router(config)
    inside = router.decide(facts(), {}, NOW)  # 12:00 New York
    later = router.decide(facts(), {}, NOW + timedelta(hours=6))  # 18:00
    again = router.decide(facts(), {}, NOW + timedelta(seconds=30))
    assert inside.targets == ("ann",)
    assert later.outcome is Outcome.WAITING_FOR_REP
    assert again.targets == ("ann",)


def test_rep_reserved_for_this_lead_stays_a_candidate() -> None:
    router = Router(make_config())
    mine = states(ann=RepState(rep_id="ann", reserved_by="lead-1"))
    theirs = states(ann=RepState(rep_id="ann", reserved_by="lead-2"))
    assert "ann" in router.decide(facts(), mine, NOW).targets
    assert "ann" not in router.decide(facts(), theirs, NOW).targets
    lapsed = states(ann=RepState(rep_id="ann", reserved_by="lead-2", reserved_until=NOW))
    assert "ann" in router.decide(facts(), lapsed, NOW).targets


# --------------------------------------------------------------------------- ring plan and SLA


def test_ring_settings_come_from_the_rule_then_ringing_defaults() -> None:
    config = make_config(
        ringing={"mode": "waves", "ring_timeout_s": 25, "wave_size": 2, "accept": "press1"},
        routing={
            "rules": [
                {
                    "name": "a",
                    "when": 'lead.source == "ads"',
                    "ring": {"mode": "sequential", "size": 2, "ring_timeout_s": "12s"},
                    "accept": "answer",
                },
                {"name": "b", "when": "true", "ring": {"size": 3}},
            ]
        },
    )
    router = Router(config)
    ads = router.decide(facts(source="ads"), {}, NOW)
    assert ads.ring_plan is not None
    assert (ads.ring_plan.mode, len(ads.ring_plan.targets), ads.ring_plan.ring_timeout_s) == (
        RingMode.SEQUENTIAL,
        2,
        12.0,
    )
    assert ads.accept == "answer"
    web = router.decide(facts(), {}, NOW)
    assert web.ring_plan is not None
    assert (web.ring_plan.mode, len(web.ring_plan.targets), web.ring_plan.ring_timeout_s) == (
        RingMode.WAVES,
        3,
        25.0,
    )
    assert web.ring_plan.wave_size == 2
    assert web.accept == "press1"
    assert len(web.ordered_reps) == 5  # spares for reservation races


@pytest.mark.parametrize(
    ("intent", "seconds", "source"),
    [
        (Intent.HIGH, 300.0, "intent:high"),
        (Intent.MEDIUM, 3600.0, "intent:medium"),
        (Intent.LOW, 86400.0, "intent:low"),
        (None, 3600.0, "default"),
    ],
)
def test_sla_defaults_per_intent_tier(intent: Intent | None, seconds: float, source: str) -> None:
    lead = facts(intent=intent)
    decision = Router(make_config()).decide(lead, {}, NOW)
    assert decision.sla_seconds == seconds
    assert decision.sla_source == source
    assert decision.sla_due_at == lead.clock_start + timedelta(seconds=seconds)


def test_sla_from_rule_and_from_fallback() -> None:
    config = make_config(
        sla={"high": "10m"},
        routing={
            "rules": [{"name": "ads", "when": 'lead.source == "ads"', "sla": "90s"}],
            "fallback": {"sla": "2h"},
        },
    )
    router = Router(config)
    assert router.decide(facts(source="ads"), {}, NOW).sla_seconds == 90.0
    assert router.decide(facts(), {}, NOW).sla_seconds == 7200.0


def test_ring_plan_for_reserved_reps_keeps_the_plan_settings() -> None:
    router = Router(make_config(routing={"rules": [{"name": "r", "ring": {"mode": "sequential"}}]}))
    decision = router.decide(facts(), {}, NOW)
    plan = router.ring_plan_for(decision, ["cat", "ann"])
    assert [t.rep_id for t in plan.targets] == ["cat", "ann"]
    assert plan.mode is RingMode.SEQUENTIAL
    waiting = router.decide(
        facts(), states(**dict.fromkeys(["ann", "bob", "cat", "dan", "eve"], BUSY)), NOW
    )
    with pytest.raises(ValueError, match="no ring plan"):
        router.ring_plan_for(waiting, ["ann"])


# --------------------------------------------------------------------------- compliance


@pytest.mark.parametrize(
    ("kwargs", "lead", "settings", "outcome", "reason"),
    [
        ({"on_dnc": True}, {}, {}, Outcome.BLOCKED, "do_not_call"),
        ({"attempts_today": 3}, {}, {}, Outcome.BLOCKED, "max_attempts_per_day"),
        ({}, {}, {"require_consent": True}, Outcome.BLOCKED, "no_consent"),
        ({}, {"consent": True}, {"require_consent": True}, Outcome.ROUTED, None),
        (
            {},
            {"phone": "+12125550123"},
            {"calling_hours": "13:00-21:00"},
            Outcome.SCHEDULED,
            "calling_hours",
        ),
        ({}, {}, {"calling_hours": "00:00-24:00"}, Outcome.ROUTED, None),
    ],
)
def test_compliance_gate_in_the_decision(
    kwargs: dict[str, Any],
    lead: dict[str, Any],
    settings: dict[str, Any],
    outcome: Outcome,
    reason: str | None,
) -> None:
    router = Router(make_config(compliance=settings))
    decision = router.decide(facts(**lead), {}, NOW, **kwargs)
    assert decision.outcome is outcome
    assert decision.compliance.reason == reason
    if outcome is Outcome.SCHEDULED:
        # 12:00 in New York; calling opens at 13:00 local.
        assert decision.compliance.next_allowed_at == NOW + timedelta(hours=1)
    # The ring plan is still shown, so the explanation says whom it would have rung.
    assert decision.ring_plan is not None


# --------------------------------------------------------------------------- explanation


def test_explanation_is_one_json_object_with_the_contract_keys() -> None:
    router_config = make_config(routing=CHAIN)
    router = Router(router_config)
    explained = router.explain(facts(), states(ann=BUSY), NOW)
    text = json.dumps(explained)
    assert json.loads(text) == explained
    assert explained["rule"] == "hot"
    assert explained["ring_plan"]["mode"] == "parallel"
    assert explained["ring_plan"]["targets"] == ["bob"]
    assert {"rep": "ann", "eligible": False, "reason": "busy"}.items() <= explained["candidates"][
        0
    ].items()
    assert (
        explained["sla"]["due_at"]
        == (NOW - timedelta(seconds=30) + timedelta(minutes=2)).isoformat()
    )
    assert explained["compliance"] == {
        "allowed": True,
        "reason": None,
        "reasons": [],
        "next_allowed_at": None,
        "timezones": ["America/Los_Angeles"],
        "detail": "allowed",
    }
    assert explained["version"] == router.version == ruleset_version(router_config)
    assert explained["facts"]["country"] == "US"


# --------------------------------------------------------------------------- invalid rule sets


@pytest.mark.parametrize(
    ("rule", "key_path", "message_part"),
    [
        ({"name": "bad", "when": "lead.intent =="}, "routing.rules[1].when", "invalid CEL"),
        ({"name": "bad", "when": "nope > 1"}, "routing.rules[1].when", 'unknown variable "nope"'),
        (
            {"name": "bad", "pool": {"teams": ["north"]}},
            "routing.rules[1].pool.teams[0]",
            'unknown team "north"',
        ),
        (
            {"name": "bad", "pool": {"reps": ["zed"]}},
            "routing.rules[1].pool.reps[0]",
            'unknown rep "zed"',
        ),
        (
            {"name": "bad", "overflow": {"reps": ["ann", "zed"]}},
            "routing.rules[1].overflow.reps[1]",
            'unknown rep "zed"',
        ),
        ({"name": "bad", "strategy": "fastest"}, "routing.rules[1].strategy", "fastest"),
    ],
)
def test_invalid_rules_stop_loading_with_one_line_naming_the_rule(
    rule: dict[str, Any], key_path: str, message_part: str
) -> None:
    routing = {"rules": [{"name": "ok", "when": "true"}, rule]}
    with pytest.raises(ConfigError) as info:
        Router(make_config(routing=routing))
    text = str(info.value)
    assert "\n" not in text
    # Every bad-rule error names the rule, whether config.py or the CEL compiler found it.
    assert text.startswith(f'config error: {key_path}: rule "bad": ')
    assert message_part in text


@pytest.mark.parametrize(
    ("rule", "key_path", "message_part"),
    [
        (
            RuleConfig(name="bad", pool=PoolConfig(teams=("north",))),
            "routing.rules[0].pool.teams[0]",
            'unknown team "north"',
        ),
        (
            RuleConfig(name="bad", pool=PoolConfig(reps=("zed",))),
            "routing.rules[0].pool.reps[0]",
            'unknown rep "zed"',
        ),
        (
            RuleConfig(name="bad", strategy=cast(Strategy, "fastest")),
            "routing.rules[0].strategy",
            'unknown strategy "fastest"',
        ),
        (RuleConfig(name="bad", when="1 +"), "routing.rules[0].when", "invalid CEL"),
    ],
)
def test_router_validates_configs_built_in_code(
    rule: RuleConfig, key_path: str, message_part: str
) -> None:
    config = replace(make_config(), routing=RoutingConfig(rules=(rule,)))
    with pytest.raises(RoutingConfigError) as info:
        Router(config)
    assert str(info.value).startswith(f'config error: {key_path}: rule "bad": ')
    assert message_part in str(info.value)
    assert info.value.rule == "bad"


def test_bad_fallback_condition_names_the_fallback() -> None:
    config = replace(
        make_config(), routing=RoutingConfig(fallback=RuleConfig(name="fallback", when="x =="))
    )
    with pytest.raises(RoutingConfigError, match=r'routing\.fallback\.when: rule "fallback"'):
        Router(config)


def test_duplicate_rule_names_are_rejected() -> None:
    config = replace(
        make_config(), routing=RoutingConfig(rules=(RuleConfig(name="a"), RuleConfig(name="a")))
    )
    with pytest.raises(RoutingConfigError, match=r'routing\.rules\[1\]\.name: rule "a": duplicate'):
        Router(config)


def test_decide_needs_an_explicit_clock() -> None:
    with pytest.raises(TypeError, match="needs now"):
        Router(make_config()).decide(facts(), {})


@pytest.mark.parametrize(
    ("exclude", "busy", "outcome", "pool", "targets"),
    [
        (("ann",), (), Outcome.ROUTED, PoolStage.RULE, ("bob",)),
        (("ann", "bob"), (), Outcome.ROUTED, PoolStage.OVERFLOW, ("cat", "dan")),
        (("ann", "bob", "cat"), ("dan",), Outcome.ROUTED, PoolStage.FALLBACK, ("eve",)),
        (("ann", "bob", "cat", "dan", "eve"), (), Outcome.WAITING_FOR_REP, None, ()),
    ],
)
def test_excluded_reps_fall_through_to_overflow_then_fallback(
    exclude: tuple[str, ...],
    busy: tuple[str, ...],
    outcome: Outcome,
    pool: PoolStage | None,
    targets: tuple[str, ...],
) -> None:
    router = Router(make_config(routing=CHAIN))
    rep_states = states(**dict.fromkeys(busy, BUSY))
    decision = router.decide(facts(), rep_states, NOW, exclude=frozenset(exclude))
    assert decision.outcome is outcome
    assert decision.pool is pool
    assert decision.targets == targets
    assert not set(decision.ordered_reps) & set(exclude)
    reasons = {(c.rep, c.reason) for c in decision.candidates if c.rep in exclude}
    assert reasons == {(rep_id, EXCLUDED) for rep_id in exclude}
    explained = router.explain(facts(), rep_states, NOW, exclude=exclude)
    details = {c["rep"]: c["detail"] for c in explained["candidates"] if c["rep"] in exclude}
    assert set(details.values()) <= {"excluded: already missed"}
    assert explained["ring_plan"]["targets"] == list(targets)
