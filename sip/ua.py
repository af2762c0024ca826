"""The sans-I/O user agent: transactions + dialogs + digest retry behind one object.

:class:`UserAgent` is to SIP what aioquic's ``QuicConnection`` is to QUIC: bytes and ``now`` in,
bytes, events and a deadline out. It never reads a clock, opens a socket or calls the
application; :mod:`sip.aio` drives it on an event loop, tests drive it by hand.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .auth import Credentials, build_authorization, choose_challenges
from .config import SipConfig
from .dialog import Dialog, DialogId, DialogState
from .errors import LocalProtocolError, ParseError, RemoteProtocolError
from .events import (
    AckReceived,
    CallAnswered,
    CallProgress,
    CallRejected,
    CallTerminated,
    Event,
    IncomingCall,
    InfoReceived,
    ReInviteCompleted,
    ReInviteReceived,
    RequestCompleted,
    TerminationCause,
)
from .headers import Headers, quote, split_header_values
from .message import Request, Response, make_response, parse_message
from .transaction import (
    Address,
    ClientKey,
    ClientTransaction,
    ServerKey,
    ServerTransaction,
    State,
    client_key,
    server_key,
)
from .uri import URI, SipURI, parse_uri

__all__ = [
    "CallState",
    "IdGenerator",
    "SequentialIds",
    "UaStats",
    "UserAgent",
    "uri_address",
]

#: Methods RFC 3261 and its common extensions define: a UA that does not implement one of
#: them answers 405 (with Allow); any other method gets 501 (RFC 3261 §8.2.1, §21.5.2).
KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "PRACK",
        "UPDATE",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    }
)

#: RFC 3261 §14.1: the owner of the Call-ID waits 2.1-4 s before retrying after a 491, the
#: other side 0-2 s.
GLARE_DELAY_OWNER = (2.1, 4.0)
GLARE_DELAY_OTHER = (0.0, 2.0)


class IdGenerator(Protocol):
    """Source of the identifiers the UA puts on the wire (injected: tests are deterministic).

    :mod:`sip.aio` supplies one backed by :mod:`secrets`; :class:`SequentialIds` is the
    deterministic one for tests and simulations.
    """

    def branch(self) -> str:
        """A new Via branch, globally unique, starting with ``z9hG4bK`` (RFC 3261 §8.1.1.7)."""
        ...

    def tag(self) -> str:
        """A new From/To tag (at least 32 random bits, §19.3)."""
        ...

    def call_id(self) -> str:
        """A new globally unique Call-ID (§8.1.1.4)."""
        ...

    def cnonce(self) -> str:
        """A new digest client nonce (RFC 7616 §3.4)."""
        ...

    def jitter(self, low: float, high: float) -> float:
        """A random delay in ``[low, high]`` (re-INVITE glare back-off, §14.1)."""
        ...


class SequentialIds:
    """Deterministic :class:`IdGenerator`: ``prefix`` plus a counter. Not for production
    (identifiers must be unguessable and unique across restarts)."""

    def __init__(self, prefix: str = "t") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)
        self._jitter_step = 0

    def branch(self) -> str:
        """``z9hG4bK<prefix>b<n>``."""
        return f"z9hG4bK{self._prefix}b{next(self._counter)}"

    def tag(self) -> str:
        """``<prefix>t<n>``."""
        return f"{self._prefix}t{next(self._counter)}"

    def call_id(self) -> str:
        """``<prefix>c<n>@dialer``."""
        return f"{self._prefix}c{next(self._counter)}@dialer"

    def cnonce(self) -> str:
        """``<prefix>n<n>``."""
        return f"{self._prefix}n{next(self._counter)}"

    def jitter(self, low: float, high: float) -> float:
        """The midpoint of the range, so scripted tests know the delay."""
        return low + (high - low) / 2


@dataclass(slots=True)
class UaStats:
    """Cheap counters of what the UA dropped or refused (no logging on the hot path)."""

    #: Datagrams that did not parse (a 400 was sent when the request could be answered).
    malformed: int = 0
    #: Responses matching no client transaction (dropped, RFC 6026 §7.1... §18.1.2).
    unmatched_responses: int = 0
    #: ACKs matching no transaction and no dialog awaiting one (dropped).
    unmatched_acks: int = 0
    #: Requests refused with 503 because ``max_transactions`` was reached.
    overload_rejections: int = 0
    #: Messages received and handled.
    messages_received: int = 0
    #: Additional 2xx from forked INVITEs (ACKed and BYEd).
    forked_2xx: int = 0


class CallState(enum.Enum):
    """Where a call leg is, as the UA tracks it."""

    #: Outgoing: INVITE sent, no final response.
    INVITING = "inviting"
    #: Outgoing: the application cancelled; CANCEL sent or waiting for a provisional response.
    CANCELLING = "cancelling"
    #: Incoming: IncomingCall emitted, no final response sent.
    OFFERED = "offered"
    #: Incoming: 2xx sent, waiting for the ACK.
    ANSWERING = "answering"
    #: The dialog is confirmed.
    ESTABLISHED = "established"
    #: We sent BYE; waiting for its response.
    TERMINATING = "terminating"
    #: Over (the final event was emitted).
    ENDED = "ended"


class _Uas2xx:
    """A 2xx to an INVITE we retransmit until the ACK comes (RFC 3261 §13.3.1.4)."""

    __slots__ = ("destination", "give_up_at", "interval", "is_reinvite", "next_at", "seq", "wire")

    def __init__(
        self,
        *,
        wire: bytes,
        destination: Address,
        seq: int,
        now: float,
        config: SipConfig,
        is_reinvite: bool,
    ) -> None:
        self.wire = wire
        self.destination = destination
        self.seq = seq
        self.interval = config.t1
        self.next_at = now + config.t1
        self.give_up_at = now + config.session_ack_timeout
        self.is_reinvite = is_reinvite


class _PendingAck:
    """A 2xx whose ACK waits for the application's answer (delayed offer)."""

    __slots__ = ("dialog", "is_reinvite", "seq", "to_tag")

    def __init__(self, dialog: Dialog, seq: int, to_tag: str, *, is_reinvite: bool) -> None:
        self.dialog = dialog
        self.seq = seq
        self.to_tag = to_tag
        self.is_reinvite = is_reinvite


class _Leg:
    """One call leg: our INVITE (UAC) or the peer's INVITE (UAS), and the dialog it made."""

    __slots__ = (
        "__weakref__",
        "acks",
        "auth_attempts",
        "bye_after_ack",
        "call_id",
        "cancel_at",
        "cancel_reason",
        "cancel_sent",
        "credentials",
        "deadline",
        "destination",
        "dialog",
        "glare_retries",
        "glare_retry_at",
        "incoming_reinvite",
        "invite_txn",
        "is_uac",
        "leg_id",
        "nonce_counts",
        "pending_ack",
        "reinvite_body",
        "reinvite_cancelled",
        "reinvite_content_type",
        "reinvite_extra",
        "reinvite_txn",
        "scheduled",
        "server_txn",
        "state",
        "uas_2xx",
    )

    def __init__(self, leg_id: str, call_id: str, *, is_uac: bool) -> None:
        self.leg_id = leg_id
        self.call_id = call_id
        self.is_uac = is_uac
        self.state = CallState.INVITING if is_uac else CallState.OFFERED
        self.invite_txn: ClientTransaction | None = None
        self.server_txn: ServerTransaction | None = None
        self.destination: Address | None = None
        self.dialog: Dialog | None = None
        self.acks: dict[tuple[str, int], tuple[bytes, Address]] = {}
        self.cancel_reason: str | None = None
        self.cancel_sent = False
        self.cancel_at: float | None = None
        self.credentials: Credentials | None = None
        self.auth_attempts = 0
        self.nonce_counts: dict[str, int] = {}
        self.pending_ack: _PendingAck | None = None
        self.uas_2xx: _Uas2xx | None = None
        self.bye_after_ack = False
        self.reinvite_txn: ClientTransaction | None = None
        self.reinvite_body = b""
        self.reinvite_content_type: str | None = None
        self.reinvite_extra: tuple[tuple[str, str], ...] = ()
        self.glare_retries = 0
        self.glare_retry_at: float | None = None
        self.incoming_reinvite: ServerTransaction | None = None
        self.reinvite_cancelled = False
        self.deadline: float | None = None
        self.scheduled: float | None = None

    def update_deadline(self) -> None:
        deadline = self.glare_retry_at
        cancel_at = self.cancel_at
        if (
            cancel_at is not None
            and self.state is CallState.INVITING
            and (deadline is None or cancel_at < deadline)
        ):
            deadline = cancel_at
        pending = self.uas_2xx
        if pending is not None:
            when = min(pending.next_at, pending.give_up_at)
            if deadline is None or when < deadline:
                deadline = when
        self.deadline = deadline


