"""Connect the rep who answered to the prospect: a sans-I/O 3PCC controller (RFC 3725).

The daemon is the controller of RFC 3725: both the rep leg and the prospect leg are UAC dialogs
from the daemon, and media flows directly between the two phones; the daemon only relays SDP.

The flow, and why
=================

RFC 3725 §4 describes four ways to set up such a call. Flow I (INVITE A without SDP, use A's
offer in the 2xx to INVITE B, ACK A only with B's answer) leaves A's 2xx un-ACKed while B
rings: A retransmits its 2xx and, with no ACK within 64*T1 = 32 s, tears the call down; §5
keeps Flow I for a B that is an automaton answering at once. A prospect is a person whose
phone rings for up to half a minute, so Flow I is out (DESIGN §4: "no 200 OK is ever left
unacknowledged while waiting for the other party"). Flow II relies on the c=0.0.0.0 "black
hole", which RFC 3264 §8.4 replaced with a=inactive. Flows III and IV ACK A at once and then
INVITE B *without* an offer, so B's 2xx carries an offer that is relayed to A in a re-INVITE
while B's 2xx waits un-ACKed for that round trip; Flow IV makes A's initial session a valid
offer that holds no media (the controller offers first, so A's ACK needs no body).

This module keeps Flow IV's first half and changes the second half to an early offer::

     rep (A)                   daemon                    prospect (B)
       |(1) INVITE offer0         |                           |
       |  (placeholder, inactive) |                           |
       |<-------------------------|                           |
       |(2) 200 answer0           |                           |
       |------------------------->|                           |
       |(3) ACK                   |                           |
       |<-------------------------|                           |
       |                          |(4) INVITE offer1          |
       |                          |  = answer0, sendrecv      |
       |                          |-------------------------->|
       |                          |(5) 180 ... 200 answer1    |
       |                          |<--------------------------|
       |                          |(6) ACK                    |
       |                          |-------------------------->|
       |(7) re-INVITE offer2      |                           |
       |  = answer1, o= ours, v+1 |                           |
       |<-------------------------|                           |
       |(8) 200 answer2           |                           |
       |------------------------->|                           |
       |(9) ACK                   |                           |
       |<-------------------------|                           |
       |<================ RTP, directly ===================>|

* The rep's INVITE (1) carries the daemon's placeholder offer (its own address, port 9,
  ``a=inactive``, PCMU/PCMA/telephone-event; see :func:`placeholder_offer`), as in Flow IV
  but with a media line, because many phones answer an SDP without ``m=`` lines with 488.
  The rep's 2xx (2) is ACKed at once (3), so nothing waits while the prospect rings.
* The prospect's INVITE (4) carries an offer built from the rep's answer: the rep's own
  addresses and codecs (a subset of ours), made ``sendrecv``. Trunks and SBCs generally want
  an early offer, the prospect's early media (ringback, carrier announcements) already flows
  to the rep's phone, and the prospect's 2xx is ACKed at once (6): no 2xx of either leg ever
  waits for anything, not even the one round trip Flows III/IV hold B's 2xx for.
* When the prospect answers, ONE re-INVITE (7) gives the rep the prospect's answer as a new
  offer, with the ``o=`` line of our earlier offer in that dialog and its version plus one
  (RFC 3264 §8). Bridged after one more round trip (8, 9), as the issue requires.
* Relaying an answer as an offer is safe here because answer0 lists only codecs we offered
  and answer1 only codecs from answer0, so the rep can accept answer1's set. If the rep's
  answer2 moves its media (another address or port than answer0, which the prospect is
  sending to), the bridge sends the prospect one corrective re-INVITE with answer2 (rare:
  phones keep their port for the life of a dialog, RFC 3264 §8.3.1).

Teardown: a BYE from either side BYEs the other; a rep who hangs up before the prospect
answers gets the prospect leg CANCELled (and a prospect 2xx that crosses that CANCEL is hung
up); a prospect who fails (busy, no answer, unreachable) gets the rep BYEd with the outcome
named; :meth:`Bridge.abort` (shutdown) ends both legs.

Like :mod:`dialer.calls.ringing`, everything here is driven by explicit inputs with ``now``
and the caller pulls commands and events. :class:`CallFlow` composes one
:class:`~dialer.calls.ringing.RingSession` and, once a rep wins, one :class:`Bridge`: it is the
whole sans-I/O life of one lead's call, and what :mod:`dialer.calls.controller` drives.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from dialer.calls.outcome import (
    CallEvent,
    CallEventKind,
    CallOutcome,
    CallResult,
    Leg,
    LegKind,
    LegRecord,
    LegResult,
    Party,
    classify_final_status,
)
from dialer.calls.ringing import (
    CallStateError,
    CancelLeg,
    HangUpLeg,
    LegInput,
    LegState,
    PlayRingback,
    PromptLeg,
    RingSession,
    StartLeg,
    advance_leg,
)
from dialer.domain import RingPlan, RingTarget
from sip import (
    Connection,
    Direction,
    MediaDescription,
    Origin,
    ParseError,
    SdpAttribute,
    SessionDescription,
)

__all__ = [
    "Bridge",
    "BridgeCommand",
    "BridgeInput",
    "BridgeSettings",
    "BridgeState",
    "CallCommand",
    "CallFlow",
    "DialProspect",
    "Reinvite",
    "placeholder_offer",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeSettings:
    """Tunables of the bridge; every default is what the daemon uses."""

    #: How long the prospect's phone may ring before the call counts as no answer. Carriers
    #: usually send voicemail in after 25-30 s; past that, nobody is going to pick up.
    prospect_ring_timeout_s: float = 45.0
    #: Wait before retrying a re-INVITE refused with 491 (glare). RFC 3261 §14.1: the owner of
    #: the Call-ID (us, the UAC of both dialogs) waits 2.1-4 s; the low end keeps it short.
    #: ``sip.ua`` already retries a 491 itself; this one retry is the bridge's last resort
    #: before it gives up on the call.
    glare_retry_s: float = 2.1


# -- commands (in addition to StartLeg / CancelLeg / HangUpLeg) -------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DialProspect:
    """INVITE the prospect through a trunk: ``number`` (E.164), ``caller_id`` in From and
    P-Asserted-Identity, carrying ``offer``."""

    leg: Leg
    number: str
    caller_id: str
    offer: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Reinvite:
    """Send a re-INVITE with ``offer`` inside the (answered) dialog of ``leg``."""

    leg: Leg
    offer: bytes


BridgeCommand = DialProspect | Reinvite | CancelLeg | HangUpLeg
CallCommand = StartLeg | DialProspect | Reinvite | CancelLeg | HangUpLeg | PromptLeg | PlayRingback


# -- SDP: the few edits a controller makes --------------------------------------------------


def placeholder_offer(address: str, *, session_id: str, version: int = 0) -> bytes:
    """The daemon's offer to a rep before the prospect is known: RFC 3725 Flow IV's "no media
    yet", written as one audio stream that is ``a=inactive`` at the daemon's own address on
    port 9 (discard), with PCMU, PCMA and RFC 4733 telephone-event.

    ``session_id`` must differ between legs (it is the ``o=`` session id).
    """
    addrtype = "IP6" if ":" in address else "IP4"
    attributes: tuple[SdpAttribute, ...] = (
        ("rtpmap", "0 PCMU/8000"),
        ("rtpmap", "8 PCMA/8000"),
        ("rtpmap", "101 telephone-event/8000"),
        ("fmtp", "101 0-16"),
        ("ptime", "20"),
        (Direction.INACTIVE.value, None),
    )
    description = SessionDescription(
        origin=Origin("dialer", session_id, version, "IN", addrtype, address),
        session_name="dialer",
        connection=Connection("IN", addrtype, address),
        media=(
            MediaDescription(
                media="audio",
                port=9,
                proto="RTP/AVP",
                formats=("0", "8", "101"),
                attributes=attributes,
            ),
        ),
    )
    return description.serialize()


def _parse(sdp: bytes) -> SessionDescription | None:
    if not sdp:
        return None
    try:
        description = SessionDescription.parse(sdp)
    except ParseError:
        return None
    return description if description.media else None


def _explicit_directions(description: SessionDescription) -> SessionDescription:
    """The same session with every stream's effective direction written on its ``m=`` section.

    A relayed description may rely on the default (no attribute means ``sendrecv``), but the
    party receiving it last heard ``a=inactive`` from us: saying it explicitly leaves no room
    for a phone that keeps the old direction when the attribute is absent.
    """
    for index in range(len(description.media)):
        description = description.with_direction(description.media_direction(index), index)
    return replace(
        description,
        attributes=tuple(
            (k, v) for k, v in description.attributes if not (v is None and k in _DIRECTIONS)
        ),
    )


_DIRECTIONS = frozenset(d.value for d in Direction)


def _media_addresses(description: SessionDescription) -> tuple[tuple[str, int], ...]:
    result = []
    for index in range(len(description.media)):
        try:
            result.append(description.media_address(index))
        except ValueError:
            result.append(("", description.media[index].port))
    return tuple(result)


class _DialogSdp:
    """Keeps the ``o=`` line of one dialog so each new offer in it is version + 1 (RFC 3264 §8)."""

    def __init__(self, first_sent: SessionDescription) -> None:
        self.origin = first_sent.origin

    def next_offer(self, description: SessionDescription) -> bytes:
        self.origin = replace(self.origin, sess_version=self.origin.sess_version + 1)
        return replace(description, origin=self.origin).serialize()


# -- the bridge state machine -----------------------------------------------------------------


class BridgeState(enum.Enum):
    """Where the bridge of an answered rep and the prospect is."""

    #: The prospect's INVITE is out (maybe ringing); the rep waits on an inactive session.
    DIALING = enum.auto()
    #: The prospect answered; the rep is being re-INVITEd with the prospect's media.
    REINVITING_REP = enum.auto()
    #: The rep's media moved in its re-INVITE answer; the prospect is being told (rare).
    REINVITING_PROSPECT = enum.auto()
    #: Both sides have each other's media: talking.
    BRIDGED = enum.auto()
    #: Over: both legs are being, or have been, ended.
    ENDED = enum.auto()


class BridgeInput(enum.Enum):
    """What can happen to a bridge."""

    PROSPECT_RINGING = enum.auto()
    PROSPECT_ANSWERED = enum.auto()
    PROSPECT_FAILED = enum.auto()
    #: The prospect rang for the whole prospect ring timeout.
    PROSPECT_TIMEOUT = enum.auto()
    REP_REINVITE_OK = enum.auto()
    #: The rep's re-INVITE answer moved its media: re-INVITE the prospect too.
    REP_MEDIA_MOVED = enum.auto()
    REP_REINVITE_FAILED = enum.auto()
    #: 491 to a re-INVITE: retry after the glare timer (stays in the same state).
    REINVITE_GLARE = enum.auto()
    PROSPECT_REINVITE_OK = enum.auto()
    PROSPECT_REINVITE_FAILED = enum.auto()
    REP_BYE = enum.auto()
    PROSPECT_BYE = enum.auto()
    ABORT = enum.auto()


_S = BridgeState
_I = BridgeInput

# RFC 3725 §4 (the flow in the module docstring), from the moment the rep's 2xx is ACKed:
#
#   DIALING --prospect 2xx--> REINVITING_REP --rep 2xx--> BRIDGED --BYE either side--> ENDED
#      |                          |   \--rep media moved--> REINVITING_PROSPECT --2xx--^
#      +--prospect fails/timeout, rep BYE, abort--> ENDED (each row below says what is sent)
#
# A missing (state, input) pair is a bug in the caller: transition() raises CallStateError.
BRIDGE_TRANSITIONS: dict[tuple[BridgeState, BridgeInput], BridgeState] = {
    (_S.DIALING, _I.PROSPECT_RINGING): _S.DIALING,
    (_S.DIALING, _I.PROSPECT_ANSWERED): _S.REINVITING_REP,  # ACK prospect; re-INVITE rep
    (_S.DIALING, _I.PROSPECT_FAILED): _S.ENDED,  # BYE rep
    (_S.DIALING, _I.PROSPECT_TIMEOUT): _S.ENDED,  # CANCEL prospect; BYE rep
    (_S.DIALING, _I.REP_BYE): _S.ENDED,  # CANCEL prospect
    (_S.DIALING, _I.ABORT): _S.ENDED,  # CANCEL prospect; BYE rep
    (_S.REINVITING_REP, _I.REP_REINVITE_OK): _S.BRIDGED,
    (_S.REINVITING_REP, _I.REP_MEDIA_MOVED): _S.REINVITING_PROSPECT,  # re-INVITE prospect
    (_S.REINVITING_REP, _I.REINVITE_GLARE): _S.REINVITING_REP,  # retry after glare_retry_s
    (_S.REINVITING_REP, _I.REP_REINVITE_FAILED): _S.ENDED,  # BYE both
    (_S.REINVITING_REP, _I.REP_BYE): _S.ENDED,  # BYE prospect
    (_S.REINVITING_REP, _I.PROSPECT_BYE): _S.ENDED,  # BYE rep
    (_S.REINVITING_REP, _I.ABORT): _S.ENDED,  # BYE both
    (_S.REINVITING_PROSPECT, _I.PROSPECT_REINVITE_OK): _S.BRIDGED,
    (_S.REINVITING_PROSPECT, _I.REINVITE_GLARE): _S.REINVITING_PROSPECT,
    (_S.REINVITING_PROSPECT, _I.PROSPECT_REINVITE_FAILED): _S.ENDED,  # BYE both
    (_S.REINVITING_PROSPECT, _I.REP_BYE): _S.ENDED,  # BYE prospect
    (_S.REINVITING_PROSPECT, _I.PROSPECT_BYE): _S.ENDED,  # BYE rep
    (_S.REINVITING_PROSPECT, _I.ABORT): _S.ENDED,  # BYE both
    (_S.BRIDGED, _I.REP_BYE): _S.ENDED,  # BYE prospect
    (_S.BRIDGED, _I.PROSPECT_BYE): _S.ENDED,  # BYE rep
    (_S.BRIDGED, _I.ABORT): _S.ENDED,  # BYE both
    # Once over, news from either leg changes nothing (the legs' own states absorb it).
    **{(_S.ENDED, event): _S.ENDED for event in _I},
}


def transition(state: BridgeState, event: BridgeInput) -> BridgeState:
    """The bridge's next state, or :class:`CallStateError` when ``event`` cannot happen."""
    try:
        return BRIDGE_TRANSITIONS[state, event]
    except KeyError:
        raise CallStateError(
            f"bridge input {event.name} is not allowed in state {state.name}"
        ) from None


