"""Plain typed values shared by every layer of the daemon.

Nothing here does I/O: these are the nouns the store returns, routing decides on, the call
layer acts on and the API renders. Values are frozen so that a value handed from one layer to
another can never change underneath it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utc_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z`` — the one timestamp format of the API, the
    pages and the webhooks (always with a fraction, so clients can parse one format)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def optional_utc_timestamp(moment: datetime | None) -> str | None:
    """:func:`utc_timestamp`, or None for None."""
    return utc_timestamp(moment) if moment is not None else None


class Intent(enum.StrEnum):
    """How hot the lead is; picks the default SLA tier."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class LeadStatus(enum.StrEnum):
    """Where a lead is in its life (DESIGN §6)."""

    #: Stored durably; nothing has looked at it yet.
    RECEIVED = "received"
    #: A daemon has claimed it and is choosing reps.
    ROUTING = "routing"
    #: No rep qualifies now; the lead is offered to the first rep who becomes available.
    WAITING_FOR_REP = "waiting_for_rep"
    #: Only calling hours (or a retry delay) hold it; it runs again at ``next_attempt_at``.
    SCHEDULED = "scheduled"
    #: Rep legs are ringing.
    RINGING_REPS = "ringing_reps"
    #: A rep answered; the prospect is being dialled.
    CALLING_PROSPECT = "calling_prospect"
    #: Rep and prospect are bridged.
    CONNECTED = "connected"
    #: The bridged call ended normally.
    COMPLETED = "completed"
    # Terminal failures.
    NO_REP_AVAILABLE = "no_rep_available"
    REPS_NO_ANSWER = "reps_no_answer"
    PROSPECT_NO_ANSWER = "prospect_no_answer"
    PROSPECT_BUSY = "prospect_busy"
    FAILED = "failed"
    BLOCKED_COMPLIANCE = "blocked_compliance"

    @property
    def is_terminal(self) -> bool:
        """True when nothing more will happen to the lead without a human."""
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset(
    {
        LeadStatus.COMPLETED,
        LeadStatus.NO_REP_AVAILABLE,
        LeadStatus.REPS_NO_ANSWER,
        LeadStatus.PROSPECT_NO_ANSWER,
        LeadStatus.PROSPECT_BUSY,
        LeadStatus.FAILED,
        LeadStatus.BLOCKED_COMPLIANCE,
    }
)


class RepStatus(enum.StrEnum):
    """A rep's live presence, kept in the database."""

    AVAILABLE = "available"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    AWAY = "away"
    OFFLINE = "offline"


class RingMode(enum.StrEnum):
    """How the legs of a ring plan are started."""

    #: Every target at once; the first answer wins.
    PARALLEL = "parallel"
    #: One target at a time, each with its own ring timeout.
    SEQUENTIAL = "sequential"
    #: ``wave_size`` targets at a time.
    WAVES = "waves"


class SlaStatus(enum.StrEnum):
    """Whether a lead's first call happened inside its response-time window."""

    PENDING = "pending"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    MET = "met"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lead:
    """A stored lead, as the store returns it."""

    id: str
    phone: str  # E.164
    name: str | None = None
    email: str | None = None
    company: str | None = None
    source: str | None = None
    external_id: str | None = None
    intent: Intent | None = None
    consent: bool | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    #: The daemon's clock when the lead was stored.
    received_at: datetime
    #: The true form-submission time, as sent by the client (clamped to ``received_at``).
    submitted_at: datetime | None = None
    status: LeadStatus = LeadStatus.RECEIVED
    assigned_rep: str | None = None

    @property
    def clock_start(self) -> datetime:
        """When the response-time clock started: submission time when known."""
        return self.submitted_at or self.received_at


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadEvent:
    """One append-only entry of a lead's timeline."""

    lead_id: str
    seq: int
    at: datetime
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadContext:
    """Who the lead is, shown to the rep whose phone rings (screen pop)."""

    lead_id: str
    phone: str
    name: str | None = None
    company: str | None = None
    source: str | None = None
    #: Page a rep's phone or console can open for the lead (``Call-Info``).
    page_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RingTarget:
    """One rep to ring: who, and where their phone is."""

    rep_id: str
    uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RingPlan:
    """Pure data from routing: whom to ring, how, and whom to bridge them to."""

    targets: tuple[RingTarget, ...]
    mode: RingMode = RingMode.PARALLEL
    #: Legs per wave when ``mode`` is ``waves``.
    wave_size: int = 3
    #: How long one leg may ring before it counts as no answer.
    ring_timeout_s: float = 20.0
    #: How long the whole plan may take before it is abandoned (None: sum of its attempts).
    deadline_s: float | None = None
    #: The prospect's number, E.164.
    prospect_number: str
    #: Caller ID shown to the prospect (the trunk's number).
    caller_id: str
    lead: LeadContext
    #: ``"answer"``: the first rep to pick up wins. ``"press1"``: a rep who picks up hears a
    #: prompt and wins only by pressing 1 (voicemail defence, DESIGN §4).
    accept: str = "answer"
    #: With ``press1``: how long a rep who picked up has to press a key before the leg is
    #: treated as voicemail.
    accept_timeout_s: float = 8.0
