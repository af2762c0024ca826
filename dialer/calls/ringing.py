"""Ring one plan's reps until one answers: a sans-I/O state machine.

:class:`RingSession` decides which rep legs to start, when a leg has rung long enough, which
answer wins and what to do with every other leg. It sends nothing itself: it is driven by

1. the application: the constructor starts the first wave; :meth:`RingSession.abort` ends it;
2. leg events reported by whoever speaks SIP (``leg_sent``, ``leg_ringing``, ``leg_answered``,
   ``leg_failed``, ``leg_ended``), each with an explicit ``now``;
3. the timer: :meth:`RingSession.get_timer` is the earliest deadline (a ring timeout or the
   plan's deadline) and :meth:`RingSession.handle_timer` is called when it passes;

and the caller pulls what to do next with :meth:`RingSession.pop_commands` (start, cancel or
hang up legs) and what happened with :meth:`RingSession.pop_events`.

Modes are all waves: ``parallel`` is one wave of every target, ``sequential`` waves of one,
``waves`` waves of ``plan.wave_size``. A wave is over when each of its legs has failed or been
cancelled for its ring timeout; then the next wave starts at once. The first 2xx wins; every
other leg still ringing is CANCELled at once with ``Reason: SIP;cause=200;text="Call completed
elsewhere"`` (RFC 3326 §2). A 2xx that arrives after the winner is ACKed by the SIP layer and
hung up here (BYE). A 2xx reported for a leg cancelled only for its ring timeout, while no rep
has won yet, is accepted as the winner: a person picked up, and hanging up on them would waste
the lead. (:mod:`sip.ua` itself ACKs and BYEs a 2xx that beats a CANCEL already sent; the
controller reports that as a failure with ``LegResult.ANSWERED_LATE``.) For the same reason the
plan is only declared exhausted once the last wave's timed-out legs are really over.

Press-1-to-accept (``plan.accept == "press1"``, DESIGN §4 voicemail defence): a 2xx is only
"picked up, pending acceptance". The session asks for the prompt (:class:`PromptLeg`), emits
``REP_PROMPTED`` and gives the leg ``plan.accept_timeout_s`` to answer, while the other legs
go on ringing. Then one of three inputs decides: :meth:`RingSession.leg_accepted` (DTMF "1":
the leg wins, :class:`PlayRingback` is asked for it, every other leg is cancelled or hung
up), :meth:`RingSession.leg_declined` (another key, or the rep hung up on the prompt: BYE,
result ``declined``) or the accept timeout (:meth:`RingSession.leg_voicemail`, also fired by
:meth:`RingSession.handle_timer`: ``REP_VOICEMAIL``, BYE, result ``voicemail``). A leg waiting
for its key keeps its wave open, like a ringing leg.

A leg is reported ended (``REP_LEG_ENDED``) only when it really is (its final response, or our
BYE): until then the rep's phone may still ring, so the pipeline must not offer that rep to
another lead.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from dialer.calls.outcome import (
    CallEvent,
    CallEventKind,
    CallResult,
    Leg,
    LegKind,
    LegRecord,
    LegResult,
    classify_final_status,
)
from dialer.domain import RingMode, RingPlan, RingTarget

__all__ = [
    "ACCEPT_ANSWER",
    "ACCEPT_MODES",
    "ACCEPT_PRESS1",
    "REASON_COMPLETED_ELSEWHERE",
    "REASON_DECLINED",
    "CallStateError",
    "CancelLeg",
    "Command",
    "HangUpLeg",
    "LegInput",
    "LegState",
    "PlayRingback",
    "PromptLeg",
    "RingSession",
    "RingState",
    "StartLeg",
    "advance_leg",
]

#: RFC 3326 Reason for the legs that lose a parallel ring (the phone stops without logging a
#: missed call on most handsets).
REASON_COMPLETED_ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
#: RFC 3326 Reason for a leg the rep declined from the console (their phone stops ringing).
REASON_DECLINED = 'SIP;cause=603;text="Declined"'

#: ``RingPlan.accept``: the first 2xx wins.
ACCEPT_ANSWER = "answer"
#: ``RingPlan.accept``: a 2xx gets the prompt; only DTMF "1" wins.
ACCEPT_PRESS1 = "press1"
ACCEPT_MODES = (ACCEPT_ANSWER, ACCEPT_PRESS1)


class CallStateError(Exception):
    """An input that the state machine does not allow in its current state.

    This is a bug in the caller (for example the same leg reported answered twice), never a
    network condition: the SIP layer absorbs retransmissions and stray responses.
    """


# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartLeg:
    """Send an INVITE to ``target`` carrying ``offer`` (the daemon's placeholder SDP)."""

    leg: Leg
    target: RingTarget
    offer: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelLeg:
    """CANCEL the leg's INVITE, with this RFC 3326 ``Reason`` header value when not None."""

    leg: Leg
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HangUpLeg:
    """End an answered leg with BYE (the SIP layer has already ACKed its 2xx)."""

    leg: Leg


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptLeg:
    """Press-1: the rep of ``leg`` picked up; start its media with the rep's answer ``sdp``
    and play the accept prompt."""

    leg: Leg
    sdp: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayRingback:
    """Press-1: the rep of ``leg`` accepted; play ringback to them while the prospect is
    dialled (the bridge's re-INVITE takes the daemon out of the media path)."""

    leg: Leg


Command = StartLeg | CancelLeg | HangUpLeg | PromptLeg | PlayRingback


# -- one leg's life -------------------------------------------------------------------------


class LegState(enum.Enum):
    """Where one INVITE leg is, from the daemon's (UAC's) point of view."""

    #: INVITE sent, no provisional response yet.
    CALLING = enum.auto()
    #: A provisional response (180/183) arrived: the phone is ringing.
    RINGING = enum.auto()
    #: A 2xx arrived (and was ACKed): the dialog is up.
    ANSWERED = enum.auto()
    #: CANCEL sent; waiting for the INVITE's final response (487, or a 2xx that crossed it).
    CANCELLING = enum.auto()
    #: Over: a final non-2xx, our BYE, or the peer's BYE.
    TERMINATED = enum.auto()


class LegInput(enum.Enum):
    """What can happen to a leg."""

    #: 1xx received.
    PROVISIONAL = enum.auto()
    #: 2xx received.
    ANSWER = enum.auto()
    #: Final non-2xx, transaction timeout or transport error.
    FAILURE = enum.auto()
    #: We send CANCEL.
    CANCEL = enum.auto()
    #: We send BYE.
    HANG_UP = enum.auto()
    #: The peer sent BYE (or the dialog died).
    REMOTE_BYE = enum.auto()


# The INVITE client transaction as the application sees it (RFC 3261 §17.1.1.2, Figure 5,
# and §9.1 for CANCEL: "the INVITE request will receive a 487 ... or a 2xx if the CANCEL
# arrived too late"):
#
#                     |INVITE sent
#                     V
#                  CALLING --1xx--> RINGING
#                   |  |  \          |  |  \
#                2xx|  |CANCEL      2xx| CANCEL \ 300-699
#                   V  V             V  V
#              ANSWERED CANCELLING -2xx-> ANSWERED
#                   |        |300-699
#             BYE sent/recvd V
#                   +----> TERMINATED
#
# Inputs that cannot happen in a state (a 2xx after a 487, a BYE before any 2xx) are missing
# on purpose: advance_leg() raises CallStateError for them.
LEG_TRANSITIONS: dict[tuple[LegState, LegInput], LegState] = {
    (LegState.CALLING, LegInput.PROVISIONAL): LegState.RINGING,
    (LegState.CALLING, LegInput.ANSWER): LegState.ANSWERED,
    (LegState.CALLING, LegInput.FAILURE): LegState.TERMINATED,
    (LegState.CALLING, LegInput.CANCEL): LegState.CANCELLING,
    (LegState.RINGING, LegInput.PROVISIONAL): LegState.RINGING,
    (LegState.RINGING, LegInput.ANSWER): LegState.ANSWERED,
    (LegState.RINGING, LegInput.FAILURE): LegState.TERMINATED,
    (LegState.RINGING, LegInput.CANCEL): LegState.CANCELLING,
    (LegState.CANCELLING, LegInput.PROVISIONAL): LegState.CANCELLING,
    (LegState.CANCELLING, LegInput.ANSWER): LegState.ANSWERED,
    (LegState.CANCELLING, LegInput.FAILURE): LegState.TERMINATED,
    (LegState.CANCELLING, LegInput.CANCEL): LegState.CANCELLING,
    (LegState.ANSWERED, LegInput.HANG_UP): LegState.TERMINATED,
    (LegState.ANSWERED, LegInput.REMOTE_BYE): LegState.TERMINATED,
    (LegState.ANSWERED, LegInput.FAILURE): LegState.TERMINATED,
    # Late news about a leg that is already over changes nothing.
    (LegState.TERMINATED, LegInput.PROVISIONAL): LegState.TERMINATED,
    (LegState.TERMINATED, LegInput.FAILURE): LegState.TERMINATED,
    (LegState.TERMINATED, LegInput.CANCEL): LegState.TERMINATED,
    (LegState.TERMINATED, LegInput.HANG_UP): LegState.TERMINATED,
    (LegState.TERMINATED, LegInput.REMOTE_BYE): LegState.TERMINATED,
}

#: States in which a leg's phone may still be ringing.
LIVE_RINGING_STATES = frozenset({LegState.CALLING, LegState.RINGING})


def advance_leg(state: LegState, event: LegInput) -> LegState:
    """The next state of a leg, or :class:`CallStateError` when ``event`` cannot happen."""
    try:
        return LEG_TRANSITIONS[state, event]
    except KeyError:
        raise CallStateError(
            f"leg input {event.name} is not allowed in state {state.name}"
        ) from None


# -- the ring session -------------------------------------------------------------------------


class RingState(enum.Enum):
    """Where the whole ring plan is."""

    #: Legs are being rung; no one has answered yet.
    RINGING = enum.auto()
    #: A rep answered: :attr:`RingSession.winner` is set.
    ANSWERED = enum.auto()
    #: Every target failed or timed out, or the deadline passed: ``reps_no_answer``.
    EXHAUSTED = enum.auto()
    #: :meth:`RingSession.abort` was called before anyone answered.
    ABORTED = enum.auto()


class _CancelCause(enum.Enum):
    #: The leg rang for its whole ring timeout.
    RING_TIMEOUT = enum.auto()
    #: Another leg won.
    COMPLETED_ELSEWHERE = enum.auto()
    #: The plan's overall deadline passed.
    DEADLINE = enum.auto()
    #: The application aborted the plan.
    ABORT = enum.auto()
    #: The rep declined the lead (console): only that leg, the plan goes on.
    DECLINED = enum.auto()


#: What a cancelled leg counts as once its INVITE is over.
_CANCELLED_RESULT = {
    _CancelCause.RING_TIMEOUT: LegResult.NO_ANSWER,
    _CancelCause.DEADLINE: LegResult.NO_ANSWER,
    _CancelCause.COMPLETED_ELSEWHERE: LegResult.CANCELLED,
    _CancelCause.ABORT: LegResult.CANCELLED,
    _CancelCause.DECLINED: LegResult.DECLINED,
}


#: The RFC 3326 ``Reason`` a CANCEL carries, by cause (none: a plain CANCEL).
_CANCEL_REASONS = {
    _CancelCause.COMPLETED_ELSEWHERE: REASON_COMPLETED_ELSEWHERE,
    _CancelCause.DECLINED: REASON_DECLINED,
}


@dataclass(slots=True)
class _RepLeg:
    target: RingTarget
    record: LegRecord
    ring_deadline: float
    state: LegState = LegState.CALLING
    cancel_cause: _CancelCause | None = None
    #: Press-1: when the rep who picked up must have pressed a key; None when not waiting.
    accept_deadline: float | None = None


class RingSession:
    """The ring-plan state machine for one lead (see the module docstring for the drivers).

    ``make_offer(leg)`` gives the SDP offer of each rep INVITE (the daemon's placeholder,
    :func:`dialer.calls.bridge.placeholder_offer`); it is called once per leg, in order.
    """

    def __init__(
        self,
        plan: RingPlan,
        *,
        now: float,
        make_offer: Callable[[Leg], bytes],
    ) -> None:
        if not plan.targets:
            raise ValueError("a ring plan needs at least one target")
        if plan.ring_timeout_s <= 0:
            raise ValueError("ring_timeout_s must be positive")
        if plan.accept not in ACCEPT_MODES:
            raise ValueError(f"accept must be one of {ACCEPT_MODES}, not {plan.accept!r}")
        if plan.accept == ACCEPT_PRESS1 and plan.accept_timeout_s <= 0:
            raise ValueError("accept_timeout_s must be positive")
        #: True when a pick-up must be confirmed with DTMF "1".
        self.press1 = plan.accept == ACCEPT_PRESS1
        self._plan = plan
        self._make_offer = make_offer
        self._waves = _split_waves(plan)
        self._next_wave = 0
        self.started_at = now
        #: When the whole plan is abandoned, however many legs still ring. Without an explicit
        #: deadline the ring timeouts of the waves bound the plan on their own.
        self.deadline = now + plan.deadline_s if plan.deadline_s is not None else None
        self._legs: dict[Leg, _RepLeg] = {}
        self._commands: list[Command] = []
        self._events: list[CallEvent] = []
        self.state = RingState.RINGING
        #: The leg whose 2xx won, once :attr:`state` is ``ANSWERED``.
        self.winner: Leg | None = None
        self._start_next_wave(now)

    # -- outputs ------------------------------------------------------------------------------

    def pop_commands(self) -> list[Command]:
        """What the SIP side must do now, in order; clears the queue."""
        commands, self._commands = self._commands, []
        return commands

    def pop_events(self) -> list[CallEvent]:
        """What happened since the last call, in order; clears the queue."""
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` must be called, or None."""
        if self.state is not RingState.RINGING:
            return None
        deadlines = [
            leg.ring_deadline for leg in self._legs.values() if leg.state in LIVE_RINGING_STATES
        ]
        deadlines.extend(
            leg.accept_deadline for leg in self._legs.values() if leg.accept_deadline is not None
        )
        if self.deadline is not None:
            deadlines.append(self.deadline)
        return min(deadlines, default=None)

    @property
    def plan(self) -> RingPlan:
        """The plan being rung."""
        return self._plan

    @property
    def result(self) -> CallResult | None:
        """``reps_no_answer`` or ``aborted`` once the plan failed; None otherwise."""
        if self.state is RingState.EXHAUSTED:
            return CallResult.REPS_NO_ANSWER
        if self.state is RingState.ABORTED:
            return CallResult.ABORTED
        return None

    @property
    def legs_alive(self) -> bool:
        """True while any leg other than the winner is not yet over."""
        return any(
            leg.state is not LegState.TERMINATED
            for key, leg in self._legs.items()
            if key != self.winner
        )

    def leg_state(self, leg: Leg) -> LegState:
        """The state of ``leg`` (KeyError for a leg this session never started)."""
        return self._legs[leg].state

    def target(self, leg: Leg) -> RingTarget:
        """The rep target of ``leg``."""
        return self._legs[leg].target

    def awaiting_accept(self, leg: Leg) -> bool:
        """Press-1: True while the rep of ``leg`` picked up and has not pressed a key yet."""
        rep = self._legs.get(leg)
        return rep is not None and rep.accept_deadline is not None

    def record(self, leg: Leg) -> LegRecord:
        """A snapshot of what is known about ``leg``."""
        return self._legs[leg].record

    def records(self) -> tuple[LegRecord, ...]:
        """Snapshots of every leg started so far, in start order."""
        return tuple(leg.record for leg in self._legs.values())

    # -- inputs -------------------------------------------------------------------------------

    def leg_sent(
        self, leg: Leg, now: float, *, trunk: str | None = None, offer: bytes | None = None
    ) -> None:
        """The INVITE of ``leg`` went out (through ``trunk`` when not sent directly), carrying
        ``offer`` when the SIP side replaced the session's (press-1: the daemon's own media)."""
        rep = self._leg(leg)
        rep.record = replace(rep.record, invite_sent_at=now, trunk=trunk)
        if offer is not None:
            rep.record = replace(rep.record, local_sdp=offer)
        self._events.append(
            CallEvent(
                kind=CallEventKind.REP_INVITED,
                at=now,
                leg=leg,
                rep_id=rep.target.rep_id,
                trunk=trunk,
            )
        )

    def leg_ringing(self, leg: Leg, now: float, *, status: int = 180) -> None:
        """A provisional response (180/183) arrived on ``leg``."""
        rep = self._leg(leg)
        previous = rep.state
        rep.state = advance_leg(rep.state, LegInput.PROVISIONAL)
        if previous is LegState.CALLING and rep.record.ringing_at is None:
            rep.record = replace(rep.record, ringing_at=now)
            self._events.append(
                CallEvent(
                    kind=CallEventKind.REP_RINGING,
                    at=now,
                    leg=leg,
                    rep_id=rep.target.rep_id,
                    status=status,
                )
            )

    def leg_answered(self, leg: Leg, sdp: bytes, now: float, *, status: int = 200) -> None:
        """A 2xx with the rep's answer ``sdp`` arrived on ``leg`` (the SIP layer ACKed it)."""
        rep = self._leg(leg)
        cause = rep.cancel_cause if rep.state is LegState.CANCELLING else None
        rep.state = advance_leg(rep.state, LegInput.ANSWER)
        rep.record = replace(
            rep.record,
            final_status=status,
            answered_at=now,
            acked_at=now,
            remote_sdp=sdp,
        )
        may_win = self.state is RingState.RINGING and cause in (None, _CancelCause.RING_TIMEOUT)
        if not may_win:
            self._hang_up_late(leg, rep, now, status)
        elif self.press1:
            self._prompt(leg, rep, now, sdp, status)
        else:
            self._win(leg, rep, now, status)

    def leg_accepted(self, leg: Leg, now: float) -> None:
        """Press-1: the rep of ``leg`` pressed 1. The leg wins if it was waiting for its key;
        a digit from any other leg (a late key press, the winner pressing again) is ignored."""
        rep = self._leg(leg)
        if rep.accept_deadline is None or self.state is not RingState.RINGING:
            return
        rep.accept_deadline = None
        status = rep.record.final_status if rep.record.final_status is not None else 200
        self._win(leg, rep, now, status)

    def leg_declined(self, leg: Leg, now: float, *, result: LegResult = LegResult.DECLINED) -> None:
        """Press-1: the rep of ``leg`` pressed another key than 1 (or its media could not be
        set up: ``result`` FAILED): hang up, the plan goes on. Ignored unless the leg was
        waiting for its key."""
        rep = self._leg(leg)
        if rep.accept_deadline is None:
            return
        self._end_pending(leg, rep, now, result=result)

    def leg_voicemail(self, leg: Leg, now: float) -> None:
        """Press-1: no key within the accept timeout (or voicemail detected otherwise): the
        leg is treated as voicemail, hung up, and the plan goes on. Ignored unless the leg was
        waiting for its key."""
        rep = self._leg(leg)
        if rep.accept_deadline is None:
            return
        self._events.append(
            CallEvent(
                kind=CallEventKind.REP_VOICEMAIL,
                at=now,
                leg=leg,
                rep_id=rep.target.rep_id,
                result=LegResult.VOICEMAIL,
            )
        )
        self._end_pending(leg, rep, now, result=LegResult.VOICEMAIL)

    def leg_failed(
        self,
        leg: Leg,
        now: float,
        *,
        status: int | None = None,
        result: LegResult | None = None,
    ) -> None:
        """The INVITE of ``leg`` ended without a 2xx: final ``status`` (None for a timeout or
        transport error); ``result`` overrides the classification (e.g. ``TRUNK_BUSY``)."""
        rep = self._leg(leg)
        previous = rep.state
        rep.state = advance_leg(rep.state, LegInput.FAILURE)
        rep.accept_deadline = None
        if previous is LegState.TERMINATED:
            return
        if result is None:
            if previous is LegState.CANCELLING and rep.cancel_cause is not None:
                result = _CANCELLED_RESULT[rep.cancel_cause]
            else:
                result = classify_final_status(status)
        if status is not None and 200 <= status < 300:
            # A 2xx that crossed our CANCEL: the SIP layer ACKed (and BYEd) it as it arrived,
            # so the record still shows when this rep answered.
            rep.record = replace(rep.record, answered_at=now, acked_at=now)
        self._end_leg(leg, rep, now, result=result, status=status)
        self._after_leg_over(now)

    def leg_ended(self, leg: Leg, now: float) -> None:
        """The peer hung up (BYE) an answered leg, or its dialog died."""
        rep = self._leg(leg)
        previous = rep.state
        rep.state = advance_leg(rep.state, LegInput.REMOTE_BYE)
        if rep.accept_deadline is not None:
            # Hung up on the prompt: a person saying no (a voicemail box does not hang up).
            rep.accept_deadline = None
            self._end_leg(leg, rep, now, result=LegResult.DECLINED, status=None)
            self._after_leg_over(now)
        elif previous is not LegState.TERMINATED:
            rep.record = replace(rep.record, ended_at=now)

    def decline(self, leg: Leg, now: float) -> bool:
        """The rep of ``leg`` declined the lead (console): CANCEL the leg while it rings, or
        hang it up (BYE) while its press-1 prompt waits for a key; the leg ends ``declined``
        and the plan goes on (the next wave starts when this one has nothing left to ring).
        False when there was nothing to decline (the leg won, is over, or the plan ended)."""
        rep = self._legs.get(leg)
        if rep is None or self.state is not RingState.RINGING:
            return False
        if rep.accept_deadline is not None:
            self._end_pending(leg, rep, now, result=LegResult.DECLINED)
            return True
        if rep.state not in LIVE_RINGING_STATES:
            return False
        self._cancel(leg, rep, now, _CancelCause.DECLINED)
        self._after_leg_over(now)
        return True

    def abort(self, now: float) -> None:
        """Stop ringing: cancel every leg still ringing. No effect once a rep has won."""
        if self.state is not RingState.RINGING:
            return
        self.state = RingState.ABORTED
        self._cancel_ringing(now, _CancelCause.ABORT)
        self._hang_up_pending(now, LegResult.CANCELLED)

    def handle_timer(self, now: float) -> None:
        """Act on every ring timeout and the deadline that are due at ``now``."""
        if self.state is not RingState.RINGING:
            return
        if self.deadline is not None and now >= self.deadline:
            self.state = RingState.EXHAUSTED
            self._cancel_ringing(now, _CancelCause.DEADLINE)
            self._hang_up_pending(now, LegResult.NO_ANSWER)
            return
        for leg, rep in list(self._legs.items()):
            if rep.accept_deadline is not None and now >= rep.accept_deadline:
                self.leg_voicemail(leg, now)
            elif rep.state in LIVE_RINGING_STATES and now >= rep.ring_deadline:
                self._cancel(leg, rep, now, _CancelCause.RING_TIMEOUT)
        self._after_leg_over(now)

    # -- internals ----------------------------------------------------------------------------

    def _leg(self, leg: Leg) -> _RepLeg:
        try:
            return self._legs[leg]
        except KeyError:
            raise CallStateError(f"{leg} is not a leg of this ring session") from None

    def _start_next_wave(self, now: float) -> None:
        wave = self._waves[self._next_wave]
        first_index = sum(len(w) for w in self._waves[: self._next_wave])
        self._next_wave += 1
        for offset, target in enumerate(wave):
            leg = Leg(LegKind.REP, first_index + offset)
            offer = self._make_offer(leg)
            self._legs[leg] = _RepLeg(
                target=target,
                record=LegRecord(leg=leg, rep_id=target.rep_id, target=target.uri, local_sdp=offer),
                ring_deadline=now + self._plan.ring_timeout_s,
            )
            self._commands.append(StartLeg(leg=leg, target=target, offer=offer))

    def _after_leg_over(self, now: float) -> None:
        """Start the next wave, or give up, once no leg of this wave rings any more."""
        if self.state is not RingState.RINGING:
            return
        if any(
            rep.state in LIVE_RINGING_STATES or rep.accept_deadline is not None
            for rep in self._legs.values()
        ):
            return
        if self._next_wave < len(self._waves):
            self._start_next_wave(now)
        elif not any(
            rep.state is LegState.CANCELLING and rep.cancel_cause is _CancelCause.RING_TIMEOUT
            for rep in self._legs.values()
        ):
            # Only once the last timed-out legs are really over: their 2xx may still win.
            self.state = RingState.EXHAUSTED

    def _win(self, leg: Leg, rep: _RepLeg, now: float, status: int) -> None:
        self.state = RingState.ANSWERED
        self.winner = leg
        rep.record = replace(rep.record, result=LegResult.ANSWERED)
        self._events.append(
            CallEvent(
                kind=CallEventKind.REP_ANSWERED,
                at=now,
                leg=leg,
                rep_id=rep.target.rep_id,
                status=status,
            )
        )
        if self.press1:
            self._commands.append(PlayRingback(leg=leg))
        self._cancel_ringing(now, _CancelCause.COMPLETED_ELSEWHERE)
        self._hang_up_pending(now, LegResult.CANCELLED)

    def _prompt(self, leg: Leg, rep: _RepLeg, now: float, sdp: bytes, status: int) -> None:
        rep.accept_deadline = now + self._plan.accept_timeout_s
        self._commands.append(PromptLeg(leg=leg, sdp=sdp))
        self._events.append(
            CallEvent(
                kind=CallEventKind.REP_PROMPTED,
                at=now,
                leg=leg,
                rep_id=rep.target.rep_id,
                status=status,
            )
        )

    def _end_pending(self, leg: Leg, rep: _RepLeg, now: float, *, result: LegResult) -> None:
        """Hang up a leg that was waiting for its key, with ``result``."""
        rep.accept_deadline = None
        rep.state = advance_leg(rep.state, LegInput.HANG_UP)
        self._commands.append(HangUpLeg(leg=leg))
        self._end_leg(leg, rep, now, result=result, status=None)
        self._after_leg_over(now)

    def _hang_up_pending(self, now: float, result: LegResult) -> None:
        """Hang up every leg still waiting for its key (another leg won, or the plan ended)."""
        for leg, rep in self._legs.items():
            if rep.accept_deadline is not None:
                self._end_pending(leg, rep, now, result=result)

    def _hang_up_late(self, leg: Leg, rep: _RepLeg, now: float, status: int) -> None:
        rep.state = advance_leg(rep.state, LegInput.HANG_UP)
        self._commands.append(HangUpLeg(leg=leg))
        self._end_leg(leg, rep, now, result=LegResult.ANSWERED_LATE, status=status)

    def _cancel_ringing(self, now: float, cause: _CancelCause) -> None:
        for leg, rep in self._legs.items():
            if rep.state in LIVE_RINGING_STATES:
                self._cancel(leg, rep, now, cause)

    def _cancel(self, leg: Leg, rep: _RepLeg, now: float, cause: _CancelCause) -> None:
        rep.state = advance_leg(rep.state, LegInput.CANCEL)
        rep.cancel_cause = cause
        rep.record = replace(rep.record, cancelled_at=now)
        reason = _CANCEL_REASONS.get(cause)
        self._commands.append(CancelLeg(leg=leg, reason=reason))

    def _end_leg(
        self, leg: Leg, rep: _RepLeg, now: float, *, result: LegResult, status: int | None
    ) -> None:
        rep.record = replace(
            rep.record,
            result=result,
            final_status=status if status is not None else rep.record.final_status,
            ended_at=now,
        )
        self._events.append(
            CallEvent(
                kind=CallEventKind.REP_LEG_ENDED,
                at=now,
                leg=leg,
                rep_id=rep.target.rep_id,
                status=status,
                result=result,
            )
        )


def _split_waves(plan: RingPlan) -> list[tuple[RingTarget, ...]]:
    """The plan's targets cut into the waves its mode rings together."""
    targets = plan.targets
    if plan.mode is RingMode.PARALLEL:
        size = len(targets)
    elif plan.mode is RingMode.SEQUENTIAL:
        size = 1
    else:
        if plan.wave_size < 1:
            raise ValueError("wave_size must be at least 1")
        size = plan.wave_size
    count = math.ceil(len(targets) / size)
    return [targets[i * size : (i + 1) * size] for i in range(count)]
