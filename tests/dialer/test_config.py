"""dialer.config: defaults, every section, env overrides, and one-line errors naming the key."""

from __future__ import annotations

import tomllib
from datetime import date, time
from pathlib import Path

import pytest

from dialer.config import (
    Config,
    ConfigError,
    Strategy,
    TimeRange,
    load_config,
    parse_config,
    parse_duration,
    parse_hostport,
    trunk_password_env_var,
)
from dialer.domain import Intent, RingMode

FULL = """
[api]
listen = "127.0.0.1:9000"
tokens = ["t1", "t2"]
max_body_bytes = 2048
default_region = "gb"
public_url = "https://dialer.example/"

[database]
url = "postgresql://u@db/dialer"
pool_min = 2
pool_max = 8

[sip]
listen = "[::1]:5070"
transport = "tcp"
t1_s = "250ms"

[[trunks]]
name = "main-eu"
proxy = "sip:trunk.example:5060"
username = "acct"
caller_id = "+442071838750"
max_cps = 5

[[reps]]
id = "alice"
name = "Alice"
sip_uri = "sip:alice@127.0.0.1:5062"
team = "west"
skills = ["spanish"]
weight = 2.5
max_leads_per_hour = 10
timezone = "America/Los_Angeles"
working_hours = { mon = "09:00-17:00", sat = "00:00-24:00" }
pto = [{ start = 2024-12-24, end = "2024-12-31" }]

[[reps]]
id = "bob"
sip_uri = "+14155552671"
teams = ["east", "west"]

[[teams]]
id = "west"
manager = { name = "Wendy", email = "w@example.com" }

[[owners]]
domain = "ACME.com"
rep = "alice"

[ringing]
mode = "waves"
ring_timeout_s = "15s"
wave_size = 2
accept = "press1"

[[routing.rules]]
name = "hot"
when = 'lead.intent == "high"'
pool = { teams = ["west"], skills = ["spanish"] }
strategy = "least_recent"
ring = { mode = "parallel", size = 3 }
sla = "2m"
overflow = { reps = ["bob"] }

[routing.fallback]
strategy = "random"

[sla]
high = "1m"
default = "2h"

[retry]
max_rounds = 5

[compliance]
calling_hours = "09:00-20:00"
require_consent = true

[daemon]
instance_id = "node-1"
lease_s = 10
max_leads_in_progress = 60
max_routing = 4
rep_snapshot_s = "100ms"

[log]
level = "WARNING"
format = "json"
"""


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(tomllib.loads(text), env=env or {})


def error_of(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    return caught.value


def test_empty_config_has_every_default() -> None:
    config = parse("")
    assert config.api.listen == "127.0.0.1:8080"
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)
    assert config.api.tokens == ()
    assert config.api.allow_anonymous is False
    assert config.api.max_body_bytes == 65536
    assert config.database.url == ""
    assert config.database.data_dir == Path("./var/pgdata")
    assert [t.name for t in config.trunks] == ["primary"]
    assert config.trunks[0].caller_id == "+15550100000"
    assert config.reps == () and config.routing.rules == () and config.routing.fallback is None
    assert config.ringing.mode is RingMode.PARALLEL
    assert config.sla.high == 300 and config.sla.low == 86400
    assert str(config.compliance.calling_hours) == "08:00-21:00"
    assert config.log.format == "auto"


