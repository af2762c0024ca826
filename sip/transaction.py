"""RFC 3261 §17 transactions, with the RFC 6026 correction for 2xx responses to INVITE.

Four state machines (INVITE / non-INVITE x client / server) are written as
``(State, Input) -> State`` tables, each under the RFC figure it encodes. The transaction
objects around the tables do the actions (send, retransmit, arm timers) and report to the
transaction user (the :class:`~sip.ua.UserAgent`) through return values: they never call it.

Timers are data. Every transaction keeps its armed timers in ``timers`` (a ``Timer ->
deadline`` mapping) and the earliest one in ``deadline``; the owner calls ``on_timer(now)``
when that moment has come. Nothing here reads a clock.

Outgoing messages are appended to an ``outbox`` list of ``(bytes, (host, port))`` shared with
the owner, which hands them to the transport. Retransmissions (Timers A, E, G) only run over
unreliable transports, and the waits of Timers D, I, J, K are 0 over reliable ones
(:class:`~sip.config.SipConfig`).
"""

from __future__ import annotations

import enum
from typing import Final

from .config import SipConfig
from .errors import LocalProtocolError
from .headers import Headers
from .message import Request, Response

__all__ = [
    "INVITE_CLIENT_TRANSITIONS",
    "INVITE_SERVER_TRANSITIONS",
    "NETWORK_INPUTS",
    "NON_INVITE_CLIENT_TRANSITIONS",
    "NON_INVITE_SERVER_TRANSITIONS",
    "TRANSITIONS",
    "Address",
    "ClientKey",
    "ClientTransaction",
    "Input",
    "Kind",
    "ServerKey",
    "ServerTransaction",
    "State",
    "Timer",
    "TransactionStateError",
    "client_key",
    "next_state",
    "server_key",
]

#: A transport address: (host, port). The host is an IP literal (the core does no DNS).
Address = tuple[str, int]
#: Client transaction key (RFC 3261 §17.1.3): top Via branch and CSeq method.
ClientKey = tuple[str, str]
#: Server transaction key (RFC 3261 §17.2.3): branch, sent-by host, sent-by port, method
#: (ACK counted as INVITE). RFC 2543 peers (no magic cookie) get a key built from Call-ID,
#: From tag and CSeq number instead of the branch.
ServerKey = tuple[str, str, int, str]

#: The RFC 3261 magic cookie that starts every branch of a compliant element (§8.1.1.7).
MAGIC_COOKIE: Final = "z9hG4bK"


class TransactionStateError(LocalProtocolError):
    """The transaction user asked for something the current state forbids (a missing key of
    the transition table), e.g. a second final response."""


class Kind(enum.Enum):
    """Which of the four state machines a transaction runs."""

    #: RFC 3261 §17.1.1 (Figure 5), with RFC 6026's Accepted state.
    INVITE_CLIENT = "invite_client"
    #: RFC 3261 §17.1.2 (Figure 6).
    NON_INVITE_CLIENT = "non_invite_client"
    #: RFC 3261 §17.2.1 (Figure 7), with RFC 6026's Accepted state.
    INVITE_SERVER = "invite_server"
    #: RFC 3261 §17.2.2 (Figure 8).
    NON_INVITE_SERVER = "non_invite_server"


class State(enum.Enum):
    """Transaction states (the boxes of the RFC figures)."""

    #: INVITE client: the request is out, nothing came back (Timer A retransmits it).
    CALLING = "calling"
    #: Non-INVITE client and server: the request is out / in, no response yet.
    TRYING = "trying"
    #: A provisional response was received (client) or sent (server).
    PROCEEDING = "proceeding"
    #: A final response (non-2xx for INVITE) was received (client) or sent (server).
    COMPLETED = "completed"
    #: INVITE server: the ACK of our non-2xx arrived; absorbing ACK retransmissions (Timer I).
    CONFIRMED = "confirmed"
    #: RFC 6026: a 2xx to INVITE was received (client, Timer M) or sent (server, Timer L).
    ACCEPTED = "accepted"
    #: Over; the owner forgets the transaction.
    TERMINATED = "terminated"