class _OutRequest:
    """A stand-alone request of the application (OPTIONS, INFO) awaiting its final response."""

    __slots__ = ("auth_attempts", "credentials", "leg", "method", "nonce_counts", "request_id")

    def __init__(
        self, request_id: str, method: str, leg: _Leg | None, credentials: Credentials | None
    ) -> None:
        self.request_id = request_id
        self.method = method
        self.leg = leg
        self.credentials = credentials
        self.auth_attempts = 0
        self.nonce_counts: dict[str, int] = {}


_Timed = ClientTransaction | ServerTransaction | _Leg
# Legs sit in the timer heap through a weak reference: a leg that ended must not be kept
# alive until a far deadline (the invite_timeout safety net is minutes away).
_TimerEntry = tuple[float, int, "ClientTransaction | ServerTransaction | weakref.ref[_Leg]"]


def _timer_target(entry: _TimerEntry) -> _Timed | None:
    target = entry[2]
    if isinstance(target, weakref.ref):
        return target()
    return target


def uri_address(uri: URI) -> Address:
    """The transport address a SIP URI points to: its host (an IP literal; IPv6 brackets
    removed) and port (5060, or 5061 for sips, when absent). No DNS (RFC 3263) is done."""
    if not isinstance(uri, SipURI):
        raise LocalProtocolError(f"cannot route to non-SIP URI {uri}")
    host = uri.param("maddr") or uri.host
    if host.startswith("["):
        host = host[1:-1]
    port = uri.port if uri.port is not None else (5061 if uri.is_secure else 5060)
    return (host, port)


