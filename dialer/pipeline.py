"""The product path: a stored lead is routed, reps are rung, the first to answer is bridged to
the prospect, and every step is on the lead's timeline.

Statuses (DESIGN §6)::

    received -> routing -> ringing_reps -> calling_prospect -> connected -> completed
                   |            |                 |
                   |            |                 +-> prospect_busy | prospect_no_answer |
                   |            |                     failed  (or scheduled: prospect retry)
                   |            +-> scheduled (no rep answered; re-routed after retry_after_s,
                   |                up to max_rounds) -> waiting_for_rep
                   +-> waiting_for_rep | scheduled (calling hours) | blocked_compliance |
                       no_rep_available (no rep in any pool at all)

Work. A :class:`Pipeline` claims leads from the database (``FOR UPDATE SKIP LOCKED`` with a
lease, :mod:`dialer.store.pipeline`) and works on each in its own task, at most
``max_active`` at once that are not bridged yet: a bridged call needs nothing from the
pipeline until it ends (its lease is renewed with the others), so it stops counting there and
counts against ``max_bridged`` instead. It is woken at once when a lead is stored or a rep
becomes free (PostgreSQL ``LISTEN dialer_pipeline``, fed by triggers, so every daemon on the
database hears it; :meth:`Pipeline.wake` for an in-process hint) and polls as a safety net:
scheduled retries, waiting leads, and leads whose daemon died. A heartbeat renews the leases of
the leads in hand and of their reps' reservations; every poll period, reps whose wrap-up is
over or whose daemon died are freed. Every step is one transaction with its timeline event.

Recovery (a daemon died, or stopped without finishing a lead). Its leads' leases lapse and any
daemon claims them again (a daemon restarted with the same ``[daemon] instance_id`` takes its
own leads back at once). From the last durable status:

- ``received``: routed, as if nothing happened (nobody was rung);
- ``routing`` / ``ringing_reps``: the reps it held are released and the lead is routed again
  (reps rung before may ring again; the prospect was never dialled);
- ``calling_prospect``: the prospect's INVITE went out and its fate is unknown, so the
  prospect is **not** dialled again now: the attempt counts, and the lead is retried after
  ``prospect_retry_after_s`` (``scheduled``) while attempts remain, else ``failed``;
- ``connected``: the bridged call needs no daemon (media flows between the parties), so it is
  never re-dialled: the lead is ``completed`` with ``reason: daemon_restart`` and its rep goes
  to wrap-up.

Reps: reserved (by routing) -> ringing -> on a call (``busy``) -> ``wrap_up`` for
``wrap_up_s`` -> ``available``. A rep whose leg ends in no answer, a decline or unreachable
``max_missed`` times in a row is put ``away``, so the next lead does not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol, runtime_checkable

import asyncpg
from aiohttp import web

from dialer.api.keys import (
    CONFIG_KEY,
    DATABASE_URL_KEY,
    METRICS_KEY,
    ROUTER_KEY,
    ROUTING_STORE_KEY,
    STORE_KEY,
)
from dialer.calls import (
    BridgeSettings,
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallResult,
    LegResult,
)
from dialer.calls.controller import (
    CallController,
    ControllerSettings,
    EventBatchCallback,
    EventCallback,
)
from dialer.calls.prompts import SpeechSettings
from dialer.config import Config
from dialer.domain import LeadStatus, RingPlan
from dialer.logs import get_logger
from dialer.metrics import PipelineGauges, PipelineStatsCollector, SipStatsCollector
from dialer.roster import DEFAULT_MAX_AGE_S, RepRoster, RosterSnapshot
from dialer.routing import (
    InvalidLeadError,
    Outcome,
    Router,
    RoutingDecision,
    facts_for_lead,
    ruleset_document,
)
from dialer.routing.engine import EXCLUDED
from dialer.routing.facts import LeadFacts
from dialer.store.pipeline import (
    Claim,
    DecisionRecord,
    LeadChanges,
    PipelineLead,
    PipelineStore,
    RoutingContext,
    StepHook,
)
from dialer.store.routing import CapacityLimits, RoundRobinTurn, RoutingStore
from dialer.store.sla import REROUTE_REASON as SLA_REROUTE_REASON
from sip import RingbackRegion, SipConfig, load_prompt
from sip.aio.rtp import RtpEngineConfig

__all__ = [
    "CALL_CONTROLLER_KEY",
    "CALL_STARTER_KEY",
    "LISTEN_CHANNEL",
    "PIPELINE_KEY",
    "STEP_HOOK_KEY",
    "CallHandle",
    "CallStarter",
    "Pipeline",
    "PipelineSettings",
    "calls_ctx",
    "pipeline_ctx",
    "sip_config_for",
]

_log = get_logger("dialer.pipeline")

#: The PostgreSQL channel the migrations' triggers notify (payload ``lead`` or ``rep``).
LISTEN_CHANNEL: Final = "dialer_pipeline"

#: Rep leg results that count as "the rep was not there" towards ``max_missed``.
_MISSES: Final = frozenset(
    {LegResult.NO_ANSWER, LegResult.REJECTED, LegResult.UNREACHABLE, LegResult.VOICEMAIL}
)

#: Rep leg results that do not make a rep "tried" for ``[retry] exclude_tried``.
_NOT_TRIED: Final = frozenset({LegResult.CANCELLED, LegResult.ANSWERED_LATE})

#: Statuses a call's outcome may settle from.
_CALLING: Final = (LeadStatus.RINGING_REPS, LeadStatus.CALLING_PROSPECT, LeadStatus.CONNECTED)
#: Statuses routing may start ringing from.
_ROUTABLE: Final = (LeadStatus.ROUTING, LeadStatus.RINGING_REPS, LeadStatus.WAITING_FOR_REP)

#: Why a lead was re-routed or is waiting when its reps did not take it.
_NO_ANSWER_REASONS: Final = frozenset(
    {CallResult.REPS_NO_ANSWER.value, CallResult.BRIDGE_FAILED.value, SLA_REROUTE_REASON}
)


def _only_excluded_left(decision: RoutingDecision) -> bool:
    """Whether the decision found nobody only because the reps left were excluded ones."""
    return any(candidate.reason == EXCLUDED for candidate in decision.candidates)


#: Database trouble a loop survives (logged; the next tick tries again). InternalClientError:
#: a pooled connection the server dropped under load can fail its reset with "cannot switch to
#: state N; another operation is in progress" (seen when PostgreSQL restarts mid-query).
_DB_ERRORS: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)

#: Candidates listed in the routing decision kept with a lead (the rest are counted by
#: reason; ``RoutingDecision.to_json``). ``dialer route explain`` always lists every rep.
MAX_STORED_CANDIDATES: Final = 50

#: After the drain time-out hangs calls up, how long their leads get to settle.
_DRAIN_HANGUP_GRACE_S: Final = 5.0


class CallHandle(Protocol):
    """What the pipeline needs of a running call (:class:`dialer.calls.controller.Call`)."""

    def hang_up(self) -> None:
        """End the call now."""

    async def wait_ended(self) -> CallOutcome:
        """The outcome, once every event was delivered."""
        ...


@runtime_checkable
class DeclinableCall(Protocol):
    """A running call one rep's leg of which can be declined (:class:`Call` is one)."""

    def cancel_rep(self, rep_id: str) -> bool:
        """Cancel ``rep_id``'s leg; the plan goes on. False when there was none to cancel."""
        ...


