"""Routing decisions per second: 100 rules x 500 reps, pure part, one core.

    .venv/bin/python benchmarks/routing.py [--decisions 20000] [--explain] [--json]
    taskset -c 1 .venv/bin/python benchmarks/routing.py     # pin to one core

The rule set looks like a large sales floor: 500 reps in 25 teams across four US time zones
(half with working hours, some on PTO, some capped), 100 rules over campaign, intent, country,
score and source with pools of one or two teams (some skill-filtered, some with overflow) and
every strategy. Leads are spread so the first match falls anywhere in the list, and one in ten
matches nothing and goes to the fallback (all 500 reps). Rep states are realistic: ~70%
available, the rest busy, in wrap-up, away, offline or reserved. The clock advances one second
per decision, so the per-minute working-hours memo is refreshed as in production.

Measures ``Router.decide`` only: facts are derived at intake, once per lead, and are timed
separately (``facts/s``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.config import parse_config
from dialer.domain import RepStatus
from dialer.routing import LeadFacts, RepState, Router, derive_facts

REPS = 500
TEAMS = 25
RULES = 100
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
STRATEGIES = ("round_robin", "weighted", "least_recent", "fewest_calls", "random", "owner")
PHONES = ("+14155550123", "+12125550123", "+13125550123", "+17205550123", "+447911123456")
SOURCES = ("web", "webinar", "ads", "partner")


def build_config(rng: random.Random) -> dict[str, Any]:
    """A TOML-shaped config dict of the benchmark's floor and rule set."""
    reps = []
    for number in range(REPS):
        rep: dict[str, Any] = {
            "id": f"rep{number:03d}",
            "sip_uri": f"sip:rep{number:03d}@127.0.0.1:{6000 + number}",
            "teams": [f"t{number % TEAMS:02d}"],
            "skills": ["spanish"] if number % 7 == 0 else [],
            "weight": 1.0 + number % 3,
            "timezone": ZONES[number % len(ZONES)],
        }
        if number % 2 == 0:
            rep["working_hours"] = {day: "07:00-19:00" for day in ("mon", "tue", "wed", "thu")}
            rep["working_hours"]["fri"] = "00:00-24:00"
        if number % 50 == 0:
            rep["pto"] = [{"start": "2024-06-03", "end": "2024-06-07"}]
        if number % 10 == 0:
            rep["max_leads_per_hour"] = 4
            rep["max_leads_per_day"] = 20
        reps.append(rep)
    rules = []
    for number in range(RULES):
        first = number % TEAMS
        teams = [f"t{first:02d}"] + ([f"t{(first + 1) % TEAMS:02d}"] if number % 3 == 0 else [])
        condition = [f'lead.fields.campaign == "c{number}"']
        if number % 4 == 0:
            condition.append('lead.intent == "high"')
        if number % 4 == 1:
            condition.append('lead.country == "US"')
        if number % 4 == 2:
            condition.append("(lead.score == null || lead.score >= 10)")
        if number % 4 == 3:
            condition.append(f'lead.source in ["{SOURCES[number % 4]}", "web"]')
        rule: dict[str, Any] = {
            "name": f"rule-{number:03d}",
            "when": " && ".join(condition),
            "pool": {"teams": teams},
            "strategy": STRATEGIES[number % len(STRATEGIES)],
            "ring": {"mode": ("parallel", "sequential", "waves")[number % 3], "size": 3},
        }
        if number % 9 == 0:
            rule["pool"]["skills"] = ["spanish"]
        if number % 5 == 0:
            rule["overflow"] = {"teams": [f"t{(first + 5) % TEAMS:02d}"]}
        if number % 6 == 0:
            rule["sla"] = "5m"
        rules.append(rule)
    owners = [{"domain": f"acct{n}.com", "rep": f"rep{n * 7:03d}"} for n in range(60)]
    return {
        "reps": reps,
        "owners": owners,
        "routing": {"rules": rules, "fallback": {"strategy": "round_robin", "ring": {"size": 5}}},
        "compliance": {"calling_hours": "08:00-21:00", "max_attempts_per_day": 3},
    }


