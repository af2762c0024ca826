"""What happened to a call: per-leg records, the event stream and the final outcome.

Everything here is a plain value. The state machines (:mod:`dialer.calls.ringing`,
:mod:`dialer.calls.bridge`) produce them; the pipeline consumes them to write the lead
timeline as things happen (:class:`CallEvent`) and to settle the lead at the end
(:class:`CallOutcome`).

Times are floats on the clock the caller passes in as ``now`` (``loop.time()`` in the daemon,
a script in tests). :class:`CallEvent` also carries ``wall_at``, filled in by the asyncio
controller, so the pipeline can write real timestamps without knowing the monotonic clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialer.domain import LeadStatus

__all__ = [
    "CallEvent",
    "CallEventKind",
    "CallOutcome",
    "CallResult",
    "Leg",
    "LegKind",
    "LegRecord",
    "LegResult",
    "Party",
    "classify_final_status",
]


class LegKind(enum.StrEnum):
    """Which side of the 3PCC call a leg belongs to."""

    #: A call from the daemon to a rep's phone.
    REP = "rep"
    #: The call from the daemon to the prospect through a trunk.
    PROSPECT = "prospect"


@dataclass(frozen=True, slots=True, order=True)
class Leg:
    """Identity of one leg (one INVITE dialog) inside one call: ``rep-0``, ``prospect-0``."""

    kind: LegKind
    index: int

    def __str__(self) -> str:
        return f"{self.kind.value}-{self.index}"


class LegResult(enum.StrEnum):
    """How a leg ended. The names are the failure names of DESIGN §4."""

    #: The leg is still alive (only seen in snapshots taken mid-call).
    PENDING = "pending"
    #: Answered and used: the winning rep, or the prospect who picked up.
    ANSWERED = "answered"
    #: 486 Busy Here / 600 Busy Everywhere.
    BUSY = "busy"
    #: Rang until its ring timeout (or the plan's deadline) without an answer.
    NO_ANSWER = "no_answer"
    #: 603 Decline: the person pressed "reject".
    REJECTED = "rejected"
    #: 408 / 480 / 404 / 503 and friends, or a transport error: the phone could not be reached.
    UNREACHABLE = "unreachable"
    #: The trunk kept challenging (401/407) after the digest retry: wrong credentials.
    AUTH_FAILED = "auth_failed"
    #: No trunk capacity: every trunk full and the waiting line full, or every trunk down.
    TRUNK_BUSY = "trunk_busy"
    #: Any other final failure.
    FAILED = "failed"
    #: CANCELled by the daemon (another rep answered, the plan ended, or shutdown).
    CANCELLED = "cancelled"
    #: Answered after another leg had already won; the daemon hung it up (ACK + BYE).
    ANSWERED_LATE = "answered_late"
    #: Press-1 mode: picked up but pressed no key within the accept timeout (a voicemail box,
    #: most likely); the daemon hung up.
    VOICEMAIL = "voicemail"
    #: Press-1 mode: picked up and pressed another key than 1, or hung up on the prompt.
    DECLINED = "declined"


#: Final SIP statuses that mean the phone could not be reached (DESIGN §4 "unreachable").
_UNREACHABLE_STATUSES = frozenset({404, 408, 410, 480, 484, 502, 503, 504, 604})


def classify_final_status(status: int | None) -> LegResult:
    """Name a non-2xx final response (None: transport error or transaction timeout).

    >>> [classify_final_status(s).value for s in (486, 603, 408, None)]
    ['busy', 'rejected', 'unreachable', 'unreachable']
    """
    if status is None or status in _UNREACHABLE_STATUSES:
        return LegResult.UNREACHABLE
    if status in (486, 600):
        return LegResult.BUSY
    if status == 603:
        return LegResult.REJECTED
    if status in (401, 407):
        return LegResult.AUTH_FAILED
    if status == 487:
        return LegResult.CANCELLED
    return LegResult.FAILED


class CallResult(enum.StrEnum):
    """How a whole call ended; :attr:`lead_status` maps it onto the lead's status."""

    #: Rep and prospect were bridged, and the call has ended.
    COMPLETED = "completed"
    #: No rep answered before the plan or its deadline ran out.
    REPS_NO_ANSWER = "reps_no_answer"
    #: The prospect's phone rang until the prospect ring timeout.
    PROSPECT_NO_ANSWER = "prospect_no_answer"
    #: The prospect was busy (486/600) or declined (603).
    PROSPECT_BUSY = "prospect_busy"
    #: The prospect's number could not be reached or the trunk failed the call.
    PROSPECT_FAILED = "prospect_failed"
    #: The rep answered, then hung up before the prospect answered.
    REP_HUNG_UP = "rep_hung_up"
    #: The trunk rejected our credentials.
    TRUNK_AUTH_FAILED = "trunk_auth_failed"
    #: No trunk capacity for the prospect leg.
    TRUNK_BUSY = "trunk_busy"
    #: Both parties answered but the media could not be connected (re-INVITE refused).
    BRIDGE_FAILED = "bridge_failed"
    #: Ended by the daemon (shutdown or an explicit abort) before the two were bridged.
    ABORTED = "aborted"

    @property
    def lead_status(self) -> LeadStatus | None:
        """The lead status this result settles, or None when the lead should be retried
        (an abort on shutdown: another daemon, or this one after restart, picks it up)."""
        return _LEAD_STATUS[self]


