"""Team managers as recipients of SLA escalations: their own email and Slack webhook.

``[[teams]] manager = { name, email, phone, slack_webhook }`` names people, not ``[notify]``
endpoints, yet the same outbox delivers to them. Each manager contact is an implicit endpoint
named after its team, ``manager:<team>:email`` and ``manager:<team>:slack`` (``:`` is not
allowed in ``[notify]`` endpoint names, so the two never clash). The SLA runtime
(:mod:`dialer.sla_runtime`) queues rows for those names in the transaction that records the
SLA event; the outbox worker (:func:`dialer.notify.outbox.notify_ctx`) has a channel for each,
built from the same configuration, so retries with backoff, dead letters, order per lead and
concurrency per endpoint are those of every other endpoint. The Slack webhook URL (a secret)
stays in the configuration: outbox rows hold only the endpoint name.

What a manager receives, for the leads of their team (which team: ``dialer.sla_runtime``):

- ``slack_webhook``: ``lead.sla_at_risk`` (a heads-up while the lead can still be saved) and
  ``lead.sla_breached``;
- ``email``: ``lead.sla_breached`` only (an escalation worth an inbox), and only when
  ``[notify.smtp]`` is configured; :func:`unsendable_manager_emails` lists the others so that
  start-up can warn about them.

Reps have no contact of their own in the configuration (``[[reps]]`` has a SIP URI only), so a
rep is reached through their team's manager channel and the ``[notify]`` endpoints.

The idempotency key of each row is ``<event id>:<endpoint>``: one per (lead, milestone,
recipient). One person managing two teams (same address, same webhook) is told once.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import parseaddr
from typing import TYPE_CHECKING, Final

from dialer.notify.config import EmailEndpoint, Endpoint, NotifyConfig, SlackEndpoint
from dialer.notify.events import EventType

if TYPE_CHECKING:  # dialer.config imports dialer.notify.config: no import at run time
    from dialer.config import TeamConfig

__all__ = [
    "MANAGER_EMAIL_EVENTS",
    "MANAGER_SLACK_EVENTS",
    "manager_email_endpoint",
    "manager_endpoints",
    "manager_slack_endpoint",
    "manager_targets",
    "unsendable_manager_emails",
]

#: Events a manager's ``email`` receives.
MANAGER_EMAIL_EVENTS: Final = frozenset({EventType.LEAD_SLA_BREACHED})
#: Events a manager's ``slack_webhook`` receives.
MANAGER_SLACK_EVENTS: Final = frozenset({EventType.LEAD_SLA_AT_RISK, EventType.LEAD_SLA_BREACHED})


def manager_email_endpoint(team_id: str) -> str:
    """The outbox endpoint name of team ``team_id``'s manager email."""
    return f"manager:{team_id}:email"


def manager_slack_endpoint(team_id: str) -> str:
    """The outbox endpoint name of team ``team_id``'s manager Slack webhook."""
    return f"manager:{team_id}:slack"


def manager_endpoints(teams: Sequence[TeamConfig], notify: NotifyConfig) -> tuple[Endpoint, ...]:
    """One endpoint per manager contact of ``teams`` (the worker builds a channel for each).

    Emails only when ``[notify.smtp]`` is configured.
    """
    endpoints: list[Endpoint] = []
    for team in teams:
        manager = team.manager
        if manager is None:
            continue
        if manager.email and notify.smtp_configured:
            endpoints.append(
                EmailEndpoint(
                    name=manager_email_endpoint(team.id),
                    to=(manager.email,),
                    events=MANAGER_EMAIL_EVENTS,
                    max_concurrency=1,
                )
            )
        if manager.slack_webhook:
            endpoints.append(
                SlackEndpoint(
                    name=manager_slack_endpoint(team.id),
                    url=manager.slack_webhook,
                    events=MANAGER_SLACK_EVENTS,
                )
            )
    return tuple(endpoints)


def manager_targets(
    teams: Sequence[TeamConfig], notify: NotifyConfig, event_type: EventType
) -> tuple[str, ...]:
    """Endpoint names to queue ``event_type`` for, to the managers of ``teams`` (in order).

    A person reached twice (the same address or webhook in two teams) is listed once.
    """
    seen: set[str] = set()
    names: list[str] = []
    for endpoint in manager_endpoints(teams, notify):
        if event_type not in endpoint.events:
            continue
        if isinstance(endpoint, EmailEndpoint):
            recipient = "email:" + parseaddr(endpoint.to[0])[1].lower()
        else:
            recipient = "slack:" + endpoint.url
        if recipient not in seen:
            seen.add(recipient)
            names.append(endpoint.name)
    return tuple(names)


def unsendable_manager_emails(teams: Sequence[TeamConfig], notify: NotifyConfig) -> list[str]:
    """Config keys (``teams[0].manager.email``) of manager emails that no mail server can send
    (``[notify.smtp]`` is absent); empty when every one can be sent."""
    if notify.smtp_configured:
        return []
    return [
        f"teams[{index}].manager.email"
        for index, team in enumerate(teams)
        if team.manager is not None and team.manager.email
    ]
