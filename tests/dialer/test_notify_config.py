"""dialer.notify.config: the [notify] section, its defaults, errors and env overrides."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from typing import Any

import pytest

from dialer.config import ConfigError
from dialer.notify.config import (
    NotifyConfig,
    SmtpConfig,
    parse_notify,
    smtp_password_env_var,
    webhook_secret_env_var,
)
from dialer.notify.events import EVENT_TYPES, EventType

FULL = """
max_attempts = 5
backoff_base_s = "500ms"
backoff_max_s = "2m"

[[webhooks]]
name = "crm"
url = "https://crm.example.com/hook"
secret = "s3cret"
events = ["lead.received", "call.connected"]
max_concurrency = 3

[[webhooks]]
name = "warehouse"
url = "http://127.0.0.1:9000/in"
secret = "other"

[[slack]]
name = "alerts"
url = "https://hooks.slack.com/services/T/B/X"
events = ["lead.sla_breached"]

[smtp]
host = "mail.example.com"
port = 587
username = "dialer"
password = "pw"
from = "Dialer <dialer@example.com>"
starttls = true

[[email]]
name = "managers"
to = ["boss@example.com", "Deputy <deputy@example.com>"]
events = ["lead.sla_breached", "lead.failed"]
"""


def parse(text: str, env: dict[str, str] | None = None) -> NotifyConfig:
    return parse_notify(tomllib.loads(text), env=env or {})


def test_defaults_mean_no_endpoints() -> None:
    raws: list[dict[str, Any] | None] = [None, {}]
    for raw in raws:
        config = parse_notify(raw, env={})
        assert config == NotifyConfig()
        assert config.endpoints == ()
        assert config.endpoints_for(EventType.LEAD_RECEIVED) == ()
    assert NotifyConfig().max_attempts == 8
    assert NotifyConfig().backoff_base_s == 1.0
    assert NotifyConfig().backoff_max_s == 600.0


def test_full_section() -> None:
    config = parse(FULL)
    assert config.max_attempts == 5
    assert config.backoff_base_s == 0.5
    assert config.backoff_max_s == 120.0
    crm, warehouse = config.webhooks
    assert crm.url == "https://crm.example.com/hook"
    assert crm.secret == "s3cret"
    assert crm.events == {EventType.LEAD_RECEIVED, EventType.CALL_CONNECTED}
    assert crm.max_concurrency == 3
    assert warehouse.events == frozenset(EVENT_TYPES)  # default: every event
    assert warehouse.max_concurrency == 4
    assert config.slack[0].max_concurrency == 1
    assert config.smtp == SmtpConfig(
        host="mail.example.com",
        port=587,
        username="dialer",
        password="pw",
        from_address="Dialer <dialer@example.com>",
        starttls=True,
    )
    assert config.email[0].to == ("boss@example.com", "Deputy <deputy@example.com>")
    assert [e.name for e in config.endpoints] == ["crm", "warehouse", "alerts", "managers"]
    assert config.endpoint("alerts") is config.slack[0]
    assert config.endpoint("nope") is None
    assert config.endpoints_for("lead.received") == ("crm", "warehouse")
    assert config.endpoints_for(EventType.LEAD_SLA_BREACHED) == ("warehouse", "alerts", "managers")
    # The lease outlasts the slowest endpoint (SMTP's 30 s timeout) with a margin.
    assert config.lease_s >= config.smtp.timeout_s + 3


def test_star_means_every_event() -> None:
    config = parse('[[slack]]\nname = "a"\nurl = "https://x.test/"\nevents = ["*"]\n')
    assert config.slack[0].events == frozenset(EVENT_TYPES)


def test_secrets_from_environment() -> None:
    text = '[[webhooks]]\nname = "crm-eu"\nurl = "https://x.test/"\n[smtp]\nhost = "h"\n'
    env = {webhook_secret_env_var("crm-eu"): "from-env", smtp_password_env_var(): "pw-env"}
    assert webhook_secret_env_var("crm-eu") == "DIALER_WEBHOOK_CRM_EU_SECRET"
    config = parse(text, env)
    assert config.webhooks[0].secret == "from-env"
    assert config.smtp.password == "pw-env"
    overridden = parse(text.replace('"https://x.test/"', '"https://x.test/"\nsecret = "file"'), env)
    assert overridden.webhooks[0].secret == "from-env"


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ("surprise = 1", "notify.surprise", "unknown key"),
        (
            "[[webhooks]]\nurl = 'https://x.test'\nsecret = 's'",
            "notify.webhooks[0].name",
            "missing",
        ),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'ftp://x.test'\nsecret = 's'",
            "notify.webhooks[0].url",
            "http:// or https://",
        ),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'https://x.test'",
            "notify.webhooks[0].secret",
            "DIALER_",
        ),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'https://x.test'\nsecret = 's'\n"
            "events = ['lead.lost']",
            "notify.webhooks[0].events[0]",
            'got "lead.lost"',
        ),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'https://x.test'\nsecret = 's'\nmax_concurrency = 0",
            "notify.webhooks[0].max_concurrency",
            "1-64",
        ),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'https://x.test'\nsecret = 's'\nmethod = 'PUT'",
            "notify.webhooks[0].method",
            "unknown key",
        ),
        (
            "[[slack]]\nname = 'has space'\nurl = 'https://x.test'",
            "notify.slack[0].name",
            "letters",
        ),
        (
            "[[slack]]\nname = 'a'\nurl = 'https://x.test'\n[[email]]\nname = 'a'\nto = ['x@y.z']\n"
            "[smtp]\nhost = 'h'",
            "notify.email[0].name",
            "already the name of notify.slack[0]",
        ),
        ("[[email]]\nname = 'm'\nto = ['x@y.z']", "notify.smtp", "required"),
        (
            "[[email]]\nname = 'm'\nto = ['nobody']\n[smtp]\nhost = 'h'",
            "notify.email[0].to[0]",
            "email",
        ),
        ("[[email]]\nname = 'm'\nto = []\n[smtp]\nhost = 'h'", "notify.email[0].to", "non-empty"),
        ("[smtp]\nport = 70000", "notify.smtp.port", "1-65535"),
        ("[smtp]\nfrom = 'not an address'", "notify.smtp.from", "email address"),
        ("max_attempts = 0", "notify.max_attempts", "1-100"),
        ("backoff_base_s = '1x'", "notify.backoff_base_s", "duration"),
        ("backoff_base_s = '10s'\nbackoff_max_s = '1s'", "notify.backoff_max_s", "at least"),
        ("lease_s = '2s'", "notify.lease_s", "longest endpoint timeout"),
        ("webhooks = 3", "notify.webhooks", "array of tables"),
    ],
)
def test_errors_name_the_key(text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.key_path == key
    assert message in caught.value.message
    assert "\n" not in str(caught.value)


def test_not_a_table() -> None:
    bad: Any = ["x"]
    with pytest.raises(ConfigError, match="notify: expected a table"):
        parse_notify(bad, env={})


def test_importing_notify_config_does_not_import_dialer_config() -> None:
    # dialer.config imports dialer.notify.config to declare Config.notify: no cycle allowed.
    code = (
        "import sys, dialer.notify, dialer.notify.config, dialer.notify.events; "
        "print('dialer.config' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
