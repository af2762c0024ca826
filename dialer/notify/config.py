"""``[notify]``: where lead lifecycle notifications go and how hard delivery tries.

Example::

    [notify]
    max_attempts = 8          # attempts before a notification is dead-lettered
    backoff_base_s = "1s"     # first retry waits up to this (full jitter), doubling...
    backoff_max_s = "10m"     # ...up to this

    [[notify.webhooks]]
    name = "crm"
    url = "https://crm.example.com/hooks/dialer"
    secret = "whsec_..."      # or DIALER_WEBHOOK_CRM_SECRET
    events = ["lead.received", "call.connected"]   # default: every event ("*")
    max_concurrency = 4

    [[notify.slack]]
    name = "sales-alerts"
    url = "https://hooks.slack.com/services/..."
    events = ["lead.sla_at_risk", "lead.sla_breached"]

    [notify.smtp]
    host = "smtp.example.com"  port = 587  username = "dialer"  password = "..."
    from = "dialer@example.com"  starttls = true    # password: or DIALER_NOTIFY_SMTP_PASSWORD

    [[notify.email]]
    name = "managers"
    to = ["sales-managers@example.com"]
    events = ["lead.sla_breached", "lead.failed"]

Endpoint names are unique across webhooks, Slack and email: the outbox stores the name.

This module imports nothing else from ``dialer`` but the pure event catalogue at import time:
``dialer.config`` imports it to declare ``Config.notify``, so ``dialer.config``'s own helpers
(``ConfigError``, ``parse_duration``) are imported when parsing, not before.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from dialer.notify.events import EVENT_TYPES, EventType

if TYPE_CHECKING:
    from dialer.config import ConfigError

__all__ = [
    "EmailEndpoint",
    "Endpoint",
    "NotifyConfig",
    "SlackEndpoint",
    "SmtpConfig",
    "WebhookEndpoint",
    "is_email_address",
    "is_http_url",
    "parse_notify",
    "smtp_password_env_var",
    "webhook_secret_env_var",
]

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ALL_EVENTS: Final = frozenset(EVENT_TYPES)
#: Seconds a delivery may take beyond its own timeout before its lease may lapse.
_LEASE_MARGIN_S: Final = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookEndpoint:
    """``[[notify.webhooks]]``: signed JSON POSTs to a CRM or any HTTP receiver."""

    name: str
    url: str
    #: HMAC-SHA256 key of the ``Dialer-Signature`` header.
    secret: str
    #: Event types sent to this endpoint (default: all).
    events: frozenset[EventType] = _ALL_EVENTS
    #: Deliveries in flight to this endpoint at once (across one daemon).
    max_concurrency: int = 4
    #: One attempt's limit (connect + response).
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackEndpoint:
    """``[[notify.slack]]``: a Slack incoming webhook (text + blocks message)."""

    name: str
    url: str
    events: frozenset[EventType] = _ALL_EVENTS
    #: Slack accepts about one message per second per webhook: one at a time by default.
    max_concurrency: int = 1
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    """``[notify.smtp]``: the mail server used by every ``[[notify.email]]`` endpoint."""

    host: str = "localhost"
    port: int = 25
    username: str = ""
    password: str = ""
    #: The ``From`` address (TOML key ``from``).
    from_address: str = "dialer@localhost"
    #: Upgrade the connection with STARTTLS (required when true).
    starttls: bool = False
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailEndpoint:
    """``[[notify.email]]``: plain-text email to fixed recipients through ``[notify.smtp]``."""

    name: str
    to: tuple[str, ...]
    events: frozenset[EventType] = _ALL_EVENTS
    max_concurrency: int = 2


#: Any configured endpoint.
Endpoint = WebhookEndpoint | SlackEndpoint | EmailEndpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyConfig:
    """``[notify]``: endpoints and the delivery policy of the outbox worker."""

    webhooks: tuple[WebhookEndpoint, ...] = ()
    slack: tuple[SlackEndpoint, ...] = ()
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    #: True when ``[notify.smtp]`` is in the file: only then do team managers with an
    #: ``email`` get SLA breach emails (``dialer.notify.managers``); the defaults of
    #: :class:`SmtpConfig` alone (a local port 25) are not taken as a mail server.
    smtp_configured: bool = False
    email: tuple[EmailEndpoint, ...] = ()
    #: Attempts before a notification is dead-lettered (status ``dead``).
    max_attempts: int = 8
    #: Retry n waits ``uniform(0, min(backoff_max_s, backoff_base_s * 2**(n-1)))`` (full jitter).
    backoff_base_s: float = 1.0
    backoff_max_s: float = 600.0
    #: Longest idle wait between checks for due rows (LISTEN/NOTIFY usually wakes it sooner).
    poll_interval_s: float = 1.0
    #: How long a claimed row stays reserved; a worker that died releases its rows this late.
    #: Must exceed every endpoint's timeout (checked).
    lease_s: float = 30.0
    #: How long stopping waits for deliveries in flight before abandoning them.
    drain_timeout_s: float = 5.0

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint: webhooks, then Slack, then email, each in file order."""
        return (*self.webhooks, *self.slack, *self.email)

    def endpoint(self, name: str) -> Endpoint | None:
        """The endpoint called ``name``, or None."""
        return next((item for item in self.endpoints if item.name == name), None)

    def endpoints_for(self, event_type: EventType | str) -> tuple[str, ...]:
        """Names of the endpoints subscribed to ``event_type`` (what to pass to enqueue)."""
        return tuple(item.name for item in self.endpoints if event_type in item.events)


