"""The SLA timers of the daemon: at-risk warnings, breaches, escalation and reassignment.

Drivers (like ``sip.aio``): one ``loop.call_at`` armed at the earliest of the next SLA
milestone (:class:`dialer.sla_watch.SlaWatch`) and the next re-sync; the in-process hook
:func:`watch_lead` (the pipeline calls it when a lead's deadline is decided); start-up.

Start-up (:meth:`SlaRuntime.start`). Every open clock is re-derived from the database
(:func:`dialer.store.sla.open_clocks`: leads not called yet, not breached yet, not closed
without a call — completed, blocked by compliance, failed — with the milestones their timeline
already holds), and everything already due (a deadline that passed
while the daemon was stopped) is handled before ``start`` returns, once: the timeline and
the unique index of migration 0005 say what was recorded before. Every ``resync_s`` the
watch is rebuilt from the database the same way, which also picks up leads stored or routed by
another daemon sharing the database. Several daemons may therefore watch the same lead; each
milestone is still recorded (and notified) once.

A due milestone is handled in one transaction (:meth:`SlaRuntime.tick`): lock the lead,
re-check it (called meanwhile: nothing to do; deadline moved: watch again), append the
``sla_at_risk`` / ``sla_breached`` event, enqueue the notification in the outbox, and on a
breach hand the lead back to the pipeline to be routed again (``scheduled`` now, reason
``sla_breached``, with the reps who already missed it; :func:`dialer.store.sla.request_reroute`).

Who is told. Both events go to the ``[notify]`` endpoints subscribed to their type, with
``data.escalation`` naming the people concerned, and straight to those people's own contacts
(:mod:`dialer.notify.managers`), all queued in the outbox in the transaction of the event:

- Which team: the assigned rep's teams, else the teams of the reps the lead was offered to
  (whose manager is accountable for the miss), else the pool and overflow teams of its routing
  rule (whose reps should have taken it); no team at all (an everyone pool, nobody rung):
  every manager, since an unowned lead is everyone's problem (:func:`escalation_teams`,
  :func:`managed_teams`).
- ``lead.sla_at_risk``: ``{"notify": "assignee", "rep": {...} | null, "teams": [...]}``.
  Reps have no contact of their own in the configuration, so the heads-up reaches them
  through their team: one Slack message to each of those teams' manager ``slack_webhook``
  (no email: a warning at half the window is not worth an inbox).
- ``lead.sla_breached``: ``{"notify": "manager", "managers": [{"team", "name", "email",
  "phone"}], "reason", "missed_reps", "reassigned"}``, and one email to each of those
  managers' ``email`` (when ``[notify.smtp]`` is configured) and one Slack message to each
  ``slack_webhook``, with the lead's facts, the breach reason, the reps tried and the lead's
  link.

Each direct message has the idempotency key ``<event id>:manager:<team>:<email|slack>``, one
per (lead, milestone, recipient): a restart or a second daemon re-deriving the milestone
queues nothing new (the milestone is recorded once), and the outbox worker delivers at least
once, with its retries, backoff and dead letters.

Breach reasons, from the timeline (:func:`breach_reason`): held by calling hours ->
``outside_calling_hours``; a prospect leg failed before it was dialled ->
``prospect_unreachable``; reps were rung and every miss was a decline -> ``rep_rejected``;
reps were rung and missed -> ``all_missed``; still being rung -> ``in_progress``; otherwise
nobody could be rung -> ``no_rep_available``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
from aiohttp import web

from dialer.api.keys import CONFIG_KEY, STORE_KEY
from dialer.config import Config, RuleConfig, TeamConfig
from dialer.domain import LeadStatus
from dialer.domain import utc_timestamp as _iso
from dialer.logs import get_logger
from dialer.notify import (
    BreachReason,
    EventType,
    LifecycleEvent,
    enqueue_event,
    event_id_for,
    lead_sla_at_risk,
    lead_sla_breached,
)
from dialer.notify.config import NotifyConfig
from dialer.notify.managers import manager_targets
from dialer.sla_watch import Milestone, SlaDue, SlaWatch, at_risk_at
from dialer.store.migrate import AnyConnection
from dialer.store.sla import (
    AT_RISK_EVENT,
    BREACHED_EVENT,
    CLOSED_STATUSES,
    EscalationLead,
    SlaWindows,
    lock_lead,
    open_clocks,
    record_milestone,
    request_reroute,
)

__all__ = [
    "ESCALATION_SCHEMA",
    "SLA_RUNTIME_KEY",
    "EscalationResult",
    "Manager",
    "SlaRuntime",
    "SlaRuntimeSettings",
    "breach_reason",
    "escalation_teams",
    "managed_teams",
    "managers_for",
    "missed_reps",
    "sla_ctx",
    "unwatch_lead",
    "watch_lead",
]

_log = get_logger("dialer.sla")

#: Rep leg results that mean "the rep had the lead and did not take it".
_MISSES: Final = frozenset({"no_answer", "rejected", "unreachable", "busy", "voicemail"})
#: Prospect leg results (or lead status reasons) that mean the prospect could not be reached.
_PROSPECT_FAILURES: Final = frozenset(
    {"prospect_failed", "prospect_busy", "prospect_no_answer", "trunk_busy", "trunk_auth_failed"}
)
#: Statuses in which the lead is being rung or called right now.
_IN_FLIGHT: Final = frozenset(
    {LeadStatus.ROUTING, LeadStatus.RINGING_REPS, LeadStatus.CALLING_PROSPECT}
)
_DB_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


_STRINGS: Final = {"type": "array", "items": {"type": "string"}}

#: JSON Schema of ``data.escalation`` in ``lead.sla_at_risk`` / ``lead.sla_breached`` payloads,
#: for ``dialer/notify/webhook.schema.json`` (``$defs``) and ``docs/webhooks.md``.
ESCALATION_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "object",
    "required": ["notify"],
    "additionalProperties": False,
    "properties": {
        "notify": {"enum": ["assignee", "manager"]},
        "rep": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["id", "name"],
                    "additionalProperties": False,
                    "properties": {"id": {"type": "string"}, "name": {"type": ["string", "null"]}},
                },
            ]
        },
        "teams": _STRINGS,
        "managers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["team", "name", "email", "phone"],
                "additionalProperties": False,
                "properties": {
                    key: {"type": "string"} for key in ("team", "name", "email", "phone")
                },
            },
        },
        "reason": {"enum": [reason.value for reason in BreachReason]},
        "missed_reps": _STRINGS,
        "reassigned": {"type": "boolean"},
    },
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- pure decisions


def missed_reps(lead: EscalationLead) -> tuple[str, ...]:
    """Reps who had the lead and did not take it (no answer, declined, unreachable, busy),
    plus those the pipeline marked as tried; in first-miss order."""
    seen: dict[str, None] = {}
    for event in lead.events:
        if event.kind == "rep_leg_ended" and event.data.get("result") in _MISSES:
            rep = event.data.get("rep_id")
            if isinstance(rep, str):
                seen.setdefault(rep, None)
    for rep in lead.tried_reps:
        seen.setdefault(rep, None)
    return tuple(seen)


def breach_reason(lead: EscalationLead) -> BreachReason:
    """Why the lead is breaching (module docstring), from its status and timeline."""
    status = lead.lead.status
    last_scheduled = next(
        (event for event in reversed(lead.events) if event.kind == "scheduled"), None
    )
    held_by_hours = lead.status_reason == "calling_hours" or (
        status is LeadStatus.SCHEDULED
        and last_scheduled is not None
        and last_scheduled.data.get("reason") == "calling_hours"
    )
    if held_by_hours:
        return BreachReason.OUTSIDE_CALLING_HOURS
    if lead.status_reason in _PROSPECT_FAILURES or any(
        event.kind == "prospect_leg_ended" for event in lead.events
    ):
        return BreachReason.PROSPECT_UNREACHABLE
    results = [
        event.data.get("result")
        for event in lead.events
        if event.kind == "rep_leg_ended" and event.data.get("result") in _MISSES
    ]
    if results:
        if all(result == "rejected" for result in results):
            return BreachReason.REP_REJECTED
        return BreachReason.ALL_MISSED
    if status in _IN_FLIGHT and any(event.kind == "ringing_reps" for event in lead.events):
        return BreachReason.IN_PROGRESS
    return BreachReason.NO_REP_AVAILABLE


def _rule(config: Config, name: str | None) -> RuleConfig | None:
    if name is None:
        return None
    for rule in config.routing.rules:
        if rule.name == name:
            return rule
    fallback = config.routing.fallback
    if fallback is not None and fallback.name == name:
        return fallback
    return None


def escalation_teams(config: Config, lead: EscalationLead) -> tuple[str, ...]:
    """The teams a lead's escalation concerns: the assigned rep's, else those of the reps it
    was offered to, else its routing rule's pool (and overflow) teams."""
    reps = [lead.lead.assigned_rep] if lead.lead.assigned_rep else list(missed_reps(lead))
    teams: dict[str, None] = {}
    for rep_id in reps:
        rep = config.rep(rep_id) if rep_id else None
        for team in rep.teams if rep is not None else ():
            teams.setdefault(team, None)
    if not teams:
        rule = _rule(config, lead.last_rule)
        if rule is not None:
            for pool in (rule.pool, rule.overflow):
                for team in pool.teams if pool is not None else ():
                    teams.setdefault(team, None)
    return tuple(teams)