def _host_for_uri(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class UserAgent:
    """A SIP user agent (UAC and UAS) without I/O.

    It is driven by three kinds of input, and by nothing else:

    1. **application calls** - :meth:`invite`, :meth:`cancel`, :meth:`bye`, :meth:`hangup`,
       :meth:`ack`, :meth:`reinvite`, :meth:`send_info`, :meth:`options`, :meth:`ring`,
       :meth:`accept`, :meth:`reject`, :meth:`answer_reinvite`; each takes ``now``;
    2. **network input** - :meth:`receive_datagram` (bytes from UDP) or
       :meth:`receive_message` (a message a stream parser framed), and
       :meth:`transport_error` when a destination cannot be reached;
    3. **the timer** - :meth:`handle_timer` at (or after) the time :meth:`get_timer` returned.

    After each input the driver sends :meth:`datagrams_to_send`, re-arms its single timer from
    :meth:`get_timer` and drains :meth:`next_event`. Events never call back into the
    application. Automatic behaviour: ACK of every 2xx to an INVITE that carried an offer
    (and re-ACK of retransmissions); ACK + BYE of extra forked 2xx and of a 2xx that beat our
    CANCEL; digest retry of 401/407; 200 to BYE/INFO/OPTIONS; 491 on re-INVITE glare and
    retry of our own; 481/405/501/420/400 where RFC 3261 says so.

    ``local`` is the address in our Via/Contact (what peers must reach); ``config.transport``
    says whether it is UDP or TCP.
    """

    def __init__(
        self,
        config: SipConfig,
        *,
        local: Address,
        ids: IdGenerator,
        contact_user: str = "dialer",
    ) -> None:
        self.config = config
        self.local = local
        self.ids = ids
        self.stats = UaStats()
        self._transport_token = "TCP" if config.reliable else "UDP"
        host = _host_for_uri(local[0])
        self._sent_by = f"{host}:{local[1]}"
        transport_param = ";transport=tcp" if config.reliable else ""
        self._contact = f"<sip:{contact_user}@{host}:{local[1]}{transport_param}>"
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self._client_txns: dict[ClientKey, ClientTransaction] = {}
        self._server_txns: dict[ServerKey, ServerTransaction] = {}
        self._legs: dict[str, _Leg] = {}
        self._dialogs: dict[DialogId, _Leg] = {}
        self._timers: list[_TimerEntry] = []
        self._timer_seq = itertools.count()
        self._leg_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        common: list[tuple[str, str]] = [("Max-Forwards", str(config.max_forwards))]
        if config.user_agent:
            common.append(("User-Agent", config.user_agent))
        common.extend(config.extra_request_headers)
        self._common_headers: tuple[tuple[str, str], ...] = tuple(common)
        self._allow = ", ".join(config.allow)

    # ------------------------------------------------------------------ driver interface

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Every message to send now, with its destination; the list is handed over."""
        out = self._outbox[:]
        del self._outbox[:]
        return out

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        events = self._events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: no timer armed)."""
        heap = self._timers
        while heap:
            entry = heap[0]
            target = _timer_target(entry)
            if target is not None and target.scheduled == entry[0]:
                return entry[0]
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now`` (retransmissions, timeouts, glare retries)."""
        heap = self._timers
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            target = _timer_target(entry)
            if target is None or target.scheduled != entry[0]:
                continue
            target.scheduled = None
            if isinstance(target, _Leg):
                self._leg_timer(target, now)
            elif isinstance(target, ClientTransaction):
                if target.on_timer(now):
                    self._client_timeout(target, now, 408, "Request Timeout")
                self._after_client(target)
            else:
                target.on_timer(now)
                self._after_server(target)

    @property
    def active_legs(self) -> int:
        """Legs not yet ended (for metrics and tests)."""
        return len(self._legs)

    @property
    def active_transactions(self) -> int:
        """Live client + server transactions."""
        return len(self._client_txns) + len(self._server_txns)

    def call_state(self, leg_id: str) -> CallState:
        """The state of a leg (ENDED once the UA forgot it)."""
        leg = self._legs.get(leg_id)
        return leg.state if leg is not None else CallState.ENDED

    def dialog(self, leg_id: str) -> Dialog | None:
        """The dialog of a leg, once it has one (read-only use)."""
        leg = self._legs.get(leg_id)
        return leg.dialog if leg is not None else None

    # ------------------------------------------------------------------ scheduling

    def _schedule(self, target: _Timed) -> None:
        deadline = target.deadline
        if deadline is not None and deadline != target.scheduled:
            target.scheduled = deadline
            ref = weakref.ref(target) if isinstance(target, _Leg) else target
            heapq.heappush(self._timers, (deadline, next(self._timer_seq), ref))
        elif deadline is None:
            target.scheduled = None

    def _after_client(self, txn: ClientTransaction) -> None:
        if txn.state is State.TERMINATED:
            txn.scheduled = None
            if self._client_txns.get(txn.key) is txn:
                del self._client_txns[txn.key]
            owner = txn.owner
            if isinstance(owner, _Leg) and txn.key[1] == "INVITE":
                self._invite_finished(owner, txn)
        else:
            self._schedule(txn)

    @staticmethod
    def _invite_finished(leg: _Leg, txn: ClientTransaction) -> None:
        """One of the leg's INVITE transactions (the INVITE or a re-INVITE) ended. Once the
        dialog is up that is Timer M, 64*T1 after the first 2xx (RFC 6026 §8.4): the UAS has
        stopped retransmitting its 2xx, so the ACK kept to answer them and the transaction
        (its request, responses and wire bytes) are let go; a call held for an hour must not
        keep its set-up alive. A leg that ended (cancelled, rejected) drops it too: leg and
        transaction refer to each other, and a cycle waits for a full garbage collection."""
        if leg.state in (CallState.INVITING, CallState.CANCELLING):
            return  # its outcome is still being dispatched from the transaction
        if txn is leg.reinvite_txn:
            return  # a re-INVITE still waiting for its answer (its owner clears it)
        seq = txn.request.cseq.seq
        for key in [key for key in leg.acks if key[1] == seq]:
            del leg.acks[key]
        if txn is leg.invite_txn:
            leg.invite_txn = None

    def _after_server(self, txn: ServerTransaction) -> None:
        if txn.state is State.TERMINATED:
            txn.scheduled = None
            if self._server_txns.get(txn.key) is txn:
                del self._server_txns[txn.key]
        else:
            self._schedule(txn)

    def _check_capacity(self) -> None:
        if len(self._client_txns) + len(self._server_txns) >= self.config.max_transactions:
            raise LocalProtocolError("too many transactions in flight (max_transactions)")

    def _start_client(
        self, request: Request, destination: Address, now: float, owner: object, branch: str
    ) -> ClientTransaction:
        txn = ClientTransaction(
            request,
            destination,
            config=self.config,
            now=now,
            outbox=self._outbox,
            owner=owner,
            branch=branch,
        )
        self._client_txns[txn.key] = txn
        self._schedule(txn)
        return txn

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/{self._transport_token} {self._sent_by};branch={branch};rport"

    # ------------------------------------------------------------------ application: UAC

    def invite(
        self,
        target: str | URI,
        now: float,
        *,
        from_uri: str,
        from_display: str | None = None,
        to_uri: str | None = None,
        to_display: str | None = None,
        body: bytes = b"",
        content_type: str = "application/sdp",
        extra_headers: Sequence[tuple[str, str]] = (),
        destination: Address | None = None,
        route: Sequence[str] = (),
        auth: Credentials | None = None,
    ) -> str:
        """Send an INVITE to ``target`` (Request-URI); returns the leg id.

        ``destination`` is the next hop (an outbound proxy or trunk): when given, every
        request of this leg, in-dialog ones included, is sent there; otherwise requests go to
        the first ``route`` entry, else to the Request-URI host (an IP literal: no DNS).
        ``route`` pre-loads Route header values (``"<sip:proxy;lr>"``). ``auth`` answers
        401/407 challenges. An empty ``body`` is a delayed offer: :class:`CallAnswered` then
        has ``needs_ack`` and the application must call :meth:`ack` with the answer.
        """
        self._check_capacity()
        uri = parse_uri(target) if isinstance(target, str) else target
        ids = self.ids
        call_id = ids.call_id()
        from_value = f"<{from_uri}>;tag={ids.tag()}"
        if from_display is not None:
            from_value = f"{quote(from_display)} {from_value}"
        to_value = f"<{to_uri if to_uri is not None else uri}>"
        if to_display is not None:
            to_value = f"{quote(to_display)} {to_value}"
        branch = ids.branch()
        items: list[tuple[str, str]] = [("Via", self._via(branch))]
        items.extend(("Route", r) for r in route)
        items += [
            ("From", from_value),
            ("To", to_value),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", self._contact),
        ]
        items.extend(self._common_headers)
        items.extend(extra_headers)
        if body:
            items.append(("Content-Type", content_type))
        request = Request("INVITE", uri, Headers(items), body)
        if destination is None:
            destination = uri_address(_route_target(route[0])) if route else uri_address(uri)
        leg_id = f"L{next(self._leg_ids)}"
        leg = _Leg(leg_id, call_id, is_uac=True)
        leg.destination = destination
        leg.credentials = auth
        self._legs[leg_id] = leg
        leg.invite_txn = self._start_client(request, destination, now, leg, branch)
        if self.config.invite_timeout is not None:
            leg.cancel_at = now + self.config.invite_timeout
            leg.update_deadline()
            self._schedule(leg)
        return leg_id

    def cancel(self, leg_id: str, now: float, *, reason: str | None = None) -> bool:
        """Cancel an outgoing call not yet answered (RFC 3261 §9.1).

        The CANCEL goes out at once if a provisional response arrived, otherwise as soon as
        one does. ``reason`` is a ``Reason`` header value (RFC 3326), e.g.
        ``'SIP;cause=200;text="Call completed elsewhere"'``. If the leg is already answered
        this hangs up with BYE instead; if a 2xx races the CANCEL the UA ACKs and BYEs it
        (:class:`CallTerminated` with ``ANSWERED_AFTER_CANCEL``). Returns False when there is
        nothing to cancel (unknown or ended leg, or already cancelling).
        """
        leg = self._legs.get(leg_id)
        if leg is None or not leg.is_uac:
            return False
        if leg.state is CallState.INVITING:
            leg.state = CallState.CANCELLING
            leg.cancel_reason = reason
            txn = leg.invite_txn
            if txn is not None and txn.state is State.PROCEEDING:
                self._send_cancel(leg, txn, now)
            return True
        if leg.state is CallState.ESTABLISHED:
            return self.bye(leg_id, now, reason=reason)
        return False

    def _send_cancel(self, leg: _Leg, invite_txn: ClientTransaction, now: float) -> None:
        """RFC 3261 §9.1: CANCEL with the INVITE's Request-URI, Call-ID, To, From, CSeq
        number and its top Via (same branch), plus its Route header fields."""
        invite = invite_txn.request
        headers = invite.headers
        items: list[tuple[str, str]] = [("Via", str(invite.top_via))]
        items.extend(("Route", r) for r in headers.get_all("Route"))
        items += [
            ("From", headers.get("From") or ""),
            ("To", headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} CANCEL"),
        ]
        items.extend(self._common_headers)
        if leg.cancel_reason:
            items.append(("Reason", leg.cancel_reason))
        cancel = Request("CANCEL", invite.uri, Headers(items))
        leg.cancel_sent = True
        self._start_client(cancel, invite_txn.destination, now, leg, invite_txn.key[0])
        invite_txn.arm_cancel_timeout(now)
        self._schedule(invite_txn)

    def ack(
        self,
        leg_id: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str = "application/sdp",
    ) -> bool:
        """Send the ACK of a 2xx that carried an offer (our INVITE or re-INVITE had no body),
        with the answer in ``body``. Returns False when the leg already ended (the peer hung
        up meanwhile); raises :class:`LocalProtocolError` when no ACK is due on a live leg."""
        leg = self._legs.get(leg_id)
        if leg is None:
            return False
        pending = leg.pending_ack
        if pending is None:
            raise LocalProtocolError(f"no ACK is due on leg {leg_id}")
        leg.pending_ack = None
        self._send_2xx_ack(
            leg, pending.dialog, pending.seq, pending.to_tag, body=body, content_type=content_type
        )
        return True

    def _send_2xx_ack(
        self,
        leg: _Leg,
        dialog: Dialog,
        seq: int,
        to_tag: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> None:
        """RFC 3261 §13.2.2.4: the ACK of a 2xx is an in-dialog request with the INVITE's CSeq
        number, a new branch, built by the UA core; cached to answer 2xx retransmissions."""
        ack = dialog.create_request(
            "ACK",
            via=self._via(self.ids.branch()),
            seq=seq,
            body=body,
            content_type=content_type if body else None,
            extra_headers=self._common_headers,
        )
        destination = self._dialog_destination(leg, dialog)
        wire = ack.serialize()
        leg.acks[(to_tag, seq)] = (wire, destination)
        self._outbox.append((wire, destination))

    def _dialog_destination(self, leg: _Leg, dialog: Dialog) -> Address:
        if leg.is_uac and leg.destination is not None:
            return leg.destination
        return uri_address(dialog.next_hop_uri())

    def bye(
        self,
        leg_id: str,
        now: float,
        *,
        reason: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Hang up an established call with BYE (RFC 3261 §15).

        :class:`CallTerminated` (``LOCAL_BYE``) follows when the BYE completes. If our 2xx is
        still waiting for its ACK, the BYE is sent when the ACK arrives (§15). A due delayed
        offer ACK is sent first (without a body). Returns False when the leg is not
        established (use :meth:`hangup` to end a leg in any state).
        """
        leg = self._legs.get(leg_id)
        if leg is None:
            return False
        if leg.state is CallState.ANSWERING:
            leg.bye_after_ack = True
            return True
        if leg.state is not CallState.ESTABLISHED or leg.dialog is None:
            return False
        if leg.pending_ack is not None:
            pending = leg.pending_ack
            leg.pending_ack = None
            self._send_2xx_ack(leg, pending.dialog, pending.seq, pending.to_tag)
        extra = list(extra_headers)
        if reason:
            extra.append(("Reason", reason))
        self._send_bye(leg, leg.dialog, now, extra)
        leg.state = CallState.TERMINATING
        leg.glare_retry_at = None
        leg.update_deadline()
        self._schedule(leg)
        return True

    def _send_bye(
        self,
        leg: _Leg,
        dialog: Dialog,
        now: float,
        extra: Sequence[tuple[str, str]] = (),
        *,
        notify: bool = True,
    ) -> None:
        branch = self.ids.branch()
        request = dialog.create_request(
            "BYE", via=self._via(branch), extra_headers=(*self._common_headers, *extra)
        )
        dialog.terminate()
        self._dialogs.pop(dialog.id, None)
        destination = self._dialog_destination(leg, dialog)
        self._start_client(request, destination, now, leg if notify else None, branch)

    def hangup(self, leg_id: str, now: float, *, reason: str | None = None) -> bool:
        """End a leg whatever its state: CANCEL (outgoing, unanswered), BYE (established, or
        after the ACK for an answered incoming call), ``480`` (incoming, unanswered).
        Returns False when the leg is unknown or already ending."""
        leg = self._legs.get(leg_id)
        if leg is None:
            return False
        state = leg.state
        if state is CallState.INVITING:
            return self.cancel(leg_id, now, reason=reason)
        if state is CallState.OFFERED:
            self.reject(leg_id, now, 480)
            return True
        if state is CallState.ESTABLISHED or state is CallState.ANSWERING:
            return self.bye(leg_id, now, reason=reason)
        return False

    def reinvite(
        self,
        leg_id: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str = "application/sdp",
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send a re-INVITE in an established dialog (a new offer; empty ``body`` asks the
        peer for one). :class:`ReInviteCompleted` reports the outcome; a 491 is retried after
        the §14.1 back-off. Raises :class:`LocalProtocolError` if the leg is not established
        or an INVITE transaction is already in progress in either direction (§14.1)."""
        leg = self._legs.get(leg_id)
        if leg is None or leg.state is not CallState.ESTABLISHED or leg.dialog is None:
            raise LocalProtocolError(f"leg {leg_id} is not established")
        if (
            leg.reinvite_txn is not None
            or leg.incoming_reinvite is not None
            or leg.glare_retry_at is not None
            or leg.pending_ack is not None
            or leg.uas_2xx is not None
        ):
            raise LocalProtocolError(f"an INVITE transaction is in progress on leg {leg_id}")
        leg.reinvite_body = body
        leg.reinvite_content_type = content_type
        leg.reinvite_extra = tuple(extra_headers)
        leg.glare_retries = 0
        self._send_reinvite(leg, now)

    def _send_reinvite(self, leg: _Leg, now: float) -> None:
        dialog = leg.dialog
        assert dialog is not None
        branch = self.ids.branch()
        request = dialog.create_request(
            "INVITE",
            via=self._via(branch),
            body=leg.reinvite_body,
            content_type=leg.reinvite_content_type if leg.reinvite_body else None,
            extra_headers=(*self._common_headers, *leg.reinvite_extra),
        )
        destination = self._dialog_destination(leg, dialog)
        leg.reinvite_txn = self._start_client(request, destination, now, leg, branch)

    def send_info(
        self,
        leg_id: str,
        now: float,
        *,
        body: bytes,
        content_type: str,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> str:
        """Send INFO in an established dialog; returns a request id for
        :class:`RequestCompleted`."""
        return self._in_dialog_request(
            leg_id, "INFO", now, body=body, content_type=content_type, extra_headers=extra_headers
        )

    def send_options(self, leg_id: str, now: float) -> str:
        """Send OPTIONS inside an established dialog (a liveness probe); returns a request id
        for :class:`RequestCompleted`."""
        return self._in_dialog_request(leg_id, "OPTIONS", now)

    def _in_dialog_request(
        self,
        leg_id: str,
        method: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> str:
        self._check_capacity()
        leg = self._legs.get(leg_id)
        if leg is None or leg.state is not CallState.ESTABLISHED or leg.dialog is None:
            raise LocalProtocolError(f"leg {leg_id} is not established")
        dialog = leg.dialog
        branch = self.ids.branch()
        request = dialog.create_request(
            method,
            via=self._via(branch),
            body=body,
            content_type=content_type,
            extra_headers=(*self._common_headers, *extra_headers),
        )
        request_id = f"R{next(self._request_ids)}"
        owner = _OutRequest(request_id, method, leg, leg.credentials)
        self._start_client(request, self._dialog_destination(leg, dialog), now, owner, branch)
        return request_id

    def options(
        self,
        target: str | URI,
        now: float,
        *,
        from_uri: str,
        destination: Address | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        auth: Credentials | None = None,
    ) -> str:
        """Send an out-of-dialog OPTIONS (trunk keep-alive); returns a request id for
        :class:`RequestCompleted`."""
        self._check_capacity()
        uri = parse_uri(target) if isinstance(target, str) else target
        ids = self.ids
        branch = ids.branch()
        items: list[tuple[str, str]] = [
            ("Via", self._via(branch)),
            ("From", f"<{from_uri}>;tag={ids.tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", ids.call_id()),
            ("CSeq", "1 OPTIONS"),
            ("Contact", self._contact),
            ("Accept", "application/sdp"),
        ]
        items.extend(self._common_headers)
        items.extend(extra_headers)
        request = Request("OPTIONS", uri, Headers(items))
        request_id = f"R{next(self._request_ids)}"
        owner = _OutRequest(request_id, "OPTIONS", None, auth)
        if destination is None:
            destination = uri_address(uri)
        self._start_client(request, destination, now, owner, branch)
        return request_id

    # ------------------------------------------------------------------ application: UAS

    def _offered_leg(self, leg_id: str) -> tuple[_Leg, ServerTransaction] | None:
        """The unanswered incoming leg; None if it already ended (the caller cancelled: the
        application may still be reacting to IncomingCall); LocalProtocolError otherwise."""
        leg = self._legs.get(leg_id)
        if leg is None:
            return None
        if leg.state is not CallState.OFFERED or leg.server_txn is None:
            raise LocalProtocolError(f"leg {leg_id} is not an unanswered incoming call")
        return leg, leg.server_txn

    def ring(
        self,
        leg_id: str,
        now: float,
        *,
        status: int = 180,
        body: bytes = b"",
        content_type: str = "application/sdp",
    ) -> bool:
        """Send a provisional response (180 Ringing, or 183 with early media SDP). False when
        the leg already ended (see :meth:`accept`)."""
        if not 100 < status < 200:
            raise LocalProtocolError(f"{status} is not a provisional status")
        offered = self._offered_leg(leg_id)
        if offered is None:
            return False
        leg, txn = offered
        headers: list[tuple[str, str]] = [("Contact", self._contact)]
        if body:
            headers.append(("Content-Type", content_type))
        assert leg.dialog is not None
        response = make_response(
            txn.request, status, to_tag=leg.dialog.local_tag, headers=headers, body=body
        )
        txn.send_response(response, now)
        self._after_server(txn)
        return True

    def accept(
        self,
        leg_id: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str = "application/sdp",
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Answer an incoming call with 200 (``body``: the answer, or our offer if the INVITE
        had none). The UA retransmits the 200 until the ACK (:class:`AckReceived`) arrives, and
        sends BYE if it never does (§13.3.1.4).

        Returns False when the leg already ended (the caller cancelled while the application
        was deciding; its :class:`CallTerminated` is queued); raises
        :class:`LocalProtocolError` when the leg is not an unanswered incoming call.
        """
        offered = self._offered_leg(leg_id)
        if offered is None:
            return False
        leg, txn = offered
        dialog = leg.dialog
        assert dialog is not None
        request = txn.request
        headers: list[tuple[str, str]] = [
            ("Record-Route", rr) for rr in request.headers.get_all("Record-Route")
        ]
        headers.append(("Contact", self._contact))
        headers.append(("Allow", self._allow))
        headers.extend(extra_headers)
        if body:
            headers.append(("Content-Type", content_type))
        response = make_response(request, 200, to_tag=dialog.local_tag, headers=headers, body=body)
        wire = response.serialize()
        txn.send_response(response, now, wire=wire)
        self._after_server(txn)
        leg.server_txn = None
        dialog.confirm()
        self._dialogs[dialog.id] = leg
        leg.state = CallState.ANSWERING
        leg.uas_2xx = _Uas2xx(
            wire=wire,
            destination=txn.destination,
            seq=request.cseq.seq,
            now=now,
            config=self.config,
            is_reinvite=False,
        )
        leg.update_deadline()
        self._schedule(leg)
        return True

    def reject(
        self,
        leg_id: str,
        now: float,
        status: int = 486,
        *,
        reason: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Refuse an incoming call with a 300-699 final response; no further event follows.
        False when the leg already ended (see :meth:`accept`)."""
        if not 300 <= status < 700:
            raise LocalProtocolError(f"{status} is not a rejection status")
        offered = self._offered_leg(leg_id)
        if offered is None:
            return False
        leg, txn = offered
        assert leg.dialog is not None
        response = make_response(
            txn.request, status, reason, to_tag=leg.dialog.local_tag, headers=extra_headers
        )
        txn.send_response(response, now)
        self._after_server(txn)
        self._end_leg(leg)
        return True

    def answer_reinvite(
        self,
        leg_id: str,
        now: float,
        *,
        status: int = 200,
        body: bytes = b"",
        content_type: str = "application/sdp",
        reason: str | None = None,
    ) -> bool:
        """Answer the peer's re-INVITE announced by :class:`ReInviteReceived` (200 with the
        answer, or 488 etc. to refuse it). False when the leg already ended, or the peer
        cancelled the re-INVITE (we answered 487); LocalProtocolError when none was received."""
        leg = self._legs.get(leg_id)
        if leg is None:
            return False
        if leg.incoming_reinvite is None or leg.dialog is None:
            if leg.reinvite_cancelled:
                leg.reinvite_cancelled = False
                return False
            raise LocalProtocolError(f"no re-INVITE awaits an answer on leg {leg_id}")
        if status < 200 or status >= 700:
            raise LocalProtocolError(f"{status} is not a final status")
        txn = leg.incoming_reinvite
        leg.incoming_reinvite = None
        headers: list[tuple[str, str]] = []
        if status < 300:
            headers.append(("Contact", self._contact))
            if body:
                headers.append(("Content-Type", content_type))
        response = make_response(
            txn.request, status, reason, headers=headers, body=body if status < 300 else b""
        )
        wire = response.serialize()
        txn.send_response(response, now, wire=wire)
        self._after_server(txn)
        if status < 300:
            leg.uas_2xx = _Uas2xx(
                wire=wire,
                destination=txn.destination,
                seq=txn.request.cseq.seq,
                now=now,
                config=self.config,
                is_reinvite=True,
            )
            leg.update_deadline()
            self._schedule(leg)
        return True

    # ------------------------------------------------------------------ network input

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Feed one UDP datagram from ``addr``. Malformed requests are answered 400 (with the
        parse error as reason phrase) when they carry enough headers to be answered; nothing
        here raises on bad input."""
        if not data.strip():
            return  # CRLF keep-alive (RFC 5626 §4.4.1)
        try:
            message = parse_message(data)
        except ParseError as error:
            self.stats.malformed += 1
            self._answer_malformed(data, addr, error)
            return
        self.receive_message(message, addr, now)

    def receive_message(self, message: Request | Response, addr: Address, now: float) -> None:
        """Feed one parsed message (from a stream transport's framer, or a datagram)."""
        self.stats.messages_received += 1
        try:
            if isinstance(message, Response):
                self._receive_response(message, now)
            else:
                self._receive_request(message, addr, now)
        except (ParseError, RemoteProtocolError) as error:
            # A header the parser accepted lazily turned out malformed (e.g. a bad Via).
            self.stats.malformed += 1
            if isinstance(message, Request) and message.method != "ACK":
                self._answer_stateless(message, addr, error.status_hint, str(error))

    def transport_error(self, addr: Address, now: float) -> None:
        """The transport could not reach ``addr`` (e.g. TCP connect refused): every client
        transaction sending there fails as with a 503 (RFC 3261 §8.1.3.1)."""
        for txn in [t for t in self._client_txns.values() if t.destination == addr]:
            if txn.transport_error(now):
                self._client_timeout(txn, now, 503, "Service Unavailable")
            self._after_client(txn)

    # ------------------------------------------------------------------ responses

    def _receive_response(self, response: Response, now: float) -> None:
        key = client_key(response)
        txn = self._client_txns.get(key) if key is not None else None
        if txn is None:
            self.stats.unmatched_responses += 1
            return
        if txn.receive_response(response, now):
            self._dispatch_response(txn, response, now)
        self._after_client(txn)

    def _dispatch_response(self, txn: ClientTransaction, response: Response, now: float) -> None:
        owner = txn.owner
        method = txn.key[1]
        if isinstance(owner, _OutRequest):
            if response.status >= 200:
                self._out_request_final(owner, txn, response, now)
            return
        if not isinstance(owner, _Leg):
            return  # e.g. the BYE of an extra forked dialog: nobody waits for it
        leg = owner
        if method == "INVITE":
            if txn is leg.invite_txn:
                self._invite_response(leg, txn, response, now)
            elif txn is leg.reinvite_txn or response.status < 300:
                self._reinvite_response(leg, txn, response, now)
        elif method == "BYE" and response.status >= 200:
            if self._retry_with_auth(leg, txn, response, now):
                return
            self._bye_completed(leg, response.status)

    def _invite_response(
        self, leg: _Leg, txn: ClientTransaction, response: Response, now: float
    ) -> None:
        status = response.status
        if status < 200:
            if leg.state is CallState.CANCELLING:
                if not leg.cancel_sent:
                    self._send_cancel(leg, txn, now)
                return
            if status != 100 and leg.state is CallState.INVITING:
                self._events.append(
                    CallProgress(
                        leg_id=leg.leg_id,
                        call_id=leg.call_id,
                        status=status,
                        reason=response.reason,
                        body=response.body,
                        content_type=response.content_type,
                        response=response,
                    )
                )
            return
        if status < 300:
            self._invite_2xx(leg, txn, response, now)
            return
        # 300-699: the transaction already sent the ACK.
        if leg.state is CallState.INVITING and self._retry_with_auth(leg, txn, response, now):
            return
        if leg.state in (CallState.INVITING, CallState.CANCELLING):
            self._events.append(
                CallRejected(
                    leg_id=leg.leg_id,
                    call_id=leg.call_id,
                    status=status,
                    reason=response.reason,
                    response=response,
                )
            )
            self._end_leg(leg)

    def _invite_2xx(
        self, leg: _Leg, txn: ClientTransaction, response: Response, now: float
    ) -> None:
        to_tag = response.to.tag
        if not to_tag:
            self.stats.unmatched_responses += 1
            return
        seq = txn.request.cseq.seq
        cached = leg.acks.get((to_tag, seq))
        if cached is not None:
            self._outbox.append(cached)  # a retransmitted 2xx: ACK it again
            return
        pending = leg.pending_ack
        if pending is not None and pending.to_tag == to_tag and pending.seq == seq:
            return  # the application has not given its answer yet
        first = leg.dialog
        if first is not None or leg.state is not CallState.INVITING:
            # Another fork's 2xx, or a 2xx that raced our CANCEL: ACK it and hang up at once.
            dialog = Dialog.from_uac(txn.request, response, local_contact=self._contact)
            self._send_2xx_ack(leg, dialog, seq, to_tag)
            self._send_bye(leg, dialog, now, notify=False)
            if first is None and leg.state is CallState.CANCELLING:
                leg.dialog = dialog
                self._events.append(
                    CallTerminated(
                        leg_id=leg.leg_id,
                        call_id=leg.call_id,
                        cause=TerminationCause.ANSWERED_AFTER_CANCEL,
                    )
                )
                self._end_leg(leg)
            else:
                self.stats.forked_2xx += 1
            return
        dialog = Dialog.from_uac(txn.request, response, local_contact=self._contact)
        leg.dialog = dialog
        self._dialogs[dialog.id] = leg
        leg.state = CallState.ESTABLISHED
        # An INVITE without an offer gets the offer in the 2xx: the ACK carries the answer.
        needs_ack = not txn.request.body
        if needs_ack:
            leg.pending_ack = _PendingAck(dialog, seq, to_tag, is_reinvite=False)
        else:
            self._send_2xx_ack(leg, dialog, seq, to_tag)
        self._events.append(
            CallAnswered(
                leg_id=leg.leg_id,
                call_id=leg.call_id,
                status=response.status,
                reason=response.reason,
                body=response.body,
                content_type=response.content_type,
                needs_ack=needs_ack,
                response=response,
            )
        )

    def _reinvite_response(
        self, leg: _Leg, txn: ClientTransaction, response: Response, now: float
    ) -> None:
        status = response.status
        dialog = leg.dialog
        if status < 200 or dialog is None:
            return
        seq = txn.request.cseq.seq
        if status < 300:
            to_tag = response.to.tag or dialog.remote_tag
            cached = leg.acks.get((to_tag, seq))
            if cached is not None:
                self._outbox.append(cached)
                return
            if txn is not leg.reinvite_txn:
                return
            leg.reinvite_txn = None
            dialog.update_from_response(response, "INVITE")
            needs_ack = not txn.request.body
            if needs_ack:
                leg.pending_ack = _PendingAck(dialog, seq, to_tag, is_reinvite=True)
            else:
                self._send_2xx_ack(leg, dialog, seq, to_tag)
            self._events.append(
                ReInviteCompleted(
                    leg_id=leg.leg_id,
                    call_id=leg.call_id,
                    status=status,
                    reason=response.reason,
                    body=response.body,
                    content_type=response.content_type,
                    needs_ack=needs_ack,
                    response=response,
                )
            )
            return
        if txn is not leg.reinvite_txn:
            return
        leg.reinvite_txn = None
        if status == 491 and leg.glare_retries < self.config.max_glare_retries:
            leg.glare_retries += 1
            low, high = GLARE_DELAY_OWNER if dialog.is_uac else GLARE_DELAY_OTHER
            leg.glare_retry_at = now + self.ids.jitter(low, high)
            leg.update_deadline()
            self._schedule(leg)
            return
        if self._retry_with_auth(leg, txn, response, now):
            return
        self._reinvite_failed(leg, status, response.reason, response, now)

    def _reinvite_failed(
        self, leg: _Leg, status: int, reason: str, response: Response | None, now: float
    ) -> None:
        self._events.append(
            ReInviteCompleted(
                leg_id=leg.leg_id,
                call_id=leg.call_id,
                status=status,
                reason=reason,
                body=b"",
                content_type=None,
                needs_ack=False,
                response=response,
            )
        )
        if status in (408, 481):
            self._dialog_lost(leg, now, send_bye=status == 408)

    def _dialog_lost(self, leg: _Leg, now: float, *, send_bye: bool) -> None:
        """RFC 3261 §12.2.1.2: a 408 or 481 to an in-dialog request ends the dialog."""
        if leg.state is CallState.ENDED:
            return
        dialog = leg.dialog
        if dialog is not None and dialog.state is not DialogState.TERMINATED:
            if send_bye:
                self._send_bye(leg, dialog, now, notify=False)
            else:
                dialog.terminate()
                self._dialogs.pop(dialog.id, None)
        self._events.append(
            CallTerminated(
                leg_id=leg.leg_id, call_id=leg.call_id, cause=TerminationCause.DIALOG_LOST
            )
        )
        self._end_leg(leg)

    def _bye_completed(self, leg: _Leg, status: int) -> None:
        if leg.state is CallState.TERMINATING:
            self._events.append(
                CallTerminated(
                    leg_id=leg.leg_id,
                    call_id=leg.call_id,
                    cause=TerminationCause.LOCAL_BYE,
                    status=status,
                )
            )
            self._end_leg(leg)

    def _out_request_final(
        self, owner: _OutRequest, txn: ClientTransaction, response: Response, now: float
    ) -> None:
        if self._retry_with_auth(owner, txn, response, now):
            return
        self._events.append(
            RequestCompleted(
                request_id=owner.request_id,
                method=owner.method,
                leg_id=owner.leg.leg_id if owner.leg is not None else None,
                status=response.status,
                reason=response.reason,
                response=response,
            )
        )
        if owner.leg is not None and response.status in (408, 481):
            self._dialog_lost(owner.leg, now, send_bye=response.status == 408)

    def _client_timeout(self, txn: ClientTransaction, now: float, status: int, reason: str) -> None:
        """Timer B/F fired or the transport failed: the TU sees a made-up 408 or 503."""
        owner = txn.owner
        method = txn.key[1]
        if isinstance(owner, _OutRequest):
            self._events.append(
                RequestCompleted(
                    request_id=owner.request_id,
                    method=owner.method,
                    leg_id=owner.leg.leg_id if owner.leg is not None else None,
                    status=status,
                    reason=reason,
                    response=None,
                )
            )
            if owner.leg is not None:
                self._dialog_lost(owner.leg, now, send_bye=status == 408)
            return
        if not isinstance(owner, _Leg):
            return
        leg = owner
        if method == "INVITE":
            if txn is leg.invite_txn and leg.state in (CallState.INVITING, CallState.CANCELLING):
                if leg.state is CallState.CANCELLING and leg.cancel_sent:
                    # §9.1: no final response 64*T1 after CANCEL: consider it cancelled.
                    status, reason = 487, "Request Terminated"
                self._events.append(
                    CallRejected(
                        leg_id=leg.leg_id,
                        call_id=leg.call_id,
                        status=status,
                        reason=reason,
                        response=None,
                    )
                )
                self._end_leg(leg)
            elif txn is leg.reinvite_txn:
                leg.reinvite_txn = None
                self._reinvite_failed(leg, status, reason, None, now)
        elif method == "BYE":
            self._bye_completed(leg, status)

    # ------------------------------------------------------------------ digest retry

    def _retry_with_auth(
        self,
        owner: _Leg | _OutRequest,
        txn: ClientTransaction,
        response: Response,
        now: float,
    ) -> bool:
        """Resend the request with credentials after a 401/407 (RFC 3261 §22.2, RFC 8760).

        A stale nonce (``stale=true``) is retried without counting; a challenge repeating a
        nonce we already answered (not stale) means the credentials were refused.
        """
        status = response.status
        if status not in (401, 407) or owner.credentials is None:
            return False
        if status == 401:
            challenge_header, answer_header = "WWW-Authenticate", "Authorization"
        else:
            challenge_header, answer_header = "Proxy-Authenticate", "Proxy-Authorization"
        challenges = choose_challenges(response.headers.get_raw_values(challenge_header))
        if not challenges:
            return False
        stale = all(c.stale for c in challenges)
        counts = owner.nonce_counts
        if not stale:
            if any(c.nonce in counts for c in challenges):
                return False  # the same nonce came back: the password was refused
            if owner.auth_attempts >= self.config.max_auth_attempts:
                return False
            owner.auth_attempts += 1
        old = txn.request
        # In a dialog the CSeq follows the dialog's counter; the initial INVITE counts alone.
        if isinstance(owner, _Leg):
            dialog = owner.dialog if txn is not owner.invite_txn else None
        else:
            dialog = owner.leg.dialog if owner.leg is not None else None
        seq = dialog.next_seq() if dialog is not None else old.cseq.seq + 1
        branch = self.ids.branch()
        headers = _with_top_via(old.headers, self._via(branch))
        headers.remove(answer_header)
        uri_text = str(old.uri)
        for challenge in challenges:
            nc = counts.get(challenge.nonce, 0) + 1
            counts[challenge.nonce] = nc
            headers.add(
                answer_header,
                build_authorization(
                    challenge,
                    owner.credentials,
                    method=old.method,
                    uri=uri_text,
                    nc=nc,
                    cnonce=self.ids.cnonce(),
                    body=old.body,
                ),
            )
        headers.set("CSeq", f"{seq} {old.method}")
        request = Request(old.method, old.uri, headers, old.body)
        new_txn = self._start_client(request, txn.destination, now, owner, branch)
        if isinstance(owner, _Leg):
            if txn is owner.invite_txn:
                owner.invite_txn = new_txn
            elif txn is owner.reinvite_txn:
                owner.reinvite_txn = new_txn
        return True

    # ------------------------------------------------------------------ requests

    def _receive_request(self, request: Request, addr: Address, now: float) -> None:
        method = request.method
        if method == "ACK":
            self._receive_ack(request, now)
            return
        key = server_key(request)
        txn = self._server_txns.get(key)
        if txn is not None:
            txn.receive_request(request, now)  # a retransmission
            return
        # Touch every header a response copies, so a malformed one fails here (answered 400
        # statelessly by receive_message) and never leaves a half-made transaction behind.
        request.call_id, request.from_, request.to, request.cseq  # noqa: B018
        request, destination = self._response_address(request, addr)
        if len(self._client_txns) + len(self._server_txns) >= self.config.max_transactions:
            self.stats.overload_rejections += 1
            self._send_stateless(request, destination, 503, None, [("Retry-After", "5")])
            return
        txn = ServerTransaction(
            request, destination, config=self.config, outbox=self._outbox, key=key
        )
        self._server_txns[key] = txn
        if method == "CANCEL":
            self._receive_cancel(txn, key, now)
            return
        require = request.headers.get_all("Require")
        if require:
            self._respond(txn, now, 420, headers=[("Unsupported", ", ".join(require))])
            return
        if request.to.tag:
            self._in_dialog(request, txn, now)
        else:
            self._out_of_dialog(request, txn, now)

    def _respond(
        self,
        txn: ServerTransaction,
        now: float,
        status: int,
        reason: str | None = None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        to_tag: str | None = None,
        body: bytes = b"",
    ) -> None:
        request = txn.request
        if to_tag is None and not request.to.tag and status > 100:
            to_tag = self.ids.tag()
        response = make_response(request, status, reason, to_tag=to_tag, headers=headers, body=body)
        txn.send_response(response, now)
        self._after_server(txn)

    def _response_address(self, request: Request, addr: Address) -> tuple[Request, Address]:
        """RFC 3261 §18.2.2 + RFC 3581: where responses to ``request`` go.

        Over TCP: back on the connection it came from. Over UDP: to the source address, and to
        the source port when the top Via asks for ``rport``, else to the sent-by port. The
        request is returned with ``received``/``rport`` added to its top Via when the RFCs
        require it (responses copy that Via).
        """
        via = request.top_via
        rport = via.rport
        if self.config.reliable or rport is not None:
            port = addr[1]
        else:
            port = via.port if via.port is not None else 5060
        host_differs = via.host.strip("[]") != addr[0]
        if rport is not None or host_differs:
            new_via = via.with_param("received", addr[0])
            if rport is not None:
                new_via = new_via.with_param("rport", str(addr[1]))
            headers = _with_top_via(request.headers, str(new_via))
            request = Request(request.method, request.uri, headers, request.body, request.version)
        return request, (addr[0], port)

    def _receive_cancel(self, txn: ServerTransaction, key: ServerKey, now: float) -> None:
        """RFC 3261 §9.2: CANCEL matches the INVITE server transaction by the same rules."""
        invite_txn = self._server_txns.get((key[0], key[1], key[2], "INVITE"))
        leg = invite_txn.owner if invite_txn is not None else None
        if invite_txn is None or not isinstance(leg, _Leg):
            self._respond(txn, now, 481)
            return
        local_tag = leg.dialog.local_tag if leg.dialog is not None else None
        self._respond(txn, now, 200, to_tag=local_tag)
        if invite_txn is leg.incoming_reinvite and invite_txn.state is State.PROCEEDING:
            # A cancelled re-INVITE: 487, the session stays as it was; the application's
            # answer_reinvite() then returns False.
            leg.incoming_reinvite = None
            leg.reinvite_cancelled = True
            self._respond(invite_txn, now, 487)
            return
        if invite_txn.state is State.PROCEEDING and leg.state is CallState.OFFERED:
            self._respond(invite_txn, now, 487, to_tag=local_tag)
            self._events.append(
                CallTerminated(
                    leg_id=leg.leg_id, call_id=leg.call_id, cause=TerminationCause.REMOTE_CANCEL
                )
            )
            self._end_leg(leg)

    def _receive_ack(self, request: Request, now: float) -> None:
        txn = self._server_txns.get(server_key(request))
        if txn is not None and not txn.receive_request(request, now):
            self._after_server(txn)
            return  # the ACK of a non-2xx (or a retransmission): the transaction took it
        from_tag = request.from_.tag
        to_tag = request.to.tag
        if not from_tag or not to_tag:
            self.stats.unmatched_acks += 1
            return
        leg = self._dialogs.get((request.call_id, to_tag, from_tag))
        pending = leg.uas_2xx if leg is not None else None
        if leg is None or pending is None or pending.seq != request.cseq.seq:
            self.stats.unmatched_acks += 1
            return
        leg.uas_2xx = None
        leg.update_deadline()
        self._schedule(leg)
        if leg.state is CallState.ANSWERING:
            leg.state = CallState.ESTABLISHED
        self._events.append(
            AckReceived(
                leg_id=leg.leg_id,
                call_id=leg.call_id,
                body=request.body,
                content_type=request.content_type,
            )
        )
        if leg.bye_after_ack:
            leg.bye_after_ack = False
            self.bye(leg.leg_id, now)

    def _in_dialog(self, request: Request, txn: ServerTransaction, now: float) -> None:
        method = request.method
        to_tag = request.to.tag
        from_tag = request.from_.tag
        assert to_tag is not None
        leg = self._dialogs.get((request.call_id, to_tag, from_tag or ""))
        if leg is None or leg.dialog is None:
            self._respond(txn, now, 481)
            return
        dialog = leg.dialog
        if method not in ("BYE", "INVITE", "INFO", "OPTIONS"):
            self._respond_unsupported(txn, now)
            return
        try:
            dialog.receive_request(request)
        except RemoteProtocolError as error:
            self._respond(txn, now, error.status_hint, str(error))
            return
        if method == "BYE":
            self._respond(txn, now, 200)
            self._dialogs.pop(dialog.id, None)
            dialog.terminate()
            if leg.state is not CallState.ENDED:
                self._events.append(
                    CallTerminated(
                        leg_id=leg.leg_id, call_id=leg.call_id, cause=TerminationCause.REMOTE_BYE
                    )
                )
                self._end_leg(leg)
        elif method == "INVITE":
            if leg.reinvite_txn is not None or leg.pending_ack is not None:
                self._respond(txn, now, 491)  # §14.2: glare
            elif leg.incoming_reinvite is not None or leg.uas_2xx is not None:
                retry = str(self.config.reinvite_retry_after)
                self._respond(txn, now, 500, headers=[("Retry-After", retry)])
            elif leg.state is not CallState.ESTABLISHED:
                self._respond(txn, now, 491)
            else:
                leg.incoming_reinvite = txn
                leg.reinvite_cancelled = False
                txn.owner = leg
                if self.config.send_100_trying:
                    self._respond(txn, now, 100)  # stops the peer's Timer A retransmissions
                self._events.append(
                    ReInviteReceived(
                        leg_id=leg.leg_id,
                        call_id=leg.call_id,
                        body=request.body,
                        content_type=request.content_type,
                    )
                )
        elif method == "INFO":
            self._respond(txn, now, 200)
            self._events.append(
                InfoReceived(
                    leg_id=leg.leg_id,
                    call_id=leg.call_id,
                    body=request.body,
                    content_type=request.content_type,
                )
            )
        else:
            self._respond(txn, now, 200, headers=[("Allow", self._allow)])

    def _respond_unsupported(self, txn: ServerTransaction, now: float) -> None:
        if txn.request.method in KNOWN_METHODS:
            self._respond(txn, now, 405, headers=[("Allow", self._allow)])
        else:
            self._respond(txn, now, 501)

    def _out_of_dialog(self, request: Request, txn: ServerTransaction, now: float) -> None:
        method = request.method
        if method == "INVITE":
            self._incoming_call(request, txn, now)
        elif method == "OPTIONS":
            self._respond(
                txn,
                now,
                200,
                headers=[("Allow", self._allow), ("Accept", "application/sdp")],
            )
        elif method in ("BYE", "INFO"):
            self._respond(txn, now, 481)
        else:
            self._respond_unsupported(txn, now)

    def _incoming_call(self, request: Request, txn: ServerTransaction, now: float) -> None:
        local_tag = self.ids.tag()
        try:
            dialog = Dialog.from_uas(request, local_tag=local_tag, local_contact=self._contact)
        except RemoteProtocolError as error:
            self._respond(txn, now, error.status_hint, str(error))
            return
        leg_id = f"L{next(self._leg_ids)}"
        leg = _Leg(leg_id, request.call_id, is_uac=False)
        leg.dialog = dialog
        leg.server_txn = txn
        txn.owner = leg
        self._legs[leg_id] = leg
        if self.config.send_100_trying:
            self._respond(txn, now, 100)
        from_ = request.from_
        self._events.append(
            IncomingCall(
                leg_id=leg.leg_id,
                call_id=leg.call_id,
                from_uri=str(from_.uri),
                from_display=from_.display_name,
                to_uri=str(request.to.uri),
                request_uri=str(request.uri),
                body=request.body,
                content_type=request.content_type,
                request=request,
            )
        )

    # ------------------------------------------------------------------ leg timers

    def _leg_timer(self, leg: _Leg, now: float) -> None:
        if leg.cancel_at is not None and now >= leg.cancel_at:
            leg.cancel_at = None
            if leg.state is CallState.INVITING:
                self.cancel(leg.leg_id, now)
        pending = leg.uas_2xx
        if pending is not None:
            if now >= pending.give_up_at:
                leg.uas_2xx = None
                self._ack_timeout(leg, now)
            elif now >= pending.next_at:
                self._outbox.append((pending.wire, pending.destination))
                pending.interval = min(2 * pending.interval, self.config.t2)
                pending.next_at += pending.interval
        if leg.glare_retry_at is not None and now >= leg.glare_retry_at:
            leg.glare_retry_at = None
            if leg.state is CallState.ESTABLISHED:
                if leg.incoming_reinvite is not None or leg.uas_2xx is not None:
                    leg.glare_retry_at = now + self.ids.jitter(*GLARE_DELAY_OTHER)
                else:
                    self._send_reinvite(leg, now)
        leg.update_deadline()
        self._schedule(leg)

    def _ack_timeout(self, leg: _Leg, now: float) -> None:
        """§13.3.1.4: no ACK for our 2xx within 64*T1: the dialog is confirmed, but the
        session is terminated with BYE."""
        if leg.state is CallState.ENDED:
            return
        dialog = leg.dialog
        if dialog is not None and dialog.state is not DialogState.TERMINATED:
            self._send_bye(leg, dialog, now, notify=False)
        self._events.append(
            CallTerminated(
                leg_id=leg.leg_id, call_id=leg.call_id, cause=TerminationCause.ACK_TIMEOUT
            )
        )
        self._end_leg(leg)

    # ------------------------------------------------------------------ helpers

    def _end_leg(self, leg: _Leg) -> None:
        leg.state = CallState.ENDED
        leg.uas_2xx = None
        leg.glare_retry_at = None
        leg.pending_ack = None
        leg.update_deadline()
        leg.scheduled = None
        self._legs.pop(leg.leg_id, None)
        dialog = leg.dialog
        if dialog is not None and self._dialogs.get(dialog.id) is leg:
            del self._dialogs[dialog.id]

    def _send_stateless(
        self,
        request: Request,
        destination: Address,
        status: int,
        reason: str | None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        tag = None if request.to.tag else self.ids.tag()
        response = make_response(request, status, reason, to_tag=tag, headers=headers)
        self._outbox.append((response.serialize(), destination))

    def _answer_stateless(self, request: Request, addr: Address, status: int, reason: str) -> None:
        try:
            self._send_stateless(request, addr, status, _safe_reason(reason))
        except (ParseError, LocalProtocolError):
            return

    def _answer_malformed(self, data: bytes, addr: Address, error: ParseError) -> None:
        """Answer a request that did not parse, if its Via/From/To/Call-ID/CSeq can be found
        (RFC 3261 §8.2.2 / §21.4.1). Responses and ACKs are never answered."""
        wire = _salvage_error_response(
            data, error.status_hint, _safe_reason(str(error)), self.ids.tag()
        )
        if wire is not None:
            self._outbox.append((wire, addr))


def _route_target(route: str) -> URI:
    start = route.find("<")
    end = route.find(">", start + 1)
    text = route[start + 1 : end] if start >= 0 and end > start else route.strip()
    return parse_uri(text)


def _with_top_via(headers: Headers, value: str) -> Headers:
    """A copy of ``headers`` whose first Via value (the first item of the first Via field) is
    ``value``; the other fields keep their order."""
    fields = headers.fields()
    for index, (name, field_value) in enumerate(fields):
        if name.lower() in ("via", "v"):
            rest = split_header_values(field_value)[1:]
            fields[index] = (name, ", ".join([value, *rest]))
            break
    else:
        fields.insert(0, ("Via", value))
    return Headers(fields)


_SALVAGE_NAMES = {
    "via": "Via",
    "v": "Via",
    "from": "From",
    "f": "From",
    "to": "To",
    "t": "To",
    "call-id": "Call-ID",
    "i": "Call-ID",
    "cseq": "CSeq",
}


def _safe_reason(text: str) -> str:
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else " " for ch in text).strip()
    return cleaned[:120] or "Bad Request"


def _salvage_error_response(data: bytes, status: int, reason: str, tag: str) -> bytes | None:
    """Build an error response to a request that failed to parse, from its raw header lines.

    Needs a request line (not a response, not ACK) and the Via, From, To, Call-ID and CSeq
    fields; returns None otherwise.
    """
    head_end = data.find(b"\r\n\r\n")
    head = data if head_end < 0 else data[:head_end]
    text = head.decode("utf-8", errors="replace").lstrip("\r\n")
    lines = text.split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or request_line[0].startswith("SIP/") or request_line[0] == "ACK":
        return None
    found: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            continue  # folded continuation lines are not needed for the answer
        name, sep, value = line.partition(":")
        if not sep:
            continue
        canonical = _SALVAGE_NAMES.get(name.strip().lower())
        if canonical is not None:
            found.setdefault(canonical, []).append(value.strip())
    if any(name not in found for name in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    out = [f"SIP/2.0 {status} {reason}\r\n"]
    for value in found["Via"]:
        out.append(f"Via: {value}\r\n")
    out.append(f"From: {found['From'][0]}\r\n")
    to_value = found["To"][0]
    if ";tag=" not in to_value.lower():
        to_value = f"{to_value};tag={tag}"
    out.append(f"To: {to_value}\r\n")
    out.append(f"Call-ID: {found['Call-ID'][0]}\r\n")
    out.append(f"CSeq: {found['CSeq'][0]}\r\n")
    out.append("Content-Length: 0\r\n\r\n")
    wire = "".join(out)
    if any(ch in wire[:-4].replace("\r\n", "") for ch in "\r\n\x00"):
        return None
    return wire.encode("utf-8", errors="replace")