class Input(enum.Enum):
    """What can happen to a transaction (the labels on the arrows of the RFC figures)."""

    #: Client: a 100-199 response arrived.
    RESPONSE_1XX = "response_1xx"
    #: Client: a 200-299 response arrived.
    RESPONSE_2XX = "response_2xx"
    #: Client: a 300-699 response arrived.
    RESPONSE_300_699 = "response_300_699"
    #: Server: the request arrived again (a retransmission).
    REQUEST = "request"
    #: INVITE server: an ACK matching the transaction arrived.
    ACK = "ack"
    #: Server: the TU sends a 101-199 response (the 100 is sent like one).
    TU_1XX = "tu_1xx"
    #: Server: the TU sends a 2xx.
    TU_2XX = "tu_2xx"
    #: Server: the TU sends a 300-699 response.
    TU_300_699 = "tu_300_699"
    #: The transport could not send a message of this transaction.
    TRANSPORT_ERROR = "transport_error"
    #: Timer A fired (INVITE request retransmission).
    TIMER_A = "timer_a"
    #: Timer B fired (INVITE client timeout; also re-armed by the UA after CANCEL, §9.1).
    TIMER_B = "timer_b"
    #: Timer D fired (end of the INVITE client's Completed state).
    TIMER_D = "timer_d"
    #: Timer E fired (non-INVITE request retransmission).
    TIMER_E = "timer_e"
    #: Timer F fired (non-INVITE client timeout).
    TIMER_F = "timer_f"
    #: Timer G fired (INVITE final response retransmission).
    TIMER_G = "timer_g"
    #: Timer H fired (no ACK for our non-2xx final response).
    TIMER_H = "timer_h"
    #: Timer I fired (end of the INVITE server's Confirmed state).
    TIMER_I = "timer_i"
    #: Timer J fired (end of the non-INVITE server's Completed state).
    TIMER_J = "timer_j"
    #: Timer K fired (end of the non-INVITE client's Completed state).
    TIMER_K = "timer_k"
    #: Timer L fired (RFC 6026: end of the INVITE server's Accepted state).
    TIMER_L = "timer_l"
    #: Timer M fired (RFC 6026: end of the INVITE client's Accepted state).
    TIMER_M = "timer_m"


class Timer(enum.Enum):
    """Transaction timers of RFC 3261 Table 4 and RFC 6026 (values in SipConfig)."""

    #: INVITE request retransmit interval, UDP only; starts at T1 and doubles.
    A = "A"
    #: INVITE transaction timeout, 64*T1.
    B = "B"
    #: Wait for INVITE response retransmits, 32 s (UDP) / 0.
    D = "D"
    #: Non-INVITE request retransmit interval, UDP only; doubles up to T2.
    E = "E"
    #: Non-INVITE transaction timeout, 64*T1.
    F = "F"
    #: INVITE final response retransmit interval, UDP only; doubles up to T2.
    G = "G"
    #: Wait for the ACK of a non-2xx final response, 64*T1.
    H = "H"
    #: Wait for ACK retransmits, T4 (UDP) / 0.
    I = "I"  # noqa: E741 - the RFC's name
    #: Wait for non-INVITE request retransmits, 64*T1 (UDP) / 0.
    J = "J"
    #: Wait for non-INVITE response retransmits, T4 (UDP) / 0.
    K = "K"
    #: RFC 6026: wait for retransmits of an accepted INVITE, 64*T1.
    L = "L"
    #: RFC 6026: wait for 2xx retransmits and forked 2xx, 64*T1.
    M = "M"


_TIMER_INPUT: Final[dict[Timer, Input]] = {
    Timer.A: Input.TIMER_A,
    Timer.B: Input.TIMER_B,
    Timer.D: Input.TIMER_D,
    Timer.E: Input.TIMER_E,
    Timer.F: Input.TIMER_F,
    Timer.G: Input.TIMER_G,
    Timer.H: Input.TIMER_H,
    Timer.I: Input.TIMER_I,
    Timer.J: Input.TIMER_J,
    Timer.K: Input.TIMER_K,
    Timer.L: Input.TIMER_L,
    Timer.M: Input.TIMER_M,
}

#: Inputs that come from the network (or the transport): a transaction never raises on them.
#: Timer inputs only occur when the transaction armed the timer, so they are not listed.
NETWORK_INPUTS: Final = frozenset(
    {
        Input.RESPONSE_1XX,
        Input.RESPONSE_2XX,
        Input.RESPONSE_300_699,
        Input.REQUEST,
        Input.ACK,
        Input.TRANSPORT_ERROR,
    }
)

_S = State
_I = Input

