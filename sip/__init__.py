"""A sans-I/O SIP stack (RFC 3261) with one thin asyncio adapter.

The protocol core in this package imports no asyncio, socket, time or random module: bytes and
an explicit ``now`` go in, events and bytes come out, and timers are data (``get_timer()`` /
``handle_timer(now)``). Only the :mod:`sip.aio` package touches sockets and the event loop; it
is not imported here, so ``import sip`` stays free of asyncio.

Layers, each wrapping the one below: messages (:mod:`sip.message`, :mod:`sip.headers`,
:mod:`sip.uri`), transactions (:mod:`sip.transaction`, RFC 3261 §17 with RFC 6026), dialogs
(:mod:`sip.dialog`), and the user agent (:mod:`sip.ua`) that the application drives.
"""

from __future__ import annotations

from sip.auth import (
    Credentials,
    DigestAlgorithm,
    DigestChallenge,
    DigestResponse,
    build_authorization,
    choose_challenge,
    choose_challenges,
    verify_authorization,
)
from sip.config import DEFAULT_ALLOW, SipConfig
from sip.dialog import Dialog, DialogId, DialogState
from sip.dtmf import DtmfDigit
from sip.errors import LocalProtocolError, ParseError, RemoteProtocolError, SipError
from sip.events import (
    AckReceived,
    CallAnswered,
    CallEvent,
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
from sip.headers import (
    CallInfo,
    CSeq,
    Headers,
    NameAddr,
    Reason,
    Via,
    parse_auth_params,
    parse_call_info,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_reason,
    parse_via,
    split_header_values,
)
from sip.message import (
    DEFAULT_LIMITS,
    Message,
    ParserLimits,
    Request,
    Response,
    StreamParser,
    make_response,
    parse_message,
    reason_phrase,
)
from sip.prompt import (
    Prompt,
    PromptError,
    RingbackRegion,
    load_prompt,
    prompt_from_pcm_wav,
    ringback,
)
from sip.rtp import MediaNegotiationError
from sip.sdp import Attribute as SdpAttribute
from sip.sdp import (
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SessionDescription,
    make_hold,
    make_inactive,
    make_inactive_offer,
)
from sip.transaction import (
    Address,
    ClientTransaction,
    ServerTransaction,
    TransactionStateError,
)
from sip.ua import CallState, IdGenerator, SequentialIds, UaStats, UserAgent, uri_address
from sip.uri import URI, AbsoluteURI, SipURI, TelURI, parse_uri

__all__ = [
    "DEFAULT_ALLOW",
    "DEFAULT_LIMITS",
    "URI",
    "AbsoluteURI",
    "AckReceived",
    "Address",
    "CSeq",
    "CallAnswered",
    "CallEvent",
    "CallInfo",
    "CallProgress",
    "CallRejected",
    "CallState",
    "CallTerminated",
    "ClientTransaction",
    "Connection",
    "Credentials",
    "Dialog",
    "DialogId",
    "DialogState",
    "DigestAlgorithm",
    "DigestChallenge",
    "DigestResponse",
    "Direction",
    "DtmfDigit",
    "Event",
    "Headers",
    "IdGenerator",
    "IncomingCall",
    "InfoReceived",
    "LocalProtocolError",
    "MediaDescription",
    "MediaNegotiationError",
    "Message",
    "NameAddr",
    "Origin",
    "ParseError",
    "ParserLimits",
    "Prompt",
    "PromptError",
    "ReInviteCompleted",
    "ReInviteReceived",
    "Reason",
    "RemoteProtocolError",
    "Request",
    "RequestCompleted",
    "Response",
    "RingbackRegion",
    "SdpAttribute",
    "SequentialIds",
    "ServerTransaction",
    "SessionDescription",
    "SipConfig",
    "SipError",
    "SipURI",
    "StreamParser",
    "TelURI",
    "TerminationCause",
    "TransactionStateError",
    "UaStats",
    "UserAgent",
    "Via",
    "build_authorization",
    "choose_challenge",
    "choose_challenges",
    "load_prompt",
    "make_hold",
    "make_inactive",
    "make_inactive_offer",
    "make_response",
    "parse_auth_params",
    "parse_call_info",
    "parse_cseq",
    "parse_message",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_reason",
    "parse_uri",
    "parse_via",
    "prompt_from_pcm_wav",
    "reason_phrase",
    "ringback",
    "split_header_values",
    "uri_address",
    "verify_authorization",
]