# --------------------------------------------------------------------------- parsing


def webhook_secret_env_var(name: str) -> str:
    """The environment variable that overrides webhook ``name``'s secret."""
    return "DIALER_WEBHOOK_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_SECRET"


def smtp_password_env_var() -> str:
    """The environment variable that overrides ``[notify.smtp] password``."""
    return "DIALER_NOTIFY_SMTP_PASSWORD"


def _error(path: str, message: str) -> ConfigError:
    from dialer.config import ConfigError  # see the module docstring: import cycle

    return ConfigError(path, message)


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


_MISSING: Any = object()


class _Reader:
    """Typed, path-aware reads of one TOML table; unread keys are errors at :meth:`finish`."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data
        self.path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self.data.get(name, _MISSING)

    def finish(self) -> None:
        for name in self.data:
            if name not in self._seen:
                raise _error(self.key(name), "unknown key")

    def string(self, name: str, default: str | None = None, *, nonempty: bool = False) -> str:
        value = self.raw(name)
        if value is _MISSING:
            if default is None:
                raise _error(self.key(name), "required key is missing")
            return default
        if not isinstance(value, str):
            raise _error(self.key(name), f"expected a string; got {_type_name(value)}")
        if nonempty and not value.strip():
            raise _error(self.key(name), "expected a non-empty string")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise _error(self.key(name), f"expected true or false; got {_type_name(value)}")
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise _error(self.key(name), f"expected an integer; got {_type_name(value)}")
        if not minimum <= value <= maximum:
            raise _error(self.key(name), f"expected an integer {minimum}-{maximum}; got {value}")
        return value

    def duration(self, name: str, default: float) -> float:
        from dialer.config import parse_duration  # see the module docstring: import cycle

        value = self.raw(name)
        if value is _MISSING:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise _error(self.key(name), str(exc)) from None
        if seconds <= 0 or not math.isfinite(seconds):
            raise _error(self.key(name), f"expected a duration > 0; got {value!r}")
        return seconds

    def url(self, name: str) -> str:
        value = self.string(name, nonempty=True)
        if not is_http_url(value):
            raise _error(self.key(name), f'expected an http:// or https:// URL; got "{value}"')
        return value

    def events(self, name: str) -> frozenset[EventType]:
        value = self.raw(name)
        if value is _MISSING:
            return _ALL_EVENTS
        if not isinstance(value, list) or not value:
            raise _error(
                self.key(name), 'expected a non-empty array of event types (or ["*"] for all)'
            )
        chosen: set[EventType] = set()
        known = ", ".join(EVENT_TYPES)
        for index, item in enumerate(value):
            if item == "*":
                chosen |= _ALL_EVENTS
            elif isinstance(item, str) and item in _ALL_EVENTS:
                chosen.add(EventType(item))
            else:
                shown = f'"{item}"' if isinstance(item, str) else _type_name(item)
                raise _error(
                    f"{self.key(name)}[{index}]", f"expected one of *, {known}; got {shown}"
                )
        return frozenset(chosen)

    def tables(self, name: str) -> list[_Reader]:
        value = self.raw(name)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            raise _error(
                self.key(name),
                f"expected an array of tables ([[{self.key(name)}]]); got {_type_name(value)}",
            )
        readers = []
        for index, item in enumerate(value):
            item_path = f"{self.key(name)}[{index}]"
            if not isinstance(item, dict):
                raise _error(item_path, f"expected a table; got {_type_name(item)}")
            readers.append(_Reader(item, item_path))
        return readers

    def table(self, name: str) -> _Reader | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        if not isinstance(value, dict):
            raise _error(self.key(name), f"expected a table; got {_type_name(value)}")
        return _Reader(value, self.key(name))


def _endpoint_name(table: _Reader) -> str:
    name = table.string("name")
    if not _NAME_RE.match(name):
        raise _error(
            table.key("name"),
            f'expected letters, digits, "_", "." or "-" (at most 64, starting with a letter '
            f'or digit); got "{name}"',
        )
    return name


def _parse_webhook(table: _Reader, env: Mapping[str, str]) -> WebhookEndpoint:
    name = _endpoint_name(table)
    secret = env.get(webhook_secret_env_var(name)) or table.string("secret", "")
    table.raw("secret")
    if not secret:
        raise _error(
            table.key("secret"),
            f"required (or set {webhook_secret_env_var(name)}): receivers verify signatures",
        )
    endpoint = WebhookEndpoint(
        name=name,
        url=table.url("url"),
        secret=secret,
        events=table.events("events"),
        max_concurrency=table.integer("max_concurrency", 4, minimum=1, maximum=64),
        timeout_s=table.duration("timeout_s", 10.0),
    )
    table.finish()
    return endpoint


def _parse_slack(table: _Reader) -> SlackEndpoint:
    endpoint = SlackEndpoint(
        name=_endpoint_name(table),
        url=table.url("url"),
        events=table.events("events"),
        max_concurrency=table.integer("max_concurrency", 1, minimum=1, maximum=16),
        timeout_s=table.duration("timeout_s", 10.0),
    )
    table.finish()
    return endpoint


def is_http_url(value: str) -> bool:
    """True for an ``http://`` or ``https://`` URL with a host (webhook and Slack URLs)."""
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_email_address(value: str) -> bool:
    """True when ``value`` looks like one address (``a@b`` or ``Name <a@b>``)."""
    parsed = getaddresses([value])
    if len(parsed) != 1:  # "a@x, b@y" is a list, not an address
        return False
    address = parsed[0][1]
    local, at, domain = address.partition("@")
    return bool(local and at and domain) and "@" not in domain and " " not in address


