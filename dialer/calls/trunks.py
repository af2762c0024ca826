"""Trunk capacity, health and failover: a sans-I/O pool of the configured SIP trunks.

Every leg that goes through a trunk (the prospect leg, and rep legs whose URI is a ``tel:`` or
E.164 number) first asks the :class:`TrunkPool` for a slot. A trunk gives one when it is up,
has fewer than ``max_calls`` calls and a token in its ``max_cps`` bucket. When no trunk can
give one, the request waits in one bounded FIFO line (a burst of leads queues rather than
drops); beyond ``max_waiting``, or after ``max_wait_s`` in line, it is refused with a
:class:`TrunkRefusal` that says why (``trunk_busy`` to the call).

Trunks are tried in config order: the first one that can take the call gets it. A trunk that
is down (OPTIONS keepalive unanswered, or an INVITE that timed out) is skipped, and a trunk
that answers 503 to an INVITE makes the caller retry on the next one (``exclude``).

Drivers: the application (:meth:`TrunkPool.request`, :meth:`TrunkPool.release`,
:meth:`TrunkPool.withdraw`), results reported by the SIP side (:meth:`TrunkPool.options_result`,
:meth:`TrunkPool.invite_result`), and the timer (:meth:`TrunkPool.get_timer` /
:meth:`TrunkPool.handle_timer`: token refills, keepalives, waiting-line expiry). Outputs:
:meth:`TrunkPool.pop_decisions` (grants and refusals for requests that waited) and
:meth:`TrunkPool.options_due` (trunks to send OPTIONS to).
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "DigestCredentials",
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
]


class TrunkSettings(Protocol):
    """What the pool needs of a trunk's configuration (``dialer.config.TrunkConfig``)."""

    @property
    def name(self) -> str: ...
    @property
    def proxy(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def caller_id(self) -> str: ...
    @property
    def max_calls(self) -> int: ...
    @property
    def max_cps(self) -> float: ...
    @property
    def options_interval_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """Username and password a trunk's digest challenges (401/407) are answered with."""

    username: str
    password: str = field(repr=False)


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; time is passed in.

    A rate of 0 or less means no limit.
    """

    def __init__(self, rate: float, *, now: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._updated = now

    @property
    def unlimited(self) -> bool:
        """True when the bucket never runs dry."""
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def available(self, now: float) -> bool:
        """True when a token can be taken at ``now``."""
        if self.unlimited:
            return True
        self._refill(now)
        return self._tokens >= 1.0

    def take(self, now: float) -> bool:
        """Take one token; False (and nothing taken) when there is none."""
        if not self.available(now):
            return False
        if not self.unlimited:
            self._tokens -= 1.0
        return True

    def next_token_at(self, now: float) -> float:
        """When the next token will be there (``now`` when one already is)."""
        if self.available(now):
            return now
        return now + (1.0 - self._tokens) / self.rate

    def refill_time(self) -> float | None:
        """When the bucket, empty as of its last use, has a token again; None when it is
        unlimited or still had one then."""
        if self.unlimited or self._tokens >= 1.0:
            return None
        return self._updated + (1.0 - self._tokens) / self.rate


class TrunkStatus(enum.StrEnum):
    """Health of a trunk as the keepalive and INVITE results show it."""

    UP = "up"
    DOWN = "down"


#: How soon a trunk that just went down is probed again (its OPTIONS interval may be long).
DOWN_PROBE_S = 1.0

_PROXY_HOST = re.compile(r"^(?P<scheme>sips?):(?:[^@;]*@)?(?P<hostport>[^;?]+)")


class Trunk:
    """One configured trunk and its live state (calls in progress, tokens, health)."""

    def __init__(self, settings: TrunkSettings, *, now: float) -> None:
        self.settings = settings
        self.status = TrunkStatus.UP
        self.active_calls = 0
        self.bucket = TokenBucket(settings.max_cps, now=now)
        self.consecutive_failures = 0
        self.options_in_flight = False
        interval = settings.options_interval_s
        #: When the next OPTIONS keepalive is due (None: keepalive disabled).
        self.options_due_at: float | None = now if interval > 0 else None

    @property
    def name(self) -> str:
        """The trunk's configured name."""
        return self.settings.name

    @property
    def credentials(self) -> DigestCredentials | None:
        """Digest credentials, or None when the trunk authenticates by IP."""
        if not self.settings.username:
            return None
        return DigestCredentials(self.settings.username, self.settings.password)

    @property
    def caller_id(self) -> str:
        """The number presented to the called party (From and P-Asserted-Identity)."""
        return self.settings.caller_id

    def request_uri(self, number: str) -> str:
        """Request-URI for ``number`` (E.164) at this trunk: ``sip:+1555...@host;user=phone``."""
        match = _PROXY_HOST.match(self.settings.proxy.strip())
        if match is None:
            raise ValueError(f"trunk {self.name}: proxy {self.settings.proxy!r} is not a SIP URI")
        return f"{match['scheme']}:{number}@{match['hostport']};user=phone"

    def has_room(self) -> bool:
        """True when another concurrent call fits (``max_calls`` of 0 or less: no limit)."""
        limit = self.settings.max_calls
        return limit <= 0 or self.active_calls < limit

    def can_take(self, now: float) -> bool:
        """True when this trunk can start a call at ``now``."""
        return self.status is TrunkStatus.UP and self.has_room() and self.bucket.available(now)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkGrant:
    """A slot on ``trunk``: send the INVITE there, and :meth:`TrunkPool.release` it when the
    call is over (whatever happened)."""

    ticket: int
    trunk: Trunk
    granted_at: float


class TrunkRefusalReason(enum.StrEnum):
    """Why a request got no trunk."""

    #: Every eligible trunk is full and the waiting line is full too.
    QUEUE_FULL = "queue_full"
    #: Waited ``max_wait_s`` in line without a slot.
    WAIT_EXPIRED = "wait_expired"
    #: No trunk is up (after excluding the ones that already failed this call).
    NO_TRUNK_UP = "no_trunk_up"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkRefusal:
    """No trunk for request ``ticket``; the call counts this as ``trunk_busy``."""

    ticket: int
    reason: TrunkRefusalReason
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TrunkWaiting:
    """Request ``ticket`` is in line; its grant or refusal comes out of ``pop_decisions``."""

    ticket: int


TrunkDecision = TrunkGrant | TrunkRefusal | TrunkWaiting


@dataclass(slots=True)
class _Waiter:
    ticket: int
    exclude: frozenset[str]
    expires_at: float


class TrunkPool:
    """Every configured trunk, in config order (see the module docstring for the drivers).

    ``max_waiting`` bounds the waiting line, ``max_wait_s`` the time a request may wait (the
    rep is already on the line while the prospect leg waits), ``down_after_failures`` the
    consecutive unanswered keepalives that mark a trunk down.
    """

    def __init__(
        self,
        trunks: Sequence[TrunkSettings],
        *,
        now: float,
        max_waiting: int = 1000,
        max_wait_s: float = 10.0,
        down_after_failures: int = 1,
    ) -> None:
        names = [t.name for t in trunks]
        if len(set(names)) != len(names):
            raise ValueError(f"trunk names must be unique: {names}")
        self._trunks: OrderedDict[str, Trunk] = OrderedDict(
            (t.name, Trunk(t, now=now)) for t in trunks
        )
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self.down_after_failures = down_after_failures
        self._waiting: OrderedDict[int, _Waiter] = OrderedDict()
        self._decisions: list[TrunkGrant | TrunkRefusal] = []
        self._next_ticket = 1

    # -- queries ------------------------------------------------------------------------------

    @property
    def trunks(self) -> tuple[Trunk, ...]:
        """The trunks, in config order."""
        return tuple(self._trunks.values())

    def trunk(self, name: str) -> Trunk:
        """The trunk called ``name`` (KeyError when there is none)."""
        return self._trunks[name]

    @property
    def waiting(self) -> int:
        """How many requests are in the waiting line."""
        return len(self._waiting)

    # -- requests -----------------------------------------------------------------------------

    def request(self, now: float, *, exclude: frozenset[str] = frozenset()) -> TrunkDecision:
        """Ask for a slot on the first trunk (in config order, minus ``exclude``) that can take
        a call now; wait in line when none can; refuse when the line is full or no trunk is up.
        """
        ticket = self._next_ticket
        self._next_ticket += 1
        if not self._eligible(exclude):
            return TrunkRefusal(ticket=ticket, reason=TrunkRefusalReason.NO_TRUNK_UP, at=now)
        # Those already in line go first: a new request may not overtake them.
        if not self._waiting:
            grant = self._try_grant(ticket, exclude, now)
            if grant is not None:
                return grant
        if len(self._waiting) >= self.max_waiting:
            return TrunkRefusal(ticket=ticket, reason=TrunkRefusalReason.QUEUE_FULL, at=now)
        self._waiting[ticket] = _Waiter(ticket, exclude, now + self.max_wait_s)
        return TrunkWaiting(ticket=ticket)

    def withdraw(self, ticket: int) -> bool:
        """Leave the waiting line (the call ended meanwhile); True when it was in line."""
        return self._waiting.pop(ticket, None) is not None

    def release(self, grant: TrunkGrant, now: float) -> None:
        """The call that ``grant`` was for is over: free its slot, serve whoever waits."""
        trunk = grant.trunk
        trunk.active_calls = max(0, trunk.active_calls - 1)
        self._serve_waiting(now)

    def pop_decisions(self) -> list[TrunkGrant | TrunkRefusal]:
        """Grants and refusals for requests that had to wait, in order; clears the queue."""
        decisions, self._decisions = self._decisions, []
        return decisions

    # -- health -------------------------------------------------------------------------------

    def options_due(self, now: float) -> list[Trunk]:
        """Trunks whose OPTIONS keepalive must be sent now; report each with
        :meth:`options_result`."""
        due: list[Trunk] = []
        for trunk in self._trunks.values():
            if (
                trunk.options_due_at is not None
                and not trunk.options_in_flight
                and now >= trunk.options_due_at
            ):
                trunk.options_in_flight = True
                trunk.options_due_at = now + trunk.settings.options_interval_s
                due.append(trunk)
        return due

    def options_result(self, name: str, now: float, *, status: int | None) -> None:
        """The keepalive to ``name`` got ``status`` (None: no answer in time / transport error).

        Any answer but 503 shows the trunk alive (a 404 or 405 to OPTIONS still means a SIP
        server is there and routing); 503 or silence counts as a failure.
        """
        trunk = self._trunks[name]
        trunk.options_in_flight = False
        if status is not None and status != 503:
            self._mark_up(trunk, now)
        else:
            self._count_failure(trunk, now)

    def invite_result(self, name: str, now: float, *, status: int | None) -> bool:
        """Report how an INVITE through ``name`` ended; True when the caller should fail over
        to the next trunk (503, or no answer at all, which also marks the trunk down)."""
        trunk = self._trunks[name]
        if status is None:
            trunk.consecutive_failures = self.down_after_failures
            self._mark_down(trunk, now)
            return True
        if status == 503:
            return True
        if status < 700:
            self._mark_up(trunk, now)
        return False

    # -- timer --------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` must be called, or None."""
        timers: list[float] = []
        for trunk in self._trunks.values():
            if trunk.options_due_at is not None and not trunk.options_in_flight:
                timers.append(trunk.options_due_at)
        if self._waiting:
            timers.append(min(w.expires_at for w in self._waiting.values()))
            refill = self._next_refill()
            if refill is not None:
                timers.append(refill)
        return min(timers, default=None)

    def handle_timer(self, now: float) -> None:
        """Serve waiters whose trunk got a token back and expire those waiting too long.
        (Keepalives that are due come out of :meth:`options_due`.)"""
        self._serve_waiting(now)
        for ticket, waiter in list(self._waiting.items()):
            if now >= waiter.expires_at:
                del self._waiting[ticket]
                self._decisions.append(
                    TrunkRefusal(ticket=ticket, reason=TrunkRefusalReason.WAIT_EXPIRED, at=now)
                )

    # -- internals ----------------------------------------------------------------------------

    def _eligible(self, exclude: frozenset[str]) -> list[Trunk]:
        return [
            t for t in self._trunks.values() if t.status is TrunkStatus.UP and t.name not in exclude
        ]

    def _try_grant(self, ticket: int, exclude: frozenset[str], now: float) -> TrunkGrant | None:
        for trunk in self._eligible(exclude):
            if trunk.can_take(now):
                trunk.bucket.take(now)
                trunk.active_calls += 1
                return TrunkGrant(ticket=ticket, trunk=trunk, granted_at=now)
        return None

    def _serve_waiting(self, now: float) -> None:
        for ticket, waiter in list(self._waiting.items()):
            if not self._eligible(waiter.exclude):
                del self._waiting[ticket]
                self._decisions.append(
                    TrunkRefusal(ticket=ticket, reason=TrunkRefusalReason.NO_TRUNK_UP, at=now)
                )
                continue
            grant = self._try_grant(ticket, waiter.exclude, now)
            if grant is not None:
                del self._waiting[ticket]
                self._decisions.append(grant)

    def _next_refill(self) -> float | None:
        """When a trunk with room (but no token) gets its next token."""
        times = [
            refill
            for t in self._trunks.values()
            if t.status is TrunkStatus.UP
            and t.has_room()
            and (refill := t.bucket.refill_time()) is not None
        ]
        return min(times, default=None)

    def _mark_up(self, trunk: Trunk, now: float) -> None:
        trunk.consecutive_failures = 0
        if trunk.status is not TrunkStatus.UP:
            trunk.status = TrunkStatus.UP
            self._serve_waiting(now)

    def _count_failure(self, trunk: Trunk, now: float) -> None:
        trunk.consecutive_failures += 1
        if trunk.consecutive_failures >= self.down_after_failures:
            self._mark_down(trunk, now)

    def _mark_down(self, trunk: Trunk, now: float) -> None:
        if trunk.status is not TrunkStatus.DOWN:
            trunk.status = TrunkStatus.DOWN
            if trunk.options_due_at is not None and not trunk.options_in_flight:
                # Probe a down trunk soon, so it comes back as soon as it answers.
                trunk.options_due_at = min(trunk.options_due_at, now + DOWN_PROBE_S)
            self._serve_waiting(now)