@dataclass(frozen=True, slots=True, kw_only=True)
class Manager:
    """A team manager to tell about a breach."""

    team: str
    name: str
    email: str
    phone: str

    def to_json(self) -> dict[str, str]:
        """JSON-ready (the manager's own Slack webhook URL is a secret: left out)."""
        return {"team": self.team, "name": self.name, "email": self.email, "phone": self.phone}


def managed_teams(config: Config, teams: Sequence[str]) -> tuple[TeamConfig, ...]:
    """The ``[[teams]]`` of ``teams`` that have a manager, in file order; every team with a
    manager when ``teams`` is empty (nobody can tell whose lead it is: every manager is)."""
    return tuple(
        team
        for team in config.teams
        if team.manager is not None and (not teams or team.id in teams)
    )


def managers_for(config: Config, teams: Sequence[str]) -> tuple[Manager, ...]:
    """The managers of ``teams``; every configured manager when ``teams`` is empty."""
    return tuple(
        Manager(
            team=team.id,
            name=team.manager.name,
            email=team.manager.email,
            phone=team.manager.phone,
        )
        for team in managed_teams(config, teams)
        if team.manager is not None
    )


# --------------------------------------------------------------------------- the runtime


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaRuntimeSettings:
    """Tunables of :class:`SlaRuntime`."""

    #: The watch is rebuilt from the database this often (other daemons' leads, moved
    #: deadlines, leads no hook announced).
    resync_s: float = 10.0
    #: After a database error, the next attempt waits this long.
    retry_s: float = 1.0
    #: Start-up and re-syncs ignore leads received longer ago than this (history).
    horizon_s: float = 7 * 86400.0
    #: Base URL of lead pages in payloads (``<base>/v1/leads/<id>``); empty: none.
    page_url_base: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationResult:
    """What handling one due milestone did."""

    lead_id: str
    milestone: Milestone
    #: False: another daemon (or an earlier run) had recorded it; nothing was done.
    recorded: bool
    seq: int | None = None
    reason: BreachReason | None = None
    #: Outbox endpoints the notification was queued for.
    endpoints: tuple[str, ...] = ()
    managers: tuple[Manager, ...] = ()
    missed_reps: tuple[str, ...] = ()
    #: The lead was handed back to the pipeline to be routed again.
    rerouted: bool = False