# RFC 3261 Figure 5 (INVITE client transaction) as redrawn by RFC 6026 §8 ("Accepted" state,
# Timer M):
#
#                                |INVITE from TU
#              Timer A fires     |INVITE sent      Timer B fires
#              Reset A,          V                 or Transport Err.
#              INVITE sent +-----------+           inform TU
#                +---------|           |--------------------------+
#                |         |  Calling  |                          |
#                +-------->|           |-----------+              |
#   300-699                +-----------+ 2xx       |              |
#   ACK sent                  |  |       2xx to TU |              |
#   resp. to TU               |  |1xx              |              |
#   +-------------------------+  |1xx to TU        |              |
#   |                            |                 |              |
#   |                1xx         V                 |              |
#   |                1xx to TU +-----------+       |              |
#   |                +---------|           |       |              |
#   |                |         |Proceeding |       |              |
#   |                +-------->|           |       |              |
#   |                          +-----------+ 2xx   |              |
#   |         300-699             |    2xx to TU   |              |
#   |         ACK sent,  +--------+                +---+          |
#   |         resp. to TU|                             |          |
#   |                    |                             V          |
#   |                    V                      +-----------+     |
#   |              +-----------+                |           |     |
#   |              |           |                | Accepted  |     |
#   +------------->| Completed |                |           |     |
#                  |           |                +-----------+     |
#                  +-----------+                  ^   |    |      |
#                   ^   |                     2xx |   |    |      |
#         300-699   |   |                2xx to TU+---+    |      |
#         ACK sent  +---+                                  |      |
#                       |Timer D fires       Timer M fires |      |
#                       |-                   -             |      |
#                       V                                  V      |
#                  +-----------+                                  |
#                  |           |<---------------------------------+
#                  | Terminated|
#                  |           |
#                  +-----------+
#
# Not drawn but specified: 1xx in Completed/Accepted and 300-699 in Accepted are absorbed;
# §9.1 lets the UA re-arm Timer B in Proceeding after it sent CANCEL (64*T1 without a final
# response: give up); a transport error in Proceeding ends the transaction too (§17.1.4).
INVITE_CLIENT_TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (_S.CALLING, _I.TIMER_A): _S.CALLING,
    (_S.CALLING, _I.TIMER_B): _S.TERMINATED,
    (_S.CALLING, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.CALLING, _I.RESPONSE_1XX): _S.PROCEEDING,
    (_S.CALLING, _I.RESPONSE_2XX): _S.ACCEPTED,
    (_S.CALLING, _I.RESPONSE_300_699): _S.COMPLETED,
    (_S.PROCEEDING, _I.RESPONSE_1XX): _S.PROCEEDING,
    (_S.PROCEEDING, _I.RESPONSE_2XX): _S.ACCEPTED,
    (_S.PROCEEDING, _I.RESPONSE_300_699): _S.COMPLETED,
    (_S.PROCEEDING, _I.TIMER_B): _S.TERMINATED,
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.COMPLETED, _I.RESPONSE_1XX): _S.COMPLETED,
    (_S.COMPLETED, _I.RESPONSE_2XX): _S.COMPLETED,
    (_S.COMPLETED, _I.RESPONSE_300_699): _S.COMPLETED,
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.COMPLETED, _I.TIMER_D): _S.TERMINATED,
    (_S.ACCEPTED, _I.RESPONSE_1XX): _S.ACCEPTED,
    (_S.ACCEPTED, _I.RESPONSE_2XX): _S.ACCEPTED,
    (_S.ACCEPTED, _I.RESPONSE_300_699): _S.ACCEPTED,
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): _S.ACCEPTED,
    (_S.ACCEPTED, _I.TIMER_M): _S.TERMINATED,
}