def test_full_config_parses_every_section() -> None:
    config = parse(FULL)
    assert config.api.tokens == ("t1", "t2")
    assert config.api.default_region == "GB"
    assert config.api.public_url == "https://dialer.example"
    assert config.database.pool_max == 8
    assert (config.sip.host, config.sip.port, config.sip.transport) == ("::1", 5070, "tcp")
    assert config.sip.t1_s == pytest.approx(0.25)
    trunk = config.trunks[0]
    assert (trunk.name, trunk.max_cps, trunk.max_calls) == ("main-eu", 5.0, 100)
    alice, bob = config.reps
    assert alice.teams == ("west",) and bob.teams == ("east", "west")
    assert bob.name == "bob"
    assert alice.working_hours is not None
    assert alice.working_hours.for_weekday(0) == TimeRange(start_minute=540, end_minute=1020)
    assert alice.working_hours.for_weekday(1) is None
    assert alice.working_hours.for_weekday(5) is not None
    assert alice.working_hours.for_weekday(5).is_all_day  # type: ignore[union-attr]
    assert alice.pto[0].contains(date(2024, 12, 25)) and not alice.pto[0].contains(date(2025, 1, 1))
    assert alice.tz.key == "America/Los_Angeles"
    assert config.teams[0].manager is not None and config.teams[0].manager.name == "Wendy"
    assert config.team_ids == {"west", "east"}
    assert config.owners[0].domain == "acme.com"
    assert config.ringing.mode is RingMode.WAVES and config.ringing.ring_timeout_s == 15
    rule = config.routing.rules[0]
    assert rule.strategy is Strategy.LEAST_RECENT and rule.sla == 120
    assert rule.ring is not None and rule.ring.mode is RingMode.PARALLEL and rule.ring.size == 3
    assert rule.ring.ring_timeout_s is None
    assert rule.overflow is not None and rule.overflow.reps == ("bob",)
    fallback = config.routing.fallback
    assert fallback is not None and fallback.name == "fallback" and fallback.pool.is_everyone
    assert config.sla.for_intent(Intent.HIGH) == 60 and config.sla.for_intent(None) == 7200
    assert config.retry.max_rounds == 5
    assert config.compliance.require_consent
    assert config.compliance.calling_hours.contains(time(9, 0))
    assert not config.compliance.calling_hours.contains(time(20, 0))
    assert config.daemon.resolved_instance_id() == "node-1"
    assert config.daemon.max_leads_in_progress == 60 and config.daemon.max_routing == 4
    assert config.daemon.rep_snapshot_s == pytest.approx(0.1)
    assert config.log.level == "warning" and config.log.format == "json"
    assert config.rep("bob") is bob and config.rep("nobody") is None


