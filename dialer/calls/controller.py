"""The asyncio side of :mod:`dialer.calls`: drive :class:`CallFlow` objects over one SIP endpoint.

:class:`CallController` owns the daemon's :class:`sip.aio.SipEndpoint` (one UDP or TCP socket
for every call) and the :class:`~dialer.calls.trunks.TrunkPool`. It holds no call logic: for
every call it feeds the call's :class:`~dialer.calls.bridge.CallFlow` what the SIP endpoint
reports (with ``loop.time()`` as ``now``), executes the commands the flow gives back (INVITE,
CANCEL, BYE, re-INVITE), and re-arms one ``loop.call_at`` per call for the flow's next timer,
as :mod:`sip.aio` does for the user agent.

What the pipeline gets
======================

:meth:`CallController.start_call` returns a :class:`Call` at once (the rep INVITEs are already
on the wire). The pipeline follows the call in two ways, both of them ordered:

* ``on_event(event)``: every :class:`~dialer.calls.outcome.CallEvent` as it happens
  (``rep_invited``, ``rep_answered`` -> status ``calling_prospect``, ``prospect_invited``,
  ``bridged`` -> ``connected``, ``rep_leg_ended`` -> release that rep, ``call_ended`` ->
  the outcome). It may be a coroutine function: events of one call are delivered one at a
  time, in order, by a task the controller owns, so a slow database write delays only the
  timeline, never the SIP signalling.
* or ``on_events(batch)`` instead (not both): the same events, in the same order, but each
  call gives a non-empty sequence of them: every event queued while the previous call was
  being awaited (or published together, like the INVITEs of a parallel ring). A callback
  slower than the events thus gets them in bursts it can write with one statement; when it
  keeps up, batches are of one event. One batch failing is logged and delivery goes on with
  the next.
* awaiting the handle: :meth:`Call.wait_bridged` (True once bridged, False when the call ended
  without a bridge) and :meth:`Call.wait_ended` (the :class:`CallOutcome`, after every event
  was delivered). :meth:`Call.hang_up` ends it early.

:meth:`CallController.ring_and_bridge` is ``start_call`` + ``wait_bridged``: it returns the
handle once the two parties talk (or the call is over), which is the moment time-to-call is
measured against.

Rep legs carry the screen pop: ``From: "Lead: <name> (<source>)" <sip:<prospect number>@...>``,
``Call-Info: <lead page URL>;purpose=info`` and ``X-Lead-Id``. A rep whose URI is ``tel:`` or an
E.164 number is rung through the trunk, like the prospect (outbound proxy, digest on 401/407,
caller ID in ``From`` and ``P-Asserted-Identity``, trunk limits, failover on 503 or silence).

Press-1-to-accept
=================

A plan with ``accept="press1"`` (DESIGN §4, voicemail defence) gets the daemon's own media on
every rep leg: a UDP port from :class:`~sip.aio.rtp.RtpEngine` (opened before the INVITE, whose
offer is that port's SDP). When the flow says a rep picked up (``PromptLeg``), the rep's answer
is applied and the accept prompt plays (with ``speech`` set, the one naming the lead's source
when :mod:`dialer.calls.prompts` made it while the legs rang, else the generic one); RFC 4733
digits from the stream and SIP INFO ``application/dtmf-relay`` bodies from the dialog are
turned into ``leg_accepted`` ("1") or ``leg_declined`` (any other key). The winner hears
ringback (``PlayRingback``) while the prospect is dialled; the bridge's re-INVITE stops it and
the port is closed once that re-INVITE completes, so the daemon is out of the media path of
the bridged call. Every other leg's port closes with its CANCEL or BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from typing import TypeVar

from dialer.calls.bridge import (
    BridgeSettings,
    CallCommand,
    CallFlow,
    DialProspect,
    Reinvite,
)
from dialer.calls.outcome import CallEvent, CallOutcome, Leg, LegKind, LegResult
from dialer.calls.prompts import SourcePrompts, SpeechSettings
from dialer.calls.ringing import (
    CallStateError,
    CancelLeg,
    HangUpLeg,
    LegState,
    PlayRingback,
    PromptLeg,
    StartLeg,
)
from dialer.calls.trunks import (
    Trunk,
    TrunkGrant,
    TrunkPool,
    TrunkRefusal,
    TrunkSettings,
    TrunkWaiting,
)
from dialer.domain import LeadContext, RingPlan, RingTarget
from sip import (
    CallAnswered,
    CallProgress,
    CallRejected,
    CallTerminated,
    Credentials,
    DtmfDigit,
    Event,
    IdGenerator,
    IncomingCall,
    InfoReceived,
    LocalProtocolError,
    MediaNegotiationError,
    ParseError,
    Prompt,
    ReInviteCompleted,
    ReInviteReceived,
    RequestCompleted,
    RingbackRegion,
    SipConfig,
    TerminationCause,
    load_prompt,
    parse_uri,
    ringback,
    uri_address,
)
from sip.aio import SipEndpoint
from sip.aio.rtp import RtpEngine, RtpEngineConfig, RtpPortsExhaustedError, RtpStream

__all__ = [
    "DEFAULT_RTP_PORTS",
    "Call",
    "CallController",
    "ControllerSettings",
    "EventBatchCallback",
    "EventCallback",
    "WallClock",
    "default_accept_prompt",
]

_log = logging.getLogger("dialer.calls")

#: A callback's argument: one event or a batch.
_Arg = TypeVar("_Arg")

EventCallback = Callable[[CallEvent], Awaitable[None] | None]
"""Receives a call's events in order; may be a plain function or a coroutine function."""

