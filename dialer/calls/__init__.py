"""Calls: turn a ring plan into a connected call (DESIGN §4).

Pure state machines (no I/O, time passed in) and the asyncio controller that drives them over
the daemon's SIP endpoint:

- :mod:`dialer.calls.ringing` — :class:`RingSession`: which rep legs ring, which answer wins
  (the first 2xx, or with ``RingPlan.accept == "press1"`` the first rep to press 1).
- :mod:`dialer.calls.bridge` — :class:`Bridge` (3PCC, RFC 3725; the flow and why is in its
  docstring) and :class:`CallFlow`, the whole sans-I/O life of one lead's call.
- :mod:`dialer.calls.trunks` — :class:`TrunkPool`: max calls, calls per second, keepalive,
  failover.
- :mod:`dialer.calls.outcome` — :class:`CallEvent` stream and :class:`CallOutcome`.
- :mod:`dialer.calls.controller` — :class:`CallController` (asyncio, owns the SIP endpoint)
  and the :class:`Call` handle the pipeline follows a call with.
"""

from __future__ import annotations

from dialer.calls.bridge import (
    Bridge,
    BridgeSettings,
    BridgeState,
    CallCommand,
    CallFlow,
    DialProspect,
    Reinvite,
    placeholder_offer,
)
from dialer.calls.controller import (
    DEFAULT_RTP_PORTS,
    Call,
    CallController,
    ControllerSettings,
    EventCallback,
    default_accept_prompt,
)
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
    ACCEPT_ANSWER,
    ACCEPT_MODES,
    ACCEPT_PRESS1,
    REASON_COMPLETED_ELSEWHERE,
    CallStateError,
    CancelLeg,
    HangUpLeg,
    LegState,
    PlayRingback,
    PromptLeg,
    RingSession,
    RingState,
    StartLeg,
)
from dialer.calls.trunks import (
    DigestCredentials,
    TokenBucket,
    Trunk,
    TrunkDecision,
    TrunkGrant,
    TrunkPool,
    TrunkRefusal,
    TrunkRefusalReason,
    TrunkSettings,
    TrunkStatus,
    TrunkWaiting,
)

__all__ = [
    "ACCEPT_ANSWER",
    "ACCEPT_MODES",
    "ACCEPT_PRESS1",
    "DEFAULT_RTP_PORTS",
    "REASON_COMPLETED_ELSEWHERE",
    "Bridge",
    "BridgeSettings",
    "BridgeState",
    "Call",
    "CallCommand",
    "CallController",
    "CallEvent",
    "CallEventKind",
    "CallFlow",
    "CallOutcome",
    "CallResult",
    "CallStateError",
    "CancelLeg",
    "ControllerSettings",
    "DialProspect",
    "DigestCredentials",
    "EventCallback",
    "HangUpLeg",
    "Leg",
    "LegKind",
    "LegRecord",
    "LegResult",
    "LegState",
    "Party",
    "PlayRingback",
    "PromptLeg",
    "Reinvite",
    "RingSession",
    "RingState",
    "StartLeg",
    "TokenBucket",
    "Trunk",
    "TrunkDecision",
    "TrunkGrant",
    "TrunkPool",
    "TrunkRefusal",
    "TrunkRefusalReason",
    "TrunkSettings",
    "TrunkStatus",
    "TrunkWaiting",
    "classify_final_status",
    "default_accept_prompt",
    "placeholder_offer",
]
