"""Events the :class:`~sip.ua.UserAgent` gives the application (pulled with ``next_event()``).

Every event is a frozen, slotted, keyword-only dataclass; its docstring says when it fires.
Call events carry ``leg_id``, a stable handle the UA returns from ``invite()`` (or announces
in :class:`IncomingCall`) and accepts in every call API, plus the SIP ``call_id`` for logs.

Life cycle of a leg, as the application sees it:

* outgoing: ``invite()`` -> zero or more :class:`CallProgress` -> either :class:`CallAnswered`
  (then, later, exactly one :class:`CallTerminated`) or exactly one :class:`CallRejected`.
  Nothing follows the final event of a leg.
* incoming: :class:`IncomingCall` -> ``accept()``/``reject()`` by the application ->
  :class:`AckReceived` once the caller confirms; it ends with one :class:`CallTerminated`
  (remote BYE, our BYE completed, caller cancelled, ACK never came) unless the application
  rejected it (then no further event).

Bodies are opaque bytes: the UA does not read SDP.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .message import Request, Response

__all__ = [
    "AckReceived",
    "CallAnswered",
    "CallEvent",
    "CallProgress",
    "CallRejected",
    "CallTerminated",
    "Event",
    "IncomingCall",
    "InfoReceived",
    "ReInviteCompleted",
    "ReInviteReceived",
    "RequestCompleted",
    "TerminationCause",
]


class TerminationCause(enum.Enum):
    """Why an established (or incoming) call ended; carried by :class:`CallTerminated`."""

    #: The remote party sent BYE (we answered 200).
    REMOTE_BYE = "remote_bye"
    #: Our BYE completed (any final response, or its transaction timed out).
    LOCAL_BYE = "local_bye"
    #: Our CANCEL lost the race with a 2xx: the UA acknowledged the 2xx and sent BYE at once
    #: (RFC 3261 §9.1 race; no :class:`CallAnswered` was emitted for this leg).
    ANSWERED_AFTER_CANCEL = "answered_after_cancel"
    #: The caller cancelled an incoming call before we answered (we sent 487).
    REMOTE_CANCEL = "remote_cancel"
    #: We answered an incoming call but no ACK came within 64*T1; the UA sent BYE
    #: (RFC 3261 §13.3.1.4).
    ACK_TIMEOUT = "ack_timeout"
    #: An in-dialog request of ours got 408/481 or timed out: the dialog is gone
    #: (RFC 3261 §12.2.1.2); the UA sent BYE when it still made sense.
    DIALOG_LOST = "dialog_lost"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent(Event):
    """Base class of the events about one call leg."""

    #: The handle returned by ``invite()`` or announced by :class:`IncomingCall`.
    leg_id: str
    #: The SIP Call-ID of the leg (for logs and correlation with peers' traces).
    call_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallProgress(CallEvent):
    """A provisional response (101-199) to our INVITE arrived (``100 Trying`` is not reported).

    ``status`` 180 means ringing; 183 with a body is early media (``body`` is the SDP).
    Fires for every provisional response received (a retransmitted 180 fires again); none
    fires once the application asked to cancel the leg.
    """

    status: int
    reason: str
    body: bytes
    content_type: str | None
    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(CallEvent):
    """The first 2xx to our INVITE arrived: the call is established.

    If the INVITE carried an offer, the UA has already sent the ACK and ``needs_ack`` is
    False. If the INVITE had no body (delayed offer), ``body`` is the remote offer, no ACK was
    sent, and the application must call ``UserAgent.ack(leg_id, now, body=answer)`` promptly
    (the remote side retransmits its 2xx until then, for at most 64*T1).
    """

    status: int
    reason: str
    body: bytes
    content_type: str | None
    needs_ack: bool
    response: Response


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(CallEvent):
    """Our INVITE ended without a call: a final non-2xx, a timeout or a transport failure.

    ``response`` is None when the UA made the outcome up itself: ``status`` 408 for Timer B
    (no answer at all), 503 for a transport error (RFC 3261 §8.1.3.1). A 401/407 is only
    reported when the UA could not answer it (no credentials, the same nonce refused twice,
    or ``max_auth_attempts`` exceeded). After ``cancel()`` this normally carries 487.
    """

    status: int
    reason: str
    response: Response | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTerminated(CallEvent):
    """The call is over: the last event of an answered (or incoming, accepted) leg.

    ``status`` is the final status of our BYE when ``cause`` is ``LOCAL_BYE`` (408 when it
    timed out), otherwise None.
    """

    cause: TerminationCause
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingCall(CallEvent):
    """An out-of-dialog INVITE arrived; the UA has sent ``100 Trying``.

    Answer with ``ring()`` (180/183), then ``accept(leg_id, now, body=...)`` or
    ``reject(leg_id, now, status)``. ``body`` is the offer (empty for a delayed offer: then
    the 2xx must carry the offer and the answer comes in :class:`AckReceived`).
    """

    from_uri: str
    from_display: str | None
    to_uri: str
    request_uri: str
    body: bytes
    content_type: str | None
    #: The whole INVITE, for headers such as ``Call-Info`` or ``X-Lead-Id``.
    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class AckReceived(CallEvent):
    """The ACK for a 2xx we sent (to an INVITE or re-INVITE) arrived: the exchange is complete.

    ``body`` is the answer when our 2xx carried the offer (delayed offer), else usually empty.
    """

    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReInviteReceived(CallEvent):
    """The peer sent a re-INVITE inside an established dialog.

    Answer it with ``answer_reinvite(leg_id, now, status=200, body=...)``; ``body`` is the new
    offer (empty: the peer asks us for an offer). Glare is handled by the UA (491, RFC 3261
    §14.2) and never reaches the application.
    """

    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReInviteCompleted(CallEvent):
    """Our re-INVITE got its final response (after the UA's own 491 retries, RFC 3261 §14.1).

    On 2xx the UA has sent the ACK unless ``needs_ack`` (re-INVITE without a body: ``body`` is
    the peer's offer and the application calls ``ack(leg_id, now, body=answer)``). A non-2xx
    leaves the session as it was (RFC 3261 §14.1), except 408/481, which also end the call
    (a :class:`CallTerminated` with cause ``DIALOG_LOST`` follows).
    """

    status: int
    reason: str
    body: bytes
    content_type: str | None
    needs_ack: bool
    response: Response | None


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoReceived(CallEvent):
    """The peer sent INFO inside the dialog (e.g. DTMF relay); the UA answered 200."""

    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestCompleted(Event):
    """A request we sent with ``options()``, ``send_options()`` or ``send_info()`` got its final
    response (after the UA's own digest retry, if any).

    ``response`` is None when the transaction timed out (``status`` 408) or the transport
    failed (``status`` 503). ``leg_id`` is the leg for in-dialog requests, else None.
    """

    request_id: str
    method: str
    leg_id: str | None
    status: int
    reason: str
    response: Response | None