def test_config_values_are_frozen() -> None:
    config = parse("")
    with pytest.raises(AttributeError):
        config.api.listen = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("bogus = 1", "bogus", "unknown key"),
        ("[api]\nlisten = 8080", "api.listen", "expected a string"),
        ('[api]\nlisten = "localhost"', "api.listen", "host:port"),
        ('[api]\ntokens = "abc"', "api.tokens", "array of strings"),
        ('[api]\nallow_anonymous = "yes"', "api.allow_anonymous", "true or false"),
        ("[api]\nmax_body_bytes = 10", "api.max_body_bytes", ">= 1024"),
        ('[api]\ndefault_region = "XX"', "api.default_region", "region code"),
        ('[database]\nurl = "mysql://x"', "database.url", "postgresql://"),
        ("[database]\npool_min = 5\npool_max = 2", "database.pool_max", ">= pool_min"),
        ('[sip]\ntransport = "sctp"', "sip.transport", 'one of udp, tcp; got "sctp"'),
        ('[sip]\nt1_s = "5 minutes"', "sip.t1_s", "duration"),
        ("[sip]\nt1_s = -1", "sip.t1_s", "non-negative"),
        ('[[trunks]]\nproxy = "sip:x"', "trunks[0].name", "required"),
        ('[[trunks]]\nname = "a"\ncaller_id = "555"', "trunks[0].caller_id", "E.164"),
        ('[[trunks]]\nname = "a"\n[[trunks]]\nname = "a"', "trunks[1].name", "duplicate"),
        ('[[reps]]\nid = "a"', "reps[0].sip_uri", "required"),
        ('[[reps]]\nid = "a"\nsip_uri = "alice"', "reps[0].sip_uri", "sip:"),
        (
            '[[reps]]\nid = "a"\nsip_uri = "sip:a@h"\ntimezone = "Mars/Base"',
            "reps[0].timezone",
            "IANA",
        ),
        ('[[reps]]\nid = "a"\nsip_uri = "sip:a@h"\nweight = 0', "reps[0].weight", "> 0"),
        (
            '[[reps]]\nid = "a"\nsip_uri = "sip:a@h"\nworking_hours = { mon = "17:00-09:00" }',
            "reps[0].working_hours.mon",
            "start before the end",
        ),
        (
            '[[reps]]\nid = "a"\nsip_uri = "sip:a@h"\nworking_hours = { mnday = "09:00-17:00" }',
            "reps[0].working_hours.mnday",
            "unknown key",
        ),
        (
            '[[reps]]\nid = "a"\nsip_uri = "sip:a@h"\n'
            'pto = [{ start = "2024-01-05", end = "2024-01-01" }]',
            "reps[0].pto[0].end",
            "on or after start",
        ),
        (
            '[[reps]]\nid = "a"\nsip_uri = "sip:a@h"\n[[reps]]\nid = "a"\nsip_uri = "sip:b@h"',
            "reps[1].id",
            "duplicate",
        ),
        ('[[owners]]\ndomain = "x.com"\nrep = "ghost"', "owners[0].rep", 'unknown rep "ghost"'),
        ('[ringing]\nmode = "broadcast"', "ringing.mode", "parallel, sequential, waves"),
        ('[ringing]\naccept = "dtmf"', "ringing.accept", "answer, press1"),
        ("[ringing]\nwave_size = 0", "ringing.wave_size", ">= 1"),
        ("[ringing]\nring_timeout_s = true", "ringing.ring_timeout_s", "duration"),
        (
            '[[routing.rules]]\nname = "a"\n[[routing.rules]]\nname = "b"\n[[routing.rules]]\n'
            'name = "c"\nstrategy = "fastest"',
            "routing.rules[2].strategy",
            'rule "c": expected one of round_robin, weighted, least_recent, fewest_calls, random, '
            'owner; got "fastest"',
        ),
        ('[[routing.rules]]\nwhen = "true"', "routing.rules[0].name", "required"),
        (
            '[[routing.rules]]\nname = "a"\npool = { teams = ["nope"] }',
            "routing.rules[0].pool.teams[0]",
            'rule "a": unknown team "nope"',
        ),
        (
            '[[routing.rules]]\nname = "a"\npool = { reps = ["ghost"] }',
            "routing.rules[0].pool.reps[0]",
            'rule "a": unknown rep "ghost"',
        ),
        (
            '[[routing.rules]]\nname = "a"\noverflow = { reps = ["ghost"] }',
            "routing.rules[0].overflow.reps[0]",
            'rule "a": unknown rep "ghost"',
        ),
        (
            '[[routing.rules]]\nname = "a"\nring = { size = 0 }',
            "routing.rules[0].ring.size",
            'rule "a": expected an integer >= 1',
        ),
        (
            '[[routing.rules]]\nname = "a"\nwen = "true"',
            "routing.rules[0].wen",
            'rule "a": unknown',
        ),
        (
            '[routing.fallback]\npool = { teams = ["nope"] }',
            "routing.fallback.pool.teams[0]",
            'rule "fallback": unknown team "nope"',
        ),
        (
            '[routing.fallback]\nstrategy = "fastest"',
            "routing.fallback.strategy",
            'rule "fallback": expected one of',
        ),
        ('[[routing.rules]]\nname = "fallback"', "routing.rules[0].name", "reserved"),
        ('[routing.fallback]\nname = "other"', "routing.fallback.name", "fallback"),
        ("[sla]\nat_risk_fraction = 1.5", "sla.at_risk_fraction", "between 0 and 1"),
        ('[compliance]\ncalling_hours = "8-21"', "compliance.calling_hours", "HH:MM"),
        ("[retry]\nmax_rounds = 1.5", "retry.max_rounds", "integer"),
        ('[log]\nformat = "xml"', "log.format", "auto, json, console"),
        ("[daemon]\nlease_s = 0", "daemon.lease_s", "> 0"),
        ("[daemon]\nmax_routing = 0", "daemon.max_routing", ">= 1"),
        ("[daemon]\nmax_leads_in_progress = 0", "daemon.max_leads_in_progress", ">= 1"),
        ('[daemon]\nrep_snapshot_s = "10s"', "daemon.rep_snapshot_s", "at most 5s"),
    ],
)
def test_bad_values_name_the_key_on_one_line(text: str, key: str, fragment: str) -> None:
    error = error_of(text)
    assert error.key_path == key
    assert str(error).startswith(f"config error: {key}: ")
    assert fragment in str(error)
    assert "\n" not in str(error)