# RFC 3261 Figure 6 (non-INVITE client transaction):
#
#                                    |Request from TU
#                                    |send request
#                Timer E             V
#                send request  +-----------+
#                    +---------|           |-------------------+
#                    |         |  Trying   |  Timer F          |
#                    +-------->|           |  or Transport Err.|
#                              +-----------+  inform TU        |
#                 200-699         |  |                         |
#                 resp. to TU     |  |1xx                      |
#                 +---------------+  |resp. to TU              |
#                 |                  |                         |
#                 |   Timer E        V       Timer F           |
#                 |   send req +-----------+ or Transport Err. |
#                 |  +---------|           | inform TU         |
#                 |  |         |Proceeding |------------------>|
#                 |  +-------->|           |-----+             |
#                 |            +-----------+     |1xx          |
#                 |              |      ^        |resp to TU   |
#                 | 200-699      |      +--------+             |
#                 | resp. to TU  |                             |
#                 |              |                             |
#                 |              V                             |
#                 |            +-----------+                   |
#                 |            |           |                   |
#                 |            | Completed |                   |
#                 |            |           |                   |
#                 |            +-----------+                   |
#                 |              ^   |                         |
#                 |              |   | Timer K                 |
#                 +--------------+   | -                       |
#                                    |                         |
#                                    V                         |
#              NOTE:           +-----------+                   |
#                              |           |                   |
#          transitions         | Terminated|<------------------+
#          labeled with        |           |
#          the event           +-----------+
#          over the action
#          to take
NON_INVITE_CLIENT_TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (_S.TRYING, _I.TIMER_E): _S.TRYING,
    (_S.TRYING, _I.TIMER_F): _S.TERMINATED,
    (_S.TRYING, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.TRYING, _I.RESPONSE_1XX): _S.PROCEEDING,
    (_S.TRYING, _I.RESPONSE_2XX): _S.COMPLETED,
    (_S.TRYING, _I.RESPONSE_300_699): _S.COMPLETED,
    (_S.PROCEEDING, _I.TIMER_E): _S.PROCEEDING,
    (_S.PROCEEDING, _I.TIMER_F): _S.TERMINATED,
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.PROCEEDING, _I.RESPONSE_1XX): _S.PROCEEDING,
    (_S.PROCEEDING, _I.RESPONSE_2XX): _S.COMPLETED,
    (_S.PROCEEDING, _I.RESPONSE_300_699): _S.COMPLETED,
    # "any retransmissions of the final response ... are absorbed" (§17.1.2.2)
    (_S.COMPLETED, _I.RESPONSE_1XX): _S.COMPLETED,
    (_S.COMPLETED, _I.RESPONSE_2XX): _S.COMPLETED,
    (_S.COMPLETED, _I.RESPONSE_300_699): _S.COMPLETED,
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _S.COMPLETED,
    (_S.COMPLETED, _I.TIMER_K): _S.TERMINATED,
}

# RFC 3261 Figure 7 (INVITE server transaction) as redrawn by RFC 6026 §8 ("Accepted" state,
# Timer L):
#
#                                    |INVITE
#                                    |pass INV to TU
#                 INVITE             V send 100 if TU won't in 200 ms
#                 send response+------------+
#                     +--------|            |--------+ 101-199 from TU
#                     |        |            |        | send response
#                     +------->|            |<-------+
#                              | Proceeding |
#                              |            |--------+ Transport Err.
#                              |            |        | Inform TU
#                              |            |<-------+
#                              +------------+
#                 300-699 from TU |    |2xx from TU
#                 send response   |    |send response
#                  +--------------+    +------------+
#                  |                                |
# INVITE           V          Timer G fires         |
# send response +-----------+ send response         |
#      +--------|           |--------+              |
#      |        |           |        |              |
#      +------->| Completed |<-------+      INVITE  |  Transport Err.
#               |           |               -       |  Inform TU
#      +--------|           |----+          +-----+ |  +---+
#      |        +-----------+    | ACK      |     v v  |   v
#      |          ^   |          | -        |  +------------+
#      |          |   |          |          |  |            |---+ ACK
#      +----------+   |          |          +--|  Accepted  |   | to TU
#      Transport Err. |          |             |            |<--+
#      Inform TU      |          V             +------------+
#                     |      +-----------+        |  ^     |
#                     |      |           |        |  |     |
#                     |      | Confirmed |        |  +-----+
#                     |      |           |        |  2xx from TU
#       Timer H fires |      +-----------+        |  send response
#       -             |          |                |
#                     |          | Timer I fires  |
#                     |          | -              | Timer L fires
#                     |          V                | -
#                     |        +------------+     |
#                     |        |            |<----+
#                     +------->| Terminated |
#                              |            |
#                              +------------+
#
# Timer H firing also informs the TU (§17.2.1: the ACK never came). A transport error while
# sending a 300-699 terminates the transaction (§17.2.4).
INVITE_SERVER_TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (_S.PROCEEDING, _I.REQUEST): _S.PROCEEDING,
    (_S.PROCEEDING, _I.ACK): _S.PROCEEDING,
    (_S.PROCEEDING, _I.TU_1XX): _S.PROCEEDING,
    (_S.PROCEEDING, _I.TU_2XX): _S.ACCEPTED,
    (_S.PROCEEDING, _I.TU_300_699): _S.COMPLETED,
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.ACCEPTED, _I.REQUEST): _S.ACCEPTED,
    (_S.ACCEPTED, _I.ACK): _S.ACCEPTED,
    (_S.ACCEPTED, _I.TU_2XX): _S.ACCEPTED,
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): _S.ACCEPTED,
    (_S.ACCEPTED, _I.TIMER_L): _S.TERMINATED,
    (_S.COMPLETED, _I.REQUEST): _S.COMPLETED,
    (_S.COMPLETED, _I.TIMER_G): _S.COMPLETED,
    (_S.COMPLETED, _I.ACK): _S.CONFIRMED,
    (_S.COMPLETED, _I.TIMER_H): _S.TERMINATED,
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.CONFIRMED, _I.REQUEST): _S.CONFIRMED,
    (_S.CONFIRMED, _I.ACK): _S.CONFIRMED,
    (_S.CONFIRMED, _I.TRANSPORT_ERROR): _S.CONFIRMED,
    (_S.CONFIRMED, _I.TIMER_I): _S.TERMINATED,
}