_LEAD_STATUS: dict[CallResult, LeadStatus | None] = {
    CallResult.COMPLETED: LeadStatus.COMPLETED,
    CallResult.REPS_NO_ANSWER: LeadStatus.REPS_NO_ANSWER,
    CallResult.PROSPECT_NO_ANSWER: LeadStatus.PROSPECT_NO_ANSWER,
    CallResult.PROSPECT_BUSY: LeadStatus.PROSPECT_BUSY,
    CallResult.PROSPECT_FAILED: LeadStatus.FAILED,
    CallResult.REP_HUNG_UP: LeadStatus.FAILED,
    CallResult.TRUNK_AUTH_FAILED: LeadStatus.FAILED,
    CallResult.TRUNK_BUSY: LeadStatus.FAILED,
    CallResult.BRIDGE_FAILED: LeadStatus.FAILED,
    CallResult.ABORTED: None,
}


class Party(enum.StrEnum):
    """Who ended a call."""

    REP = "rep"
    PROSPECT = "prospect"
    DAEMON = "daemon"


class CallEventKind(enum.StrEnum):
    """What a :class:`CallEvent` reports. Each value's comment says when it fires."""

    #: An INVITE went out to a rep (``leg``, ``rep_id``, ``trunk`` when via a trunk).
    REP_INVITED = "rep_invited"
    #: A rep's phone is ringing (first 180/183 on that leg).
    REP_RINGING = "rep_ringing"
    #: Press-1 mode: a rep picked up and hears the prompt (``leg``, ``rep_id``); not the win
    #: yet, the plan goes on ringing the others.
    REP_PROMPTED = "rep_prompted"
    #: A rep answered and won the plan (``leg``, ``rep_id``). The prospect is dialled now.
    #: In press-1 mode: the rep pressed 1.
    REP_ANSWERED = "rep_answered"
    #: Press-1 mode: a rep picked up but pressed no key in time, so the leg was treated as
    #: voicemail and hung up (``leg``, ``rep_id``). A ``rep_leg_ended`` with result
    #: ``voicemail`` follows (that one releases the rep).
    REP_VOICEMAIL = "rep_voicemail"
    #: A rep leg that did not win ended (``result``, ``status``): release that rep.
    REP_LEG_ENDED = "rep_leg_ended"
    #: The prospect's INVITE went out (``leg``, ``trunk``).
    PROSPECT_INVITED = "prospect_invited"
    #: The prospect's phone is ringing.
    PROSPECT_RINGING = "prospect_ringing"
    #: The prospect answered; the rep is being re-INVITEd with the prospect's media.
    PROSPECT_ANSWERED = "prospect_answered"
    #: The prospect leg ended without being bridged (``result``, ``status``).
    PROSPECT_LEG_ENDED = "prospect_leg_ended"
    #: Rep and prospect exchanged media descriptions: they can hear each other.
    BRIDGED = "bridged"
    #: The call is over (``call_result``, ``ended_by``). Always the last event of a call.
    CALL_ENDED = "call_ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent:
    """One thing that happened to a call, streamed to the pipeline as it happens."""

    kind: CallEventKind
    #: When, on the caller's clock (``now``).
    at: float
    leg: Leg | None = None
    rep_id: str | None = None
    #: SIP status that caused the event (180, 200, 486, ...), when there was one.
    status: int | None = None
    result: LegResult | None = None
    call_result: CallResult | None = None
    ended_by: Party | None = None
    trunk: str | None = None
    #: Wall-clock time, filled in by the asyncio controller (None in sans-I/O use).
    wall_at: datetime | None = None

    def timeline_data(self) -> dict[str, Any]:
        """The event as JSON-ready data for a ``lead_events`` row (None fields left out)."""
        data: dict[str, Any] = {
            "leg": str(self.leg) if self.leg is not None else None,
            "rep_id": self.rep_id,
            "status": self.status,
            "result": self.result.value if self.result is not None else None,
            "call_result": self.call_result.value if self.call_result is not None else None,
            "ended_by": self.ended_by.value if self.ended_by is not None else None,
            "trunk": self.trunk,
        }
        return {key: value for key, value in data.items() if value is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRecord:
    """Everything known about one leg: who, the SIP statuses and the timestamps.

    ``local_sdp`` is the last description the daemon sent on this leg (INVITE, re-INVITE);
    ``remote_sdp`` the last one the peer sent (its 2xx). After a bridge the rep leg's
    ``local_sdp`` is the prospect's media and the prospect leg's ``local_sdp`` the rep's.
    """

    leg: Leg
    #: Rep id for rep legs; None for the prospect.
    rep_id: str | None
    #: The rep's URI, or the prospect's E.164 number.
    target: str
    trunk: str | None = None
    result: LegResult = LegResult.PENDING
    #: Final status of the INVITE (200, 486, 487, ...); None while pending or on timeout.
    final_status: int | None = None
    invite_sent_at: float | None = None
    ringing_at: float | None = None
    answered_at: float | None = None
    #: When the 2xx was ACKed (the SIP layer ACKs a 2xx before reporting it).
    acked_at: float | None = None
    cancelled_at: float | None = None
    ended_at: float | None = None
    local_sdp: bytes | None = None
    remote_sdp: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallOutcome:
    """The typed result of one call (one ring plan), final once :attr:`result` is set."""

    result: CallResult
    ended_by: Party
    #: The rep who answered first (None when no rep answered).
    winner_rep_id: str | None
    winner_leg: Leg | None
    legs: tuple[LegRecord, ...]
    started_at: float
    rep_answered_at: float | None = None
    prospect_invited_at: float | None = None
    prospect_ringing_at: float | None = None
    prospect_answered_at: float | None = None
    bridged_at: float | None = None
    ended_at: float

    def leg(self, leg: Leg) -> LegRecord:
        """The record of ``leg``; KeyError when the call had no such leg."""
        for record in self.legs:
            if record.leg == leg:
                return record
        raise KeyError(str(leg))

    @property
    def rep_legs(self) -> tuple[LegRecord, ...]:
        """Rep leg records, in the order the legs were started."""
        return tuple(r for r in self.legs if r.leg.kind is LegKind.REP)

    @property
    def rep_voicemail(self) -> dict[str, int]:
        """Press-1 mode: how many of each rep's legs went to voicemail, by rep id (reps with
        none are left out)."""
        counts: dict[str, int] = {}
        for record in self.rep_legs:
            if record.result is LegResult.VOICEMAIL and record.rep_id is not None:
                counts[record.rep_id] = counts.get(record.rep_id, 0) + 1
        return counts

    @property
    def prospect_leg(self) -> LegRecord | None:
        """The (last) prospect leg record, or None when the prospect was never dialled."""
        prospects = [r for r in self.legs if r.leg.kind is LegKind.PROSPECT]
        return prospects[-1] if prospects else None