def test_env_overrides_database_tokens_and_trunk_password() -> None:
    env = {
        "DIALER_DATABASE_URL": "postgresql://env@db/x",
        "DIALER_API_TOKENS": " a , b,,",
        "DIALER_TRUNK_MAIN_EU_PASSWORD": "s3cret",
    }
    config = parse(FULL, env)
    assert config.database.url == "postgresql://env@db/x"
    assert config.api.tokens == ("a", "b")
    assert config.trunks[0].password == "s3cret"
    assert "s3cret" not in repr(config.trunks[0])


def test_env_overrides_apply_to_the_default_trunk_and_empty_tokens_are_ignored() -> None:
    config = parse(
        '[api]\ntokens = ["keep"]',
        {"DIALER_TRUNK_PRIMARY_PASSWORD": "p", "DIALER_API_TOKENS": " , "},
    )
    assert config.trunks[0].password == "p"
    assert config.api.tokens == ("keep",)


def test_trunk_password_env_var_name() -> None:
    assert trunk_password_env_var("main-eu.2") == "DIALER_TRUNK_MAIN_EU_2_PASSWORD"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (0.5, 0.5),
        ("500ms", 0.5),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["5", "m", "5 weeks", "-5s", True, None, [1]])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_parse_hostport() -> None:
    assert parse_hostport("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_hostport("[::1]:80") == ("::1", 80)
    for bad in ["::1:80", "host", "host:99999", ":80"]:
        with pytest.raises(ValueError):
            parse_hostport(bad)


def test_load_config_file_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="file not found"):
        load_config(missing, env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[api\nlisten = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(broken, env={})
    assert "invalid TOML" in str(caught.value) and "\n" not in str(caught.value)
    good = tmp_path / "good.toml"
    good.write_text('[api]\nlisten = "127.0.0.1:1234"\n')
    assert load_config(good, env={}).api.port == 1234
    assert load_config(None, env={}) == parse_config({}, env={})


def test_sip_advertise_defaults_to_the_listen_host() -> None:
    sip = parse_config({"sip": {"listen": "192.0.2.10:5070"}}, env={}).sip
    assert sip.advertise == ""
    assert sip.advertised_host == "192.0.2.10"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("sbc.example.com", "sbc.example.com"),
    ],
)
def test_sip_advertise_accepts_addresses_and_names(value: str, stored: str) -> None:
    sip = parse_config({"sip": {"listen": "0.0.0.0:5060", "advertise": value}}, env={}).sip
    assert sip.advertise == stored
    assert sip.advertised_host == stored
    assert sip.host == "0.0.0.0"