# RFC 3261 Figure 8 (non-INVITE server transaction):
#
#                                   |Request received
#                                   |pass to TU
#                                   V
#                             +-----------+
#                             |           |
#                             | Trying    |-------------+
#                             |           |             |
#                             +-----------+             |200-699 from TU
#                                   |                   |send response
#                                   |1xx from TU        |
#                                   |send response      |
#                                   |                   |
#                Request            V      1xx from TU  |
#                send response+-----------+send response|
#                    +--------|           |--------+    |
#                    |        | Proceeding|        |    |
#                    +------->|           |<-------+    |
#             +<--------------|           |             |
#             |Trnsprt Err    +-----------+             |
#             |Inform TU            |                   |
#             |                     |                   |
#             |                     |200-699 from TU    |
#             |                     |send response      |
#             |  Request            V                   |
#             |  send response+-----------+             |
#             |      +--------|           |             |
#             |      |        | Completed |<------------+
#             |      +------->|           |
#             +<--------------|           |
#             |Trnsprt Err    +-----------+
#             |Inform TU            |
#             |                     |Timer J fires
#             |                     |-
#             |                     |
#             |                     V
#             |               +-----------+
#             |               |           |
#             +-------------->| Terminated|
#                             |           |
#                             +-----------+
#
# A retransmitted request in Trying is absorbed ("the request MUST be discarded", §17.2.2).
NON_INVITE_SERVER_TRANSITIONS: Final[dict[tuple[State, Input], State]] = {
    (_S.TRYING, _I.REQUEST): _S.TRYING,
    (_S.TRYING, _I.ACK): _S.TRYING,
    (_S.TRYING, _I.TU_1XX): _S.PROCEEDING,
    (_S.TRYING, _I.TU_2XX): _S.COMPLETED,
    (_S.TRYING, _I.TU_300_699): _S.COMPLETED,
    (_S.TRYING, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.PROCEEDING, _I.REQUEST): _S.PROCEEDING,
    (_S.PROCEEDING, _I.ACK): _S.PROCEEDING,
    (_S.PROCEEDING, _I.TU_1XX): _S.PROCEEDING,
    (_S.PROCEEDING, _I.TU_2XX): _S.COMPLETED,
    (_S.PROCEEDING, _I.TU_300_699): _S.COMPLETED,
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.COMPLETED, _I.REQUEST): _S.COMPLETED,
    (_S.COMPLETED, _I.ACK): _S.COMPLETED,
    (_S.COMPLETED, _I.TRANSPORT_ERROR): _S.TERMINATED,
    (_S.COMPLETED, _I.TIMER_J): _S.TERMINATED,
}

#: The four tables by machine.
TRANSITIONS: Final[dict[Kind, dict[tuple[State, Input], State]]] = {
    Kind.INVITE_CLIENT: INVITE_CLIENT_TRANSITIONS,
    Kind.NON_INVITE_CLIENT: NON_INVITE_CLIENT_TRANSITIONS,
    Kind.INVITE_SERVER: INVITE_SERVER_TRANSITIONS,
    Kind.NON_INVITE_SERVER: NON_INVITE_SERVER_TRANSITIONS,
}

#: Network inputs arriving in Terminated (a late retransmission racing the owner's clean-up)
#: are absorbed; everything else in Terminated is an error.
_TERMINATED_ABSORBS: Final = NETWORK_INPUTS


def next_state(kind: Kind, state: State, event: Input) -> State:
    """The state after ``event`` in ``state`` for machine ``kind``.

    Raises :class:`TransactionStateError` when the table has no such transition. Network
    inputs (:data:`NETWORK_INPUTS`) never raise: every state lists them or absorbs them.
    """
    try:
        return TRANSITIONS[kind][(state, event)]
    except KeyError:
        if state is State.TERMINATED and event in _TERMINATED_ABSORBS:
            return State.TERMINATED
        raise TransactionStateError(
            f"{kind.value} transaction cannot take {event.value} in state {state.value}"
        ) from None


