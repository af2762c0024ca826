"""dialer.notify.channels against real local receivers: signed webhooks, Slack, SMTP."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dialer.domain import Lead, LeadStatus
from dialer.notify import events
from dialer.notify.channels import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    Delivery,
    DeliveryError,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
    build_channels,
    email_message,
    encode_body,
    sign,
    slack_message,
    verify_signature,
)
from dialer.notify.config import (
    EmailEndpoint,
    NotifyConfig,
    SlackEndpoint,
    SmtpConfig,
    WebhookEndpoint,
)
from tests.support.notify import SmtpReceiver, WebhookReceiver

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEAD = Lead(
    id="0190f000-0000-7000-8000-000000000001",
    phone="+14155552671",
    name="Ada <Lovelace> & co",
    company="Engines",
    source="web",
    received_at=NOW,
    status=LeadStatus.RECEIVED,
)
URL = "https://dialer.example.com/v1/leads/" + LEAD.id


def delivery(payload: dict[str, Any] | None = None, key: str = "evt_1:crm") -> Delivery:
    event = events.lead_received(LEAD, at=NOW, event_id="evt_1", lead_url=URL)
    return Delivery(
        endpoint="crm",
        event_type=event.type.value,
        lead_id=LEAD.id,
        payload=payload if payload is not None else dict(event.payload),
        idempotency_key=key,
        attempt=1,
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# --------------------------------------------------------------------------- signatures


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    header = sign("whsec", 1767268800, body)
    expected = hmac.new(b"whsec", b"1767268800." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1767268800,v1={expected}"


def test_verify_signature() -> None:
    body = b'{"a":1}'
    header = sign("whsec", 1000, body)
    assert verify_signature("whsec", header, body, now=1000)
    assert verify_signature("whsec", header, body, now=1299)
    assert not verify_signature("whsec", header, body, now=1301)  # too old: a replay
    assert not verify_signature("other", header, body, now=1000)
    assert not verify_signature("whsec", header, b'{"a":2}', now=1000)
    assert not verify_signature("whsec", header.replace("t=1000", "t=1001"), body, now=1000)
    assert not verify_signature("whsec", "v1=abc", body, now=1000)
    assert not verify_signature("whsec", "", body, now=1000)
    # Rotation: several v1 values, one of them right.
    rotated = f"t=1000,v1={'0' * 64},{header.split(',')[1]}"
    assert verify_signature("whsec", rotated, body, now=1000)


# --------------------------------------------------------------------------- webhook


async def test_webhook_posts_signed_json_with_idempotency_key(
    session: aiohttp.ClientSession,
) -> None:
    receiver = WebhookReceiver(secret="whsec")
    url = await receiver.start()
    try:
        channel = WebhookChannel(
            WebhookEndpoint(name="crm", url=url, secret="whsec", max_concurrency=2), session
        )
        assert (channel.name, channel.max_concurrency, channel.timeout_s) == ("crm", 2, 10.0)
        sent = delivery()
        await channel.deliver(sent, now=datetime.now(UTC))
    finally:
        await receiver.stop()
    assert receiver.bad_signatures == 0
    assert receiver.processed == {"evt_1:crm": json.loads(encode_body(sent.payload))}
    headers = receiver.headers[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["Dialer-Event"] == "lead.received"
    assert headers[IDEMPOTENCY_HEADER] == "evt_1:crm"
    assert headers[SIGNATURE_HEADER].startswith("t=")


async def test_webhook_signature_uses_the_injected_clock(session: aiohttp.ClientSession) -> None:
    receiver = WebhookReceiver(secret="whsec")
    url = await receiver.start()
    try:
        channel = WebhookChannel(WebhookEndpoint(name="crm", url=url, secret="whsec"), session)
        stale = datetime.now(UTC) - timedelta(hours=1)
        with pytest.raises(DeliveryError, match="HTTP 400: bad signature"):
            await channel.deliver(delivery(), now=stale)
    finally:
        await receiver.stop()
    assert receiver.bad_signatures == 1
    assert receiver.processed == {}


async def test_webhook_failures_are_delivery_errors(session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/busy":
            return web.Response(status=503, text="busy\n  now", headers={"Retry-After": "7"})
        if request.path == "/moved":
            raise web.HTTPFound("/elsewhere")
        await asyncio.wait_for(release.wait(), 5)
        return web.Response()

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def channel(path: str, timeout_s: float = 10.0) -> WebhookChannel:
        endpoint = WebhookEndpoint(name="x", url=base + path, secret="s", timeout_s=timeout_s)
        return WebhookChannel(endpoint, session)

    try:
        with pytest.raises(DeliveryError) as busy:
            await channel("/busy").deliver(delivery(), now=NOW)
        assert str(busy.value) == "HTTP 503: busy now"
        assert busy.value.retryable
        assert busy.value.retry_after_s == 7.0
        with pytest.raises(DeliveryError, match="HTTP 302"):
            await channel("/moved").deliver(delivery(), now=NOW)
        with pytest.raises(DeliveryError, match=r"timed out after 0\.2s"):
            await channel("/slow", timeout_s=0.2).deliver(delivery(), now=NOW)
    finally:
        release.set()
        await runner.cleanup()

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused = WebhookChannel(
        WebhookEndpoint(name="x", url=f"http://127.0.0.1:{closed_port}/", secret="s"), session
    )
    with pytest.raises(DeliveryError, match="ClientConnectorError") as caught:
        await refused.deliver(delivery(), now=NOW)
    assert caught.value.retryable


# --------------------------------------------------------------------------- Slack


def test_slack_message_has_text_and_blocks() -> None:
    payload = dict(events.lead_received(LEAD, at=NOW, lead_url=URL).payload)
    message = slack_message(payload)
    assert message["text"] == "New lead: Ada <Lovelace> & co"
    header, section, context = message["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "New lead: Ada <Lovelace> & co", "emoji": False},
    }
    assert section["type"] == "section"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in section["fields"]}
    assert fields["*Phone*"] == "+14155552671"
    assert fields["*Company*"] == "Engines"
    assert fields["*Intent*"] == "—"
    assert all(f["type"] == "mrkdwn" for f in section["fields"])
    assert context["type"] == "context"
    assert f"<{URL}|open lead>" in context["elements"][0]["text"]
    assert "`lead.received`" in context["elements"][0]["text"]


def test_slack_message_escapes_mrkdwn_and_describes_breaches() -> None:
    company = Lead(**{**{n: getattr(LEAD, n) for n in Lead.__dataclass_fields__}})
    object.__setattr__(company, "company", "<!channel> & friends")
    breach = events.lead_sla_breached(
        company,
        due_at=NOW,
        window_s=300,
        reason=events.BreachReason.NO_REP_AVAILABLE,
        at=NOW + timedelta(seconds=1),
    )
    message = slack_message(dict(breach.payload))
    assert message["text"].startswith("SLA breached: lead ")
    texts = [f["text"] for f in message["blocks"][1]["fields"]]
    assert "*Company*\n&lt;!channel&gt; &amp; friends" in texts
    assert "*Breach reason*\nno_rep_available" in texts


async def test_slack_channel_posts_the_message(session: aiohttp.ClientSession) -> None:
    receiver = WebhookReceiver(secret="", slack=True)
    url = await receiver.start()
    try:
        channel = SlackChannel(SlackEndpoint(name="alerts", url=url), session)
        assert channel.max_concurrency == 1
        await channel.deliver(delivery(key="evt_1:alerts"), now=NOW)
    finally:
        await receiver.stop()
    body = receiver.processed["evt_1:alerts"]
    assert body == slack_message(delivery().payload)


# --------------------------------------------------------------------------- email


def test_email_message_is_deterministic_per_idempotency_key() -> None:
    payload = dict(events.lead_received(LEAD, at=NOW, lead_url=URL).payload)
    first = email_message(
        payload, idempotency_key="k1", sender="d@example.com", to=("a@x.test",), now=NOW
    )
    again = email_message(
        payload, idempotency_key="k1", sender="d@example.com", to=("a@x.test",), now=NOW
    )
    other = email_message(
        payload, idempotency_key="k2", sender="d@example.com", to=("a@x.test",), now=NOW
    )
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert str(first["Message-ID"]).endswith("@example.com>")
    assert first["Subject"] == "New lead: Ada <Lovelace> & co"
    text = first.get_content()
    assert "Phone    +14155552671" in text
    assert f"Lead: {URL}" in text
    assert json.loads(text.split("Event (JSON):\n", 1)[1]) == payload


async def test_email_channel_sends_through_smtp() -> None:
    receiver = SmtpReceiver(fail_first=1)
    port = await receiver.start()
    try:
        smtp = SmtpConfig(host="127.0.0.1", port=port, from_address="dialer@example.com")
        channel = EmailChannel(
            EmailEndpoint(name="managers", to=("boss@example.com", "deputy@example.com")), smtp
        )
        assert channel.timeout_s == 30.0
        with pytest.raises(DeliveryError, match="SMTP 451") as temporary:
            await channel.deliver(delivery(key="evt_1:managers"), now=NOW)
        assert temporary.value.retryable
        await channel.deliver(delivery(key="evt_1:managers"), now=NOW)
    finally:
        await receiver.stop()
    (message,) = receiver.messages
    assert receiver.envelopes == [
        ("dialer@example.com", ["boss@example.com", "deputy@example.com"])
    ]
    assert message[IDEMPOTENCY_HEADER] == "evt_1:managers"
    assert message["Subject"] == "New lead: Ada <Lovelace> & co"
    assert message["X-Dialer-Event"] == "lead.received"


async def test_email_refused_for_good_is_not_retryable() -> None:
    class Refusing(SmtpReceiver):
        async def handle_RCPT(  # aiosmtpd hook
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            return "550 5.1.1 no such user"

    receiver = Refusing()
    port = await receiver.start()
    try:
        smtp = SmtpConfig(host="127.0.0.1", port=port)
        channel = EmailChannel(EmailEndpoint(name="m", to=("ghost@example.com",)), smtp)
        with pytest.raises(DeliveryError) as caught:
            await channel.deliver(delivery(), now=NOW)
    finally:
        await receiver.stop()
    assert not caught.value.retryable
    assert receiver.messages == []

    nobody = SmtpConfig(host="127.0.0.1", port=port, timeout_s=2)  # server gone
    channel = EmailChannel(EmailEndpoint(name="m", to=("a@example.com",)), nobody)
    with pytest.raises(DeliveryError) as gone:
        await channel.deliver(delivery(), now=NOW)
    assert gone.value.retryable


async def test_build_channels_one_per_endpoint(session: aiohttp.ClientSession) -> None:
    config = NotifyConfig(
        webhooks=(WebhookEndpoint(name="crm", url="http://127.0.0.1:1/", secret="s"),),
        slack=(SlackEndpoint(name="alerts", url="http://127.0.0.1:1/"),),
        email=(EmailEndpoint(name="managers", to=("a@example.com",)),),
    )
    channels = build_channels(config, session)
    assert {name: type(channel) for name, channel in channels.items()} == {
        "crm": WebhookChannel,
        "alerts": SlackChannel,
        "managers": EmailChannel,
    }


def test_documented_signature_example_is_right() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
    expected = sign("whsec_example", 1767268800, b'{"id":"evt_1"}')
    assert f"Dialer-Signature: {expected}" in docs.read_text()
