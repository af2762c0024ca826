"""Lead facts: what routing rules and the compliance gate may know about a lead.

Facts are derived once, at intake, from the stored lead: the phone number gives the country,
region and possible time zones (``phonenumbers`` geocoder and timezone data, no carrier
lookups); the email gives the account domain; ``fields.score`` and ``fields.product`` are
lifted to top-level facts because rules use them most. The prospect's local time of day is the
only fact that depends on the moment of routing, so it is added by :meth:`LeadFacts.cel_value`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import geocoder
from phonenumbers import timezone as phone_timezone

from dialer.domain import Intent, Lead, LeadContext

__all__ = [
    "CEL_LEAD_KEYS",
    "InvalidLeadError",
    "LeadFacts",
    "derive_facts",
    "facts_for_lead",
    "facts_from_json",
    "zone",
]

_WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNKNOWN_ZONE = "Etc/Unknown"

#: Every key of the ``lead`` map a CEL rule can read (``lead.<key>``).
CEL_LEAD_KEYS: frozenset[str] = frozenset(
    {
        "id",
        "phone",
        "name",
        "company",
        "email",
        "email_domain",
        "source",
        "intent",
        "score",
        "product",
        "fields",
        "consent",
        "country",
        "region",
        "timezone",
        "timezones",
        "local_time",
        "local_hour",
        "local_minute",
        "local_weekday",
    }
)


class InvalidLeadError(ValueError):
    """A lead cannot be turned into facts (unparseable phone number, wrong field type)."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}")


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """The ``ZoneInfo`` for an IANA name, or ``None`` when this system does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadFacts:
    """Everything routing and compliance know about one lead; no I/O, no clock."""

    lead_id: str
    #: E.164.
    phone: str
    #: ISO 3166-1 alpha-2 of the number (``None`` when phonenumbers cannot tell).
    country: str | None = None
    #: Geocoder description in English, e.g. ``"San Francisco, CA"`` or ``"Ontario"``.
    region: str | None = None
    #: Every IANA zone the number may be in; one when the prefix pins it down, several for
    #: mobiles, toll-free and unknown prefixes (then the whole country), none when unknown.
    timezones: tuple[str, ...] = ()
    name: str | None = None
    company: str | None = None
    email: str | None = None
    #: Lower-cased part after ``@``.
    email_domain: str | None = None
    source: str | None = None
    intent: Intent | None = None
    #: ``fields.score`` when it is a number.
    score: int | float | None = None
    #: ``fields.product`` when it is a string.
    product: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    consent: bool | None = None
    #: When the response-time clock started (submission time when known).
    clock_start: datetime
    _cel_static: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        static: dict[str, Any] = {
            "id": self.lead_id,
            "phone": self.phone,
            "name": self.name,
            "company": self.company,
            "email": self.email,
            "email_domain": self.email_domain,
            "source": self.source,
            "intent": None if self.intent is None else self.intent.value,
            "score": self.score,
            "product": self.product,
            "fields": _plain(self.fields),
            "consent": self.consent,
            "country": self.country,
            "region": self.region,
            "timezone": self.timezones[0] if len(self.timezones) == 1 else None,
            "timezones": list(self.timezones),
        }
        object.__setattr__(self, "_cel_static", static)

    def local_now(self, now: datetime) -> datetime | None:
        """The prospect's wall-clock time at ``now``; ``None`` when the zones disagree."""
        zones = [z for z in (zone(name) for name in self.timezones) if z is not None]
        if not zones:
            return None
        local = now.astimezone(zones[0])
        for other in zones[1:]:
            # Several zones are harmless when they all show the same wall clock (UK mobiles).
            if local.utcoffset() != now.astimezone(other).utcoffset():
                return None
        return local

    def cel_value(self, now: datetime, keys: frozenset[str] | None = None) -> dict[str, Any]:
        """The ``lead`` map CEL rules see at ``now``; only ``keys`` when given (faster)."""
        if keys is None:
            value = dict(self._cel_static)
            value.update(self._local_facts(now))
            return value
        value = {key: self._cel_static[key] for key in keys if key in self._cel_static}
        if keys & _LOCAL_KEYS:
            value.update(self._local_facts(now))
        return value

    def _local_facts(self, now: datetime) -> dict[str, Any]:
        local = self.local_now(now)
        if local is None:
            return dict.fromkeys(_LOCAL_KEYS)
        return {
            "local_time": f"{local.hour:02d}:{local.minute:02d}",
            "local_hour": local.hour,
            "local_minute": local.minute,
            "local_weekday": _WEEKDAY_NAMES[local.weekday()],
        }

    def lead_context(self, page_url: str | None = None) -> LeadContext:
        """Who the lead is, for the rep's screen pop."""
        return LeadContext(
            lead_id=self.lead_id,
            phone=self.phone,
            name=self.name,
            company=self.company,
            source=self.source,
            page_url=page_url,
        )

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """A JSON-able view (for explanations); local time facts only when ``now`` is given."""
        value = dict(self._cel_static)
        value["clock_start"] = self.clock_start.isoformat()
        if now is not None:
            value.update(self._local_facts(now))
        return value