class CallStarter(Protocol):
    """What the pipeline needs of the call layer (:class:`CallController`)."""

    def start_call(
        self,
        plan: RingPlan,
        *,
        on_event: EventCallback | None = None,
        on_events: EventBatchCallback | None = None,
    ) -> CallHandle:
        """Start ringing ``plan``; events go to ``on_event`` one by one or to ``on_events``
        in batches, in order."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSettings:
    """Tunables of the pipeline; :meth:`from_config` derives them from the config."""

    #: This daemon's name in claims and reservations (``[daemon] instance_id``).
    instance_id: str
    #: Claims and reservations lapse this long after the last heartbeat (``[daemon] lease_s``).
    lease_s: float = 30.0
    #: Heartbeat period (None: a third of the lease).
    heartbeat_s: float | None = None
    #: Safety-net poll period when nothing wakes the pipeline (None: lease / 6, at most 1 s).
    poll_interval_s: float | None = None
    #: How often a waiting lead is routed again when no rep became free meanwhile.
    waiting_recheck_s: float = 5.0
    #: Leads worked on at once before their call is bridged (routing, ringing reps, calling
    #: the prospect): the pipeline's own work in flight.
    max_active: int = 500
    #: Bridged calls held at once on top of ``max_active`` (each a task waiting for its BYE,
    #: with its lease renewed): bounds the leads in hand when calls are long.
    max_bridged: int = 10_000
    #: Leads claimed per query.
    claim_batch: int = 50
    #: Leads routed at once (reading the reps, deciding, reserving): past the database's
    #: pace, more in flight only lengthen every lead's turn (``[daemon] max_routing``).
    max_routing: int = 8
    #: How long one read of the reps serves the decisions after it (:mod:`dialer.roster`;
    #: 0: read for every lead; ``[daemon] rep_snapshot_s``).
    rep_snapshot_s: float = DEFAULT_MAX_AGE_S
    #: How long :meth:`Pipeline.stop` waits for leads in hand to settle.
    drain_timeout_s: float = 10.0
    #: Base URL of lead pages for the reps' screen pop (``Call-Info``).
    page_url_base: str = ""

    @property
    def heartbeat_period(self) -> float:
        """The heartbeat period actually used."""
        return self.heartbeat_s if self.heartbeat_s is not None else self.lease_s / 3

    @property
    def poll_period(self) -> float:
        """The poll period actually used."""
        if self.poll_interval_s is not None:
            return self.poll_interval_s
        return min(1.0, self.lease_s / 6)

    @classmethod
    def from_config(cls, config: Config) -> PipelineSettings:
        """Settings for the daemon running ``config``."""
        api = config.api
        base = api.public_url.rstrip("/") if api.public_url else f"http://{api.listen}"
        return cls(
            instance_id=config.daemon.resolved_instance_id(),
            lease_s=config.daemon.lease_s,
            drain_timeout_s=config.daemon.drain_timeout_s,
            max_active=config.daemon.max_leads_in_progress,
            max_routing=config.daemon.max_routing,
            rep_snapshot_s=config.daemon.rep_snapshot_s,
            page_url_base=base,
        )


@dataclass(slots=True, eq=False)
class _Work:
    """A lead in hand."""

    lead_id: str
    task: asyncio.Task[None] | None = None
    call: CallHandle | None = None
    #: Another daemon took the lead over (our lease lapsed): stop writing, hang up.
    lost: bool = False
    #: Rep and prospect are connected: counts against ``max_bridged``, not ``max_active``.
    bridged: bool = False


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


class Pipeline:
    """Claims leads and drives each one to a final or waiting state (module docstring).

    Drivers: :meth:`start` / :meth:`stop`; wake-ups (:meth:`wake`, database notifications,
    the poll timer); the heartbeat timer; call events from the call layer.
    """

    def __init__(
        self,
        *,
        config: Config,
        store: PipelineStore,
        routing_store: RoutingStore,
        router: Router,
        calls: CallStarter,
        settings: PipelineSettings,
        listen_dsn: str | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.routing_store = routing_store
        self.router = router
        self.roster = RepRoster(
            routing_store,
            CapacityLimits.from_config(config.reps),
            max_age_s=settings.rep_snapshot_s,
        )
        self._routing_slots = asyncio.Semaphore(max(1, settings.max_routing))
        self.calls = calls
        self.settings = settings
        self._listen_dsn = listen_dsn
        self._listener: asyncpg.Connection | None = None
        self._wake_event = asyncio.Event()
        self._rep_freed = False
        self._stopping = False
        self._draining = False
        self._active: dict[str, _Work] = {}
        #: How many of ``_active`` are bridged.
        self._bridged_count = 0
        self._loops: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------------- life cycle

    @property
    def instance_id(self) -> str:
        """This daemon's name in claims."""
        return self.settings.instance_id

    @property
    def active_leads(self) -> tuple[str, ...]:
        """Ids of the leads in hand."""
        return tuple(self._active)

    def gauges(self) -> PipelineGauges:
        """The work in hand now (``/metrics``)."""
        return PipelineGauges(
            leads_in_hand=len(self._active),
            calls_bridged=self._bridged_count,
            rep_snapshot_reads=self.roster.reads,
        )

    async def decline(self, lead_id: str, rep_id: str) -> bool:
        """The rep ``rep_id`` declined lead ``lead_id`` from the console: cancel their leg of
        the lead's running call (the ring plan goes on; the leg ends ``declined``, so a
        re-route does not offer them the lead again). False when this daemon has no such
        call or that rep has no leg left to cancel. The console's decline handler."""
        work = self._active.get(lead_id)
        call = None if work is None else work.call
        if not isinstance(call, DeclinableCall):
            return False
        return call.cancel_rep(rep_id)

    async def start(self) -> None:
        """Take back this instance's own leads (an earlier run), listen, start the loops."""
        leads, reps = await self.store.expire_own()
        if leads or reps:
            _log.info("recovering own work", leads=leads, reps=reps)
        await self.store.sweep_reps()
        # Decisions reference their rule-set version; routing_ctx records it too (idempotent).
        await self.routing_store.record_ruleset(self.router.version, ruleset_document(self.config))
        await self._listen()
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="pipeline-dispatch"),
            asyncio.create_task(self._heartbeat_loop(), name="pipeline-heartbeat"),
        ]
        _log.info(
            "pipeline started",
            instance_id=self.instance_id,
            lease_s=self.settings.lease_s,
            max_active=self.settings.max_active,
            max_bridged=self.settings.max_bridged,
        )

    async def stop(self) -> None:
        """Stop claiming, end the calls in hand (their leads settle or are handed back), and
        give up every remaining claim and reservation so another daemon takes over at once."""
        self._stopping = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        await self._unlisten()
        for work in list(self._active.values()):
            if work.call is not None:
                work.call.hang_up()
        tasks = [work.task for work in self._active.values() if work.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.settings.drain_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            leads, reps = await self.store.unclaim_own()
        except _DB_ERRORS as exc:
            _log.warning("could not hand back claims", error=str(exc))
        else:
            _log.info("pipeline stopped", handed_back_leads=leads, released_reps=reps)

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` began: nothing new is claimed."""
        return self._draining

    def replace_routing(self, config: Config, router: Router) -> None:
        """A config reload: route every **new** decision with ``router`` under ``config``
        (reps, rules, ringing, retry, compliance). Calls in progress keep their ring plan."""
        self.config = config
        self.router = router
        self.roster.replace_limits(CapacityLimits.from_config(config.reps))

    async def drain(self, timeout_s: float | None = None) -> tuple[int, int]:
        """SIGTERM: stop claiming at once, let the leads in hand finish for up to
        ``timeout_s`` (default ``drain_timeout_s``), then hang up what remains and hand every
        claim and reservation back so other daemons take them at once. Leases are renewed
        meanwhile. Returns (leads, reps) handed back; :meth:`stop` still follows."""
        if self._draining:
            return 0, 0
        self._draining = True
        # _stopping: no claims, no wake-ups, and a lead in hand that has not started ringing
        # yet gives its reps back instead of ringing them.
        self._stopping = True
        timeout = self.settings.drain_timeout_s if timeout_s is None else timeout_s
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = [
            asyncio.create_task(self._drain_heartbeat_loop(), name="pipeline-drain-heartbeat")
        ]
        await self._unlisten()
        tasks = [work.task for work in self._active.values() if work.task is not None]
        _log.info("pipeline draining", leads_in_hand=len(tasks), timeout_s=timeout)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                _log.warning("drain timeout: hanging up calls in progress", leads=len(pending))
                for work in list(self._active.values()):
                    if work.call is not None:
                        work.call.hang_up()
                # The hang-ups settle their leads (rescheduled at once for another daemon).
                await asyncio.wait(pending, timeout=_DRAIN_HANGUP_GRACE_S)
        try:
            leads, reps = await self.store.unclaim_own()
        except _DB_ERRORS as exc:
            _log.warning("could not hand back claims", error=str(exc))
            return 0, 0
        _log.info("pipeline drained", handed_back_leads=leads, released_reps=reps)
        return leads, reps

    async def _drain_heartbeat_loop(self) -> None:
        period = self.settings.heartbeat_period
        while True:
            await asyncio.sleep(period)
            try:
                await self._heartbeat()
            except _DB_ERRORS as exc:
                _log.warning("heartbeat failed", error=str(exc))

    def wake(self, *, rep_freed: bool = False) -> None:
        """Look for work now (a lead was stored; ``rep_freed``: a rep became free, so offer
        the waiting leads). Never blocks; wake-ups coalesce."""
        if rep_freed:
            self._rep_freed = True
        self._wake_event.set()

    # ----------------------------------------------------------------------- wake-ups

    async def _listen(self) -> None:
        if self._listen_dsn is None or self._listener is not None:
            return
        try:
            conn = await asyncpg.connect(self._listen_dsn)
            await conn.add_listener(LISTEN_CHANNEL, self._on_notification)
        except _DB_ERRORS as exc:
            _log.warning("cannot listen for wake-ups; polling only", error=str(exc))
            return
        conn.add_termination_listener(self._on_listener_lost)
        self._listener = conn

    def _on_listener_lost(self, _conn: object) -> None:
        # Without the announcements of freed reps a snapshot could hide one: read fresh
        # (``_route``) until listening again.
        self._listener = None

    async def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*_DB_ERRORS):
                await listener.close(timeout=2)

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        # 'lead', or 'rep:<id>' (migration 0008; 'rep' before it).
        text = str(payload)
        kind, _sep, rep_id = text.partition(":")
        if kind == "rep" and rep_id:
            self.roster.rep_freed(rep_id)
        self.wake(rep_freed=kind == "rep")

    # ----------------------------------------------------------------------- loops

    async def _dispatch_loop(self) -> None:
        period = self.settings.poll_period
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while not self._stopping:
            self._wake_event.clear()
            rep_freed, self._rep_freed = self._rep_freed, False
            more = False
            try:
                if loop.time() >= next_sweep:
                    # Wrap-ups that ended and reps whose daemon died: free them for waiting
                    # leads within a poll period.
                    next_sweep = loop.time() + period
                    if await self.store.sweep_reps():
                        rep_freed = True
                more = await self._claim_and_start(rep_freed=rep_freed)
            except _DB_ERRORS as exc:
                _log.warning("claiming failed", error=str(exc))
            if more:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._wake_event.wait()

    async def _claim_and_start(self, *, rep_freed: bool) -> bool:
        """Claim what there is room for; True when more may be waiting."""
        settings = self.settings
        free = self._room()
        if free <= 0:
            return False
        batch = min(free, settings.claim_batch)
        claims = await self.store.claim_ready(batch)
        free -= len(claims)
        if free > 0:
            claims += await self.store.claim_waiting(
                min(free, settings.claim_batch), any_time=rep_freed
            )
        for claim in claims:
            self._start_work(claim)
        return len(claims) >= batch and self._room() > 0

    def _room(self) -> int:
        """How many more leads may be claimed now (``max_active``, ``max_bridged``)."""
        settings = self.settings
        in_progress = len(self._active) - self._bridged_count
        in_hand_limit = settings.max_active + settings.max_bridged
        return min(settings.max_active - in_progress, in_hand_limit - len(self._active))

    def _mark_bridged(self, work: _Work) -> None:
        """``work``'s call is bridged: it no longer takes a ``max_active`` place."""
        if work.bridged or self._active.get(work.lead_id) is not work:
            return
        work.bridged = True
        self._bridged_count += 1
        if not self._stopping:
            self._wake_event.set()

    def _start_work(self, claim: Claim) -> None:
        work = _Work(lead_id=claim.lead.id)
        self._active[work.lead_id] = work
        work.task = asyncio.create_task(self._work(claim, work), name=f"lead-{work.lead_id}")
        work.task.add_done_callback(lambda _task: self._work_done(work))

    def _work_done(self, work: _Work) -> None:
        if self._active.get(work.lead_id) is work:
            del self._active[work.lead_id]
            if work.bridged:
                self._bridged_count -= 1
        if not self._stopping:
            self._wake_event.set()

    async def _heartbeat_loop(self) -> None:
        period = self.settings.heartbeat_period
        while not self._stopping:
            await asyncio.sleep(period)
            try:
                await self._heartbeat()
            except _DB_ERRORS as exc:
                _log.warning("heartbeat failed", error=str(exc))

    async def _heartbeat(self) -> None:
        in_hand = list(self._active)
        held = await self.store.renew(in_hand)
        for lead_id in in_hand:
            work = self._active.get(lead_id)
            if lead_id not in held and work is not None and not work.lost:
                # Our lease lapsed and someone took the lead over: let them have it.
                _log.warning("lead taken over by another daemon", lead_id=lead_id)
                work.lost = True
                if work.call is not None:
                    work.call.hang_up()
        if self._listener is None and self._listen_dsn is not None and not self._stopping:
            await self._listen()

    # ----------------------------------------------------------------------- one lead

    async def _work(self, claim: Claim, work: _Work) -> None:
        lead = claim.lead
        try:
            if claim.recovered:
                _log.info(
                    "recovering lead",
                    lead_id=lead.id,
                    status=claim.prior_status.value,
                    previous_daemon=claim.previous_owner,
                )
                recovered = await self._recover(claim)
                if recovered is None:
                    return
                lead = recovered
            routed = await self._route(lead, work, recovering=claim.recovered)
            if routed is not None:
                # Ring from here, not inside _route: its locals (every rep's record, the
                # decision and its explanation) would otherwise stay alive for the whole call,
                # about 1 KB per rep on the floor for every call held.
                await self._ring(*routed, work)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lead keeps its status; its claim lapses and it is recovered from there.
            _log.exception("lead failed in the pipeline", lead_id=lead.id)

    async def _recover(self, claim: Claim) -> PipelineLead | None:
        """Resume a lead another daemon (or an earlier run) was working on; the lead to route
        again, or None when it is settled here."""
        lead = claim.lead
        status = claim.prior_status
        if status is LeadStatus.CONNECTED:
            await self.store.release_lead_reps(
                lead.id,
                wrap_up_rep=lead.lead.assigned_rep,
                wrap_up_s=self.config.ringing.wrap_up_s,
            )
            await self.store.update(
                lead.id,
                at=_now(),
                kind=LeadStatus.COMPLETED.value,
                data={
                    "reason": "daemon_restart",
                    "rep_id": lead.lead.assigned_rep,
                    "detail": "bridged when its daemon stopped; not re-dialled, end not seen",
                },
                status=LeadStatus.COMPLETED,
                from_statuses=[LeadStatus.CONNECTED],
                changes=LeadChanges(release=True, status_reason="daemon_restart"),
            )
            self._rep_may_be_free()
            return None
        if status is LeadStatus.CALLING_PROSPECT:
            await self._prospect_interrupted(lead, reason="daemon_restart")
            return None
        # routing / ringing_reps: nobody was bridged and the prospect was never dialled.
        if await self.store.release_lead_reps(lead.id):
            self._rep_may_be_free()
        return lead

    async def _route(
        self, lead: PipelineLead, work: _Work, *, recovering: bool
    ) -> tuple[PipelineLead, RingPlan] | None:
        """Route ``lead`` and reserve its reps: the lead as moved to ``ringing_reps`` and the
        ring plan to dial, or None when it was settled otherwise (waiting, scheduled, blocked,
        failed, or its reps given back). At most ``max_routing`` leads route at once."""
        async with self._routing_slots:
            return await self._route_now(lead, work, recovering=recovering)

    async def _route_now(
        self, lead: PipelineLead, work: _Work, *, recovering: bool
    ) -> tuple[PipelineLead, RingPlan] | None:
        now = _now()
        try:
            facts = facts_for_lead(lead.lead, default_region=self.config.api.default_region)
        except InvalidLeadError as exc:
            await self._finish(lead, LeadStatus.FAILED, reason="invalid_lead", detail=str(exc))
            return None
        # Read fresh without the announcements of freed reps (no listener), and for a lead
        # waiting for the reps it already tried: it needs their status times as they are now.
        fresh = self._listener is None or (
            lead.status is LeadStatus.WAITING_FOR_REP and bool(lead.tried_reps)
        )
        snapshot, cursors, context = await asyncio.gather(
            self.roster.snapshot(now, fresh=fresh),
            self.routing_store.cursors(),
            self.store.routing_context(lead.id, lead.lead.phone, now),
        )
        while True:
            # Reps who already missed it are ineligible inside the router, so a re-route
            # falls through to the rule's overflow pool, then the fallback (issue 8 "reassign").
            excluded = set() if recovering else self._excluded(lead, snapshot)
            decision, order, reserved = await self._decide_and_reserve(
                lead,
                facts=facts,
                snapshot=snapshot,
                cursors=cursors,
                context=context,
                excluded=excluded,
                now=now,
            )
            if (
                reserved
                or fresh
                or not decision.candidates
                or decision.outcome in (Outcome.BLOCKED, Outcome.SCHEDULED)
            ):
                break
            # Never leave a lead waiting on a snapshot's word: decide again on a fresh read.
            fresh = True
            snapshot = await self.roster.snapshot(now, fresh=True)
        record = DecisionRecord(
            version=decision.version,
            rule=decision.rule,
            outcome=decision.outcome.value,
            explanation=decision.to_json(max_candidates=MAX_STORED_CANDIDATES),
            decided_at=now,
        )
        sla_due = LeadChanges(sla_due_at=decision.sla_due_at)
        if decision.outcome is Outcome.BLOCKED:
            await self._finish(
                lead,
                LeadStatus.BLOCKED_COMPLIANCE,
                reason=decision.compliance.reason or "blocked",
                detail=decision.compliance.detail,
                decision=record,
                sla_due_at=decision.sla_due_at,
            )
            return None
        if decision.outcome is Outcome.SCHEDULED:
            retry_at = decision.compliance.next_allowed_at
            await self.store.update(
                lead.id,
                at=now,
                kind=LeadStatus.SCHEDULED.value,
                data={"reason": "calling_hours", "retry_at": _iso(retry_at)},
                status=LeadStatus.SCHEDULED,
                changes=replace(
                    sla_due, next_attempt_at=retry_at, release=True, status_reason="calling_hours"
                ),
                decision=record,
            )
            return None
        if not reserved:
            if not decision.candidates:
                await self._finish(
                    lead,
                    LeadStatus.NO_REP_AVAILABLE,
                    reason="empty_pool",
                    detail="no rep belongs to any pool this lead can use",
                    decision=record,
                    sla_due_at=decision.sla_due_at,
                )
                return None
            if decision.outcome is not Outcome.ROUTED:
                reason = "reps_tried" if _only_excluded_left(decision) else "no_rep_available"
            elif order:
                reason = "reps_reserved"
            else:
                reason = "reps_tried"
            await self._wait(lead, reason=reason, decision=record, at=now, sla=decision)
            return None
        if self._stopping or work.lost:
            await self.routing_store.release_reps(lead.id, reserved)
            return None
        plan = self.router.ring_plan_for(decision, reserved)
        plan = replace(
            plan,
            lead=replace(plan.lead, page_url=f"{self.settings.page_url_base}/v1/leads/{lead.id}"),
        )
        ringing = await self.store.update(
            lead.id,
            at=now,
            kind=LeadStatus.RINGING_REPS.value,
            data={
                "round": lead.ring_rounds + 1,
                "rule": decision.rule,
                "version": decision.version,
                "mode": plan.mode.value,
                "targets": reserved,
                "ring_timeout_s": plan.ring_timeout_s,
            },
            status=LeadStatus.RINGING_REPS,
            from_statuses=_ROUTABLE,
            changes=replace(
                sla_due,
                add_ring_round=True,
                ringing_reps=reserved,
                waiting_since=None,
                status_reason=None,
            ),
            decision=record,
        )
        if ringing is None:
            await self.routing_store.release_reps(lead.id, reserved)
            return None
        return ringing, plan

    async def _decide_and_reserve(
        self,
        lead: PipelineLead,
        *,
        facts: LeadFacts,
        snapshot: RosterSnapshot,
        cursors: Mapping[str, int],
        context: RoutingContext,
        excluded: set[str],
        now: datetime,
    ) -> tuple[RoutingDecision, list[str], list[str]]:
        """The router's decision on ``snapshot``, the reps it may ring in order, and those
        reserved for the lead (none unless it was routed)."""
        decision = self.router.decide(
            facts,
            snapshot.states,
            now,
            cursors=cursors,
            on_dnc=context.on_dnc,
            attempts_today=context.attempts_today,
            exclude=excluded,
        )
        order = [rep for rep in decision.ordered_reps if rep not in excluded]
        if decision.outcome is not Outcome.ROUTED or not order:
            return decision, order, []
        lease_s = self.settings.lease_s
        reserved = await self.routing_store.reserve_reps(
            lead.id,
            order,
            min(decision.ring_size, len(order)),
            lease_s,
            self.instance_id,
            round_robin=_round_robin(decision),
            at=now,
        )
        self.roster.reserved(lead.id, reserved, now + timedelta(seconds=lease_s))
        return decision, order, reserved

    def _excluded(self, lead: PipelineLead, snapshot: RosterSnapshot) -> set[str]:
        """Reps not to ring this time: after rounds nobody answered, the reps already tried
        (``[retry] exclude_tried``); once the rounds are spent, tried reps until they become
        available again. A retry for the prospect's sake excludes nobody."""
        tried = set(lead.tried_reps)
        if not tried or lead.status_reason not in _NO_ANSWER_REASONS:
            return set()
        retry = self.config.retry
        if lead.status is LeadStatus.WAITING_FOR_REP and lead.ring_rounds >= retry.max_rounds:
            since = lead.waiting_since
            back = {
                rep_id
                for rep_id, changed_at in snapshot.status_changed_at.items()
                if since is not None and changed_at > since
            }
            return tried - back
        return tried if retry.exclude_tried else set()

    async def _ring(self, lead: PipelineLead, plan: RingPlan, work: _Work) -> None:
        tracker = _CallTracker(self, lead, work)
        try:
            call = self.calls.start_call(plan, on_events=tracker.on_events)
        except RuntimeError as exc:  # the call layer is shutting down
            _log.warning("cannot start call", lead_id=lead.id, error=str(exc))
            await self.store.release_lead_reps(lead.id)
            await self._reschedule(lead, reason="shutdown", at=_now())
            return
        work.call = call
        if work.lost or self._stopping:
            call.hang_up()
        outcome = await call.wait_ended()
        work.call = None
        if work.lost:
            return
        await self._settle(lead, tracker, outcome)

    async def _settle(
        self, lead: PipelineLead, tracker: _CallTracker, outcome: CallOutcome
    ) -> None:
        result = outcome.result
        now = _now()
        if result is CallResult.COMPLETED:
            await self.store.release_lead_reps(
                lead.id,
                wrap_up_rep=outcome.winner_rep_id,
                wrap_up_s=self.config.ringing.wrap_up_s,
            )
            talk_ms = None
            if outcome.bridged_at is not None:
                talk_ms = round((outcome.ended_at - outcome.bridged_at) * 1000)
            await self.store.update(
                lead.id,
                at=now,
                kind=LeadStatus.COMPLETED.value,
                data={
                    "rep_id": outcome.winner_rep_id,
                    "ended_by": outcome.ended_by.value,
                    "talk_ms": talk_ms,
                },
                status=LeadStatus.COMPLETED,
                from_statuses=_CALLING,
                changes=LeadChanges(release=True, status_reason=None),
            )
            self._rep_may_be_free()
            return
        if result is CallResult.REPS_NO_ANSWER or (
            result is CallResult.BRIDGE_FAILED and not tracker.prospect_invited
        ):
            # A rep whose answer could not be bridged (e.g. a broken SDP) had their chance.
            broken = [outcome.winner_rep_id] if outcome.winner_rep_id else []
            await self._after_round(lead, reason=result.value, at=now, tried=broken)
            return
        if result is CallResult.ABORTED:
            if tracker.prospect_invited:
                await self._prospect_interrupted(tracker.lead, reason="shutdown")
            else:
                await self.store.release_lead_reps(lead.id)
                await self._reschedule(lead, reason="shutdown", at=now)
            return
        await self.store.release_lead_reps(lead.id)
        self._rep_may_be_free()
        status = result.lead_status or LeadStatus.FAILED
        retry = self.config.retry
        if result is CallResult.TRUNK_BUSY and lead.ring_rounds < retry.max_rounds:
            # Every trunk stayed full for the whole bounded wait: the prospect was never
            # dialled, so this is no attempt on them. The lead goes back to be routed again
            # (a round of rep ringing, bounded by max_rounds) instead of being given up.
            await self._schedule_retry(
                lead,
                reason=result.value,
                at=now,
                delay_s=retry.retry_after_s,
                data={"round": lead.ring_rounds},
            )
            return
        if result in (CallResult.PROSPECT_NO_ANSWER, CallResult.PROSPECT_BUSY) or (
            result is CallResult.PROSPECT_FAILED and _transient_failure(outcome)
        ):
            attempts = tracker.lead.prospect_attempts
            if attempts < retry.prospect_max_attempts:
                await self._schedule_retry(
                    lead,
                    reason=result.value,
                    at=now,
                    delay_s=retry.prospect_retry_after_s,
                    data={"attempt": attempts},
                )
                return
        await self._finish(
            lead,
            status,
            reason=result.value,
            detail=f"ended by {outcome.ended_by.value}",
            extra={"rep_id": outcome.winner_rep_id, "attempts": tracker.lead.prospect_attempts},
        )

    async def _after_round(
        self, lead: PipelineLead, *, reason: str, at: datetime, tried: Sequence[str] = ()
    ) -> None:
        """No rep took the lead this round: retry later, or wait for a rep."""
        await self.store.release_lead_reps(lead.id)
        self._rep_may_be_free()
        retry = self.config.retry
        rounds = lead.ring_rounds
        if rounds < retry.max_rounds:
            # A rep whose phone broke the bridge (bad SDP) is not a reason to wait.
            delay = 0.0 if reason == CallResult.BRIDGE_FAILED.value else retry.retry_after_s
            await self._schedule_retry(
                lead, reason=reason, at=at, delay_s=delay, data={"round": rounds}, tried=tried
            )
            if delay == 0:
                self.wake()
            return
        await self.store.update(
            lead.id,
            at=at,
            kind=LeadStatus.WAITING_FOR_REP.value,
            data={"reason": reason, "rounds": rounds},
            status=LeadStatus.WAITING_FOR_REP,
            from_statuses=_CALLING,
            changes=LeadChanges(
                waiting_since=at,
                next_attempt_at=at + timedelta(seconds=self.settings.waiting_recheck_s),
                release=True,
                status_reason=reason,
                tried_reps=tried,
            ),
        )

    async def _prospect_interrupted(self, lead: PipelineLead, *, reason: str) -> None:
        """The prospect was dialled and the call was cut off by us: never dial again at once."""
        await self.store.release_lead_reps(lead.id)
        self._rep_may_be_free()
        now = _now()
        attempts = lead.prospect_attempts
        if attempts < self.config.retry.prospect_max_attempts:
            await self._schedule_retry(
                lead,
                reason=reason,
                at=now,
                delay_s=self.config.retry.prospect_retry_after_s,
                data={"attempt": attempts},
            )
            return
        await self._finish(
            lead,
            LeadStatus.FAILED,
            reason=reason,
            detail="cut off while the prospect was being dialled; no attempts left",
        )

    async def _schedule_retry(
        self,
        lead: PipelineLead,
        *,
        reason: str,
        at: datetime,
        delay_s: float,
        data: Mapping[str, Any],
        tried: Sequence[str] = (),
    ) -> None:
        """A call of ``lead`` ended without a connection: ``scheduled`` again ``delay_s`` after
        ``at`` (released, for any daemon), with ``data`` (round or attempt) on the event."""
        retry_at = at + timedelta(seconds=delay_s)
        await self.store.update(
            lead.id,
            at=at,
            kind=LeadStatus.SCHEDULED.value,
            data={"reason": reason, **data, "retry_at": _iso(retry_at)},
            status=LeadStatus.SCHEDULED,
            from_statuses=_CALLING,
            changes=LeadChanges(
                next_attempt_at=retry_at, release=True, status_reason=reason, tried_reps=tried
            ),
        )

    async def _reschedule(self, lead: PipelineLead, *, reason: str, at: datetime) -> None:
        """Hand the lead back to be routed again at once (by any daemon)."""
        await self.store.update(
            lead.id,
            at=at,
            kind=LeadStatus.SCHEDULED.value,
            data={"reason": reason, "retry_at": _iso(at)},
            status=LeadStatus.SCHEDULED,
            changes=LeadChanges(next_attempt_at=at, release=True, status_reason=reason),
        )

    async def _wait(
        self,
        lead: PipelineLead,
        *,
        reason: str,
        decision: DecisionRecord,
        at: datetime,
        sla: RoutingDecision,
    ) -> None:
        """Nobody can take the lead now: it waits for a free rep (oldest SLA first)."""
        recheck = at + timedelta(seconds=self.settings.waiting_recheck_s)
        if lead.status is LeadStatus.WAITING_FOR_REP:
            # Still waiting: no new event, only the next re-check time.
            await self.store.update(
                lead.id,
                at=at,
                kind=None,
                changes=LeadChanges(next_attempt_at=recheck, release=True),
            )
            return
        await self.store.update(
            lead.id,
            at=at,
            kind=LeadStatus.WAITING_FOR_REP.value,
            data={"reason": reason, "rule": sla.rule},
            status=LeadStatus.WAITING_FOR_REP,
            changes=LeadChanges(
                sla_due_at=sla.sla_due_at,
                waiting_since=at,
                next_attempt_at=recheck,
                release=True,
                status_reason=reason,
            ),
            decision=decision,
        )

    async def _finish(
        self,
        lead: PipelineLead,
        status: LeadStatus,
        *,
        reason: str,
        detail: str = "",
        decision: DecisionRecord | None = None,
        sla_due_at: datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Settle the lead in a final status."""
        data: dict[str, Any] = {"reason": reason}
        if detail:
            data["detail"] = detail
        data.update({key: value for key, value in (extra or {}).items() if value is not None})
        await self.store.update(
            lead.id,
            at=_now(),
            kind=status.value,
            data=data,
            status=status,
            changes=LeadChanges(sla_due_at=sla_due_at, release=True, status_reason=reason),
            decision=decision,
        )

    def _rep_may_be_free(self) -> None:
        self.wake(rep_freed=True)


#: Final statuses of a prospect INVITE that say "not now" rather than "never": request
#: timeout, temporarily unavailable, server error, bad gateway, service unavailable, gateway
#: timeout (RFC 3261 §21.4.9, §21.4.18, §21.5). A 404/484/604 (no such number) is final.
_TRANSIENT_PROSPECT_STATUSES: Final = frozenset({408, 480, 500, 502, 503, 504})


def _transient_failure(outcome: CallOutcome) -> bool:
    """Whether the prospect leg failed for a reason that may clear (a retry is worth it): a
    transient status, or no response at all (timeout, transport error)."""
    prospect = outcome.prospect_leg
    if prospect is None:
        return False
    return prospect.final_status is None or prospect.final_status in _TRANSIENT_PROSPECT_STATUSES


def _round_robin(decision: RoutingDecision) -> RoundRobinTurn | None:
    if decision.cursor_key is None or not decision.pool_reps:
        return None
    return RoundRobinTurn(key=decision.cursor_key, pool=decision.pool_reps)


@dataclass(slots=True, eq=False)
class _CallTracker:
    """Writes one call's events on the lead's timeline as they happen."""

    pipeline: Pipeline
    lead: PipelineLead
    work: _Work
    prospect_invited: bool = False
    winner: str | None = None
    _handlers: dict[CallEventKind, Callable[[CallEvent, datetime], Any]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        self._handlers = {
            CallEventKind.REP_ANSWERED: self._rep_answered,
            CallEventKind.REP_LEG_ENDED: self._rep_leg_ended,
            CallEventKind.PROSPECT_INVITED: self._prospect_invited,
            CallEventKind.BRIDGED: self._bridged,
        }

    async def on_events(self, events: Sequence[CallEvent]) -> None:
        """The call layer's batch callback: the events of one call queued since the last
        batch, in order. Each run of consecutive events without a handler is appended with
        one statement (:meth:`PipelineStore.append_events`); an event with a handler (a
        status change, a rep's bookkeeping) first writes the run before it, then goes the
        :meth:`on_event` way, so the timeline is the same as event by event."""
        plain: list[CallEvent] = []
        for event in events:
            if event.kind in self._handlers:
                await self._append_plain(plain)
                plain = []
                await self.on_event(event)
            elif event.kind is not CallEventKind.CALL_ENDED:
                plain.append(event)
        await self._append_plain(plain)

    async def _append_plain(self, events: Sequence[CallEvent]) -> None:
        if not events or self.work.lost:
            return
        steps = [(e.kind.value, e.timeline_data(), e.wall_at or _now()) for e in events]
        try:
            updated = await self.pipeline.store.append_events(self.lead.id, steps)
            if updated is None:
                await self._check_claim()
            else:
                self.lead = updated
        except _DB_ERRORS as exc:
            _log.warning(
                "timeline write failed",
                lead_id=self.lead.id,
                kind=",".join(kind for kind, _, _ in steps),
                error=str(exc),
            )

    async def _check_claim(self) -> None:
        """A write found the lead not ours: if so, stop the call rather than ring for
        someone else's lead."""
        current = await self.pipeline.store.get(self.lead.id)
        if current is None or current.claimed_by != self.pipeline.instance_id:
            self.work.lost = True
            if self.work.call is not None:
                self.work.call.hang_up()

    async def on_event(self, event: CallEvent) -> None:
        """The call layer's per-event callback (events of one call arrive one at a time, in
        order)."""
        if self.work.lost or event.kind is CallEventKind.CALL_ENDED:
            return  # the outcome is settled by the pipeline once the call is over
        at = event.wall_at or _now()
        handler = self._handlers.get(event.kind)
        try:
            if handler is not None:
                await handler(event, at)
            else:
                await self._append(event.kind.value, event.timeline_data(), at)
        except _DB_ERRORS as exc:
            _log.warning(
                "timeline write failed", lead_id=self.lead.id, kind=event.kind.value, error=str(exc)
            )

    async def _append(
        self,
        kind: str,
        data: dict[str, Any],
        at: datetime,
        *,
        status: LeadStatus | None = None,
        from_statuses: Sequence[LeadStatus] | None = None,
        changes: LeadChanges | None = None,
    ) -> PipelineLead | None:
        updated = await self.pipeline.store.update(
            self.lead.id,
            at=at,
            kind=kind,
            data=data,
            status=status,
            from_statuses=from_statuses,
            changes=changes,
        )
        if updated is None and status is None:
            await self._check_claim()
        if updated is not None:
            self.lead = updated
        return updated

    async def _rep_answered(self, event: CallEvent, at: datetime) -> None:
        rep_id = event.rep_id
        self.winner = rep_id
        await self._append(
            event.kind.value,
            event.timeline_data(),
            at,
            changes=LeadChanges(first_touch_at=at, assigned_rep=rep_id),
        )
        # On a call, assignment and call counted: one round trip on the hot path (the
        # prospect is being dialled right now); a no-op unless the rep is ours.
        if rep_id is not None and await self.pipeline.routing_store.rep_answered(
            self.lead.id, rep_id, at=at
        ):
            self.pipeline.roster.answered(rep_id, at)

    async def _rep_leg_ended(self, event: CallEvent, at: datetime) -> None:
        data = event.timeline_data()
        rep_id = event.rep_id
        if rep_id is not None:
            after = await self.pipeline.store.rep_leg_over(
                self.lead.id,
                rep_id,
                missed=event.result in _MISSES,
                max_missed=self.pipeline.config.ringing.max_missed,
            )
            if after is not None:
                data["missed_in_row"] = after.missed_in_row
                if after.away:
                    data["rep_away"] = True
                    _log.info("rep away after missed leads", rep_id=rep_id)
                else:
                    self.pipeline.wake(rep_freed=True)
        # A rep who had the lead and did not take it is "tried"; one cancelled because
        # another rep answered first (or who answered too late) is not.
        tried = [rep_id] if rep_id and event.result not in _NOT_TRIED else []
        await self._append(event.kind.value, data, at, changes=LeadChanges(tried_reps=tried))

    async def _prospect_invited(self, event: CallEvent, at: datetime) -> None:
        self.prospect_invited = True
        data = event.timeline_data()
        data["rep_id"] = self.winner
        data["attempt"] = self.lead.prospect_attempts + 1
        updated = await self._append(
            LeadStatus.CALLING_PROSPECT.value,
            data,
            at,
            status=LeadStatus.CALLING_PROSPECT,
            from_statuses=[LeadStatus.RINGING_REPS],
            changes=LeadChanges(called_at=at, add_prospect_attempt=True),
        )
        if updated is None:
            self.lead = replace(self.lead, prospect_attempts=self.lead.prospect_attempts + 1)

    async def _bridged(self, event: CallEvent, at: datetime) -> None:
        connected = await self._append(
            LeadStatus.CONNECTED.value,
            {**event.timeline_data(), "rep_id": self.winner},
            at,
            status=LeadStatus.CONNECTED,
            from_statuses=[LeadStatus.CALLING_PROSPECT],
        )
        if connected is not None:
            self.pipeline._mark_bridged(self.work)


# --------------------------------------------------------------------------- composition


#: The daemon's call layer (SIP endpoint + trunks), set by :func:`calls_ctx`.
CALL_CONTROLLER_KEY = web.AppKey("call_controller", CallController)
#: The running pipeline, set by :func:`pipeline_ctx`.
PIPELINE_KEY = web.AppKey("pipeline", Pipeline)
#: Optional, set before :func:`pipeline_ctx` runs: what calls are started with instead of the
#: bare controller (e.g. ``dialer.web.LiveCalls(app, app[CALL_CONTROLLER_KEY])``).
CALL_STARTER_KEY: web.AppKey[CallStarter] = web.AppKey("call_starter")
#: Optional, set before :func:`pipeline_ctx` runs: work done in the transaction of every step
#: that appends a timeline event (e.g. the notification outbox row of that step).
STEP_HOOK_KEY: web.AppKey[StepHook] = web.AppKey("pipeline_step_hook")


def sip_config_for(config: Config) -> SipConfig:
    """The SIP engine's settings from ``[sip]``."""
    sip = config.sip
    return SipConfig(t1=sip.t1_s, t2=sip.t2_s, t4=sip.t4_s, transport=sip.transport)


async def calls_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start-up context: bind the SIP endpoint on ``[sip] listen`` with the configured trunks
    (publishes :data:`CALL_CONTROLLER_KEY`); on shutdown end every call and close it."""
    config = app[CONFIG_KEY]
    media = config.media
    controller = CallController(
        trunks=config.trunks,
        sip_config=sip_config_for(config),
        settings=ControllerSettings(
            bridge=BridgeSettings(),
            shutdown_timeout_s=min(5.0, config.daemon.drain_timeout_s),
            rtp=RtpEngineConfig(
                host=media.rtp_host,
                advertised_host=config.sip.advertised_host,
                ports=media.rtp_ports,
            ),
            # Loaded now when anything may ask for press-1: a broken prompt stops start-up.
            accept_prompt=load_prompt(media.prompt) if _uses_press1(config) else None,
            ringback_region=RingbackRegion(media.ringback),
            speech=SpeechSettings(command=media.speech_command) if media.speak_source else None,
        ),
        advertised_host=config.sip.advertised_host,
    )
    host, port = await controller.start(config.sip.host, config.sip.port)
    _log.info("sip listening", host=host, port=port, transport=config.sip.transport)
    app[CALL_CONTROLLER_KEY] = controller
    # The SIP counters (malformed input, stray responses…) on /metrics, read at scrape time.
    sip_stats = SipStatsCollector(controller.endpoint)
    registry = app[METRICS_KEY].registry
    registry.register(sip_stats)
    try:
        yield
    finally:
        registry.unregister(sip_stats)
        await controller.close()


def _uses_press1(config: Config) -> bool:
    rules = (*config.routing.rules, config.routing.fallback)
    return config.ringing.accept == "press1" or any(
        rule is not None and rule.accept == "press1" for rule in rules
    )


async def pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start-up context (after the database, routing and calls contexts): run the pipeline
    (publishes :data:`PIPELINE_KEY`); on shutdown stop it (calls ended, claims handed back).

    Reads ``STORE_KEY``, ``DATABASE_URL_KEY`` (for ``LISTEN``), ``ROUTER_KEY`` and
    ``ROUTING_STORE_KEY`` (built here when absent), :data:`CALL_CONTROLLER_KEY` (or
    :data:`CALL_STARTER_KEY` when set) and :data:`STEP_HOOK_KEY` when set.
    """
    config = app[CONFIG_KEY]
    pool = app[STORE_KEY].pool
    router = app.get(ROUTER_KEY)
    if router is None:
        router = Router(config)
        app[ROUTER_KEY] = router
    routing_store = app.get(ROUTING_STORE_KEY)
    if routing_store is None:
        routing_store = RoutingStore(pool)
        await routing_store.sync_reps(config.reps)
        app[ROUTING_STORE_KEY] = routing_store
    settings = PipelineSettings.from_config(config)
    calls: CallStarter | None = app.get(CALL_STARTER_KEY)
    pipeline = Pipeline(
        config=config,
        store=PipelineStore(
            pool,
            settings.instance_id,
            lease_s=settings.lease_s,
            on_step=app.get(STEP_HOOK_KEY),
        ),
        routing_store=routing_store,
        router=router,
        calls=calls if calls is not None else app[CALL_CONTROLLER_KEY],
        settings=settings,
        listen_dsn=app.get(DATABASE_URL_KEY),
    )
    await pipeline.start()
    app[PIPELINE_KEY] = pipeline
    pipeline_stats = PipelineStatsCollector(pipeline.gauges)
    registry = app[METRICS_KEY].registry
    registry.register(pipeline_stats)
    from dialer.web import DECLINE_HANDLER_KEY  # local: keeps dialer.web out of import cycles

    app[DECLINE_HANDLER_KEY] = pipeline.decline
    try:
        yield
    finally:
        registry.unregister(pipeline_stats)
        await pipeline.stop()
