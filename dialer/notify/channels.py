"""How one notification reaches one endpoint: signed webhook, Slack message, or email.

A channel's :meth:`~Channel.deliver` returns when the endpoint accepted the notification and
raises :class:`DeliveryError` when it did not; retries, backoff and dead letters belong to the
outbox worker (``dialer.notify.outbox``), not here.

Webhook requests are signed like Stripe's::

    Dialer-Signature: t=1767268800,v1=<hex HMAC-SHA256(secret, "1767268800.<raw body>")>
    Idempotency-Key: evt_..._3:crm

Receivers recompute the HMAC over the raw body bytes, compare in constant time, and reject
timestamps too far from their clock (:func:`verify_signature` does all three); the
``Idempotency-Key`` is the same on every retry of the same notification to the same endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Final, Protocol

import aiohttp
import aiosmtplib

from dialer.notify.config import (
    EmailEndpoint,
    Endpoint,
    NotifyConfig,
    SlackEndpoint,
    SmtpConfig,
    WebhookEndpoint,
)

__all__ = [
    "EVENT_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "Channel",
    "Delivery",
    "DeliveryError",
    "EmailChannel",
    "SlackChannel",
    "WebhookChannel",
    "build_channels",
    "email_message",
    "encode_body",
    "sign",
    "slack_message",
    "summarize",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "Dialer-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
EVENT_HEADER: Final = "Dialer-Event"
USER_AGENT: Final = "dialer-webhooks/1"
#: Default accepted age of a signature timestamp (seconds), as Stripe's libraries use.
DEFAULT_TOLERANCE_S: Final = 300
#: Bytes of a failed response kept for ``last_error``.
_ERROR_BODY_BYTES: Final = 512


class DeliveryError(Exception):
    """The endpoint did not accept the notification.

    ``retryable=False`` means another attempt cannot succeed (dead-letter now);
    ``retry_after_s`` is the endpoint's own hint (HTTP ``Retry-After``).
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One attempt to deliver one outbox row."""

    endpoint: str
    event_type: str
    lead_id: str
    payload: Mapping[str, Any]
    idempotency_key: str
    #: 1 for the first attempt.
    attempt: int


class Channel(Protocol):
    """Something that can deliver to one endpoint."""

    @property
    def name(self) -> str:
        """The endpoint name (the outbox ``endpoint`` column)."""
        ...

    @property
    def max_concurrency(self) -> int:
        """Deliveries in flight at once to this endpoint."""
        ...

    @property
    def timeout_s(self) -> float:
        """Upper bound of one :meth:`deliver` call."""
        ...

    async def deliver(self, delivery: Delivery, *, now: datetime) -> None:
        """Deliver or raise :class:`DeliveryError` (``now``: the worker's clock)."""
        ...


# --------------------------------------------------------------------------- signatures


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Dialer-Signature`` header value for ``body`` sent at ``timestamp`` (Unix s)."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its time is within tolerance.

    For receivers (and tests): any ``v1`` entry may match, which allows secret rotation.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


# --------------------------------------------------------------------------- rendering


def _text(value: Any) -> str:
    return str(value) if value not in (None, "") else "—"


def summarize(payload: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """A one-line title and labelled facts for humans (Slack and email)."""
    data: Mapping[str, Any] = payload.get("data") or {}
    lead: Mapping[str, Any] = data.get("lead") or {}
    rep: Mapping[str, Any] = data.get("rep") or {}
    who = lead.get("name") or lead.get("phone") or lead.get("id", "?")
    rep_name = rep.get("name") or rep.get("id")
    event_type = str(payload.get("type", "?"))
    titles = {
        "lead.received": f"New lead: {who}",
        "lead.assigned": f"Lead {who} assigned to {rep_name}",
        "call.rep_answered": f"{rep_name} answered for lead {who}",
        "call.connected": f"Connected: {rep_name} with {who}",
        "call.completed": f"Call completed: {rep_name} with {who}",
        "lead.sla_at_risk": f"SLA at risk: lead {who}",
        "lead.sla_breached": f"SLA breached: lead {who}",
        "lead.failed": f"Lead failed: {who}",
    }
    title = titles.get(event_type, f"{event_type}: {who}")
    facts = [
        ("Phone", _text(lead.get("phone"))),
        ("Company", _text(lead.get("company"))),
        ("Source", _text(lead.get("source"))),
        ("Intent", _text(lead.get("intent"))),
        ("Status", _text(lead.get("status"))),
    ]
    if rep:
        facts.append(("Rep", _text(rep_name)))
    call: Mapping[str, Any] = data.get("call") or {}
    if "time_to_call_ms" in call:
        facts.append(("Time to call", f"{call['time_to_call_ms'] / 1000:.1f} s"))
    if "duration_ms" in call:
        facts.append(("Duration", f"{call['duration_ms'] / 1000:.0f} s"))
    sla: Mapping[str, Any] = data.get("sla") or {}
    if sla:
        facts.append(("SLA due", _text(sla.get("due_at"))))
        if "remaining_s" in sla:
            facts.append(("Time left", f"{sla['remaining_s'] / 60:.1f} min"))
        if "reason" in sla:
            facts.append(("Breach reason", _text(sla.get("reason"))))
    escalation: Mapping[str, Any] = data.get("escalation") or {}
    assignee = escalation.get("rep")
    if not rep and isinstance(assignee, Mapping):
        facts.append(("Rep", _text(assignee.get("name") or assignee.get("id"))))
    if "missed_reps" in escalation:
        facts.append(("Reps tried", ", ".join(escalation["missed_reps"]) or "none"))
    if "reassigned" in escalation:
        facts.append(("Reassigned", "yes" if escalation["reassigned"] else "no"))
    failure: Mapping[str, Any] = data.get("failure") or {}
    if failure:
        facts.append(("Reason", f"{_text(failure.get('status'))}: {_text(failure.get('reason'))}"))
    return title, facts


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (notifications, fallback) and ``blocks``."""
    title, facts = summarize(payload)
    lead: Mapping[str, Any] = (payload.get("data") or {}).get("lead") or {}
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": False}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}*\n{_mrkdwn_escape(value)}"}
                for label, value in facts[:10]  # Slack allows 10 fields per section
            ],
        },
    ]
    context = f"`{payload.get('type')}` · lead `{lead.get('id', '?')}`"
    if lead.get("url"):
        context += f" · <{lead['url']}|open lead>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": title, "blocks": blocks}


def _mrkdwn_escape(text: str) -> str:
    # Slack's three control characters in mrkdwn text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def email_message(
    payload: Mapping[str, Any],
    *,
    idempotency_key: str,
    sender: str,
    to: tuple[str, ...],
    now: datetime,
) -> EmailMessage:
    """A plain-text email; the ``Message-ID`` derives from the idempotency key."""
    title, facts = summarize(payload)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = title
    message["Date"] = format_datetime(now)
    domain = sender.rpartition("@")[2].strip("> ") or "dialer.invalid"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    # Same notification, same Message-ID: mail systems and people can drop the duplicate.
    message["Message-ID"] = f"<dialer.{digest}@{domain}>"
    message[IDEMPOTENCY_HEADER] = idempotency_key
    message["X-Dialer-Event"] = str(payload.get("type", ""))
    width = max(len(label) for label, _ in facts)
    lines = [title, "", *(f"{label.ljust(width)}  {value}" for label, value in facts)]
    lead: Mapping[str, Any] = (payload.get("data") or {}).get("lead") or {}
    if lead.get("url"):
        lines += ["", f"Lead: {lead['url']}"]
    lines += ["", "-- ", "Event (JSON):", json.dumps(payload, indent=2, ensure_ascii=False)]
    message.set_content("\n".join(lines) + "\n")
    return message


# --------------------------------------------------------------------------- channels


async def _post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
) -> None:
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,  # a redirect is a misconfigured URL, not a delivery
        ) as response:
            if 200 <= response.status < 300:
                return
            snippet = (await response.content.read(_ERROR_BODY_BYTES)).decode(errors="replace")
            raise DeliveryError(
                f"HTTP {response.status}: {' '.join(snippet.split())}".strip(),
                retry_after_s=_retry_after(response.headers.get("Retry-After")),
            )
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    except TimeoutError as exc:
        raise DeliveryError(f"timed out after {timeout_s:g}s") from exc


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None  # the HTTP-date form is rare for webhooks; backoff covers it
    return float(value.strip())


class WebhookChannel:
    """Signed JSON POSTs to a ``[[notify.webhooks]]`` endpoint."""

    def __init__(self, endpoint: WebhookEndpoint, session: aiohttp.ClientSession) -> None:
        self._endpoint = endpoint
        self._session = session

    @property
    def name(self) -> str:
        """The endpoint name."""
        return self._endpoint.name

    @property
    def max_concurrency(self) -> int:
        """From ``max_concurrency``."""
        return self._endpoint.max_concurrency

    @property
    def timeout_s(self) -> float:
        """From ``timeout_s``."""
        return self._endpoint.timeout_s

    async def deliver(self, delivery: Delivery, *, now: datetime) -> None:
        """POST the payload with ``Dialer-Signature`` and ``Idempotency-Key``; 2xx accepts."""
        body = encode_body(delivery.payload)
        headers = {
            SIGNATURE_HEADER: sign(self._endpoint.secret, int(now.timestamp()), body),
            IDEMPOTENCY_HEADER: delivery.idempotency_key,
            EVENT_HEADER: delivery.event_type,
        }
        await _post_json(self._session, self._endpoint.url, body, headers, self.timeout_s)


class SlackChannel:
    """Messages to a Slack incoming webhook (``[[notify.slack]]``)."""

    def __init__(self, endpoint: SlackEndpoint, session: aiohttp.ClientSession) -> None:
        self._endpoint = endpoint
        self._session = session

    @property
    def name(self) -> str:
        """The endpoint name."""
        return self._endpoint.name

    @property
    def max_concurrency(self) -> int:
        """From ``max_concurrency``."""
        return self._endpoint.max_concurrency

    @property
    def timeout_s(self) -> float:
        """From ``timeout_s``."""
        return self._endpoint.timeout_s

    async def deliver(self, delivery: Delivery, *, now: datetime) -> None:
        """POST :func:`slack_message` of the payload; Slack answers 200 ``ok``."""
        body = encode_body(slack_message(delivery.payload))
        headers = {IDEMPOTENCY_HEADER: delivery.idempotency_key}
        await _post_json(self._session, self._endpoint.url, body, headers, self.timeout_s)


class EmailChannel:
    """Plain-text email through ``[notify.smtp]`` to a ``[[notify.email]]`` endpoint."""

    def __init__(self, endpoint: EmailEndpoint, smtp: SmtpConfig) -> None:
        self._endpoint = endpoint
        self._smtp = smtp

    @property
    def name(self) -> str:
        """The endpoint name."""
        return self._endpoint.name

    @property
    def max_concurrency(self) -> int:
        """From ``max_concurrency``."""
        return self._endpoint.max_concurrency

    @property
    def timeout_s(self) -> float:
        """``[notify.smtp] timeout_s``."""
        return self._smtp.timeout_s

    async def deliver(self, delivery: Delivery, *, now: datetime) -> None:
        """Send one message to every recipient; a 5xx refusal is not retried."""
        message = email_message(
            delivery.payload,
            idempotency_key=delivery.idempotency_key,
            sender=self._smtp.from_address,
            to=self._endpoint.to,
            now=now,
        )
        smtp = self._smtp
        try:
            await aiosmtplib.send(
                message,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username or None,
                password=smtp.password or None,
                start_tls=smtp.starttls,
                timeout=smtp.timeout_s,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            # A configuration problem: keep the mail until the operator fixes the password.
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            # 5xx: the server refuses this message for good; 4xx: try again later.
            raise DeliveryError(
                f"SMTP {exc.code}: {exc.message}", retryable=exc.code < 500
            ) from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP recipients refused: {exc}", retryable=False) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


def build_channels(
    config: NotifyConfig,
    session: aiohttp.ClientSession,
    extra: Sequence[Endpoint] = (),
) -> dict[str, Channel]:
    """One channel per configured endpoint, by name, then one per ``extra`` endpoint (the
    implicit ones of team managers, :func:`dialer.notify.managers.manager_endpoints`)."""
    channels: dict[str, Channel] = {}
    for endpoint in (*config.endpoints, *extra):
        if isinstance(endpoint, WebhookEndpoint):
            channels[endpoint.name] = WebhookChannel(endpoint, session)
        elif isinstance(endpoint, SlackEndpoint):
            channels[endpoint.name] = SlackChannel(endpoint, session)
        else:
            channels[endpoint.name] = EmailChannel(endpoint, config.smtp)
    return channels