def build_states(rng: random.Random, now: datetime) -> dict[str, RepState]:
    """Live states for every rep."""
    states: dict[str, RepState] = {}
    statuses = [RepStatus.AVAILABLE] * 7 + [
        RepStatus.BUSY,
        RepStatus.WRAP_UP,
        RepStatus.AWAY,
        RepStatus.OFFLINE,
    ]
    for number in range(REPS):
        rep_id = f"rep{number:03d}"
        reserved = rng.random() < 0.05
        states[rep_id] = RepState(
            rep_id=rep_id,
            status=rng.choice(statuses),
            reserved_by="other-lead" if reserved else None,
            reserved_until=now + timedelta(hours=1) if reserved else None,
            last_assigned_at=now - timedelta(seconds=rng.randrange(1, 86_400)),
            leads_last_hour=rng.randrange(0, 6),
            leads_today=rng.randrange(0, 25),
            calls_today=rng.randrange(0, 40),
        )
    return states


def build_leads(rng: random.Random, count: int, now: datetime) -> list[dict[str, Any]]:
    """Lead attributes; one in ten matches no rule."""
    leads = []
    for number in range(count):
        campaign = f"c{rng.randrange(RULES)}" if rng.random() < 0.9 else "none"
        leads.append(
            {
                "lead_id": f"lead-{number}",
                "phone": rng.choice(PHONES),
                "clock_start": now,
                "email": f"buyer@acct{rng.randrange(80)}.com",
                "source": rng.choice(SOURCES),
                "intent": rng.choice(("high", "medium", "low", None)),
                "fields": {"campaign": campaign, "score": rng.randrange(0, 100)},
            }
        )
    return leads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--leads", type=int, default=2_000)
    parser.add_argument("--explain", action="store_true", help="time decide(explain=True)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    rng = random.Random(7)
    start = datetime(2024, 6, 4, 16, 0, tzinfo=UTC)  # Tuesday: most reps inside hours
    config = parse_config(build_config(rng), env={})
    t0 = time.perf_counter()
    router = Router(config, rng=random.Random(11))
    load_s = time.perf_counter() - t0
    states = build_states(rng, start)
    raw_leads = build_leads(rng, args.leads, start)
    t0 = time.perf_counter()
    facts: list[LeadFacts] = [derive_facts(**lead) for lead in raw_leads]
    facts_s = time.perf_counter() - t0
    cursors: dict[str, int] = {}

    outcomes: dict[str, int] = {}
    rules_hit = 0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for number in range(args.decisions):
        now = start + timedelta(seconds=number)
        decision = router.decide(
            facts[number % len(facts)], states, now, cursors=cursors, explain=args.explain
        )
        if decision.cursor_key is not None and decision.cursor_after is not None:
            cursors[decision.cursor_key] = decision.cursor_after
        outcomes[decision.outcome.value] = outcomes.get(decision.outcome.value, 0) + 1
        rules_hit += decision.rule != "fallback"
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    rate = args.decisions / elapsed
    cpu_rate = args.decisions / cpu if cpu > 0 else float("inf")
    result = {
        "benchmark": "routing",
        "rules": RULES,
        "reps": REPS,
        "decisions": args.decisions,
        "explain": args.explain,
        "decisions_per_s": round(rate),
        # Per second of this process's CPU time: what one free core would give on a busy box.
        "decisions_per_cpu_s": round(cpu_rate),
        "us_per_decision": round(elapsed / args.decisions * 1e6, 1),
        "facts_per_s": round(len(facts) / facts_s),
        "router_load_ms": round(load_s * 1000, 1),
        "matched_a_rule": round(rules_hit / args.decisions, 3),
        "outcomes": outcomes,
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"routing: {rate:,.0f} decisions/s ({elapsed / args.decisions * 1e6:.1f} us each; "
            f"{cpu_rate:,.0f} per CPU-second) "
            f"for {RULES} rules x {REPS} reps{' with explain' if args.explain else ''}; "
            f"facts {result['facts_per_s']:,}/s; router load {result['router_load_ms']} ms; "
            f"outcomes {outcomes}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
