"""The daemon's configuration: TOML in, frozen typed values out.

Every key has a default, so ``dialer demo`` runs with no file at all. Unknown keys, wrong types
and bad values raise :class:`ConfigError`, whose ``str`` is one line naming the key, e.g.::

    config error: routing.rules[2].strategy: rule "hot": expected one of round_robin, ...; got "x"

Durations accept a number of seconds or a string with a unit: ``"500ms"``, ``"90s"``, ``"5m"``,
``"1h"``, ``"2d"``; they become ``float`` seconds.

Environment overrides (secrets and the database stay out of files):

- ``DIALER_DATABASE_URL`` -> ``database.url``
- ``DIALER_API_TOKENS`` (comma-separated; ignored when it holds no token) -> ``api.tokens``
- ``DIALER_SIP_ADVERTISE`` (ignored when empty) -> ``sip.advertise``
- ``DIALER_CRM_URL`` (ignored when empty) -> ``api.crm_url``
- ``DIALER_TRUNK_<NAME>_PASSWORD`` (trunk name upper-cased, non-alphanumerics -> ``_``)
  -> that trunk's ``password``

Relative paths (``database.data_dir``) are relative to the working directory of the daemon.
CEL sources in ``routing.rules[].when`` are kept as strings: ``dialer.routing`` compiles them.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import os
import re
import shutil
import socket
import string
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, time
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialer.domain import Intent, RingMode
from dialer.notify.config import NotifyConfig, is_email_address, is_http_url, parse_notify

__all__ = [
    "CRM_URL_ENV",
    "DEFAULT_RTP_PORTS",
    "AcceptMode",
    "ApiConfig",
    "ComplianceConfig",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DatabaseConfig",
    "DateRange",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "ManagerConfig",
    "MediaConfig",
    "OwnerConfig",
    "PoolConfig",
    "RepConfig",
    "RetryConfig",
    "RingConfig",
    "RingbackRegionName",
    "RingingConfig",
    "RoutingConfig",
    "RuleConfig",
    "SipSettings",
    "SlaConfig",
    "Strategy",
    "TeamConfig",
    "TimeRange",
    "Transport",
    "TrunkConfig",
    "WorkingHours",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_hostport",
    "shipped_accept_prompt",
    "trunk_password_env_var",
]

AcceptMode = Literal["answer", "press1"]
Transport = Literal["udp", "tcp"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]

_ACCEPT_MODES: tuple[AcceptMode, ...] = ("answer", "press1")
_TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp")
_LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
_LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error", "critical")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Strategy(enum.StrEnum):
    """How a routing rule picks among the reps of its pool."""

    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    LEAST_RECENT = "least_recent"
    FEWEST_CALLS = "fewest_calls"
    RANDOM = "random"
    #: The account owner (``[[owners]]``) first, by the lead's email domain.
    OWNER = "owner"


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range.

    ``str(error)`` is exactly one line: ``config error: <key_path>: <message>``.
    """

    def __init__(self, key_path: str, message: str) -> None:
        self.key_path = key_path
        # One line, whatever the message contains (TOML decoder errors can span lines).
        self.message = " ".join(message.split())
        super().__init__(f"config error: {key_path}: {self.message}")


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeRange:
    """A daily window ``HH:MM-HH:MM``, in minutes since midnight; end is exclusive.

    ``"00:00-24:00"`` is the whole day. Windows do not wrap past midnight.
    """

    start_minute: int
    end_minute: int

    @property
    def is_all_day(self) -> bool:
        """True for ``00:00-24:00``."""
        return self.start_minute == 0 and self.end_minute == 24 * 60

    def contains(self, moment: time) -> bool:
        """True when the wall-clock ``moment`` falls inside the window."""
        minute = moment.hour * 60 + moment.minute
        return self.start_minute <= minute < self.end_minute

    def __str__(self) -> str:
        return f"{_fmt_minute(self.start_minute)}-{_fmt_minute(self.end_minute)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DateRange:
    """Inclusive calendar dates (e.g. a rep's PTO, in the rep's timezone)."""

    start: date
    end: date

    def contains(self, day: date) -> bool:
        """True when ``day`` is within ``start..end`` inclusive."""
        return self.start <= day <= self.end


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkingHours:
    """Per-weekday working windows; ``None`` means not working that day."""

    mon: TimeRange | None = None
    tue: TimeRange | None = None
    wed: TimeRange | None = None
    thu: TimeRange | None = None
    fri: TimeRange | None = None
    sat: TimeRange | None = None
    sun: TimeRange | None = None

    def for_weekday(self, weekday: int) -> TimeRange | None:
        """The window of ``weekday`` (0 = Monday, as ``date.weekday()``)."""
        return cast("TimeRange | None", getattr(self, _WEEKDAYS[weekday]))


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    """``[api]``: the HTTP intake."""

    #: ``host:port`` (IPv6 as ``[::1]:8080``); port 0 picks a free port.
    listen: str = "127.0.0.1:8080"
    #: Bearer tokens accepted by the API.
    tokens: tuple[str, ...] = ()
    #: Must be set explicitly for ``dialer run`` to start without tokens.
    allow_anonymous: bool = False
    #: Largest request body accepted (bytes); larger -> 413.
    max_body_bytes: int = 65536
    #: phonenumbers region for numbers written without ``+CC``.
    default_region: str = "US"
    #: Base URL of lead page links; empty -> ``http://<listen>``.
    public_url: str = ""
    #: "Open in CRM" link on the rep console's lead card: an http(s) URL template with any of
    #: ``{lead_id}``, ``{external_id}``, ``{phone}``, ``{email}``, e.g.
    #: ``"https://crm.example.com/leads/{external_id}"``; empty -> no link.
    crm_url: str = ""

    @property
    def host(self) -> str:
        """Host part of ``listen``."""
        return parse_hostport(self.listen)[0]

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return parse_hostport(self.listen)[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseConfig:
    """``[database]``: PostgreSQL; an empty ``url`` starts an embedded server in ``data_dir``."""

    url: str = ""
    data_dir: Path = Path("./var/pgdata")
    pool_min: int = 1
    pool_max: int = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class SipSettings:
    """``[sip]``: where the daemon's SIP endpoint listens and its RFC 3261 timers."""

    listen: str = "127.0.0.1:5060"
    #: Host (IP address or name, no port) peers reach us on, written in Via, Contact and SDP;
    #: empty -> the host of ``listen``. Required when ``listen`` is 0.0.0.0 or ``[::]``.
    advertise: str = ""
    transport: Transport = "udp"
    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0

    @property
    def host(self) -> str:
        """Host part of ``listen``."""
        return parse_hostport(self.listen)[0]

    @property
    def advertised_host(self) -> str:
        """The host to put in Via/Contact/SDP: ``advertise``, else the host of ``listen``."""
        return self.advertise or self.host

    @property
    def port(self) -> int:
        """Port part of ``listen``."""
        return parse_hostport(self.listen)[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkConfig:
    """``[[trunks]]``: an outbound SIP trunk for prospect calls."""

    name: str = "primary"
    proxy: str = "sip:127.0.0.1:5080"
    username: str = ""
    password: str = field(default="", repr=False)
    caller_id: str = "+15550100000"
    max_calls: int = 100
    max_cps: float = 10.0
    options_interval_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RepConfig:
    """``[[reps]]``: a sales rep whose phone the daemon rings."""

    id: str
    name: str
    #: ``sip:``/``sips:``/``tel:`` URI, or an E.164 number, exactly as configured.
    sip_uri: str
    teams: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    territories: tuple[str, ...] = ()
    weight: float = 1.0
    max_leads_per_hour: int | None = None
    max_leads_per_day: int | None = None
    #: IANA timezone name (validated).
    timezone: str = "UTC"
    #: ``None``: no working-hours restriction.
    working_hours: WorkingHours | None = None
    pto: tuple[DateRange, ...] = ()

    @property
    def tz(self) -> ZoneInfo:
        """The rep's timezone."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerConfig:
    """A team manager's contacts (SLA escalation, ``dialer.notify.managers``)."""

    name: str = ""
    #: Gets an email per SLA breach of the team's leads when ``[notify.smtp]`` is configured
    #: (validated as an address; without SMTP start-up warns).
    email: str = ""
    phone: str = ""
    #: A Slack incoming-webhook URL (validated http/https): an SLA at-risk heads-up and a
    #: breach message per lead of the team.
    slack_webhook: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TeamConfig:
    """``[[teams]]``: a named group of reps."""

    id: str
    name: str
    manager: ManagerConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerConfig:
    """``[[owners]]``: the rep who owns an account, by email domain."""

    domain: str
    rep: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RingingConfig:
    """``[ringing]``: how rep legs are rung by default."""

    mode: RingMode = RingMode.PARALLEL
    ring_timeout_s: float = 20.0
    wave_size: int = 3
    wrap_up_s: float = 30.0
    max_missed: int = 3
    accept: AcceptMode = "answer"
    accept_timeout_s: float = 8.0


RingbackRegionName = Literal["us", "eu"]
_RINGBACK_REGIONS: tuple[RingbackRegionName, ...] = ("us", "eu")
#: ``[media] rtp_ports`` unless configured.
DEFAULT_RTP_PORTS = "16384-32767"


def shipped_accept_prompt() -> Path:
    """Where the packaged press-1 prompt (``dialer/prompts/press1.wav``) is."""
    return Path(str(resources.files("dialer").joinpath("prompts", "press1.wav")))


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaConfig:
    """``[media]``: the daemon's own RTP, used only by press-1-to-accept rep legs."""

    #: Address the RTP sockets bind to; the ``[sip]`` listen host unless configured.
    rtp_host: str = "127.0.0.1"
    #: Inclusive UDP port range (even ports are used), from ``rtp_ports = "16384-32767"``.
    rtp_ports: tuple[int, int] = (16384, 32767)
    #: The press-1 prompt (8 kHz G.711 WAV, or raw ``.ulaw``/``.alaw``); the shipped one
    #: unless configured. Checked to exist at start-up when anything uses ``press1``.
    prompt: Path = field(default_factory=shipped_accept_prompt)
    #: Ringback the accepting rep hears while the prospect is dialled.
    ringback: RingbackRegionName = "us"
    #: Speak the lead's source in the press-1 prompt ("New lead from <source>. Press 1 to
    #: connect."), synthesized per source while the reps ring; ``prompt`` plays whenever that
    #: prompt is not ready. Off by default: it needs ``speech_command`` on the host.
    speak_source: bool = False
    #: The synthesizer for ``speak_source`` (``espeak-ng`` compatible); checked at start-up.
    speech_command: str = "espeak-ng"


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """Which reps a rule may ring: the union of ``teams`` and ``reps``, filtered by ``skills``.

    An empty pool (no teams, no reps) means every rep.
    """

    teams: tuple[str, ...] = ()
    reps: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()

    @property
    def is_everyone(self) -> bool:
        """True when neither teams nor reps narrow the pool."""
        return not self.teams and not self.reps


@dataclass(frozen=True, slots=True, kw_only=True)
class RingConfig:
    """A rule's ringing overrides; each ``None`` falls back to ``[ringing]``."""

    mode: RingMode | None = None
    size: int | None = None
    ring_timeout_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleConfig:
    """One routing rule (``[[routing.rules]]`` or ``[routing.fallback]``)."""

    name: str
    #: CEL source over the lead; compiled by ``dialer.routing``.
    when: str = "true"
    pool: PoolConfig = field(default_factory=PoolConfig)
    strategy: Strategy = Strategy.ROUND_ROBIN
    ring: RingConfig | None = None
    #: Response-time target for leads this rule matches (seconds), overriding ``[sla]``.
    sla: float | None = None
    overflow: PoolConfig | None = None
    accept: AcceptMode | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingConfig:
    """``[routing]``: ordered rules, then the fallback (``None``: every rep, round robin)."""

    rules: tuple[RuleConfig, ...] = ()
    fallback: RuleConfig | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaConfig:
    """``[sla]``: response-time targets by intent (seconds)."""

    high: float = 300.0
    medium: float = 3600.0
    low: float = 86400.0
    #: For leads without an intent.
    default: float = 3600.0
    #: A pending lead is ``at_risk`` once this fraction of its window has elapsed.
    at_risk_fraction: float = 0.5

    def for_intent(self, intent: Intent | None) -> float:
        """The target in seconds for a lead of ``intent``."""
        if intent is None:
            return self.default
        return {Intent.HIGH: self.high, Intent.MEDIUM: self.medium, Intent.LOW: self.low}[intent]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """``[retry]``: what happens after reps or the prospect do not answer."""

    retry_after_s: float = 60.0
    max_rounds: int = 3
    exclude_tried: bool = True
    prospect_retry_after_s: float = 600.0
    prospect_max_attempts: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplianceConfig:
    """``[compliance]``: when and whether prospects may be called."""

    #: In the prospect's local time; ``00:00-24:00`` = always.
    calling_hours: TimeRange = field(
        default_factory=lambda: TimeRange(start_minute=8 * 60, end_minute=21 * 60)
    )
    require_consent: bool = False
    max_attempts_per_day: int = 3


#: ``[daemon] rep_snapshot_s`` upper bound.
_MAX_REP_SNAPSHOT_S: Final = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonConfig:
    """``[daemon]``: this process among several sharing one database."""

    #: Empty: ``<hostname>-<pid>`` (see :meth:`resolved_instance_id`).
    instance_id: str = ""
    lease_s: float = 30.0
    drain_timeout_s: float = 30.0
    #: Relay the live pages' events to the other daemons on the database (PostgreSQL
    #: ``NOTIFY``, :mod:`dialer.web.relay`); a lone daemon may turn it off to save the work.
    relay_live_events: bool = True
    #: Leads worked on at once before their call is bridged (routing, ringing reps, calling
    #: the prospect); more wait in the database, claimed as places free up.
    max_leads_in_progress: int = 500
    #: Leads routed at once (reading the reps, deciding, reserving).
    max_routing: int = 8
    #: How long one read of the reps serves the routing decisions after it (0: read the reps
    #: for every lead); see dialer/roster.py for why a snapshot this old is safe.
    rep_snapshot_s: float = 0.25

    def resolved_instance_id(self) -> str:
        """``instance_id``, or ``<hostname>-<pid>`` when it is empty."""
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """``[log]``."""

    level: LogLevel = "info"
    #: ``auto``: JSON lines when stderr is not a TTY, pretty console otherwise.
    format: LogFormat = "auto"


def _default_trunks() -> tuple[TrunkConfig, ...]:
    return (TrunkConfig(),)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration."""

    api: ApiConfig = field(default_factory=ApiConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    sip: SipSettings = field(default_factory=SipSettings)
    trunks: tuple[TrunkConfig, ...] = field(default_factory=_default_trunks)
    reps: tuple[RepConfig, ...] = ()
    teams: tuple[TeamConfig, ...] = ()
    owners: tuple[OwnerConfig, ...] = ()
    ringing: RingingConfig = field(default_factory=RingingConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    sla: SlaConfig = field(default_factory=SlaConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    log: LogConfig = field(default_factory=LogConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def rep(self, rep_id: str) -> RepConfig | None:
        """The rep with ``rep_id``, or None."""
        return next((rep for rep in self.reps if rep.id == rep_id), None)

    @property
    def team_ids(self) -> frozenset[str]:
        """Teams declared in ``[[teams]]`` or named by any rep."""
        return frozenset(team.id for team in self.teams) | frozenset(
            team for rep in self.reps for team in rep.teams
        )


# --------------------------------------------------------------------------- entry points


def load_config(path: Path | None, env: Mapping[str, str] = os.environ) -> Config:
    """Read ``path`` (TOML; ``None`` -> all defaults) and apply environment overrides."""
    if path is None:
        return parse_config({}, env=env)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    return parse_config(data, env=env)


def parse_config(data: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> Config:
    """Build a :class:`Config` from parsed TOML data, then apply environment overrides."""
    root = _Table(data, "")
    api = _parse_api(root.table("api"), env)
    database = _parse_database(root.table("database"), env)
    sip = _parse_sip(root.table("sip"), env)
    trunks = (
        tuple(
            _parse_trunk(item, env)
            for item in root.array_of_tables("trunks", required_keys=("name",))
        )
        if "trunks" in root
        else tuple(_apply_trunk_env(trunk, env) for trunk in _default_trunks())
    )
    _unique(trunks, lambda trunk: trunk.name, "trunks", "name")
    reps = tuple(
        _parse_rep(item) for item in root.array_of_tables("reps", required_keys=("id", "sip_uri"))
    )
    _unique(reps, lambda rep: rep.id, "reps", "id")
    teams = tuple(
        _parse_team(item) for item in root.array_of_tables("teams", required_keys=("id",))
    )
    _unique(teams, lambda team: team.id, "teams", "id")
    rep_ids = frozenset(rep.id for rep in reps)
    team_ids = frozenset(team.id for team in teams) | frozenset(
        team for rep in reps for team in rep.teams
    )
    owners = tuple(
        _parse_owner(item, rep_ids)
        for item in root.array_of_tables("owners", required_keys=("domain", "rep"))
    )
    _unique(owners, lambda owner: owner.domain, "owners", "domain")
    ringing = _parse_ringing(root.table("ringing"))
    routing = _parse_routing(root.table("routing"), rep_ids, team_ids)
    sla = _parse_sla(root.table("sla"))
    retry = _parse_retry(root.table("retry"))
    compliance = _parse_compliance(root.table("compliance"))
    daemon = _parse_daemon(root.table("daemon"))
    log = _parse_log(root.table("log"))
    media = _parse_media(root.table("media"), sip, press1=_uses_press1(ringing, routing))
    raw_notify = root.raw("notify")
    notify = parse_notify(None if raw_notify is _MISSING else raw_notify, env=env)
    root.finish()
    return Config(
        api=api,
        database=database,
        sip=sip,
        trunks=trunks,
        reps=reps,
        teams=teams,
        owners=owners,
        ringing=ringing,
        routing=routing,
        media=media,
        sla=sla,
        retry=retry,
        compliance=compliance,
        daemon=daemon,
        log=log,
        notify=notify,
    )


# --------------------------------------------------------------------------- public helpers

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"500ms"``, ``"90s"``, ``"5m"``, ``"1h"``, ``"2d"``.

    Raises ``ValueError`` with a message meant to follow the key name.
    """
    if isinstance(value, bool):
        raise ValueError(f'expected a duration (seconds or e.g. "90s", "5m"); got {value!r}')
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ValueError(
                f'expected a duration such as "500ms", "90s", "5m", "1h", "2d"; got "{value}"'
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f'expected a duration (seconds or e.g. "90s"); got {_type_name(value)}')
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a non-negative duration; got {value!r}")
    return seconds


def parse_hostport(listen: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) into its parts; ``ValueError`` when malformed."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f'expected "host:port"; got "{listen}"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f'expected "[ipv6]:port" for an IPv6 address; got "{listen}"')
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port out of range 0-65535; got {port}")
    return host, port


def trunk_password_env_var(trunk_name: str) -> str:
    """The environment variable that overrides ``trunk_name``'s password."""
    return "DIALER_TRUNK_" + re.sub(r"[^A-Za-z0-9]", "_", trunk_name).upper() + "_PASSWORD"


# --------------------------------------------------------------------------- table reader

_T = TypeVar("_T")
_D = TypeVar("_D")
_MISSING: Any = object()


def _type_name(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _fmt_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


class _Table:
    """Typed, path-aware access to one TOML table; unread keys are errors at :meth:`finish`."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self._data = data
        self._path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.key(name), message)

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self._data.get(name, _MISSING)

    def finish(self) -> None:
        for name in self._data:
            if name not in self._seen:
                raise ConfigError(self.key(name), "unknown key")

    # scalar readers --------------------------------------------------------

    def str_(self, name: str, default: str) -> str:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            raise self.error(name, f"expected a string; got {_type_name(value)}")
        return value

    def nonempty_str(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is _MISSING:
            if default is None:
                raise self.error(name, "required key is missing")
            return default
        if not isinstance(value, str):
            raise self.error(name, f"expected a string; got {_type_name(value)}")
        if not value.strip():
            raise self.error(name, "expected a non-empty string")
        return value

    def bool_(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false; got {_type_name(value)}")
        return value

    def int_(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.opt_int(name, minimum=minimum)
        return default if value is None else value

    def opt_int(self, name: str, *, minimum: int = 0) -> int | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer; got {_type_name(value)}")
        if value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}; got {value}")
        return value

    def float_(
        self, name: str, default: float, *, minimum: float = 0.0, exclusive: bool = False
    ) -> float:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number; got {_type_name(value)}")
        number = float(value)
        if not math.isfinite(number) or number < minimum or (exclusive and number == minimum):
            relation = ">" if exclusive else ">="
            raise self.error(name, f"expected a number {relation} {minimum:g}; got {value}")
        return number

    def duration(self, name: str, default: float, *, positive: bool = False) -> float:
        value = self.opt_duration(name, positive=positive)
        return default if value is None else value

    def opt_duration(self, name: str, *, positive: bool = False) -> float | None:
        value = self.raw(name)
        if value is _MISSING:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None
        if positive and seconds <= 0:
            raise self.error(name, f"expected a duration > 0; got {value!r}")
        return seconds

    def choice(
        self, name: str, default: _D, choices: Sequence[_T], *, casefold: bool = False
    ) -> _T | _D:
        value = self.raw(name)
        if value is _MISSING:
            return default
        wanted = value.lower() if casefold and isinstance(value, str) else value
        for option in choices:
            if isinstance(wanted, str) and wanted == option:
                return option
        expected = ", ".join(str(option) for option in choices)
        shown = f'"{value}"' if isinstance(value, str) else _type_name(value)
        raise self.error(name, f"expected one of {expected}; got {shown}")

    def str_tuple(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is _MISSING:
            return ()
        if not isinstance(value, list):
            raise self.error(name, f"expected an array of strings; got {_type_name(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(
                    f"{self.key(name)}[{index}]",
                    f"expected a non-empty string; got {_type_name(item)}",
                )
        return tuple(value)

    def time_range(self, name: str, default: TimeRange | None) -> TimeRange | None:
        value = self.raw(name)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            raise self.error(name, f'expected "HH:MM-HH:MM"; got {_type_name(value)}')
        try:
            return _parse_time_range(value)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    # nested readers --------------------------------------------------------

    def table(self, name: str) -> _Table:
        value = self.raw(name)
        if value is _MISSING:
            return _Table({}, self.key(name))
        if not isinstance(value, dict):
            raise self.error(name, f"expected a table; got {_type_name(value)}")
        return _Table(value, self.key(name))

    def array_of_tables(self, name: str, *, required_keys: Sequence[str] = ()) -> Iterator[_Table]:
        value = self.raw(name)
        if value is _MISSING:
            return
        if not isinstance(value, list):
            raise self.error(
                name, f"expected an array of tables ([[{self.key(name)}]]); got {_type_name(value)}"
            )
        for index, item in enumerate(value):
            item_path = f"{self.key(name)}[{index}]"
            if not isinstance(item, dict):
                raise ConfigError(item_path, f"expected a table; got {_type_name(item)}")
            for required in required_keys:
                if required not in item:
                    raise ConfigError(f"{item_path}.{required}", "required key is missing")
            yield _Table(item, item_path)


def _parse_clock(text: str, *, allow_24: bool) -> int:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if match is None:
        raise ValueError(f'expected "HH:MM"; got "{text}"')
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute > 59 or hour > 24 or (hour == 24 and (minute != 0 or not allow_24)):
        raise ValueError(f'not a time of day: "{text}"')
    return hour * 60 + minute


def _parse_time_range(text: str) -> TimeRange:
    start_text, sep, end_text = text.partition("-")
    if not sep:
        raise ValueError(f'expected "HH:MM-HH:MM"; got "{text}"')
    start = _parse_clock(start_text, allow_24=False)
    end = _parse_clock(end_text, allow_24=True)
    if start >= end:
        raise ValueError(f'expected the start before the end (no wrap past midnight); got "{text}"')
    return TimeRange(start_minute=start, end_minute=end)


def _unique(items: Sequence[_T], key_of: Callable[[_T], str], array: str, key: str) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        value = key_of(item)
        if value in seen:
            raise ConfigError(f"{array}[{index}].{key}", f'duplicate {key} "{value}"')
        seen.add(value)


# --------------------------------------------------------------------------- sections


def _listen(table: _Table, name: str, default: str) -> str:
    listen = table.str_(name, default)
    try:
        parse_hostport(listen)
    except ValueError as exc:
        raise table.error(name, str(exc)) from None
    return listen


def _parse_api(table: _Table, env: Mapping[str, str]) -> ApiConfig:
    defaults = ApiConfig()
    listen = _listen(table, "listen", defaults.listen)
    tokens = table.str_tuple("tokens")
    env_tokens = tuple(t.strip() for t in env.get("DIALER_API_TOKENS", "").split(",") if t.strip())
    if env_tokens:
        tokens = env_tokens
    region = table.str_("default_region", defaults.default_region).upper()
    import phonenumbers

    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise table.error(
            "default_region", f'expected an ISO 3166 region code such as "US"; got "{region}"'
        )
    public_url = table.str_("public_url", defaults.public_url).rstrip("/")
    if public_url:
        _check_http_url(table, "public_url", public_url)
    crm_url = table.str_("crm_url", defaults.crm_url).strip()
    if env.get(CRM_URL_ENV, "").strip():
        crm_url = env[CRM_URL_ENV].strip()
    _check_crm_url(table, crm_url)
    result = ApiConfig(
        listen=listen,
        tokens=tokens,
        allow_anonymous=table.bool_("allow_anonymous", defaults.allow_anonymous),
        max_body_bytes=table.int_("max_body_bytes", defaults.max_body_bytes, minimum=1024),
        default_region=region,
        public_url=public_url,
        crm_url=crm_url,
    )
    table.finish()
    return result


#: Environment variable overriding ``[api] crm_url``, the CRM link template (``{lead_id}``,
#: ``{external_id}``, ``{phone}``, ``{email}``), e.g.
#: ``https://crm.example.com/leads/{external_id}``; applied here, so a bad value stops the
#: daemon at start-up.
CRM_URL_ENV: Final = "DIALER_CRM_URL"

#: Placeholders of ``[api] crm_url``: the values ``dialer.web.crm_link`` fills in.
_CRM_URL_FIELDS = frozenset({"lead_id", "external_id", "phone", "email"})


def _check_http_url(table: _Table, key: str, value: str) -> None:
    if not re.match(r"^https?://", value):
        raise table.error(key, f'expected an http:// or https:// URL; got "{value}"')


def _check_crm_url(table: _Table, template: str) -> None:
    """Refuse a CRM link template the console could never turn into a link."""
    if not template:
        return
    _check_http_url(table, "crm_url", template)
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise table.error("crm_url", f"bad template: {exc}") from None
    unknown = sorted(names - _CRM_URL_FIELDS)
    if unknown:
        known = ", ".join("{" + name + "}" for name in sorted(_CRM_URL_FIELDS))
        raise table.error(
            "crm_url", f"unknown placeholder {{{unknown[0]}}}; expected any of {known}"
        )


def _parse_database(table: _Table, env: Mapping[str, str]) -> DatabaseConfig:
    defaults = DatabaseConfig()
    url = table.str_("url", defaults.url)
    if env.get("DIALER_DATABASE_URL"):
        url = env["DIALER_DATABASE_URL"]
    if url and not re.match(r"^postgres(ql)?://", url):
        raise table.error("url", "expected a postgresql:// URL (or empty for embedded)")
    data_dir = table.nonempty_str("data_dir", str(defaults.data_dir))
    pool_min = table.int_("pool_min", defaults.pool_min, minimum=1)
    pool_max = table.int_("pool_max", defaults.pool_max, minimum=1)
    if pool_max < pool_min:
        raise table.error("pool_max", f"expected >= pool_min ({pool_min}); got {pool_max}")
    table.finish()
    return DatabaseConfig(url=url, data_dir=Path(data_dir), pool_min=pool_min, pool_max=pool_max)


#: RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, <= 63 each.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _advertise(table: _Table, env: Mapping[str, str], listen: str) -> str:
    advertise = table.str_("advertise", "").strip()
    if env.get("DIALER_SIP_ADVERTISE", "").strip():
        advertise = env["DIALER_SIP_ADVERTISE"].strip()
    if advertise.startswith("[") and advertise.endswith("]"):
        advertise = advertise[1:-1]
    if advertise:
        try:
            literal = ipaddress.ip_address(advertise)
        except ValueError:
            if not _HOSTNAME_RE.match(advertise):
                raise table.error(
                    "advertise", f'expected an IP address or host name, no port; got "{advertise}"'
                ) from None
        else:
            if literal.is_unspecified:
                raise table.error(
                    "advertise", f'expected an address peers can reach; got "{advertise}"'
                )
    elif _is_wildcard(parse_hostport(listen)[0]):
        raise table.error(
            "advertise",
            f'required when sip.listen is a wildcard address ("{listen}"): '
            "set the address peers reach this host on (or DIALER_SIP_ADVERTISE)",
        )
    return advertise


def _parse_sip(table: _Table, env: Mapping[str, str]) -> SipSettings:
    defaults = SipSettings()
    listen = _listen(table, "listen", defaults.listen)
    result = SipSettings(
        listen=listen,
        advertise=_advertise(table, env, listen),
        transport=table.choice("transport", defaults.transport, _TRANSPORTS),
        t1_s=table.duration("t1_s", defaults.t1_s, positive=True),
        t2_s=table.duration("t2_s", defaults.t2_s, positive=True),
        t4_s=table.duration("t4_s", defaults.t4_s, positive=True),
    )
    if result.t2_s < result.t1_s:
        raise table.error("t2_s", f"expected >= t1_s ({result.t1_s:g}); got {result.t2_s:g}")
    table.finish()
    return result


_SIP_URI_RE = re.compile(r"^(sips?:\S+|tel:\+?[0-9][0-9\-.()]*)$", re.IGNORECASE)
_E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _check_uri(table: _Table, name: str, value: str) -> None:
    if not (_SIP_URI_RE.match(value) or _E164_RE.match(value)):
        raise table.error(
            name, f'expected a sip:, sips: or tel: URI or an E.164 number; got "{value}"'
        )


def _apply_trunk_env(trunk: TrunkConfig, env: Mapping[str, str]) -> TrunkConfig:
    password = env.get(trunk_password_env_var(trunk.name))
    if password is None:
        return trunk
    return TrunkConfig(
        name=trunk.name,
        proxy=trunk.proxy,
        username=trunk.username,
        password=password,
        caller_id=trunk.caller_id,
        max_calls=trunk.max_calls,
        max_cps=trunk.max_cps,
        options_interval_s=trunk.options_interval_s,
    )


def _parse_trunk(table: _Table, env: Mapping[str, str]) -> TrunkConfig:
    defaults = TrunkConfig()
    proxy = table.nonempty_str("proxy", defaults.proxy)
    _check_uri(table, "proxy", proxy)
    caller_id = table.nonempty_str("caller_id", defaults.caller_id)
    if not _E164_RE.match(caller_id):
        raise table.error(
            "caller_id", f'expected an E.164 number like "+15550100000"; got "{caller_id}"'
        )
    trunk = TrunkConfig(
        name=table.nonempty_str("name"),
        proxy=proxy,
        username=table.str_("username", defaults.username),
        password=table.str_("password", defaults.password),
        caller_id=caller_id,
        max_calls=table.int_("max_calls", defaults.max_calls, minimum=1),
        max_cps=table.float_("max_cps", defaults.max_cps, exclusive=True),
        options_interval_s=table.duration("options_interval_s", defaults.options_interval_s),
    )
    table.finish()
    return _apply_trunk_env(trunk, env)


def _parse_working_hours(table: _Table) -> WorkingHours:
    days = {day: table.time_range(day, None) for day in _WEEKDAYS}
    table.finish()
    return WorkingHours(**days)


def _parse_date(table: _Table, name: str) -> date:
    value = table.raw(name)
    if value is _MISSING:
        raise table.error(name, "required key is missing")
    if isinstance(value, date):  # TOML local dates arrive already parsed
        return value
    if not isinstance(value, str):
        raise table.error(name, f'expected a date "YYYY-MM-DD"; got {_type_name(value)}')
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise table.error(name, f'expected a date "YYYY-MM-DD"; got "{value}"') from None


def _parse_rep(table: _Table) -> RepConfig:
    rep_id = table.nonempty_str("id")
    sip_uri = table.nonempty_str("sip_uri")
    _check_uri(table, "sip_uri", sip_uri)
    teams = table.str_tuple("teams")
    if "team" in table:
        if teams:
            raise table.error("team", "use either team or teams, not both")
        teams = (table.nonempty_str("team"),)
    timezone = table.nonempty_str("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.error(
            "timezone", f'expected an IANA timezone such as "America/New_York"; got "{timezone}"'
        ) from None
    working_hours = (
        _parse_working_hours(table.table("working_hours")) if "working_hours" in table else None
    )
    pto: list[DateRange] = []
    for item in table.array_of_tables("pto"):
        start = _parse_date(item, "start")
        end = _parse_date(item, "end")
        if end < start:
            raise item.error("end", f"expected on or after start ({start}); got {end}")
        item.finish()
        pto.append(DateRange(start=start, end=end))
    rep = RepConfig(
        id=rep_id,
        name=table.nonempty_str("name", rep_id),
        sip_uri=sip_uri,
        teams=teams,
        skills=table.str_tuple("skills"),
        languages=table.str_tuple("languages"),
        territories=table.str_tuple("territories"),
        weight=table.float_("weight", 1.0, exclusive=True),
        max_leads_per_hour=table.opt_int("max_leads_per_hour", minimum=1),
        max_leads_per_day=table.opt_int("max_leads_per_day", minimum=1),
        timezone=timezone,
        working_hours=working_hours,
        pto=tuple(pto),
    )
    table.finish()
    return rep


def _parse_team(table: _Table) -> TeamConfig:
    team_id = table.nonempty_str("id")
    manager: ManagerConfig | None = None
    if "manager" in table:
        sub = table.table("manager")
        email = sub.str_("email", "").strip()
        if email and not is_email_address(email):
            raise sub.error("email", f'expected an email address; got "{email}"')
        slack_webhook = sub.str_("slack_webhook", "").strip()
        if slack_webhook and not is_http_url(slack_webhook):
            raise sub.error(
                "slack_webhook", f'expected an http:// or https:// URL; got "{slack_webhook}"'
            )
        manager = ManagerConfig(
            name=sub.str_("name", ""),
            email=email,
            phone=sub.str_("phone", ""),
            slack_webhook=slack_webhook,
        )
        sub.finish()
    team = TeamConfig(id=team_id, name=table.nonempty_str("name", team_id), manager=manager)
    table.finish()
    return team


def _parse_owner(table: _Table, rep_ids: frozenset[str]) -> OwnerConfig:
    domain = table.nonempty_str("domain").strip().lower()
    rep = table.nonempty_str("rep")
    if rep not in rep_ids:
        raise table.error("rep", f'unknown rep "{rep}"')
    table.finish()
    return OwnerConfig(domain=domain, rep=rep)


_RING_MODES = tuple(RingMode)
_STRATEGIES = tuple(Strategy)


def _parse_ringing(table: _Table) -> RingingConfig:
    defaults = RingingConfig()
    result = RingingConfig(
        mode=table.choice("mode", defaults.mode, _RING_MODES),
        ring_timeout_s=table.duration("ring_timeout_s", defaults.ring_timeout_s, positive=True),
        wave_size=table.int_("wave_size", defaults.wave_size, minimum=1),
        wrap_up_s=table.duration("wrap_up_s", defaults.wrap_up_s),
        max_missed=table.int_("max_missed", defaults.max_missed, minimum=0),
        accept=table.choice("accept", defaults.accept, _ACCEPT_MODES),
        accept_timeout_s=table.duration(
            "accept_timeout_s", defaults.accept_timeout_s, positive=True
        ),
    )
    table.finish()
    return result


def _uses_press1(ringing: RingingConfig, routing: RoutingConfig) -> bool:
    """True when [ringing] or any rule (the fallback included) accepts with press-1."""
    rules = (*routing.rules, *((routing.fallback,) if routing.fallback is not None else ()))
    return ringing.accept == "press1" or any(rule.accept == "press1" for rule in rules)


_RTP_PORTS_RE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")


def _parse_media(table: _Table, sip: SipSettings, *, press1: bool) -> MediaConfig:
    rtp_host = table.str_("rtp_host", "").strip() or sip.host
    ports_text = table.str_("rtp_ports", DEFAULT_RTP_PORTS)
    match = _RTP_PORTS_RE.match(ports_text)
    low, high = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if match is None or not 1024 <= low < high <= 65535:
        raise table.error(
            "rtp_ports",
            f'expected "LOW-HIGH" with 1024 <= LOW < HIGH <= 65535; got "{ports_text}"',
        )
    prompt_text = table.str_("prompt", "").strip()
    prompt = Path(prompt_text).expanduser() if prompt_text else shipped_accept_prompt()
    if press1 and not (prompt.is_file() and os.access(prompt, os.R_OK)):
        # A press-1 rep leg without its prompt would be a silent call: refuse to start.
        raise table.error(
            "prompt", f'prompt file not found or unreadable: {prompt} (accept = "press1")'
        )
    speak_source = table.bool_("speak_source", False)
    speech_command = table.nonempty_str("speech_command", "espeak-ng").strip()
    if speak_source and shutil.which(speech_command) is None:
        # Like a missing prompt file: refuse to start rather than fall back on every call.
        raise table.error(
            "speech_command" if "speech_command" in table else "speak_source",
            f'speech synthesizer "{speech_command}" not found (speak_source = true; '
            "install espeak-ng or set [media] speech_command)",
        )
    result = MediaConfig(
        rtp_host=rtp_host,
        rtp_ports=(low, high),
        prompt=prompt,
        ringback=table.choice("ringback", "us", _RINGBACK_REGIONS),
        speak_source=speak_source,
        speech_command=speech_command,
    )
    table.finish()
    return result


def _parse_pool(table: _Table, rep_ids: frozenset[str], team_ids: frozenset[str]) -> PoolConfig:
    pool = PoolConfig(
        teams=table.str_tuple("teams"),
        reps=table.str_tuple("reps"),
        skills=table.str_tuple("skills"),
    )
    for index, team in enumerate(pool.teams):
        if team not in team_ids:
            raise ConfigError(f"{table.key('teams')}[{index}]", f'unknown team "{team}"')
    for index, rep in enumerate(pool.reps):
        if rep not in rep_ids:
            raise ConfigError(f"{table.key('reps')}[{index}]", f'unknown rep "{rep}"')
    table.finish()
    return pool


def _parse_rule(
    table: _Table, rep_ids: frozenset[str], team_ids: frozenset[str], *, fallback: bool
) -> RuleConfig:
    if fallback:
        name = table.nonempty_str("name", "fallback")
        if name != "fallback":
            raise table.error("name", f'the fallback rule is always named "fallback"; got "{name}"')
    else:
        name = table.nonempty_str("name")
        if name == "fallback":
            raise table.error("name", 'the name "fallback" is reserved for [routing.fallback]')
    try:
        return _parse_rule_body(table, name, rep_ids, team_ids)
    except ConfigError as exc:
        # Name the rule once, as the CEL errors raised later by dialer.routing do
        # (`routing.rules[0].pool.teams[0]: rule "hot-us": unknown team "north"`), so every
        # bad-rule error reads the same at start-up and in `dialer route explain`.
        raise ConfigError(exc.key_path, f'rule "{name}": {exc.message}') from exc


def _parse_rule_body(
    table: _Table, name: str, rep_ids: frozenset[str], team_ids: frozenset[str]
) -> RuleConfig:
    when = table.nonempty_str("when", "true")
    pool = _parse_pool(table.table("pool"), rep_ids, team_ids)
    strategy = table.choice("strategy", Strategy.ROUND_ROBIN, _STRATEGIES)
    ring: RingConfig | None = None
    if "ring" in table:
        sub = table.table("ring")
        ring = RingConfig(
            mode=sub.choice("mode", None, _RING_MODES),
            size=sub.opt_int("size", minimum=1),
            ring_timeout_s=sub.opt_duration("ring_timeout_s", positive=True),
        )
        sub.finish()
    overflow = (
        _parse_pool(table.table("overflow"), rep_ids, team_ids) if "overflow" in table else None
    )
    accept_value = table.choice("accept", None, _ACCEPT_MODES)
    rule = RuleConfig(
        name=name,
        when=when,
        pool=pool,
        strategy=strategy,
        ring=ring,
        sla=table.opt_duration("sla", positive=True),
        overflow=overflow,
        accept=accept_value,
    )
    table.finish()
    return rule


def _parse_routing(
    table: _Table, rep_ids: frozenset[str], team_ids: frozenset[str]
) -> RoutingConfig:
    rules = tuple(
        _parse_rule(item, rep_ids, team_ids, fallback=False)
        for item in table.array_of_tables("rules", required_keys=("name",))
    )
    _unique(rules, lambda rule: rule.name, table.key("rules"), "name")
    fallback = (
        _parse_rule(table.table("fallback"), rep_ids, team_ids, fallback=True)
        if "fallback" in table
        else None
    )
    table.finish()
    return RoutingConfig(rules=rules, fallback=fallback)


def _parse_sla(table: _Table) -> SlaConfig:
    defaults = SlaConfig()
    result = SlaConfig(
        high=table.duration("high", defaults.high, positive=True),
        medium=table.duration("medium", defaults.medium, positive=True),
        low=table.duration("low", defaults.low, positive=True),
        default=table.duration("default", defaults.default, positive=True),
        at_risk_fraction=table.float_(
            "at_risk_fraction", defaults.at_risk_fraction, exclusive=True
        ),
    )
    if result.at_risk_fraction >= 1.0:
        raise table.error(
            "at_risk_fraction",
            f"expected a fraction between 0 and 1; got {result.at_risk_fraction:g}",
        )
    table.finish()
    return result


def _parse_retry(table: _Table) -> RetryConfig:
    defaults = RetryConfig()
    result = RetryConfig(
        retry_after_s=table.duration("retry_after_s", defaults.retry_after_s),
        max_rounds=table.int_("max_rounds", defaults.max_rounds, minimum=1),
        exclude_tried=table.bool_("exclude_tried", defaults.exclude_tried),
        prospect_retry_after_s=table.duration(
            "prospect_retry_after_s", defaults.prospect_retry_after_s
        ),
        prospect_max_attempts=table.int_(
            "prospect_max_attempts", defaults.prospect_max_attempts, minimum=1
        ),
    )
    table.finish()
    return result


def _parse_compliance(table: _Table) -> ComplianceConfig:
    defaults = ComplianceConfig()
    calling_hours = table.time_range("calling_hours", defaults.calling_hours)
    assert calling_hours is not None  # a default was given
    result = ComplianceConfig(
        calling_hours=calling_hours,
        require_consent=table.bool_("require_consent", defaults.require_consent),
        max_attempts_per_day=table.int_(
            "max_attempts_per_day", defaults.max_attempts_per_day, minimum=1
        ),
    )
    table.finish()
    return result


def _parse_daemon(table: _Table) -> DaemonConfig:
    defaults = DaemonConfig()
    rep_snapshot_s = table.duration("rep_snapshot_s", defaults.rep_snapshot_s)
    if rep_snapshot_s > _MAX_REP_SNAPSHOT_S:
        # Older snapshots would mostly cost ringing order and capacity accuracy, for nothing:
        # past a few decisions per read the read is no longer the cost.
        raise table.error(
            "rep_snapshot_s", f"expected at most {_MAX_REP_SNAPSHOT_S:g}s; got {rep_snapshot_s:g}s"
        )
    result = DaemonConfig(
        instance_id=table.str_("instance_id", defaults.instance_id),
        lease_s=table.duration("lease_s", defaults.lease_s, positive=True),
        drain_timeout_s=table.duration("drain_timeout_s", defaults.drain_timeout_s),
        relay_live_events=table.bool_("relay_live_events", defaults.relay_live_events),
        max_leads_in_progress=table.int_(
            "max_leads_in_progress", defaults.max_leads_in_progress, minimum=1
        ),
        max_routing=table.int_("max_routing", defaults.max_routing, minimum=1),
        rep_snapshot_s=rep_snapshot_s,
    )
    table.finish()
    return result


def _parse_log(table: _Table) -> LogConfig:
    defaults = LogConfig()
    result = LogConfig(
        # "INFO" is as common as "info" in the wild.
        level=table.choice("level", defaults.level, _LOG_LEVELS, casefold=True),
        format=table.choice("format", defaults.format, _LOG_FORMATS),
    )
    table.finish()
    return result