@pytest.mark.parametrize("listen", ["0.0.0.0:5060", "[::]:5060"])
def test_sip_wildcard_listen_requires_advertise(listen: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sip": {"listen": listen}}, env={})
    assert caught.value.key_path == "sip.advertise"
    assert str(caught.value).startswith("config error: sip.advertise: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", ["0.0.0.0", "::", "host:5060", "bad host", "-x.example"])
def test_sip_advertise_rejects_bad_values(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sip": {"advertise": value}}, env={})
    assert caught.value.key_path == "sip.advertise"


def test_sip_advertise_env_override() -> None:
    env = {"DIALER_SIP_ADVERTISE": "198.51.100.3"}
    sip = parse_config({"sip": {"listen": "0.0.0.0:5060", "advertise": "192.0.2.1"}}, env=env).sip
    assert sip.advertised_host == "198.51.100.3"
    # The override also satisfies a wildcard listen with nothing in the file.
    assert (
        parse_config({"sip": {"listen": "0.0.0.0:5060"}}, env=env).sip.advertise == "198.51.100.3"
    )
    # An empty variable is ignored.
    sip = parse_config({"sip": {"advertise": "192.0.2.1"}}, env={"DIALER_SIP_ADVERTISE": " "}).sip
    assert sip.advertise == "192.0.2.1"


# -- [media]: press-1-to-accept ---------------------------------------------------------------


def test_media_defaults_follow_sip_and_ship_a_prompt() -> None:
    media = parse_config({"sip": {"listen": "127.0.0.2:5070"}}, env={}).media
    assert media.rtp_host == "127.0.0.2"
    assert media.rtp_ports == (16384, 32767)
    assert media.ringback == "us"
    assert media.prompt.name == "press1.wav" and media.prompt.is_file()


def test_media_settings_are_read(tmp_path: Path) -> None:
    prompt = tmp_path / "accept.wav"
    prompt.write_bytes(b"RIFF")
    media = parse_config(
        {
            "ringing": {"accept": "press1"},
            "media": {
                "rtp_host": "127.0.0.3",
                "rtp_ports": "20000-20100",
                "prompt": str(prompt),
                "ringback": "eu",
            },
        },
        env={},
    ).media
    assert (media.rtp_host, media.rtp_ports, media.prompt, media.ringback) == (
        "127.0.0.3",
        (20000, 20100),
        prompt,
        "eu",
    )


@pytest.mark.parametrize(
    "data",
    [
        {"ringing": {"accept": "press1"}},
        {"routing": {"rules": [{"name": "web", "accept": "press1"}]}},
    ],
)
def test_missing_prompt_is_a_startup_error_when_press1_is_used(
    tmp_path: Path, data: dict[str, object]
) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(ConfigError) as caught:
        parse_config({**data, "media": {"prompt": str(missing)}}, env={})
    assert caught.value.key_path == "media.prompt"
    assert str(missing) in str(caught.value)


def test_missing_prompt_is_fine_without_press1(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    assert parse_config({"media": {"prompt": str(missing)}}, env={}).media.prompt == missing


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("rtp_ports", "30000-20000"),
        ("rtp_ports", "80-90"),
        ("rtp_ports", "lots"),
        ("ringback", "mars"),
        ("bogus", "x"),
    ],
)
def test_media_rejects_bad_values(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"media": {key: value}}, env={})
    assert caught.value.key_path == f"media.{key}"


@pytest.mark.parametrize(
    ("manager", "key", "fragment"),
    [
        ('slack_webhook = "hooks.slack.com/x"', "slack_webhook", "http:// or https:// URL"),
        ('slack_webhook = "ftp://hooks.example.com/x"', "slack_webhook", "http:// or https://"),
        ('email = "wendy"', "email", 'expected an email address; got "wendy"'),
        ('email = "a@x.com, b@x.com"', "email", "expected an email address"),
        ("email = 3", "email", "expected a string"),
    ],
)
def test_bad_manager_contacts_name_the_key(manager: str, key: str, fragment: str) -> None:
    error = error_of(f'[[teams]]\nid = "west"\n[teams.manager]\nname = "W"\n{manager}')
    assert error.key_path == f"teams[0].manager.{key}"
    assert fragment in str(error) and "\n" not in str(error)


def test_manager_contacts_are_kept_and_the_slack_webhook_is_not_printed() -> None:
    config = parse(
        '[[teams]]\nid = "west"\n[teams.manager]\nname = "W"\nemail = " Wendy <w@x.com> "\n'
        'slack_webhook = "https://hooks.slack.com/services/T/B/secret"'
    )
    manager = config.teams[0].manager
    assert manager is not None
    assert manager.email == "Wendy <w@x.com>"
    assert manager.slack_webhook == "https://hooks.slack.com/services/T/B/secret"
    assert "secret" not in repr(config.teams[0])