class SlaRuntime:
    """Watches every open lead's SLA clock and escalates (module docstring).

    ``clock`` is injected (tests move time by hand); the asyncio timer only decides when
    :meth:`tick` runs, never what is due. ``timer=False`` arms no timer at all: only explicit
    :meth:`tick` calls do work (tests that move a fake clock).
    """

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        config: Config,
        notify: NotifyConfig | None = None,
        settings: SlaRuntimeSettings | None = None,
        clock: Callable[[], datetime] = _utc_now,
        on_reroute: Callable[[str], None] | None = None,
        timer: bool = True,
    ) -> None:
        self._pool = pool
        self._use_timer = timer
        self._config = config
        self._notify = notify if notify is not None else config.notify
        self._settings = settings or SlaRuntimeSettings()
        self._clock = clock
        self._on_reroute = on_reroute
        sla = config.sla
        self._windows = SlaWindows(
            high=sla.high, medium=sla.medium, low=sla.low, default=sla.default
        )
        self._fraction = sla.at_risk_fraction
        self._watch = SlaWatch()
        self._lock = asyncio.Lock()
        self._next_resync: datetime | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        #: Hook calls seen while a re-sync query runs, re-applied on the rebuilt watch.
        self._hooked: dict[str, tuple[datetime, datetime] | None] | None = None

    @property
    def watched(self) -> int:
        """Leads with a pending milestone."""
        return len(self._watch)

    def is_watching(self, lead_id: str) -> bool:
        """True when ``lead_id`` has a pending milestone."""
        return lead_id in self._watch

    def next_deadline(self) -> datetime | None:
        """When the next milestone is due."""
        return self._watch.next_deadline()

    # ----------------------------------------------------------------------- life cycle

    async def start(self) -> list[EscalationResult]:
        """Re-derive the open clocks, handle what is already due (once), arm the timer.
        Returns what start-up escalated."""
        self._running = True
        results = await self.tick(force_resync=True)
        self._arm()
        _log.info("sla timers started", watched=self.watched, escalated=len(results))
        return results

    async def stop(self) -> None:
        """Disarm the timer and wait for a running tick."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ----------------------------------------------------------------------- hooks

    def watch(self, lead_id: str, *, clock_start: datetime, due_at: datetime) -> None:
        """Watch a lead's clock (new lead, or its deadline decided by routing)."""
        if self._hooked is not None:
            self._hooked[lead_id] = (clock_start, due_at)
        self._watch_one(lead_id, clock_start, due_at, at_risk_recorded=False)
        self._arm()

    def unwatch(self, lead_id: str) -> None:
        """Stop watching (the prospect was dialled, or the lead is finished)."""
        if self._hooked is not None:
            self._hooked[lead_id] = None
        self._watch.unwatch(lead_id)

    def _watch_one(
        self, lead_id: str, clock_start: datetime, due_at: datetime, *, at_risk_recorded: bool
    ) -> None:
        due_at = max(due_at, clock_start)
        self._watch.watch(
            lead_id,
            clock_start=clock_start,
            due_at=due_at,
            at_risk_fraction=self._fraction,
            reached=(Milestone.AT_RISK,) if at_risk_recorded else (),
        )

    # ----------------------------------------------------------------------- timer

    def _arm(self) -> None:
        if not self._running or not self._use_timer:
            return
        wake = self._watch.next_deadline()
        if self._next_resync is not None and (wake is None or self._next_resync < wake):
            wake = self._next_resync
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if wake is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (wake - self._clock()).total_seconds())
        # Never sleep past a re-sync: the clock may jump, and other daemons add leads.
        delay = min(delay, self._settings.resync_s)
        self._timer = loop.call_at(loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._running or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._timer_tick(), name="sla-tick")

    async def _timer_tick(self) -> None:
        try:
            await self.tick()
        except Exception:  # never let the timer die: the next re-sync recovers
            _log.exception("sla tick failed")
        finally:
            self._arm()

    # ----------------------------------------------------------------------- work

    async def tick(self, *, force_resync: bool = False) -> list[EscalationResult]:
        """Handle every milestone due at ``clock()`` (re-syncing first when it is time)."""
        async with self._lock:
            now = self._clock()
            if force_resync or self._next_resync is None or now >= self._next_resync:
                try:
                    await self._resync(now)
                except _DB_ERRORS as exc:
                    _log.warning("sla re-sync failed", error=str(exc))
                    self._next_resync = now + timedelta(seconds=self._settings.retry_s)
                    return []
            results: list[EscalationResult] = []
            for item in self._watch.due(now):
                try:
                    result = await self._escalate(item, now)
                except _DB_ERRORS as exc:
                    # The milestone left the watch uncommitted: the next re-sync brings it back.
                    _log.warning("sla escalation failed", lead_id=item.lead_id, error=str(exc))
                    self._next_resync = now + timedelta(seconds=self._settings.retry_s)
                    continue
                if result is not None:
                    results.append(result)
            return results

    async def _resync(self, now: datetime) -> None:
        self._hooked = {}
        try:
            since = now - timedelta(seconds=self._settings.horizon_s)
            clocks = await open_clocks(self._pool, self._windows, received_since=since)
            watch = SlaWatch()
            previous, self._watch = self._watch, watch
            try:
                for clock in clocks:
                    self._watch_one(
                        clock.lead_id,
                        clock.clock_start,
                        clock.due_at,
                        at_risk_recorded=clock.at_risk_recorded,
                    )
            except Exception:
                self._watch = previous
                raise
            for lead_id, hooked in self._hooked.items():
                if hooked is None:
                    watch.unwatch(lead_id)
                elif lead_id not in watch:
                    self._watch_one(lead_id, *hooked, at_risk_recorded=False)
        finally:
            self._hooked = None
        self._next_resync = now + timedelta(seconds=self._settings.resync_s)

    async def _escalate(self, item: SlaDue, now: datetime) -> EscalationResult | None:
        rerouted = False
        async with self._pool.acquire() as conn, conn.transaction():
            lead = await lock_lead(conn, item.lead_id, self._windows)
            if lead is None or lead.called_at is not None:
                return None
            if lead.lead.status in CLOSED_STATUSES:
                return None
            clock_start = lead.lead.clock_start
            due_at = max(lead.due_at, clock_start)
            milestone_at = (
                due_at
                if item.milestone is Milestone.BREACHED
                else at_risk_at(clock_start, due_at, self._fraction)
            )
            if milestone_at > now:
                # The deadline moved later (routing chose another SLA): watch it anew.
                self._watch_one(
                    lead.lead.id,
                    clock_start,
                    due_at,
                    at_risk_recorded=lead.sla_milestone is not None,
                )
                return None
            if item.milestone is Milestone.AT_RISK and lead.sla_milestone == "breached":
                return None
            if item.milestone is Milestone.AT_RISK:
                result = await self._at_risk(conn, lead, due_at, milestone_at, now)
            else:
                result = await self._breached(conn, lead, due_at, milestone_at, now)
            rerouted = result.rerouted
        if rerouted and self._on_reroute is not None:
            self._on_reroute(item.lead_id)
        _log.info(
            "sla milestone",
            lead_id=item.lead_id,
            milestone=item.milestone.value,
            recorded=result.recorded,
            reason=result.reason.value if result.reason else None,
            rerouted=result.rerouted,
        )
        return result

    def _lead_url(self, lead_id: str) -> str | None:
        base = self._settings.page_url_base.rstrip("/")
        return f"{base}/v1/leads/{lead_id}" if base else None

    async def _at_risk(
        self,
        conn: AnyConnection,
        lead: EscalationLead,
        due_at: datetime,
        at: datetime,
        now: datetime,
    ) -> EscalationResult:
        teams = escalation_teams(self._config, lead)
        rep_id = lead.lead.assigned_rep
        rep_config = self._config.rep(rep_id) if rep_id else None
        rep = {"id": rep_id, "name": rep_config.name if rep_config else None} if rep_id else None
        seq = await record_milestone(
            conn,
            lead.lead.id,
            AT_RISK_EVENT,
            at=now,
            data={"due_at": _iso(due_at), "at_risk_at": _iso(at), "rep": rep_id, "teams": teams},
        )
        if seq is None:
            return EscalationResult(
                lead_id=lead.lead.id, milestone=Milestone.AT_RISK, recorded=False
            )
        window_s = (due_at - lead.lead.clock_start).total_seconds()
        event = lead_sla_at_risk(
            lead.lead,
            due_at=due_at,
            window_s=window_s,
            at=now,
            event_id=event_id_for(lead.lead.id, seq),
            lead_url=self._lead_url(lead.lead.id),
        )
        event = _with_escalation(event, {"notify": "assignee", "rep": rep, "teams": list(teams)})
        heads_up = manager_targets(
            managed_teams(self._config, teams), self._notify, EventType.LEAD_SLA_AT_RISK
        )
        rows = await enqueue_event(conn, self._notify, event, also=heads_up)
        return EscalationResult(
            lead_id=lead.lead.id,
            milestone=Milestone.AT_RISK,
            recorded=True,
            seq=seq,
            endpoints=tuple(row.endpoint for row in rows),
        )

    async def _breached(
        self,
        conn: AnyConnection,
        lead: EscalationLead,
        due_at: datetime,
        at: datetime,
        now: datetime,
    ) -> EscalationResult:
        reason = breach_reason(lead)
        missed = missed_reps(lead)
        teams = escalation_teams(self._config, lead)
        managers = managers_for(self._config, teams)
        seq = await record_milestone(
            conn,
            lead.lead.id,
            BREACHED_EVENT,
            at=now,
            data={
                "due_at": _iso(due_at),
                "reason": reason.value,
                "missed_reps": list(missed),
                "managers": [manager.to_json() for manager in managers],
                "late_by_ms": max(0, round((now - at).total_seconds() * 1000)),
            },
        )
        if seq is None:
            return EscalationResult(
                lead_id=lead.lead.id, milestone=Milestone.BREACHED, recorded=False
            )
        reroute_seq = await request_reroute(conn, lead.lead.id, at=now, exclude_reps=missed)
        rerouted = reroute_seq is not None
        window_s = (due_at - lead.lead.clock_start).total_seconds()
        event = lead_sla_breached(
            lead.lead,
            due_at=due_at,
            window_s=window_s,
            reason=reason,
            at=now,
            event_id=event_id_for(lead.lead.id, seq),
            lead_url=self._lead_url(lead.lead.id),
        )
        event = _with_escalation(
            event,
            {
                "notify": "manager",
                "managers": [manager.to_json() for manager in managers],
                "reason": reason.value,
                "missed_reps": list(missed),
                "reassigned": rerouted,
            },
        )
        # The managers' own email and Slack, in this transaction, keyed per recipient.
        direct = manager_targets(
            managed_teams(self._config, teams), self._notify, EventType.LEAD_SLA_BREACHED
        )
        rows = await enqueue_event(conn, self._notify, event, also=direct)
        return EscalationResult(
            lead_id=lead.lead.id,
            milestone=Milestone.BREACHED,
            recorded=True,
            seq=seq,
            reason=reason,
            endpoints=tuple(row.endpoint for row in rows),
            managers=managers,
            missed_reps=missed,
            rerouted=rerouted,
        )


