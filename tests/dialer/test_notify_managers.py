"""Team managers as implicit outbox endpoints (``dialer.notify.managers``): pure decisions.

Delivery to them, end to end through the outbox worker, is in ``test_sla_runtime.py``.
"""

from __future__ import annotations

import aiohttp

from dialer.config import Config, parse_config
from dialer.notify import EventType, parse_notify
from dialer.notify.channels import EmailChannel, SlackChannel, build_channels
from dialer.notify.managers import (
    manager_endpoints,
    manager_targets,
    unsendable_manager_emails,
)

SMTP = {"host": "127.0.0.1", "port": 2525, "from": "dialer@example.com"}


def config(*, smtp: bool = True) -> Config:
    return parse_config(
        {
            "teams": [
                {
                    "id": "west",
                    "manager": {
                        "name": "Wendy",
                        "email": "wendy@example.com",
                        "slack_webhook": "https://hooks.example.com/west",
                    },
                },
                # Wendy also runs north (another address spelling, the same webhook).
                {
                    "id": "north",
                    "manager": {
                        "name": "Wendy",
                        "email": "Wendy <WENDY@example.com>",
                        "slack_webhook": "https://hooks.example.com/west",
                    },
                },
                {"id": "east", "manager": {"name": "Ed", "phone": "+14155550199"}},
                {"id": "south"},
            ],
            "notify": {"smtp": SMTP} if smtp else {},
        },
        env={},
    )


def test_one_endpoint_per_manager_contact() -> None:
    cfg = config()
    endpoints = manager_endpoints(cfg.teams, cfg.notify)
    assert [e.name for e in endpoints] == [
        "manager:west:email",
        "manager:west:slack",
        "manager:north:email",
        "manager:north:slack",
    ]
    assert endpoints[0].events == frozenset({EventType.LEAD_SLA_BREACHED})
    assert endpoints[1].events == frozenset(
        {EventType.LEAD_SLA_AT_RISK, EventType.LEAD_SLA_BREACHED}
    )


def test_a_person_is_told_once_and_at_risk_goes_to_slack_only() -> None:
    cfg = config()
    breached = manager_targets(cfg.teams, cfg.notify, EventType.LEAD_SLA_BREACHED)
    assert breached == ("manager:west:email", "manager:west:slack")
    at_risk = manager_targets(cfg.teams, cfg.notify, EventType.LEAD_SLA_AT_RISK)
    assert at_risk == ("manager:west:slack",)
    assert manager_targets(cfg.teams[2:], cfg.notify, EventType.LEAD_SLA_BREACHED) == ()
    assert manager_targets(cfg.teams, cfg.notify, EventType.LEAD_RECEIVED) == ()


def test_without_smtp_no_manager_email_and_start_up_names_the_keys() -> None:
    cfg = config(smtp=False)
    assert not cfg.notify.smtp_configured
    assert [e.name for e in manager_endpoints(cfg.teams, cfg.notify)] == [
        "manager:west:slack",
        "manager:north:slack",
    ]
    assert unsendable_manager_emails(cfg.teams, cfg.notify) == [
        "teams[0].manager.email",
        "teams[1].manager.email",
    ]
    assert unsendable_manager_emails(config().teams, config().notify) == []


def test_smtp_alone_sizes_the_lease_for_manager_emails() -> None:
    # No [[notify.email]], but managers' emails use [notify.smtp] and its 30 s timeout.
    notify = parse_notify({"smtp": {**SMTP, "timeout_s": "40s"}}, env={})
    assert notify.smtp_configured
    assert notify.lease_s == 43.0
    assert not parse_notify({}, env={}).smtp_configured


async def test_channels_are_built_for_manager_endpoints() -> None:
    cfg = config()
    async with aiohttp.ClientSession() as session:
        channels = build_channels(cfg.notify, session, manager_endpoints(cfg.teams, cfg.notify))
    assert isinstance(channels["manager:west:email"], EmailChannel)
    assert isinstance(channels["manager:north:slack"], SlackChannel)
    assert channels["manager:west:email"].max_concurrency == 1