#: Prospect statuses that carriers send when nobody picked up (their own no-answer timer).
_CARRIER_NO_ANSWER = frozenset({408, 480})


def _prospect_call_result(result: LegResult, status: int | None) -> CallResult:
    if result is LegResult.NO_ANSWER or status in _CARRIER_NO_ANSWER:
        return CallResult.PROSPECT_NO_ANSWER
    if result in (LegResult.BUSY, LegResult.REJECTED):
        return CallResult.PROSPECT_BUSY
    if result is LegResult.AUTH_FAILED:
        return CallResult.TRUNK_AUTH_FAILED
    if result is LegResult.TRUNK_BUSY:
        return CallResult.TRUNK_BUSY
    return CallResult.PROSPECT_FAILED


class Bridge:
    """The 3PCC bridge of one answered rep leg and the prospect (flow in the module docstring).

    Created the moment the rep's 2xx is ACKed; it queues :class:`DialProspect` at once. Drivers:
    the application (:meth:`abort`), leg events with ``now`` (``prospect_*``, ``reinvite_*``,
    ``leg_ended``), and the timer (:meth:`get_timer` / :meth:`handle_timer`: the prospect ring
    timeout and the glare retry). Outputs: :meth:`pop_commands`, :meth:`pop_events`.
    """

    def __init__(
        self,
        *,
        rep_leg: Leg,
        rep_record: LegRecord,
        rep_offer: bytes,
        rep_answer: bytes,
        prospect_number: str,
        caller_id: str,
        now: float,
        settings: BridgeSettings | None = None,
    ) -> None:
        self.settings = settings or BridgeSettings()
        self.rep_leg = rep_leg
        self.prospect_leg = Leg(LegKind.PROSPECT, 0)
        self.state = BridgeState.DIALING
        self.result: CallResult | None = None
        self.ended_by: Party | None = None
        self.started_at = now
        self.prospect_answered_at: float | None = None
        self.bridged_at: float | None = None
        self.ended_at: float | None = None
        self._rep_record = rep_record
        self._rep_state = LegState.ANSWERED
        self._prospect_state = LegState.CALLING
        self._prospect_record = LegRecord(
            leg=self.prospect_leg, rep_id=None, target=prospect_number
        )
        self._commands: list[BridgeCommand] = []
        self._events: list[CallEvent] = []
        self._prospect_deadline: float | None = now + self.settings.prospect_ring_timeout_s
        self._glare_retry_at: float | None = None
        self._glare_retries = 0
        self._pending_reinvite: Reinvite | None = None
        self._rep_answer0: SessionDescription | None = None
        #: True once the prospect's INVITE has been asked for.
        self.dialed = False

        offer0 = _parse(rep_offer)
        answer0 = _parse(rep_answer)
        if offer0 is None or answer0 is None:
            # Without a usable answer from the rep there is nothing to offer the prospect.
            self._prospect_state = LegState.TERMINATED
            self._prospect_deadline = None
            self.state = BridgeState.ENDED
            self._finish(now, CallResult.BRIDGE_FAILED, Party.DAEMON)
            self._hang_up_rep(now)
            return
        self._rep_answer0 = answer0
        self._rep_dialog = _DialogSdp(offer0)
        prospect_offer = answer0.with_direction(Direction.SENDRECV)
        self._prospect_dialog = _DialogSdp(prospect_offer)
        offer_bytes = prospect_offer.serialize()
        self._prospect_record = replace(self._prospect_record, local_sdp=offer_bytes)
        self.dialed = True
        self._commands.append(
            DialProspect(
                leg=self.prospect_leg,
                number=prospect_number,
                caller_id=caller_id,
                offer=offer_bytes,
            )
        )

    # -- outputs ------------------------------------------------------------------------------

    def pop_commands(self) -> list[BridgeCommand]:
        """What the SIP side must do now, in order; clears the queue."""
        commands, self._commands = self._commands, []
        return commands

    def pop_events(self) -> list[CallEvent]:
        """What happened since the last call, in order; clears the queue."""
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` must be called, or None."""
        timers = [t for t in (self._prospect_deadline, self._glare_retry_at) if t is not None]
        return min(timers, default=None)

    @property
    def legs_alive(self) -> bool:
        """True while either leg is not yet over."""
        return (
            self._rep_state is not LegState.TERMINATED
            or self._prospect_state is not LegState.TERMINATED
        )

    @property
    def rep_record(self) -> LegRecord:
        """A snapshot of the rep leg."""
        return self._rep_record

    @property
    def prospect_record(self) -> LegRecord:
        """A snapshot of the prospect leg."""
        return self._prospect_record

    # -- inputs -------------------------------------------------------------------------------

    def prospect_sent(self, now: float, *, trunk: str | None = None) -> None:
        """The prospect's INVITE went out through ``trunk`` (again, after a trunk failover)."""
        self._prospect_record = replace(self._prospect_record, invite_sent_at=now, trunk=trunk)
        self._event(CallEventKind.PROSPECT_INVITED, now, leg=self.prospect_leg, trunk=trunk)

    def prospect_ringing(self, now: float, *, status: int = 180) -> None:
        """A provisional response arrived on the prospect leg."""
        previous = self._prospect_state
        self._prospect_state = advance_leg(previous, LegInput.PROVISIONAL)
        if previous is LegState.CALLING and self._prospect_record.ringing_at is None:
            self._prospect_record = replace(self._prospect_record, ringing_at=now)
            self._event(CallEventKind.PROSPECT_RINGING, now, leg=self.prospect_leg, status=status)

    def prospect_answered(self, sdp: bytes, now: float, *, status: int = 200) -> None:
        """The prospect's 2xx with its answer ``sdp`` arrived (and was ACKed)."""
        self._prospect_state = advance_leg(self._prospect_state, LegInput.ANSWER)
        self._prospect_record = replace(
            self._prospect_record,
            final_status=status,
            answered_at=now,
            acked_at=now,
            remote_sdp=sdp,
        )
        if self.state is not BridgeState.DIALING:
            # The 2xx crossed our CANCEL (rep hung up, timeout, shutdown): hang it up.
            self._hang_up_prospect(now, result=LegResult.ANSWERED_LATE)
            return
        self._prospect_deadline = None
        self.prospect_answered_at = now
        self._prospect_record = replace(self._prospect_record, result=LegResult.ANSWERED)
        self._event(CallEventKind.PROSPECT_ANSWERED, now, leg=self.prospect_leg, status=status)
        self._go(BridgeInput.PROSPECT_ANSWERED)
        answer1 = _parse(sdp)
        if answer1 is None:
            self._fail_bridge(now, BridgeInput.REP_REINVITE_FAILED)
            return
        offer2 = self._rep_dialog.next_offer(_explicit_directions(answer1))
        self._send_reinvite(Reinvite(leg=self.rep_leg, offer=offer2))

    def prospect_failed(
        self,
        now: float,
        *,
        status: int | None = None,
        result: LegResult | None = None,
    ) -> None:
        """The prospect's INVITE ended without a 2xx (``status`` None: timeout/transport)."""
        previous = self._prospect_state
        self._prospect_state = advance_leg(previous, LegInput.FAILURE)
        if previous is LegState.TERMINATED:
            return
        if result is None:
            if previous is LegState.CANCELLING:
                # Decided when we cancelled (no answer, rep hung up, shutdown).
                result = self._prospect_record.result
            else:
                result = classify_final_status(status)
        self._end_prospect(now, result=result, status=status)
        if self.state is BridgeState.DIALING:
            self._go(BridgeInput.PROSPECT_FAILED)
            self._prospect_deadline = None
            self._finish(now, _prospect_call_result(result, status), Party.PROSPECT)
            self._hang_up_rep(now)

    def reinvite_answered(self, leg: Leg, sdp: bytes, now: float) -> None:
        """The 2xx to our re-INVITE on ``leg`` arrived with the peer's new answer ``sdp``."""
        if self.state is BridgeState.ENDED:
            return
        if leg == self.rep_leg and self.state is BridgeState.REINVITING_REP:
            self._rep_record = replace(self._rep_record, remote_sdp=sdp)
            answer2 = _parse(sdp)
            if answer2 is None:
                self._fail_bridge(now, BridgeInput.REP_REINVITE_FAILED)
                return
            assert self._rep_answer0 is not None
            if _media_addresses(answer2) != _media_addresses(self._rep_answer0):
                self._go(BridgeInput.REP_MEDIA_MOVED)
                offer = self._prospect_dialog.next_offer(_explicit_directions(answer2))
                self._send_reinvite(Reinvite(leg=self.prospect_leg, offer=offer))
                return
            self._go(BridgeInput.REP_REINVITE_OK)
            self._bridged(now)
        elif leg == self.prospect_leg and self.state is BridgeState.REINVITING_PROSPECT:
            self._prospect_record = replace(self._prospect_record, remote_sdp=sdp)
            self._go(BridgeInput.PROSPECT_REINVITE_OK)
            self._bridged(now)
        else:
            raise CallStateError(f"no re-INVITE is pending on {leg} in state {self.state.name}")

    def reinvite_failed(self, leg: Leg, now: float, *, status: int | None = None) -> None:
        """Our re-INVITE on ``leg`` got a final non-2xx (``status`` None: timed out)."""
        if self.state is BridgeState.ENDED:
            return
        expected = self.rep_leg if self.state is BridgeState.REINVITING_REP else self.prospect_leg
        if leg != expected or self._pending_reinvite is None:
            raise CallStateError(f"no re-INVITE is pending on {leg} in state {self.state.name}")
        if status == 491 and self._glare_retries == 0:
            self._go(BridgeInput.REINVITE_GLARE)
            self._glare_retries += 1
            self._glare_retry_at = now + self.settings.glare_retry_s
            return
        failed = (
            BridgeInput.REP_REINVITE_FAILED
            if leg == self.rep_leg
            else BridgeInput.PROSPECT_REINVITE_FAILED
        )
        self._fail_bridge(now, failed)

    def leg_ended(self, leg: Leg, now: float) -> None:
        """The peer of ``leg`` hung up (BYE), or its dialog died."""
        if leg == self.rep_leg:
            self._rep_state = advance_leg(self._rep_state, LegInput.REMOTE_BYE)
            if self._rep_record.ended_at is None:
                self._rep_record = replace(self._rep_record, ended_at=now)
            if self.state is BridgeState.ENDED:
                return
            was = self.state
            self._go(BridgeInput.REP_BYE)
            if was is BridgeState.DIALING:
                self._finish(now, CallResult.REP_HUNG_UP, Party.REP)
                self._cancel_prospect(now, result=LegResult.CANCELLED)
            else:
                result = (
                    CallResult.COMPLETED if was is BridgeState.BRIDGED else (CallResult.REP_HUNG_UP)
                )
                self._finish(now, result, Party.REP)
                self._hang_up_prospect(now, result=LegResult.ANSWERED)
        elif leg == self.prospect_leg:
            previous = self._prospect_state
            self._prospect_state = advance_leg(previous, LegInput.REMOTE_BYE)
            if previous is not LegState.TERMINATED:
                self._prospect_record = replace(self._prospect_record, ended_at=now)
            if self.state is BridgeState.ENDED:
                return
            was = self.state
            self._go(BridgeInput.PROSPECT_BYE)
            result = (
                CallResult.COMPLETED
                if was is BridgeState.BRIDGED
                else (CallResult.PROSPECT_NO_ANSWER)
            )
            self._finish(now, result, Party.PROSPECT)
            self._hang_up_rep(now)
        else:
            raise CallStateError(f"{leg} is not a leg of this bridge")

    def abort(self, now: float) -> None:
        """End both legs (shutdown): CANCEL the prospect while it rings, BYE what is answered."""
        if self.state is BridgeState.ENDED:
            return
        was = self.state
        self._go(BridgeInput.ABORT)
        self._finish(
            now,
            CallResult.COMPLETED if was is BridgeState.BRIDGED else CallResult.ABORTED,
            Party.DAEMON,
        )
        if was is BridgeState.DIALING:
            self._cancel_prospect(now, result=LegResult.CANCELLED)
        else:
            self._hang_up_prospect(now, result=LegResult.ANSWERED)
        self._hang_up_rep(now)

    def handle_timer(self, now: float) -> None:
        """Act on the prospect ring timeout and the glare retry when they are due."""
        if self._prospect_deadline is not None and now >= self._prospect_deadline:
            self._prospect_deadline = None
            if self.state is BridgeState.DIALING:
                self._go(BridgeInput.PROSPECT_TIMEOUT)
                self._finish(now, CallResult.PROSPECT_NO_ANSWER, Party.DAEMON)
                self._cancel_prospect(now, result=LegResult.NO_ANSWER)
                self._hang_up_rep(now)
        if self._glare_retry_at is not None and now >= self._glare_retry_at:
            self._glare_retry_at = None
            if self.state is not BridgeState.ENDED and self._pending_reinvite is not None:
                self._commands.append(self._pending_reinvite)

    # -- internals ----------------------------------------------------------------------------

    def _go(self, event: BridgeInput) -> None:
        self.state = transition(self.state, event)

    def _event(
        self,
        kind: CallEventKind,
        now: float,
        *,
        leg: Leg | None = None,
        status: int | None = None,
        result: LegResult | None = None,
        trunk: str | None = None,
    ) -> None:
        self._events.append(
            CallEvent(
                kind=kind,
                at=now,
                leg=leg,
                rep_id=self._rep_record.rep_id,
                status=status,
                result=result,
                trunk=trunk,
            )
        )

    def _send_reinvite(self, command: Reinvite) -> None:
        self._pending_reinvite = command
        if command.leg == self.rep_leg:
            self._rep_record = replace(self._rep_record, local_sdp=command.offer)
        else:
            self._prospect_record = replace(self._prospect_record, local_sdp=command.offer)
        self._commands.append(command)

    def _bridged(self, now: float) -> None:
        self._pending_reinvite = None
        self.bridged_at = now
        self._event(CallEventKind.BRIDGED, now)

    def _fail_bridge(self, now: float, event: BridgeInput) -> None:
        self._go(event)
        self._pending_reinvite = None
        self._glare_retry_at = None
        self._finish(now, CallResult.BRIDGE_FAILED, Party.DAEMON)
        self._hang_up_prospect(now, result=LegResult.ANSWERED)
        self._hang_up_rep(now)

    def _finish(self, now: float, result: CallResult, ended_by: Party) -> None:
        self.result = result
        self.ended_by = ended_by
        self.ended_at = now

    def _hang_up_rep(self, now: float) -> None:
        if self._rep_state is LegState.ANSWERED:
            self._rep_state = advance_leg(self._rep_state, LegInput.HANG_UP)
            self._commands.append(HangUpLeg(leg=self.rep_leg))
            self._rep_record = replace(self._rep_record, ended_at=now)

    def _hang_up_prospect(self, now: float, *, result: LegResult) -> None:
        if self._prospect_state is LegState.ANSWERED:
            self._prospect_state = advance_leg(self._prospect_state, LegInput.HANG_UP)
            self._commands.append(HangUpLeg(leg=self.prospect_leg))
            if self._prospect_record.result is LegResult.PENDING or result is (
                LegResult.ANSWERED_LATE
            ):
                self._end_prospect(now, result=result, status=None)
            else:
                self._prospect_record = replace(self._prospect_record, ended_at=now)

    def _cancel_prospect(self, now: float, *, result: LegResult) -> None:
        if self._prospect_state in (LegState.CALLING, LegState.RINGING):
            self._prospect_state = advance_leg(self._prospect_state, LegInput.CANCEL)
            self._prospect_deadline = None
            # Decided now; the 487 that follows only fills in the final status.
            self._prospect_record = replace(self._prospect_record, cancelled_at=now, result=result)
            self._commands.append(CancelLeg(leg=self.prospect_leg))

    def _end_prospect(self, now: float, *, result: LegResult, status: int | None) -> None:
        self._prospect_record = replace(
            self._prospect_record,
            result=result,
            final_status=status if status is not None else self._prospect_record.final_status,
            ended_at=now,
        )
        if result is not LegResult.ANSWERED:
            self._event(
                CallEventKind.PROSPECT_LEG_ENDED,
                now,
                leg=self.prospect_leg,
                status=status,
                result=result,
            )


# -- the whole call -------------------------------------------------------------------------


class CallFlow:
    """The sans-I/O life of one lead's call: ring the plan, bridge the winner to the prospect.

    Drivers: the application (the constructor starts ringing; :meth:`abort`), leg events
    with ``now`` for any leg (rep or prospect; the flow routes them), and the timer
    (:meth:`get_timer` / :meth:`handle_timer`). Outputs: :meth:`pop_commands` (a
    :data:`CallCommand` each) and :meth:`pop_events`; :attr:`outcome` is set, and the last
    event is ``CALL_ENDED``, once the call is decided and every leg is over.

    ``media_address`` is the daemon's address written in placeholder offers; ``session_id``
    seeds their ``o=`` session ids (rep leg *i* uses ``session_id + i``).
    """

    def __init__(
        self,
        plan: RingPlan,
        *,
        now: float,
        media_address: str,
        session_id: int,
        settings: BridgeSettings | None = None,
    ) -> None:
        self.plan = plan
        self.started_at = now
        self.settings = settings or BridgeSettings()
        self._media_address = media_address
        self._session_id = session_id
        self.outcome: CallOutcome | None = None
        self.bridge: Bridge | None = None
        self._commands: list[CallCommand] = []
        self._events: list[CallEvent] = []
        self.ring = RingSession(plan, now=now, make_offer=self._offer_for)
        self._drain(now)

    def _offer_for(self, leg: Leg) -> bytes:
        return placeholder_offer(self._media_address, session_id=str(self._session_id + leg.index))

    # -- outputs ------------------------------------------------------------------------------

    def pop_commands(self) -> list[CallCommand]:
        """What the SIP side must do now, in order; clears the queue."""
        commands, self._commands = self._commands, []
        return commands

    def pop_events(self) -> list[CallEvent]:
        """What happened since the last call, in order; clears the queue."""
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` must be called, or None."""
        timers = [self.ring.get_timer()]
        if self.bridge is not None:
            timers.append(self.bridge.get_timer())
        return min((t for t in timers if t is not None), default=None)

    @property
    def finished(self) -> bool:
        """True once :attr:`outcome` is set."""
        return self.outcome is not None

    @property
    def winner(self) -> RingTarget | None:
        """The rep who answered first, if any."""
        return self.ring.target(self.ring.winner) if self.ring.winner is not None else None

    def target_of(self, leg: Leg) -> RingTarget:
        """The rep target of a rep leg."""
        return self.ring.target(leg)

    # -- inputs -------------------------------------------------------------------------------

    def leg_sent(
        self, leg: Leg, now: float, *, trunk: str | None = None, offer: bytes | None = None
    ) -> None:
        """The INVITE of ``leg`` went out (through ``trunk`` when not sent directly); ``offer``
        when a rep INVITE carried another offer than the flow's (press-1 media)."""
        if leg.kind is LegKind.PROSPECT:
            self._bridge().prospect_sent(now, trunk=trunk)
        else:
            self.ring.leg_sent(leg, now, trunk=trunk, offer=offer)
        self._drain(now)

    def leg_accepted(self, leg: Leg, now: float) -> None:
        """Press-1: the rep of ``leg`` pressed 1 (see :meth:`RingSession.leg_accepted`)."""
        self.ring.leg_accepted(leg, now)
        self._drain(now)

    def leg_declined(self, leg: Leg, now: float, *, result: LegResult = LegResult.DECLINED) -> None:
        """Press-1: the rep of ``leg`` pressed another key (:meth:`RingSession.leg_declined`)."""
        self.ring.leg_declined(leg, now, result=result)
        self._drain(now)

    def decline(self, leg: Leg, now: float) -> bool:
        """The rep of ``leg`` declined from the console (:meth:`RingSession.decline`)."""
        declined = self.ring.decline(leg, now)
        self._drain(now)
        return declined

    def leg_voicemail(self, leg: Leg, now: float) -> None:
        """Press-1: treat ``leg`` as voicemail now (:meth:`RingSession.leg_voicemail`)."""
        self.ring.leg_voicemail(leg, now)
        self._drain(now)

    def leg_ringing(self, leg: Leg, now: float, *, status: int = 180) -> None:
        """A provisional response arrived on ``leg``."""
        if leg.kind is LegKind.PROSPECT:
            self._bridge().prospect_ringing(now, status=status)
        else:
            self.ring.leg_ringing(leg, now, status=status)
        self._drain(now)

    def leg_answered(self, leg: Leg, sdp: bytes, now: float, *, status: int = 200) -> None:
        """The INVITE of ``leg`` got a 2xx with ``sdp`` (already ACKed by the SIP layer)."""
        if leg.kind is LegKind.PROSPECT:
            self._bridge().prospect_answered(sdp, now, status=status)
        else:
            self.ring.leg_answered(leg, sdp, now, status=status)
        self._drain(now)

    def leg_failed(
        self,
        leg: Leg,
        now: float,
        *,
        status: int | None = None,
        result: LegResult | None = None,
    ) -> None:
        """The INVITE of ``leg`` ended without a 2xx (``status`` None: timeout/transport)."""
        if leg.kind is LegKind.PROSPECT:
            self._bridge().prospect_failed(now, status=status, result=result)
        elif self.bridge is not None and leg == self.bridge.rep_leg:
            # The winner's dialog died (e.g. its re-INVITE timed out): same as a hang-up.
            self.bridge.leg_ended(leg, now)
        else:
            self.ring.leg_failed(leg, now, status=status, result=result)
        self._drain(now)

    def leg_ended(self, leg: Leg, now: float) -> None:
        """The peer of an answered ``leg`` sent BYE, or the dialog died."""
        if self.bridge is not None and leg in (self.bridge.rep_leg, self.bridge.prospect_leg):
            self.bridge.leg_ended(leg, now)
        else:
            self.ring.leg_ended(leg, now)
        self._drain(now)

    def reinvite_answered(self, leg: Leg, sdp: bytes, now: float) -> None:
        """Our re-INVITE on ``leg`` got a 2xx carrying ``sdp``."""
        self._bridge().reinvite_answered(leg, sdp, now)
        self._drain(now)

    def reinvite_failed(self, leg: Leg, now: float, *, status: int | None = None) -> None:
        """Our re-INVITE on ``leg`` failed (``status`` None: timed out)."""
        self._bridge().reinvite_failed(leg, now, status=status)
        self._drain(now)

    def abort(self, now: float) -> None:
        """End the call (shutdown): cancel ringing legs, hang up answered ones."""
        self.ring.abort(now)
        if self.bridge is not None:
            self.bridge.abort(now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        """Act on every timer due at ``now``."""
        self.ring.handle_timer(now)
        if self.bridge is not None:
            self.bridge.handle_timer(now)
        self._drain(now)

    # -- internals ----------------------------------------------------------------------------

    def _bridge(self) -> Bridge:
        if self.bridge is None:
            raise CallStateError("no rep has answered: there is no bridge yet")
        return self.bridge

    def _drain(self, now: float) -> None:
        """Move commands and events out of the parts, start the bridge when a rep has won,
        and settle the outcome once everything is over."""
        self._commands.extend(self.ring.pop_commands())
        self._events.extend(self.ring.pop_events())
        winner = self.ring.winner
        if winner is not None and self.bridge is None:
            record = self.ring.record(winner)
            assert record.local_sdp is not None and record.remote_sdp is not None
            self.bridge = Bridge(
                rep_leg=winner,
                rep_record=record,
                rep_offer=record.local_sdp,
                rep_answer=record.remote_sdp,
                prospect_number=self.plan.prospect_number,
                caller_id=self.plan.caller_id,
                now=now,
                settings=self.settings,
            )
        if self.bridge is not None:
            self._commands.extend(self.bridge.pop_commands())
            self._events.extend(self.bridge.pop_events())
        if self.outcome is None:
            self._settle(now)

    def _settle(self, now: float) -> None:
        ring = self.ring
        bridge = self.bridge
        if ring.legs_alive:
            return
        if bridge is not None:
            if bridge.result is None or bridge.legs_alive:
                return
            result, ended_by = bridge.result, bridge.ended_by or Party.DAEMON
        else:
            ring_result = ring.result
            if ring_result is None:
                return
            result = ring_result
            ended_by = Party.DAEMON
        self.outcome = self._outcome(now, result, ended_by)
        self._events.append(
            CallEvent(
                kind=CallEventKind.CALL_ENDED,
                at=now,
                call_result=result,
                ended_by=ended_by,
                rep_id=self.winner.rep_id if self.winner is not None else None,
            )
        )

    def _outcome(self, now: float, result: CallResult, ended_by: Party) -> CallOutcome:
        records: list[LegRecord] = []
        for record in self.ring.records():
            if self.bridge is not None and record.leg == self.bridge.rep_leg:
                records.append(self.bridge.rep_record)
            else:
                records.append(record)
        prospect: LegRecord | None = None
        if self.bridge is not None and self.bridge.dialed:
            prospect = self.bridge.prospect_record
            records.append(prospect)
        winner_leg = self.ring.winner
        winner_record = self.bridge.rep_record if self.bridge is not None else None
        return CallOutcome(
            result=result,
            ended_by=ended_by,
            winner_rep_id=self.winner.rep_id if self.winner is not None else None,
            winner_leg=winner_leg,
            legs=_sorted(records),
            started_at=self.started_at,
            rep_answered_at=winner_record.answered_at if winner_record is not None else None,
            prospect_invited_at=prospect.invite_sent_at if prospect is not None else None,
            prospect_ringing_at=prospect.ringing_at if prospect is not None else None,
            prospect_answered_at=prospect.answered_at if prospect is not None else None,
            bridged_at=self.bridge.bridged_at if self.bridge is not None else None,
            ended_at=now,
        )


def _sorted(records: Iterable[LegRecord]) -> tuple[LegRecord, ...]:
    return tuple(sorted(records, key=lambda r: (r.leg.kind is LegKind.PROSPECT, r.leg.index)))