def _address(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise _error(path, f"expected an email address; got {_type_name(value)}")
    if not is_email_address(value):
        raise _error(path, f'expected an email address; got "{value}"')
    return value


def _parse_email(table: _Reader) -> EmailEndpoint:
    name = _endpoint_name(table)
    raw_to = table.raw("to")
    if raw_to is _MISSING:
        raise _error(table.key("to"), "required key is missing")
    if isinstance(raw_to, str):
        raw_to = [raw_to]
    if not isinstance(raw_to, list) or not raw_to:
        raise _error(table.key("to"), "expected a non-empty array of email addresses")
    to = tuple(_address(f"{table.key('to')}[{i}]", item) for i, item in enumerate(raw_to))
    endpoint = EmailEndpoint(
        name=name,
        to=to,
        events=table.events("events"),
        max_concurrency=table.integer("max_concurrency", 2, minimum=1, maximum=16),
    )
    table.finish()
    return endpoint


def _parse_smtp(table: _Reader | None, env: Mapping[str, str]) -> SmtpConfig:
    defaults = SmtpConfig()
    env_password = env.get(smtp_password_env_var())
    if table is None:
        if env_password:
            return SmtpConfig(password=env_password)
        return defaults
    smtp = SmtpConfig(
        host=table.string("host", defaults.host, nonempty=True),
        port=table.integer("port", defaults.port, minimum=1, maximum=65535),
        username=table.string("username", defaults.username),
        password=env_password or table.string("password", defaults.password),
        from_address=_address(table.key("from"), table.string("from", defaults.from_address)),
        starttls=table.boolean("starttls", defaults.starttls),
        timeout_s=table.duration("timeout_s", defaults.timeout_s),
    )
    table.raw("password")
    table.finish()
    return smtp


def _check_unique(names: Sequence[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for path, name in names:
        if name in seen:
            raise _error(
                f"{path}.name", f'"{name}" is already the name of {seen[name]}; names are unique'
            )
        seen[name] = path


def parse_notify(raw: object, env: Mapping[str, str] = os.environ) -> NotifyConfig:
    """Build :class:`NotifyConfig` from the raw ``[notify]`` TOML table (None: absent).

    Raises ``dialer.config.ConfigError`` naming the key (``notify.webhooks[1].url: ...``).
    Environment overrides: ``DIALER_WEBHOOK_<NAME>_SECRET`` (name upper-cased, other
    characters -> ``_``) and ``DIALER_NOTIFY_SMTP_PASSWORD``.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _error("notify", f"expected a table; got {_type_name(raw)}")
    root = _Reader(raw, "notify")
    webhooks = tuple(_parse_webhook(item, env) for item in root.tables("webhooks"))
    slack = tuple(_parse_slack(item) for item in root.tables("slack"))
    smtp_table = root.table("smtp")
    smtp = _parse_smtp(smtp_table, env)
    email = tuple(_parse_email(item) for item in root.tables("email"))
    if email and smtp_table is None:
        raise _error("notify.smtp", "required when [[notify.email]] endpoints are configured")
    _check_unique(
        [(f"notify.webhooks[{i}]", item.name) for i, item in enumerate(webhooks)]
        + [(f"notify.slack[{i}]", item.name) for i, item in enumerate(slack)]
        + [(f"notify.email[{i}]", item.name) for i, item in enumerate(email)]
    )
    defaults = NotifyConfig()
    max_attempts = root.integer("max_attempts", defaults.max_attempts, minimum=1, maximum=100)
    backoff_base_s = root.duration("backoff_base_s", defaults.backoff_base_s)
    backoff_max_s = root.duration("backoff_max_s", defaults.backoff_max_s)
    if backoff_max_s < backoff_base_s:
        raise _error(
            "notify.backoff_max_s",
            f"expected at least backoff_base_s ({backoff_base_s:g}s); got {backoff_max_s:g}s",
        )
    poll_interval_s = root.duration("poll_interval_s", defaults.poll_interval_s)
    drain_timeout_s = root.duration("drain_timeout_s", defaults.drain_timeout_s)
    timeouts = [item.timeout_s for item in webhooks] + [item.timeout_s for item in slack]
    # With [notify.smtp], team managers' breach emails use it even without [[notify.email]].
    uses_smtp = bool(email) or smtp_table is not None
    longest = max([*timeouts, smtp.timeout_s] if uses_smtp else timeouts, default=0.0)
    lease_default = max(defaults.lease_s, longest + _LEASE_MARGIN_S)
    lease_s = root.duration("lease_s", lease_default)
    if lease_s < longest + _LEASE_MARGIN_S:
        raise _error(
            "notify.lease_s",
            f"expected at least the longest endpoint timeout + {_LEASE_MARGIN_S:g}s "
            f"({longest + _LEASE_MARGIN_S:g}s); got {lease_s:g}s",
        )
    root.finish()
    return NotifyConfig(
        webhooks=webhooks,
        slack=slack,
        smtp=smtp,
        smtp_configured=smtp_table is not None,
        email=email,
        max_attempts=max_attempts,
        backoff_base_s=backoff_base_s,
        backoff_max_s=backoff_max_s,
        poll_interval_s=poll_interval_s,
        lease_s=lease_s,
        drain_timeout_s=drain_timeout_s,
    )
