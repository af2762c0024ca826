"""Validation and normalisation of a lead body (pure: no I/O, the clock is passed in).

:func:`parse_lead` turns the decoded JSON of ``POST /v1/leads`` into a :class:`NewLead`, or
raises :class:`ValidationError` naming the first offending field. Decisions:

- ``phone`` (required): any common format, parsed with ``phonenumbers`` using the configured
  default region for numbers without ``+CC``; it must be a valid number; stored as E.164.
- ``submitted_at``: ISO 8601 *with* a UTC offset (``Z`` or ``+hh:mm``). A naive timestamp is
  rejected rather than guessed: read as UTC, a form's local time would silently shift the SLA
  clock by hours. A time later than ``received_at`` (client clock ahead) is clamped to
  ``received_at``, and the original value is kept in the ``received`` event
  (``submitted_at_clamped_from``), so the SLA clock never starts in the future.
- ``intent``: ``high|medium|low`` (case-insensitive).
- ``email``: syntax only (``local@domain.tld``); the domain is lower-cased.
- ``fields``: a JSON object (depth and size limited) for anything else the form collected.
- Unknown top-level keys are errors (put extra data under ``fields``); ``null`` means absent.
- No string may contain NUL or unpaired surrogates: PostgreSQL cannot store them, and bad input
  must be a 422, never a 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import phonenumbers

from dialer.domain import Intent
from dialer.store import NewLead

__all__ = [
    "MAX_FIELDS_BYTES",
    "MAX_FIELDS_DEPTH",
    "MAX_TEXT_LENGTHS",
    "ValidationError",
    "normalize_phone",
    "parse_lead",
    "validate_idempotency_key",
]

#: Longest accepted value of each text field (characters).
MAX_TEXT_LENGTHS: Final = {
    "phone": 64,
    "name": 200,
    "email": 254,
    "company": 200,
    "source": 100,
    "external_id": 200,
    "submitted_at": 64,
    "intent": 16,
}
#: ``fields`` serialised as JSON may not exceed this many bytes.
MAX_FIELDS_BYTES: Final = 32 * 1024
#: Nesting depth allowed inside ``fields``.
MAX_FIELDS_DEPTH: Final = 8
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 200

_KNOWN_KEYS: Final = frozenset(
    {
        "phone",
        "name",
        "email",
        "company",
        "source",
        "external_id",
        "submitted_at",
        "intent",
        "consent",
        "fields",
    }
)
_EMAIL_RE: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_IDEMPOTENCY_KEY_RE: Final = re.compile(r"^[\x21-\x7e]+$")


class ValidationError(ValueError):
    """A lead body is invalid; ``field`` names the offending key (``None``: the body itself)."""

    def __init__(self, field: str | None, message: str, *, code: str = "invalid_field") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        #: Machine-readable reason (``missing_field``, ``invalid_field``, ``unknown_field``...).
        self.code = code


def _check_text(field: str, value: str) -> None:
    if "\x00" in value:
        raise ValidationError(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "must be valid Unicode (unpaired surrogate)") from None


def _text(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    _check_text(field, value)
    value = value.strip()
    if len(value) > MAX_TEXT_LENGTHS[field]:
        raise ValidationError(field, f"must be at most {MAX_TEXT_LENGTHS[field]} characters")
    return value or None


def normalize_phone(raw: str, default_region: str) -> str:
    """E.164 form of ``raw``; ``ValueError`` when it is not a valid phone number."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _check_json_value(value: Any, path: str, depth: int) -> None:
    if depth > MAX_FIELDS_DEPTH:
        raise ValidationError(path, f"nested deeper than {MAX_FIELDS_DEPTH} levels")
    if isinstance(value, str):
        _check_text(path, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(path, key)
            _check_json_value(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(path, "must be a finite number")


def _fields(body: Mapping[str, Any]) -> dict[str, Any]:
    value = body.get("fields")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("fields", "must be a JSON object")
    _check_json_value(value, "fields", 1)
    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > MAX_FIELDS_BYTES:
        raise ValidationError("fields", f"must be at most {MAX_FIELDS_BYTES} bytes as JSON")
    return value


def _submitted_at(body: Mapping[str, Any], received_at: datetime) -> tuple[datetime | None, str]:
    text = _text(body, "submitted_at")
    if text is None:
        return None, ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            "submitted_at", "must be an ISO 8601 date-time such as 2024-05-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValidationError(
            "submitted_at", "must include a UTC offset, e.g. 2024-05-01T12:00:00Z or +02:00"
        )
    if moment > received_at:
        return received_at, text
    return moment, ""


def validate_idempotency_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header value, or ``ValidationError`` naming the header."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_IDEMPOTENCY_KEY_LENGTH or not _IDEMPOTENCY_KEY_RE.match(value):
        raise ValidationError(
            "Idempotency-Key",
            f"must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters",
            code="invalid_header",
        )
    return value


def parse_lead(
    body: object,
    *,
    received_at: datetime,
    default_region: str,
    idempotency_key: str | None = None,
) -> NewLead:
    """Validate and normalise a decoded JSON lead body received at ``received_at`` (aware)."""
    if not isinstance(body, dict):
        raise ValidationError(None, "the body must be a JSON object", code="invalid_body")
    for key in body:
        if key not in _KNOWN_KEYS:
            raise ValidationError(
                key[:100], "unknown field (put extra data under 'fields')", code="unknown_field"
            )

    raw_phone = body.get("phone")
    if raw_phone is None or (isinstance(raw_phone, str) and not raw_phone.strip()):
        raise ValidationError("phone", "is required", code="missing_field")
    phone_text = _text(body, "phone")
    assert phone_text is not None
    try:
        phone = normalize_phone(phone_text, default_region)
    except ValueError as exc:
        raise ValidationError("phone", str(exc)) from None

    email = _text(body, "email")
    if email is not None:
        if not _EMAIL_RE.match(email):
            raise ValidationError("email", "is not an email address")
        local, _, domain = email.rpartition("@")
        email = f"{local}@{domain.lower()}"

    intent_text = _text(body, "intent")
    intent: Intent | None = None
    if intent_text is not None:
        try:
            intent = Intent(intent_text.lower())
        except ValueError:
            raise ValidationError("intent", "must be one of high, medium, low") from None

    consent = body.get("consent")
    if consent is not None and not isinstance(consent, bool):
        raise ValidationError("consent", "must be true or false")

    source = _text(body, "source")
    external_id = _text(body, "external_id")
    submitted_at, clamped_from = _submitted_at(body, received_at)
    event_data: dict[str, Any] = {}
    if clamped_from:
        event_data["submitted_at_clamped_from"] = clamped_from
    if idempotency_key is not None:
        event_data["idempotency_key"] = idempotency_key

    return NewLead(
        phone=phone,
        name=_text(body, "name"),
        email=email,
        company=_text(body, "company"),
        source=source,
        external_id=external_id,
        idempotency_key=idempotency_key,
        intent=intent,
        consent=consent,
        fields=_fields(body),
        received_at=received_at,
        submitted_at=submitted_at,
        received_event_data=event_data,
    )