def _response_input(status: int) -> Input:
    if status < 200:
        return Input.RESPONSE_1XX
    if status < 300:
        return Input.RESPONSE_2XX
    return Input.RESPONSE_300_699


def _tu_input(status: int) -> Input:
    if status < 200:
        return Input.TU_1XX
    if status < 300:
        return Input.TU_2XX
    return Input.TU_300_699


def client_key(response: Response) -> ClientKey | None:
    """The key of the client transaction a response belongs to (RFC 3261 §17.1.3).

    None when the response has no usable branch (it cannot match any of our transactions:
    every request we send carries a ``z9hG4bK`` branch).
    """
    branch = response.top_via.branch
    if not branch:
        return None
    return (branch, response.cseq.method)


def server_key(request: Request) -> ServerKey:
    """The key of the server transaction a request belongs to (RFC 3261 §17.2.3).

    ACK maps to the INVITE's transaction. CANCEL gets its own transaction key; the UA finds
    the INVITE it cancels with ``server_key`` and method INVITE (§9.2). For an RFC 2543
    request (no magic cookie) the key is built from Call-ID, From tag and CSeq number (the
    §17.2.3 fallback, simplified: the To tag is not compared).
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    port = via.port if via.port is not None else 0
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), port, method)
    cseq = request.cseq
    legacy = f"2543:{request.call_id}:{request.from_.tag}:{cseq.seq}"
    return (legacy, via.host.lower(), port, method)


class ClientTransaction:
    """A client transaction: sends one request and follows its responses.

    ``receive_response`` and ``on_timer`` return True when the transaction user must act:
    the response is to be passed up / the transaction timed out or failed (the state tells
    which). The INVITE client transaction builds and sends the ACK of a non-2xx final
    response itself (§17.1.1.3); the ACK of a 2xx is the UA's business.
    """

    __slots__ = (
        "_config",
        "_interval",
        "_outbox",
        "_reliable",
        "_wire",
        "ack_wire",
        "deadline",
        "destination",
        "key",
        "kind",
        "last_response",
        "owner",
        "request",
        "scheduled",
        "state",
        "timers",
    )

    def __init__(
        self,
        request: Request,
        destination: Address,
        *,
        config: SipConfig,
        now: float,
        outbox: list[tuple[bytes, Address]],
        owner: object = None,
        wire: bytes | None = None,
        branch: str | None = None,
    ) -> None:
        # The owner usually knows the branch it just generated: passing it saves re-parsing
        # the Via of our own request.
        if branch is None:
            branch = request.top_via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError(f"client request needs a {MAGIC_COOKIE} branch")
        if request.method == "ACK":
            raise LocalProtocolError("ACK does not start a client transaction")
        self.request = request
        self.destination = destination
        self.owner = owner
        self.key: ClientKey = (branch, request.method)
        self.kind = Kind.INVITE_CLIENT if request.method == "INVITE" else Kind.NON_INVITE_CLIENT
        self.last_response: Response | None = None
        self.ack_wire: bytes | None = None
        self._config = config
        self._reliable = config.reliable
        self._outbox = outbox
        self._wire = wire if wire is not None else request.serialize()
        self.timers: dict[Timer, float] = {}
        self.deadline: float | None = None
        #: The deadline the owner's timer queue holds for this transaction (owner's business).
        self.scheduled: float | None = None
        self._interval = config.t1
        outbox.append((self._wire, destination))
        if self.kind is Kind.INVITE_CLIENT:
            self.state = State.CALLING
            if not self._reliable:
                self.timers[Timer.A] = now + config.t1
            self.timers[Timer.B] = now + config.timer_b
        else:
            self.state = State.TRYING
            if not self._reliable:
                self.timers[Timer.E] = now + config.t1
            self.timers[Timer.F] = now + config.timer_f
        self._update_deadline()

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.kind.value} {self.key} {self.state.value}>"

    def _update_deadline(self) -> None:
        self.deadline = min(self.timers.values()) if self.timers else None

    def _enter(self, state: State, now: float) -> None:
        """Arm the timers that entering ``state`` starts (and drop the others)."""
        self.state = state
        timers = self.timers
        if state is State.COMPLETED:
            timers.clear()
            if self.kind is Kind.INVITE_CLIENT:
                timers[Timer.D] = now + self._config.timer_d
            else:
                timers[Timer.K] = now + self._config.timer_k
        elif state is State.ACCEPTED:
            timers.clear()
            timers[Timer.M] = now + self._config.timer_m
        elif state is State.PROCEEDING and self.kind is Kind.INVITE_CLIENT:
            # §17.1.1.2: in Proceeding the client "SHOULD NOT" retransmit; Timer B stops.
            timers.clear()
        elif state is State.TERMINATED:
            timers.clear()
        self._update_deadline()

    def receive_response(self, response: Response, now: float) -> bool:
        """Feed a response matched to this transaction; True when it goes up to the TU."""
        status = response.status
        event = _response_input(status)
        old = self.state
        new = next_state(self.kind, old, event)
        if self.kind is Kind.INVITE_CLIENT:
            if old is State.COMPLETED:
                if event is Input.RESPONSE_300_699 and self.ack_wire is not None:
                    # A retransmitted final response: "MUST ... pass an ACK" (§17.1.1.2).
                    self._outbox.append((self.ack_wire, self.destination))
                return False
            if old is State.ACCEPTED:
                # RFC 6026: every 2xx (retransmission or another fork) goes up to the TU,
                # which ACKs it; anything else is absorbed.
                return event is Input.RESPONSE_2XX
            self.last_response = response
            if event is Input.RESPONSE_300_699:
                self.ack_wire = _non_2xx_ack(self.request, response).serialize()
                self._outbox.append((self.ack_wire, self.destination))
            if new is not old:
                self._enter(new, now)
            return True
        # non-INVITE
        if old is State.COMPLETED:
            return False
        self.last_response = response
        if new is not old:
            self._enter(new, now)
        return True

    def on_timer(self, now: float) -> bool:
        """Fire every armed timer whose deadline has come; True when the TU must be told of a
        timeout (Timer B or F: the state is then Terminated)."""
        timed_out = False
        while self.timers and self.state is not State.TERMINATED:
            timer, when = min(self.timers.items(), key=_by_deadline)
            if when > now:
                break
            del self.timers[timer]
            new = next_state(self.kind, self.state, _TIMER_INPUT[timer])
            if timer is Timer.A or timer is Timer.E:
                self._outbox.append((self._wire, self.destination))
                if timer is Timer.A:
                    self._interval *= 2
                elif self.state is State.PROCEEDING:
                    # §17.1.2.2: in Proceeding, retransmit every T2.
                    self._interval = self._config.t2
                else:
                    self._interval = min(2 * self._interval, self._config.t2)
                self.timers[timer] = when + self._interval
            elif timer is Timer.B or timer is Timer.F:
                timed_out = True
            if new is not self.state:
                self._enter(new, now)
        self._update_deadline()
        return timed_out

    def transport_error(self, now: float) -> bool:
        """The transport failed to deliver our request; True when the TU must be told."""
        old = self.state
        new = next_state(self.kind, old, Input.TRANSPORT_ERROR)
        if new is not old:
            self._enter(new, now)
            return True
        return False

    def arm_cancel_timeout(self, now: float) -> None:
        """§9.1: after sending CANCEL, give the INVITE 64*T1 to get its final response; when
        Timer B then fires in Proceeding the transaction ends like a timeout."""
        if self.kind is Kind.INVITE_CLIENT and self.state is State.PROCEEDING:
            self.timers[Timer.B] = now + self._config.timer_b
            self._update_deadline()


def _by_deadline(item: tuple[Timer, float]) -> float:
    return item[1]


def _non_2xx_ack(request: Request, response: Response) -> Request:
    """RFC 3261 §17.1.1.3: the ACK of a non-2xx final response, built from the request.

    Same Request-URI, Call-ID, From, CSeq number; To from the response (with its tag); one
    Via equal to the request's top Via; the request's Route header fields.
    """
    headers = request.headers
    items: list[tuple[str, str]] = [("Via", str(request.top_via))]
    for route in headers.get_all("Route"):
        items.append(("Route", route))
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None:
        items.append(("Max-Forwards", max_forwards))
    from_value = headers.get("From")
    to_value = response.headers.get("To")
    call_id = headers.get("Call-ID")
    assert from_value is not None and to_value is not None and call_id is not None
    items.append(("From", from_value))
    items.append(("To", to_value))
    items.append(("Call-ID", call_id))
    items.append(("CSeq", f"{request.cseq.seq} ACK"))
    return Request("ACK", request.uri, Headers(items))


class ServerTransaction:
    """A server transaction: receives one request and sends its responses.

    The TU (the UA) sends responses with ``send_response``; retransmitted requests go to
    ``receive_request``, which resends the last response when the state says so and returns
    True only for an ACK the TU must see (RFC 6026: an ACK matching an Accepted INVITE).
    ``on_timer`` returns True when Timer H fired (the ACK never came).
    """

    __slots__ = (
        "_config",
        "_interval",
        "_last_wire",
        "_outbox",
        "_reliable",
        "deadline",
        "destination",
        "key",
        "kind",
        "last_status",
        "owner",
        "request",
        "scheduled",
        "state",
        "timers",
    )

    def __init__(
        self,
        request: Request,
        destination: Address,
        *,
        config: SipConfig,
        outbox: list[tuple[bytes, Address]],
        key: ServerKey | None = None,
        owner: object = None,
    ) -> None:
        if request.method == "ACK":
            raise LocalProtocolError("ACK does not start a server transaction")
        self.request = request
        self.destination = destination
        self.owner = owner
        self.key: ServerKey = key if key is not None else server_key(request)
        self.kind = Kind.INVITE_SERVER if request.method == "INVITE" else Kind.NON_INVITE_SERVER
        self.state = State.PROCEEDING if self.kind is Kind.INVITE_SERVER else State.TRYING
        self.last_status: int | None = None
        self._config = config
        self._reliable = config.reliable
        self._outbox = outbox
        self._last_wire: bytes | None = None
        self._interval = config.t1
        self.timers: dict[Timer, float] = {}
        self.deadline: float | None = None
        #: The deadline the owner's timer queue holds for this transaction (owner's business).
        self.scheduled: float | None = None

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.kind.value} {self.key[0]} {self.state.value}>"

    def _update_deadline(self) -> None:
        self.deadline = min(self.timers.values()) if self.timers else None

    def send_response(self, response: Response, now: float, *, wire: bytes | None = None) -> None:
        """Send a response from the TU. Raises :class:`TransactionStateError` when the state
        does not allow it (e.g. a final response after another final response)."""
        old = self.state
        new = next_state(self.kind, old, _tu_input(response.status))
        data = wire if wire is not None else response.serialize()
        self._last_wire = data
        self.last_status = response.status
        self._outbox.append((data, self.destination))
        if new is old:
            return
        self.state = new
        timers = self.timers
        timers.clear()
        if new is State.ACCEPTED:
            timers[Timer.L] = now + self._config.timer_l
        elif new is State.COMPLETED:
            if self.kind is Kind.INVITE_SERVER:
                if not self._reliable:
                    self._interval = self._config.t1
                    timers[Timer.G] = now + self._interval
                timers[Timer.H] = now + self._config.timer_h
            else:
                timers[Timer.J] = now + self._config.timer_j
        self._update_deadline()

    def receive_request(self, request: Request, now: float) -> bool:
        """Feed a retransmitted request or an ACK matched to this transaction.

        True only when an ACK must be passed to the TU (Accepted state, RFC 6026).
        """
        is_ack = request.method == "ACK"
        event = Input.ACK if is_ack else Input.REQUEST
        old = self.state
        new = next_state(self.kind, old, event)
        if is_ack:
            if old is State.ACCEPTED:
                return True
            if old is State.COMPLETED and self.kind is Kind.INVITE_SERVER:
                self.state = new
                self.timers.clear()
                self.timers[Timer.I] = now + self._config.timer_i
                self._update_deadline()
            return False
        # A retransmission: resend the last response where the figures say so.
        if (
            self._last_wire is not None
            and old is not State.TRYING
            and old is not State.ACCEPTED
            and old is not State.CONFIRMED
            and old is not State.TERMINATED
        ):
            self._outbox.append((self._last_wire, self.destination))
        return False

    def on_timer(self, now: float) -> bool:
        """Fire due timers; True when Timer H fired (no ACK: the TU is informed)."""
        timed_out = False
        while self.timers and self.state is not State.TERMINATED:
            timer, when = min(self.timers.items(), key=_by_deadline)
            if when > now:
                break
            del self.timers[timer]
            new = next_state(self.kind, self.state, _TIMER_INPUT[timer])
            if timer is Timer.G:
                if self._last_wire is not None:
                    self._outbox.append((self._last_wire, self.destination))
                self._interval = min(2 * self._interval, self._config.t2)
                self.timers[Timer.G] = when + self._interval
            elif timer is Timer.H:
                timed_out = True
            if new is State.TERMINATED:
                self.state = new
                self.timers.clear()
        self._update_deadline()
        return timed_out

    def transport_error(self, now: float) -> bool:
        """The transport could not deliver our response; True when the TU must be told."""
        old = self.state
        new = next_state(self.kind, old, Input.TRANSPORT_ERROR)
        if new is not old:
            self.state = new
            self.timers.clear()
            self._update_deadline()
            return True
        return False