_LOCAL_KEYS = frozenset({"local_time", "local_hour", "local_minute", "local_weekday"})


def _plain(value: Any) -> Any:
    """Mappings and sequences as plain dicts and lists, which CEL converts."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _phone_facts(
    phone: str, default_region: str
) -> tuple[str, str | None, str | None, tuple[str, ...]]:
    try:
        number = phonenumbers.parse(phone, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidLeadError("phone", f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidLeadError("phone", f'not a possible phone number: "{phone}"')
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    country = phonenumbers.region_code_for_number(number)
    region = geocoder.description_for_number(number, "en") or None
    zones = tuple(phone_timezone.time_zones_for_number(number))
    if not zones or zones == (_UNKNOWN_ZONE,):
        # The prefix is unknown (or the number invalid): every zone of its country code is
        # possible, and the compliance gate then takes the most restrictive of them.
        zones = tuple(phone_timezone._country_level_time_zones_for_number(number))
    known = tuple(name for name in zones if name != _UNKNOWN_ZONE and zone(name) is not None)
    return e164, country if country not in (None, "ZZ", "001") else None, region, known


def _email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().lower().rstrip(".")
    return domain or None


def derive_facts(
    *,
    lead_id: str,
    phone: str,
    clock_start: datetime,
    name: str | None = None,
    company: str | None = None,
    email: str | None = None,
    source: str | None = None,
    intent: Intent | None = None,
    consent: bool | None = None,
    fields: Mapping[str, Any] | None = None,
    default_region: str = "US",
) -> LeadFacts:
    """Facts for a lead; ``phone`` in any format ``phonenumbers`` parses with ``default_region``.

    Raises :class:`InvalidLeadError` when the phone number cannot be parsed.
    """
    e164, country, region, zones = _phone_facts(phone, default_region)
    extra = dict(fields or {})
    score = extra.get("score")
    product = extra.get("product")
    return LeadFacts(
        lead_id=lead_id,
        phone=e164,
        country=country,
        region=region,
        timezones=zones,
        name=name,
        company=company,
        email=email,
        email_domain=_email_domain(email),
        source=source,
        intent=None if intent is None else Intent(intent),
        score=score if isinstance(score, int | float) and not isinstance(score, bool) else None,
        product=product if isinstance(product, str) else None,
        fields=extra,
        consent=consent,
        clock_start=clock_start,
    )


def facts_for_lead(lead: Lead, *, default_region: str = "US") -> LeadFacts:
    """Facts for a stored lead (its phone is already E.164)."""
    return derive_facts(
        lead_id=lead.id,
        phone=lead.phone,
        clock_start=lead.clock_start,
        name=lead.name,
        company=lead.company,
        email=lead.email,
        source=lead.source,
        intent=lead.intent,
        consent=lead.consent,
        fields=lead.fields,
        default_region=default_region,
    )


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidLeadError(key, "expected a string")
    return value


def facts_from_json(
    data: Mapping[str, Any], *, now: datetime, default_region: str = "US"
) -> LeadFacts:
    """Facts for a lead given as JSON like a ``POST /v1/leads`` body (``route explain``).

    ``id`` defaults to ``"explain"``; the clock starts at ``submitted_at`` or ``now``.
    """
    phone = data.get("phone")
    if not isinstance(phone, str) or not phone.strip():
        raise InvalidLeadError("phone", "required, a string")
    intent_value = data.get("intent")
    intent: Intent | None = None
    if intent_value is not None:
        try:
            intent = Intent(intent_value)
        except ValueError:
            raise InvalidLeadError("intent", "expected one of high, medium, low") from None
    consent = data.get("consent")
    if consent is not None and not isinstance(consent, bool):
        raise InvalidLeadError("consent", "expected true or false")
    fields = data.get("fields") or {}
    if not isinstance(fields, Mapping):
        raise InvalidLeadError("fields", "expected an object")
    clock_start = now
    submitted = _opt_str(data, "submitted_at")
    if submitted is not None:
        try:
            clock_start = datetime.fromisoformat(submitted)
        except ValueError:
            raise InvalidLeadError("submitted_at", "expected an ISO 8601 timestamp") from None
        if clock_start.tzinfo is None:
            raise InvalidLeadError("submitted_at", "expected a timestamp with a UTC offset")
    lead_id = data.get("id", "explain")
    return derive_facts(
        lead_id=str(lead_id),
        phone=phone,
        clock_start=min(clock_start, now),
        name=_opt_str(data, "name"),
        company=_opt_str(data, "company"),
        email=_opt_str(data, "email"),
        source=_opt_str(data, "source"),
        intent=intent,
        consent=consent,
        fields=fields,
        default_region=default_region,
    )
