"""``dialer route explain``: the explanation offline, and the same one-line config errors."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialer.domain import RepStatus
from dialer.routing import RepState
from dialer.routing_cli import EXIT_OK, EXIT_USAGE, explain_command

NOW = datetime(2024, 6, 4, 16, 0, tzinfo=UTC)  # Tuesday, 09:00 in Los Angeles

CONFIG = """
[[reps]]
id = "alice"
sip_uri = "sip:alice@127.0.0.1:5062"
teams = ["west"]
timezone = "America/Los_Angeles"
working_hours = { tue = "09:00-17:00" }
[[reps]]
id = "bob"
sip_uri = "sip:bob@127.0.0.1:5064"
teams = ["west"]
pto = [{ start = "2024-06-01", end = "2024-06-10" }]
[[reps]]
id = "carol"
sip_uri = "sip:carol@127.0.0.1:5066"
[[routing.rules]]
name = "hot-us"
when = 'lead.intent == "high" && lead.country == "US"'
pool = { teams = ["west"] }
sla = "5m"
ring = { mode = "sequential", ring_timeout_s = 15 }
[[routing.rules]]
name = "campaign"
when = 'lead.fields.campaign == "spring"'
"""


def run(
    tmp_path: Path, config: str, lead: object, *, as_json: bool, **kwargs: object
) -> tuple[int, str, str]:
    config_path = tmp_path / "dialer.toml"
    config_path.write_text(config)
    lead_path = tmp_path / "lead.json"
    lead_path.write_text(lead if isinstance(lead, str) else json.dumps(lead))
    out, err = io.StringIO(), io.StringIO()
    code = explain_command(
        config_path,
        lead_path,
        as_json=as_json,
        now=NOW,
        out=out,
        err=err,
        **kwargs,  # type: ignore[arg-type]
    )
    return code, out.getvalue(), err.getvalue()


HOT = {"phone": "(415) 555-0123", "intent": "high", "email": "joe@acme.com"}


def test_json_explanation(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, CONFIG, HOT, as_json=True)
    assert (code, err) == (EXIT_OK, "")
    result = json.loads(out)
    assert result["rule"] == "hot-us"
    assert result["ring_plan"]["mode"] == "sequential"
    assert result["ring_plan"]["targets"] == ["alice"]
    assert [(c["rep"], c["eligible"], c["reason"]) for c in result["candidates"]] == [
        ("alice", True, "available"),
        ("bob", False, "pto"),
    ]
    assert result["sla"]["due_at"] == "2024-06-04T16:05:00+00:00"
    assert result["compliance"]["allowed"] is True
    assert [r["error"] for r in result["rules"]] == [None, "no such key: campaign"]


def test_text_explanation(tmp_path: Path) -> None:
    code, out, _ = run(tmp_path, CONFIG, {"phone": "+12125550123"}, as_json=False)
    assert code == EXIT_OK
    assert "hot-us    no match" in out
    assert "routed by: fallback (pool: fallback, round_robin)" in out
    assert "bob    skipped  on PTO 2024-06-01..2024-06-10" in out
    assert "ring plan: parallel, 20s per leg, accept by answer: alice, carol" in out
    assert "outcome: routed" in out


def test_live_states_are_used_when_given(tmp_path: Path) -> None:
    states = {
        "alice": RepState(rep_id="alice", status=RepStatus.BUSY),
        "carol": RepState(rep_id="carol", reserved_by="another-lead"),
    }
    code, out, _ = run(tmp_path, CONFIG, HOT, as_json=False, rep_states=states)
    assert code == EXIT_OK
    assert "status busy" in out
    assert "reserved for lead another-lead" in out
    assert "ring plan: nobody available" in out
    assert "outcome: waiting_for_rep" in out


@pytest.mark.parametrize(
    ("config", "first_line"),
    [
        # The CEL library's own diagnostics follow ours; only their start is checked.
        (
            CONFIG.replace('lead.intent == "high"', 'lead.intent = "high"'),
            'config error: routing.rules[0].when: rule "hot-us": invalid CEL: ERROR: <input>:1:13: '
            "Syntax error: ",
        ),
        (
            CONFIG.replace("lead.fields.campaign", "lead.feilds.campaign"),
            'config error: routing.rules[1].when: rule "campaign": unknown lead fact "lead.feilds" '
            "(known: ",
        ),
        (
            CONFIG.replace('teams = ["west"] }', 'teams = ["north"] }'),
            'config error: routing.rules[0].pool.teams[0]: rule "hot-us": unknown team "north"\n',
        ),
        (
            CONFIG.replace('teams = ["west"] }', 'teams = ["west"], reps = ["zed"] }'),
            'config error: routing.rules[0].pool.reps[0]: rule "hot-us": unknown rep "zed"\n',
        ),
        (
            CONFIG.replace('sla = "5m"', 'strategy = "fastest"'),
            'config error: routing.rules[0].strategy: rule "hot-us": expected one of round_robin, '
            'weighted, least_recent, fewest_calls, random, owner; got "fastest"\n',
        ),
    ],
)
def test_invalid_rules_give_the_daemons_one_line_error(
    tmp_path: Path, config: str, first_line: str
) -> None:
    code, out, err = run(tmp_path, config, HOT, as_json=True)
    assert code == EXIT_USAGE
    assert out == ""
    assert err.startswith(first_line)  # the whole line when first_line ends with "\n"
    assert err.count("\n") == 1 and err.endswith("\n")


@pytest.mark.parametrize(
    ("lead", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"phone": "nope"}, "phone: not a phone number"),
        ({"phone": "+14155550123", "intent": "hot"}, "intent: expected one of"),
    ],
)
def test_bad_lead_file(tmp_path: Path, lead: object, message: str) -> None:
    code, _, err = run(tmp_path, CONFIG, lead, as_json=False)
    assert code == EXIT_USAGE
    assert err.startswith("lead error: ") and message in err


def test_missing_files(tmp_path: Path) -> None:
    err = io.StringIO()
    assert explain_command(tmp_path / "nope.toml", tmp_path / "x.json", as_json=True, err=err) == (
        EXIT_USAGE
    )
    assert err.getvalue().startswith("config error: ")
    (tmp_path / "ok.toml").write_text(CONFIG)
    err = io.StringIO()
    code = explain_command(tmp_path / "ok.toml", tmp_path / "x.json", as_json=True, err=err)
    assert code == EXIT_USAGE
    assert "cannot read" in err.getvalue()