def _with_escalation(event: LifecycleEvent, escalation: Mapping[str, Any]) -> LifecycleEvent:
    payload = dict(event.payload)
    payload["data"] = {**payload["data"], "escalation": dict(escalation)}
    return replace(event, payload=payload)


# --------------------------------------------------------------------------- composition

#: The running SLA timers (set by :func:`sla_ctx`).
SLA_RUNTIME_KEY = web.AppKey("sla_runtime", SlaRuntime)


def watch_lead(
    app: web.Application, lead_id: str, *, due_at: datetime, started_at: datetime
) -> None:
    """In-process hook: watch ``lead_id``'s clock from ``started_at`` (its clock start) to
    ``due_at``. A no-op when the SLA timers are not running (the next re-sync finds it)."""
    runtime = app.get(SLA_RUNTIME_KEY)
    if runtime is not None:
        runtime.watch(lead_id, clock_start=started_at, due_at=due_at)


def unwatch_lead(app: web.Application, lead_id: str) -> None:
    """In-process hook: the prospect was dialled (or the lead finished); stop its timers."""
    runtime = app.get(SLA_RUNTIME_KEY)
    if runtime is not None:
        runtime.unwatch(lead_id)


async def sla_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after ``database_ctx``, ``notify_ctx`` and ``pipeline_ctx``): run the
    SLA timers (publishes :data:`SLA_RUNTIME_KEY`); a breach re-queues the lead and wakes the
    pipeline when one runs in this process."""
    config = app[CONFIG_KEY]
    wake: Callable[[str], None] | None = None
    from dialer.pipeline import PIPELINE_KEY

    pipeline = app.get(PIPELINE_KEY)
    if pipeline is not None:
        wake = lambda _lead_id: pipeline.wake()  # noqa: E731
    api = config.api
    base = api.public_url.rstrip("/") if api.public_url else f"http://{api.listen}"
    runtime = SlaRuntime(
        pool=app[STORE_KEY].pool,
        config=config,
        settings=SlaRuntimeSettings(page_url_base=base),
        on_reroute=wake,
    )
    await runtime.start()
    app[SLA_RUNTIME_KEY] = runtime
    try:
        yield
    finally:
        await runtime.stop()