EventBatchCallback = Callable[[Sequence[CallEvent]], Awaitable[None] | None]
"""Receives a call's events in order, every event already queued at once (never empty)."""

_E164 = re.compile(r"\+?[0-9]{4,15}")

#: Bound on command/feedback rounds after one input (a trunk refusal feeds the flow again);
#: a flow settles in two or three, so reaching it means a bug, not load.
_MAX_COMMAND_ROUNDS = 100

#: RTP port range of press-1 legs unless configured (``[media] rtp_ports``).
DEFAULT_RTP_PORTS = (16384, 32767)


def default_accept_prompt() -> Prompt:
    """The shipped press-1 prompt (``dialer/prompts/press1.wav``).

    Raises :class:`~sip.prompt.PromptNotFoundError` when the package lost it.
    """
    with resources.as_file(resources.files("dialer") / "prompts" / "press1.wav") as path:
        return load_prompt(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerSettings:
    """Tunables of the controller; every default is what the daemon uses."""

    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    #: Most call attempts waiting for trunk capacity at once (beyond: ``trunk_busy``).
    trunk_max_waiting: int = 1000
    #: Longest a leg waits in line for a trunk (the rep may already be on the line).
    trunk_max_wait_s: float = 10.0
    #: Unanswered keepalives in a row that mark a trunk down.
    trunk_down_after_failures: int = 1
    #: How long :meth:`CallController.hangup_all` waits for legs to end before giving up.
    shutdown_timeout_s: float = 5.0
    #: User part of our Contact.
    contact_user: str = "dialer"
    #: Press-1 media: the RTP adapter's settings (None: bind the SIP endpoint's host, ports
    #: :data:`DEFAULT_RTP_PORTS`, advertise the controller's ``advertised_host``).
    rtp: RtpEngineConfig | None = None
    #: Press-1 prompt (None: :func:`default_accept_prompt`, loaded on the first press-1 call).
    accept_prompt: Prompt | None = None
    #: Press-1 prompts naming the lead's source ("New lead from <source>..."), synthesized
    #: while the legs ring (``[media] speak_source``); None: always ``accept_prompt``.
    speech: SpeechSettings | None = None
    #: Ringback the accepting rep hears while the prospect is dialled.
    ringback_region: RingbackRegion = RingbackRegion.US


@dataclass(slots=True)
class _SipLeg:
    """What the controller knows about one leg on the wire."""

    call: Call
    leg: Leg
    #: The endpoint's leg id (None while waiting for a trunk).
    sip_leg_id: str | None = None
    grant: TrunkGrant | None = None
    #: Trunk request ticket while waiting in line.
    ticket: int | None = None
    #: Trunks that already failed this leg (503 or silence): failover skips them.
    tried: frozenset[str] = frozenset()
    #: The INVITE to send once a trunk is granted (kept for failover).
    command: StartLeg | DialProspect | None = None
    #: The flow asked to cancel while the INVITE was waiting for a trunk.
    cancelled_before_sent: bool = False
    #: Last SDP we sent on this leg (answers peer re-INVITEs that just refresh the session).
    local_sdp: bytes = b""
    #: Press-1: the leg's own RTP port (None once closed, or in answer mode).
    stream: RtpStream | None = None
    #: Press-1: the port is being opened; the INVITE goes out once it is.
    opening: bool = False


class WallClock:
    """Turns the loop-clock times of one call's events into wall-clock timestamps that never
    go backwards.

    Each conversion reads both clocks (``loop.time()`` and ``time.time()``); a preemption
    between the two reads shifts that conversion by its length, so two events a fraction of a
    millisecond apart could come out in the wrong order on the lead's timeline. A timestamp is
    therefore never earlier than the previous one of the same call.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: datetime | None = None

    def wall_time(self, at: float, *, loop_now: float, wall_now: float) -> datetime:
        """The wall-clock time of loop time ``at``, given both clocks read at one moment."""
        wall = datetime.fromtimestamp(wall_now - (loop_now - at), UTC)
        if self._last is not None and wall < self._last:
            wall = self._last
        self._last = wall
        return wall


class Call:
    """Handle on one lead's call (see the module docstring for how the pipeline uses it)."""

    def __init__(
        self,
        controller: CallController,
        call_id: int,
        flow: CallFlow,
        on_event: EventCallback | None,
        on_events: EventBatchCallback | None = None,
    ) -> None:
        if on_event is not None and on_events is not None:
            raise ValueError("give on_event or on_events, not both")
        self._controller = controller
        self.id = call_id
        self.flow = flow
        self._on_event = on_event
        self._on_events = on_events
        self._events: asyncio.Queue[CallEvent | None] = asyncio.Queue()
        #: The end of the events (``None``) was taken from the queue.
        self._delivered_all = False
        self._wall_clock = WallClock()
        loop = asyncio.get_running_loop()
        self._bridged: asyncio.Future[bool] = loop.create_future()
        self._ended: asyncio.Future[CallOutcome] = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._legs: dict[Leg, _SipLeg] = {}
        #: Press-1 with speech: the lead's spoken prompt, being made or made (None: generic).
        self._spoken_prompt: asyncio.Future[Prompt] | None = None
        self._pump = loop.create_task(self._deliver_events(), name=f"call-{call_id}-events")

    # -- what the pipeline uses ---------------------------------------------------------------

    @property
    def plan(self) -> RingPlan:
        """The ring plan being dialled."""
        return self.flow.plan

    @property
    def winner(self) -> RingTarget | None:
        """The rep who answered first, once one has."""
        return self.flow.winner

    @property
    def bridged(self) -> bool:
        """True once rep and prospect have been connected."""
        return self.flow.bridge is not None and self.flow.bridge.bridged_at is not None

    @property
    def outcome(self) -> CallOutcome | None:
        """The outcome, once the call is over."""
        return self.flow.outcome

    async def wait_bridged(self) -> bool:
        """Wait until the parties are bridged (True) or the call ended without that (False)."""
        return await asyncio.shield(self._bridged)

    async def wait_ended(self) -> CallOutcome:
        """Wait until the call is over and every event has been delivered; its outcome."""
        outcome = await asyncio.shield(self._ended)
        await asyncio.shield(self._pump)
        return outcome

    def hang_up(self) -> None:
        """End the call now: cancel ringing legs, hang up answered ones (idempotent)."""
        self._controller._abort(self)

    def cancel_rep(self, rep_id: str) -> bool:
        """The rep ``rep_id`` declined the lead (console): CANCEL their ringing leg, or BYE it
        as declined while it waits for press-1; the rest of the plan goes on. False when no
        leg of theirs could be declined (never rung, already over, or the call was won)."""
        return self._controller._decline(self, rep_id)

    # -- internals ----------------------------------------------------------------------------

    def _publish(self, events: list[CallEvent]) -> None:
        if not events:
            return
        loop_now = asyncio.get_running_loop().time()
        wall_now = time.time()
        for event in events:
            wall = self._wall_clock.wall_time(event.at, loop_now=loop_now, wall_now=wall_now)
            self._events.put_nowait(replace(event, wall_at=wall))

    def _settle_futures(self) -> None:
        flow = self.flow
        if not self._bridged.done():
            if self.bridged:
                self._bridged.set_result(True)
            elif flow.outcome is not None:
                self._bridged.set_result(False)
        if flow.outcome is not None and not self._ended.done():
            self._ended.set_result(flow.outcome)
            self._events.put_nowait(None)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def _deliver_events(self) -> None:
        while batch := await self._next_batch():
            if self._on_events is not None:
                await self._call_back("on_events", self._on_events, batch, batch)
            elif self._on_event is not None:
                for event in batch:
                    await self._call_back("on_event", self._on_event, event, (event,))

    async def _call_back(
        self,
        name: str,
        callback: Callable[[_Arg], Awaitable[None] | None],
        arg: _Arg,
        events: Sequence[CallEvent],
    ) -> None:
        """Run one of the pipeline's callbacks on ``arg`` (``events``, for the log)."""
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # The timeline writer failing must not take the call down with it.
            _log.exception(
                "call %s: %s failed for %s",
                self.id,
                name,
                ", ".join(event.kind for event in events),
            )

    async def _next_batch(self) -> list[CallEvent]:
        """Wait for the next event, then take every event queued behind it; empty once the
        call is over (the ``None`` put by :meth:`_settle_futures`) and all was delivered."""
        queue = self._events
        if self._delivered_all:
            return []
        first = await queue.get()
        if first is None:
            return []
        batch = [first]
        while not queue.empty():
            event = queue.get_nowait()
            if event is None:
                self._delivered_all = True  # this batch is the last
                break
            batch.append(event)
        return batch


class CallController:
    """Rings ring plans and bridges calls over one SIP endpoint (module docstring).

    Drivers: the application (:meth:`start_call`, :meth:`ring_and_bridge`,
    :meth:`Call.hang_up`, :meth:`hangup_all`), SIP events from the endpoint, and one timer per
    call plus one for the trunk pool.
    """

    def __init__(
        self,
        *,
        trunks: Sequence[TrunkSettings],
        sip_config: SipConfig | None = None,
        settings: ControllerSettings | None = None,
        ids: IdGenerator | None = None,
        advertised_host: str | None = None,
    ) -> None:
        self.settings = settings or ControllerSettings()
        self._trunk_settings = tuple(trunks)
        self.endpoint = SipEndpoint(
            sip_config,
            ids=ids,
            contact_user=self.settings.contact_user,
            advertised_host=advertised_host,
            on_event=self._on_sip_event,
        )
        self._advertised_host = advertised_host
        self._pool: TrunkPool | None = None
        self._pool_timer: asyncio.TimerHandle | None = None
        self._pool_timer_at: float | None = None
        self._calls: dict[int, Call] = {}
        self._sip_legs: dict[str, _SipLeg] = {}
        self._waiting: dict[int, _SipLeg] = {}
        self._options: dict[str, Trunk] = {}
        self._call_ids = itertools.count(1)
        # o= session ids: random per run, spaced per call (leg i of a call adds i).
        self._session_base = secrets.randbelow(2**31) * 1000
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        #: Event delivery tasks of every call, awaited (bounded) on close.
        self._pumps: set[asyncio.Task[None]] = set()
        self._rtp: RtpEngine | None = None
        self._accept_prompt: Prompt | None = self.settings.accept_prompt
        self._speech: SourcePrompts | None = None
        #: Press-1 port openings and closings in flight (kept referenced until done).
        self._media_tasks: set[asyncio.Task[None]] = set()

    # -- life cycle -----------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Bind the SIP endpoint (port 0: any free port); returns the bound address."""
        self._loop = asyncio.get_running_loop()
        address = await self.endpoint.start(host, port)
        self._pool = TrunkPool(
            self._trunk_settings,
            now=self._loop.time(),
            max_waiting=self.settings.trunk_max_waiting,
            max_wait_s=self.settings.trunk_max_wait_s,
            down_after_failures=self.settings.trunk_down_after_failures,
        )
        self._pool_changed()
        return address

    async def close(self) -> None:
        """End every call (bounded by ``shutdown_timeout_s``), then close the endpoint."""
        await self.hangup_all()
        self._closing = True
        if self._pool_timer is not None:
            self._pool_timer.cancel()
        if self._pumps:
            # Let the pipeline write the last events, but never hang the shutdown on it.
            _done, pending = await asyncio.wait(
                list(self._pumps), timeout=self.settings.shutdown_timeout_s
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._media_tasks:
            await asyncio.gather(*list(self._media_tasks), return_exceptions=True)
        if self._speech is not None:
            await self._speech.close()
        if self._rtp is not None:
            await self._rtp.close()
        await self.endpoint.close()

    async def __aenter__(self) -> CallController:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def address(self) -> tuple[str, int]:
        """Where the endpoint listens."""
        return self.endpoint.address

    @property
    def trunk_pool(self) -> TrunkPool:
        """The trunks (capacity, health)."""
        if self._pool is None:
            raise RuntimeError("CallController not started")
        return self._pool

    @property
    def rtp_engine(self) -> RtpEngine:
        """The press-1 RTP adapter (created on first use)."""
        if self._rtp is None:
            config = self.settings.rtp
            if config is None:
                config = RtpEngineConfig(
                    host=self.endpoint.address[0],
                    advertised_host=self._advertised_host,
                    ports=DEFAULT_RTP_PORTS,
                )
            self._rtp = RtpEngine(config)
        return self._rtp

    @property
    def accept_prompt(self) -> Prompt:
        """The press-1 prompt (the shipped one unless configured)."""
        if self._accept_prompt is None:
            self._accept_prompt = default_accept_prompt()
        return self._accept_prompt

    @property
    def source_prompts(self) -> SourcePrompts | None:
        """The spoken per-source prompts (None until a press-1 call with ``speech`` set)."""
        return self._speech

    @property
    def active_calls(self) -> int:
        """Calls not yet over."""
        return len(self._calls)

    # -- application calls ----------------------------------------------------------------

    def start_call(
        self,
        plan: RingPlan,
        *,
        on_event: EventCallback | None = None,
        on_events: EventBatchCallback | None = None,
    ) -> Call:
        """Start ringing ``plan`` now and return the call's handle; its events go to
        ``on_event`` one by one or to ``on_events`` in batches (module docstring)."""
        if self._loop is None or self._closing:
            raise RuntimeError("CallController is not running")
        if plan.accept == "press1":
            # Fail here, not on the first pick-up, when the prompt cannot be loaded.
            _ = self.accept_prompt
        call_id = next(self._call_ids)
        flow = CallFlow(
            plan,
            now=self._loop.time(),
            media_address=self._media_host(),
            session_id=self._session_base + call_id * 1000,
            settings=self.settings.bridge,
        )
        call = Call(self, call_id, flow, on_event, on_events)
        if plan.accept == "press1" and self.settings.speech is not None:
            # Started with the ringing, so that it is usually ready when a rep picks up.
            if self._speech is None:
                self._speech = SourcePrompts(self.settings.speech)
            call._spoken_prompt = self._speech.request(plan.lead.source)
        self._calls[call_id] = call
        self._pumps.add(call._pump)
        call._pump.add_done_callback(self._pumps.discard)
        self._after_input(call)
        return call

    async def ring_and_bridge(
        self,
        plan: RingPlan,
        *,
        on_event: EventCallback | None = None,
        on_events: EventBatchCallback | None = None,
    ) -> Call:
        """Start the call and return its handle once bridged, or once over without a bridge
        (then ``call.outcome`` says why)."""
        call = self.start_call(plan, on_event=on_event, on_events=on_events)
        await call.wait_bridged()
        return call

    async def hangup_all(self) -> None:
        """Shutdown: end every call (CANCEL what rings, BYE what is answered) and wait, at
        most ``shutdown_timeout_s``, for their legs to end."""
        calls = list(self._calls.values())
        for call in calls:
            self._abort(call)
        if not calls:
            return
        waits = [asyncio.shield(call._ended) for call in calls]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.shutdown_timeout_s):
                await asyncio.gather(*waits)

    # -- internals: the flow ----------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _media_host(self) -> str:
        return self._advertised_host or self.endpoint.address[0]

    def _abort(self, call: Call) -> None:
        if call.flow.finished:
            return
        call.flow.abort(self._now())
        self._after_input(call)

    def _decline(self, call: Call, rep_id: str) -> bool:
        flow = call.flow
        if flow.finished:
            return False
        now = self._now()
        legs = [record.leg for record in flow.ring.records() if record.rep_id == rep_id]
        declined = False
        for leg in legs:
            declined = flow.decline(leg, now) or declined
        if declined:
            _log.info("call %s: rep %s declined", call.id, rep_id)
            self._after_input(call)
        return declined

    def _after_input(self, call: Call) -> None:
        """Execute the flow's commands, publish its events, re-arm its timer."""
        flow = call.flow
        # Executing a command can feed the flow again (a trunk refusal): loop until quiet.
        for _ in range(_MAX_COMMAND_ROUNDS):
            commands = flow.pop_commands()
            if not commands:
                break
            for command in commands:
                self._execute(call, command)
        call._publish(flow.pop_events())
        self._rearm(call)
        call._settle_futures()
        if flow.outcome is not None and not self._legs_alive(call):
            for sip_leg in call._legs.values():
                self._close_media(sip_leg)
            self._forget(call)

    def _rearm(self, call: Call) -> None:
        assert self._loop is not None
        timer_at = call.flow.get_timer()
        if timer_at == call._timer_at and call._timer is not None:
            return
        if call._timer is not None:
            call._timer.cancel()
            call._timer = None
        call._timer_at = timer_at
        if timer_at is not None:
            call._timer = self._loop.call_at(timer_at, self._on_call_timer, call)

    def _on_call_timer(self, call: Call) -> None:
        timer_at = call._timer_at if call._timer_at is not None else 0.0
        call._timer = None
        call._timer_at = None
        call.flow.handle_timer(max(timer_at, self._now()))
        self._after_input(call)

    def _legs_alive(self, call: Call) -> bool:
        return any(
            sip_leg.sip_leg_id is not None or sip_leg.ticket is not None or sip_leg.opening
            for sip_leg in call._legs.values()
        )

    def _forget(self, call: Call) -> None:
        self._calls.pop(call.id, None)

    # -- commands ---------------------------------------------------------------------------

    def _execute(self, call: Call, command: CallCommand) -> None:
        if isinstance(command, StartLeg):
            self._start_rep_leg(call, command)
        elif isinstance(command, DialProspect):
            prospect = _SipLeg(call=call, leg=command.leg, command=command)
            call._legs[command.leg] = prospect
            self._request_trunk(prospect)
        elif isinstance(command, CancelLeg):
            self._cancel(call, command)
            sip_leg = call._legs.get(command.leg)
            if sip_leg is not None:
                self._close_media(sip_leg)
        elif isinstance(command, HangUpLeg):
            sip_leg = call._legs.get(command.leg)
            if sip_leg is not None:
                self._close_media(sip_leg)
                if sip_leg.sip_leg_id is not None:
                    self.endpoint.hangup(sip_leg.sip_leg_id)
        elif isinstance(command, Reinvite):
            sip_leg = call._legs.get(command.leg)
            if sip_leg is not None and sip_leg.stream is not None:
                # The rep is about to hear the prospect: the daemon leaves the media path now
                # (the port stays open until the re-INVITE completes).
                sip_leg.stream.stop_audio()
            self._reinvite(call, command)
        elif isinstance(command, PromptLeg):
            self._play_prompt(call, command)
        elif isinstance(command, PlayRingback):
            sip_leg = call._legs.get(command.leg)
            stream = sip_leg.stream if sip_leg is not None else None
            if stream is not None:
                stream.stop_audio()
                codec = stream.session.codec
                stream.play(ringback(codec, self.settings.ringback_region), repeat=True)

    # -- press-1 media ----------------------------------------------------------------------

    async def _open_media(self, sip_leg: _SipLeg) -> None:
        """Open the leg's RTP port, then send its INVITE offering that port."""
        call = sip_leg.call
        try:
            stream = await self.rtp_engine.open_stream(
                on_digit=lambda digit: self._on_digit(sip_leg, digit)
            )
        except (OSError, RtpPortsExhaustedError) as error:
            sip_leg.opening = False
            _log.warning("call %s %s: no RTP port: %s", call.id, sip_leg.leg, error)
            if not sip_leg.cancelled_before_sent:
                call.flow.leg_failed(sip_leg.leg, self._now(), status=None)
            self._after_input(call)
            return
        sip_leg.opening = False
        if sip_leg.cancelled_before_sent or self._closing:
            await stream.close()
            self._after_input(call)
            return
        sip_leg.stream = stream
        assert isinstance(sip_leg.command, StartLeg)
        command = replace(sip_leg.command, offer=stream.offer())
        sip_leg.command = command
        if _phone_number(command.target.uri) is not None:
            self._request_trunk(sip_leg)
        else:
            self._send_invite(sip_leg, None)
        self._after_input(call)

    def _play_prompt(self, call: Call, command: PromptLeg) -> None:
        sip_leg = call._legs.get(command.leg)
        stream = sip_leg.stream if sip_leg is not None else None
        now = self._now()
        if stream is None:
            call.flow.leg_declined(command.leg, now, result=LegResult.FAILED)
            return
        try:
            stream.apply_answer(command.sdp)
        except (MediaNegotiationError, ParseError) as error:
            _log.warning("call %s %s: rep media refused: %s", call.id, command.leg, error)
            call.flow.leg_declined(command.leg, now, result=LegResult.FAILED)
            return
        stream.play(self._prompt_for(call, command.leg))

    def _prompt_for(self, call: Call, leg: Leg) -> Prompt:
        """The lead's spoken prompt when it is ready, else the generic one (never waits)."""
        spoken = call._spoken_prompt
        if spoken is None:
            return self.accept_prompt
        if not spoken.done():
            reason = "not ready yet"
        elif spoken.cancelled():
            reason = "synthesis cancelled"
        elif (error := spoken.exception()) is not None:
            reason = f"synthesis failed: {error}"
        else:
            return spoken.result()
        _log.info("call %s %s: generic prompt played, spoken one %s", call.id, leg, reason)
        return self.accept_prompt

    def _on_digit(self, sip_leg: _SipLeg, digit: DtmfDigit) -> None:
        call = sip_leg.call
        if call.flow.finished or not call.flow.ring.awaiting_accept(sip_leg.leg):
            return
        now = self._now()
        _log.info("call %s %s: DTMF %s (%s)", call.id, sip_leg.leg, digit.digit, digit.source)
        try:
            if digit.digit == "1":
                call.flow.leg_accepted(sip_leg.leg, now)
            else:
                call.flow.leg_declined(sip_leg.leg, now)
        except CallStateError:
            _log.exception("call %s %s: digit refused", call.id, sip_leg.leg)
        self._after_input(call)

    def _close_media(self, sip_leg: _SipLeg) -> None:
        stream, sip_leg.stream = sip_leg.stream, None
        if stream is None or stream.closed:
            return
        task = asyncio.get_running_loop().create_task(stream.close())
        self._media_tasks.add(task)
        task.add_done_callback(self._media_tasks.discard)

    def _start_rep_leg(self, call: Call, command: StartLeg) -> None:
        sip_leg = _SipLeg(call=call, leg=command.leg, command=command)
        call._legs[command.leg] = sip_leg
        if call.flow.ring.press1:
            sip_leg.opening = True
            task = asyncio.get_running_loop().create_task(self._open_media(sip_leg))
            self._media_tasks.add(task)
            task.add_done_callback(self._media_tasks.discard)
            return
        if _phone_number(command.target.uri) is not None:
            self._request_trunk(sip_leg)
            return
        self._send_invite(sip_leg, None)

    def _cancel(self, call: Call, command: CancelLeg) -> None:
        sip_leg = call._legs.get(command.leg)
        if sip_leg is None:
            return
        if sip_leg.sip_leg_id is not None:
            self.endpoint.cancel(sip_leg.sip_leg_id, reason=command.reason)
            return
        # Still waiting for a trunk: nothing went out, so the leg is simply over.
        if sip_leg.ticket is not None:
            self.trunk_pool.withdraw(sip_leg.ticket)
            self._waiting.pop(sip_leg.ticket, None)
            sip_leg.ticket = None
        sip_leg.cancelled_before_sent = True
        call.flow.leg_failed(sip_leg.leg, self._now(), status=None)

    def _reinvite(self, call: Call, command: Reinvite) -> None:
        sip_leg = call._legs.get(command.leg)
        if sip_leg is None or sip_leg.sip_leg_id is None:
            call.flow.reinvite_failed(command.leg, self._now(), status=None)
            return
        try:
            self.endpoint.reinvite(sip_leg.sip_leg_id, body=command.offer)
        except LocalProtocolError:
            # The peer's own re-INVITE is in progress: a glare the bridge retries.
            call.flow.reinvite_failed(command.leg, self._now(), status=491)
            return
        sip_leg.local_sdp = command.offer

    # -- trunks -----------------------------------------------------------------------------

    def _request_trunk(self, sip_leg: _SipLeg) -> None:
        decision = self.trunk_pool.request(self._now(), exclude=sip_leg.tried)
        self._trunk_decided(sip_leg, decision)
        self._pool_changed()

    def _trunk_decided(
        self, sip_leg: _SipLeg, decision: TrunkGrant | TrunkRefusal | TrunkWaiting
    ) -> None:
        if isinstance(decision, TrunkWaiting):
            sip_leg.ticket = decision.ticket
            self._waiting[decision.ticket] = sip_leg
        elif isinstance(decision, TrunkGrant):
            sip_leg.ticket = None
            sip_leg.grant = decision
            self._send_invite(sip_leg, decision.trunk)
        else:
            sip_leg.ticket = None
            _log.info("call %s %s: no trunk (%s)", sip_leg.call.id, sip_leg.leg, decision.reason)
            sip_leg.call.flow.leg_failed(sip_leg.leg, self._now(), result=LegResult.TRUNK_BUSY)

    def _pool_changed(self) -> None:
        """Serve trunk decisions and keepalives, re-arm the pool's timer."""
        pool = self.trunk_pool
        touched: list[Call] = []
        for decision in pool.pop_decisions():
            sip_leg = self._waiting.pop(decision.ticket, None)
            if sip_leg is None:
                if isinstance(decision, TrunkGrant):
                    pool.release(decision, self._now())
                continue
            self._trunk_decided(sip_leg, decision)
            touched.append(sip_leg.call)
        for trunk in pool.options_due(self._now()):
            self._send_options(trunk)
        for call in touched:
            self._after_input(call)
        self._rearm_pool()

    def _rearm_pool(self) -> None:
        if self._loop is None or self._pool is None or self._closing:
            return
        timer_at = self._pool.get_timer()
        if timer_at == self._pool_timer_at and self._pool_timer is not None:
            return
        if self._pool_timer is not None:
            self._pool_timer.cancel()
            self._pool_timer = None
        self._pool_timer_at = timer_at
        if timer_at is not None:
            self._pool_timer = self._loop.call_at(timer_at, self._on_pool_timer)

    def _on_pool_timer(self) -> None:
        timer_at = self._pool_timer_at if self._pool_timer_at is not None else 0.0
        self._pool_timer = None
        self._pool_timer_at = None
        self.trunk_pool.handle_timer(max(timer_at, self._now()))
        self._pool_changed()

    def _send_options(self, trunk: Trunk) -> None:
        try:
            uri = parse_uri(trunk.settings.proxy)
            request_id = self.endpoint.options(
                uri,
                from_uri=self._local_uri(self.settings.contact_user),
                destination=uri_address(uri),
                auth=_credentials(trunk),
            )
        except (ParseError, LocalProtocolError) as error:
            _log.warning("trunk %s: cannot send OPTIONS: %s", trunk.name, error)
            self.trunk_pool.options_result(trunk.name, self._now(), status=None)
            return
        self._options[request_id] = trunk

    def _release_trunk(self, sip_leg: _SipLeg) -> None:
        if sip_leg.grant is not None:
            self.trunk_pool.release(sip_leg.grant, self._now())
            sip_leg.grant = None
            self._pool_changed()

    # -- INVITEs ----------------------------------------------------------------------------

    def _local_uri(self, user: str) -> str:
        host, port = self.endpoint.address
        host = self._advertised_host or host
        if ":" in host:
            host = f"[{host}]"
        return f"sip:{user}@{host}:{port}"

    def _send_invite(self, sip_leg: _SipLeg, trunk: Trunk | None) -> None:
        call = sip_leg.call
        command = sip_leg.command
        now = self._now()
        try:
            if isinstance(command, StartLeg):
                sip_leg.sip_leg_id = self._invite_rep(command, call.plan.lead, trunk)
                sip_leg.local_sdp = command.offer
                call.flow.leg_sent(
                    sip_leg.leg,
                    now,
                    trunk=trunk.name if trunk is not None else None,
                    offer=command.offer if sip_leg.stream is not None else None,
                )
            elif isinstance(command, DialProspect):
                assert trunk is not None
                sip_leg.sip_leg_id = self._invite_prospect(command, trunk)
                sip_leg.local_sdp = command.offer
                call.flow.leg_sent(sip_leg.leg, now, trunk=trunk.name)
        except (ParseError, LocalProtocolError) as error:
            # A URI we cannot route to, or the engine at capacity: this leg cannot ring.
            _log.warning("call %s %s: INVITE not sent: %s", call.id, sip_leg.leg, error)
            sip_leg.sip_leg_id = None
            self._release_trunk(sip_leg)
            call.flow.leg_failed(sip_leg.leg, now, status=None)
            return
        if sip_leg.sip_leg_id is not None:
            self._sip_legs[sip_leg.sip_leg_id] = sip_leg

    def _invite_rep(self, command: StartLeg, lead: LeadContext, trunk: Trunk | None) -> str:
        headers: list[tuple[str, str]] = [("X-Lead-Id", lead.lead_id)]
        if lead.page_url:
            headers.append(("Call-Info", f"<{lead.page_url}>;purpose=info"))
        from_uri = self._local_uri(_uri_user(lead.phone))
        display = _screen_pop_name(lead)
        if trunk is None:
            return self.endpoint.invite(
                command.target.uri,
                from_uri=from_uri,
                from_display=display,
                body=command.offer,
                extra_headers=headers,
            )
        number = _phone_number(command.target.uri)
        assert number is not None
        target = trunk.request_uri(number)
        proxy = parse_uri(trunk.settings.proxy)
        return self.endpoint.invite(
            target,
            from_uri=from_uri,
            from_display=display,
            body=command.offer,
            extra_headers=headers,
            destination=uri_address(proxy),
            auth=_credentials(trunk),
        )

    def _invite_prospect(self, command: DialProspect, trunk: Trunk) -> str:
        caller_id = command.caller_id or trunk.caller_id
        proxy = parse_uri(trunk.settings.proxy)
        identity = self._local_uri(_uri_user(caller_id))
        return self.endpoint.invite(
            trunk.request_uri(command.number),
            from_uri=identity,
            body=command.offer,
            extra_headers=[("P-Asserted-Identity", f"<{identity}>")],
            destination=uri_address(proxy),
            auth=_credentials(trunk),
        )

    # -- SIP events -------------------------------------------------------------------------

    def _on_sip_event(self, event: Event) -> None:
        if isinstance(event, RequestCompleted):
            self._on_request_completed(event)
            return
        if isinstance(event, IncomingCall):
            # The daemon only places calls; nobody may call it.
            self.endpoint.reject(event.leg_id, 403)
            return
        leg_id = getattr(event, "leg_id", None)
        sip_leg = self._sip_legs.get(leg_id) if isinstance(leg_id, str) else None
        if sip_leg is None:
            return
        try:
            self._feed(sip_leg, event)
        except CallStateError:
            # A SIP event the flow did not expect in its state: a bug to fix, but the call
            # must still be driven (its other commands sent, its timer armed).
            _log.exception("call %s %s: %r refused", sip_leg.call.id, sip_leg.leg, event)
        self._after_input(sip_leg.call)

    def _feed(self, sip_leg: _SipLeg, event: Event) -> None:
        """Turn one SIP event about ``sip_leg`` into the flow's input."""
        flow = sip_leg.call.flow
        now = self._now()
        leg = sip_leg.leg
        if isinstance(event, CallProgress):
            if event.status >= 180:
                flow.leg_ringing(leg, now, status=event.status)
        elif isinstance(event, CallAnswered):
            flow.leg_answered(leg, event.body, now, status=event.status)
            if sip_leg.grant is not None:
                self.trunk_pool.invite_result(sip_leg.grant.trunk.name, now, status=event.status)
        elif isinstance(event, CallRejected):
            self._on_rejected(sip_leg, event)
            if sip_leg.sip_leg_id is None and sip_leg.ticket is None:
                # Over for good (not failing over to another trunk with the same offer).
                self._close_media(sip_leg)
        elif isinstance(event, InfoReceived):
            if sip_leg.stream is not None:
                # SIP INFO dtmf-relay: the fallback of phones that do not send RFC 4733.
                sip_leg.stream.receive_info(event.content_type, event.body)
        elif isinstance(event, CallTerminated):
            self._close_media(sip_leg)
            self._sip_legs.pop(event.leg_id, None)
            sip_leg.sip_leg_id = None
            self._release_trunk(sip_leg)
            if event.cause is TerminationCause.ANSWERED_AFTER_CANCEL:
                flow.leg_failed(leg, now, status=200, result=LegResult.ANSWERED_LATE)
            elif event.cause is not TerminationCause.LOCAL_BYE:
                flow.leg_ended(leg, now)
        elif isinstance(event, ReInviteCompleted):
            # Press-1: the bridge's re-INVITE is done, the rep now talks to the prospect.
            self._close_media(sip_leg)
            if 200 <= event.status < 300:
                flow.reinvite_answered(leg, event.body, now)
            else:
                flow.reinvite_failed(leg, now, status=event.status)
        elif isinstance(event, ReInviteReceived):
            # A session refresh (or hold) from a party: keep the session as it is. Relaying
            # mid-call changes to the other party is not implemented yet.
            self.endpoint.answer_reinvite(event.leg_id, status=200, body=sip_leg.local_sdp)

    def _on_rejected(self, sip_leg: _SipLeg, event: CallRejected) -> None:
        now = self._now()
        self._sip_legs.pop(event.leg_id, None)
        sip_leg.sip_leg_id = None
        # The UA makes up 408 (no answer at all) and 503 (transport error) itself.
        status: int | None = event.status if event.response is not None else None
        grant = sip_leg.grant
        if grant is not None:
            trunk_name = grant.trunk.name
            fail_over = self.trunk_pool.invite_result(trunk_name, now, status=status)
            self._release_trunk(sip_leg)
            if fail_over and not sip_leg.cancelled_before_sent and not self._cancelling(sip_leg):
                sip_leg.tried = sip_leg.tried | {trunk_name}
                _log.info(
                    "call %s %s: trunk %s failed (%s), failing over",
                    sip_leg.call.id,
                    sip_leg.leg,
                    trunk_name,
                    event.status,
                )
                decision = self.trunk_pool.request(now, exclude=sip_leg.tried)
                if not isinstance(decision, TrunkRefusal):
                    self._trunk_decided(sip_leg, decision)
                    self._pool_changed()
                    return
        sip_leg.call.flow.leg_failed(sip_leg.leg, now, status=status)

    def _cancelling(self, sip_leg: _SipLeg) -> bool:
        flow = sip_leg.call.flow
        if sip_leg.leg.kind is LegKind.REP:
            return flow.ring.leg_state(sip_leg.leg) is LegState.CANCELLING
        bridge = flow.bridge
        return bridge is not None and bridge.prospect_record.cancelled_at is not None

    def _on_request_completed(self, event: RequestCompleted) -> None:
        trunk = self._options.pop(event.request_id, None)
        if trunk is None:
            return
        status = event.status if event.response is not None else None
        self.trunk_pool.options_result(trunk.name, self._now(), status=status)
        self._pool_changed()


# -- helpers ------------------------------------------------------------------------------


def _phone_number(uri: str) -> str | None:
    """The E.164 number when ``uri`` is ``tel:`` or a bare number (ring via a trunk)."""
    text = uri.strip()
    if text.lower().startswith("tel:"):
        text = text[4:].split(";", 1)[0]
    text = text.replace("-", "").replace(" ", "")
    return text if _E164.fullmatch(text) else None


def _uri_user(number: str) -> str:
    """A phone number usable as the user part of a SIP URI."""
    cleaned = "".join(ch for ch in number if ch.isdigit() or ch == "+")
    return cleaned or "anonymous"


def _screen_pop_name(lead: LeadContext) -> str:
    """``Lead: <name> (<source>)``, leaving out what is unknown."""
    name = lead.name or lead.company or lead.phone
    return f"Lead: {name} ({lead.source})" if lead.source else f"Lead: {name}"


def _credentials(trunk: Trunk) -> Credentials | None:
    credentials = trunk.credentials
    if credentials is None:
        return None
    return Credentials(credentials.username, credentials.password)
