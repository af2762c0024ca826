"""dialer.cli: one-line config errors, refusing to run without tokens, migrate, demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from dialer.cli import build_parser, main
from tests.conftest import REPO_ROOT


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    return subprocess.run(
        [sys.executable, "-m", "dialer.cli", *args],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_unknown_key_prints_one_line_naming_it_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "dialer.toml"
    config.write_text('[api]\ntokens = ["t"]\nlisten = "127.0.0.1:0"\nlissten = "x"\n')
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == "config error: api.lissten: unknown key\n"
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[database]\npool_max = 0\n", "database.pool_max"),
        ("[api\n", "dialer.toml"),
    ],
)
def test_config_errors_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    config = tmp_path / "dialer.toml"
    config.write_text(text)
    assert main(["run", "--config", str(config)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("config error: ") and key in lines[0]


RULES_CONFIG = """
[[reps]]
id = "alice"
sip_uri = "sip:alice@127.0.0.1:5062"
teams = ["west"]
[[routing.rules]]
name = "hot-us"
when = 'lead.intent == "high"'
pool = { teams = ["west"] }
"""
STRATEGIES = "round_robin, weighted, least_recent, fewest_calls, random, owner"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # The CEL library's own diagnostic follows "invalid CEL: "; only its start is ours.
        (
            RULES_CONFIG.replace('intent == "high"', 'intent = "high"'),
            'config error: routing.rules[0].when: rule "hot-us": invalid CEL: ',
        ),
        (
            RULES_CONFIG.replace('teams = ["west"] }', 'teams = ["north"] }'),
            'config error: routing.rules[0].pool.teams[0]: rule "hot-us": unknown team "north"',
        ),
        (
            RULES_CONFIG.replace('teams = ["west"] }', 'teams = ["west"], reps = ["zed"] }'),
            'config error: routing.rules[0].pool.reps[0]: rule "hot-us": unknown rep "zed"',
        ),
        (
            RULES_CONFIG + 'strategy = "fastest"\n',
            'config error: routing.rules[0].strategy: rule "hot-us": '
            f'expected one of {STRATEGIES}; got "fastest"',
        ),
        (
            RULES_CONFIG + '[routing.fallback]\npool = { reps = ["zed"] }\n',
            'config error: routing.fallback.pool.reps[0]: rule "fallback": unknown rep "zed"',
        ),
    ],
)
def test_invalid_rules_stop_run_and_explain_with_the_same_line_naming_the_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: str
) -> None:
    config = tmp_path / "dialer.toml"
    config.write_text(text)
    lead = tmp_path / "lead.json"
    lead.write_text('{"phone": "+14155550123", "intent": "high"}')
    errors = []
    for argv in (
        ["run", "--config", str(config)],
        ["route", "explain", "--config", str(config), "--json", str(lead)],
    ):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "Traceback" not in captured.err
        assert captured.err.count("\n") == 1 and captured.err.endswith("\n")
        errors.append(captured.err.rstrip("\n"))
    run_line, explain_line = errors
    assert run_line == explain_line
    if line.endswith(": "):  # bad CEL: our prefix, then the library's one-line diagnostic
        assert run_line.startswith(line) and "Syntax error" in run_line
    else:
        assert run_line == line


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_run_refuses_to_start_without_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIALER_API_TOKENS", raising=False)
    config = tmp_path / "dialer.toml"
    config.write_text('[api]\nlisten = "127.0.0.1:0"\n')
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error: api.tokens:") and "allow_anonymous" in err


def test_subcommands_are_registered() -> None:
    parser = build_parser()
    for command in ("run", "demo", "migrate"):
        args = parser.parse_args([command])
        assert callable(args.handler)


async def test_migrate_applies_then_reports_up_to_date(
    tmp_path: Path, empty_database_url: str
) -> None:
    config = tmp_path / "dialer.toml"
    config.write_text(f'[database]\nurl = "{empty_database_url}"\n')
    first = run_cli("migrate", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "0001_leads.sql" in first.stdout
    second = run_cli("migrate", "--config", str(config))
    assert second.returncode == 0 and "up to date" in second.stdout
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
    finally:
        await conn.close()


def test_unreachable_database_is_one_line_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "dialer.toml"
    config.write_text(
        '[database]\nurl = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"\n'
    )
    result = run_cli("migrate", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith("dialer: error: ")
    assert len(result.stderr.splitlines()) == 1


def test_demo_posts_samples_and_prints_timelines(pg_tmp_path: Path) -> None:
    result = run_cli(
        "demo",
        "--exit-after-posting",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(pg_tmp_path / "pgdata"),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("-> 202 ") == 3
    assert "duplicate: the first lead" in out
    assert "-> 422 invalid_field field=phone" in out
    assert out.count("received_at=") == 3
    assert "submitted_at_clamped_from" in out
    # The embedded server was released on the way out.
    assert not (pg_tmp_path / "pgdata" / "postmaster.pid").exists()
