"""Configuration of the SIP protocol engine: one frozen dataclass, every default documented.

Timer names and values follow RFC 3261 §17 and Table 4 (page 265), amended by RFC 6026
(Timers L and M). Only the three base values (T1, T2, T4) are settings; every other timer is
derived from them, exactly as the table says, so changing T1 scales the whole engine.

    Timer    Value                 Section               Meaning
    ----------------------------------------------------------------------------------
    T1       500ms default         Section 17.1.1.1     RTT Estimate
    T2       4s                    Section 17.1.2.2     The maximum retransmit
                                                         interval for non-INVITE
                                                         requests and INVITE
                                                         responses
    T4       5s                    Section 17.1.2.2     Maximum duration a
                                                         message will
                                                         remain in the network
    Timer A  initially T1          Section 17.1.1.2     INVITE request retransmit
                                                         interval, for UDP only
    Timer B  64*T1                 Section 17.1.1.2     INVITE transaction
                                                         timeout timer
    Timer C  > 3min                Section 16.6         proxy INVITE transaction
                                    bullet 11            timeout
    Timer D  > 32s for UDP         Section 17.1.1.2     Wait time for response
             0s for TCP/SCTP                             retransmits
    Timer E  initially T1          Section 17.1.2.2     non-INVITE request
                                                         retransmit interval,
                                                         UDP only
    Timer F  64*T1                 Section 17.1.2.2     non-INVITE transaction
                                                         timeout timer
    Timer G  initially T1          Section 17.2.1       INVITE response
                                                         retransmit interval
    Timer H  64*T1                 Section 17.2.1       Wait time for
                                                         ACK receipt
    Timer I  T4 for UDP            Section 17.2.1       Wait time for
             0s for TCP/SCTP                             ACK retransmits
    Timer J  64*T1 for UDP         Section 17.2.2       Wait time for
             0s for TCP/SCTP                             non-INVITE request
                                                         retransmits
    Timer K  T4 for UDP            Section 17.1.2.2     Wait time for
             0s for TCP/SCTP                             response retransmits
    Timer L  64*T1                 Section 17.2.1       Wait time for
                                                         accepted INVITE request
                                                         retransmits
    Timer M  64*T1                 Section 17.1.1       Wait time for
                                                         retransmission of
                                                         2xx to INVITE or
                                                         additional 2xx from
                                                         other branches of
                                                         a forked INVITE

Timers L and M are the rows RFC 6026 adds to the table (the sections are RFC 3261 sections it
rewrites). Timer C belongs to proxies and is not used by a user agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_ALLOW", "SipConfig"]

#: Methods this user agent implements; sent in ``Allow`` (RFC 3261 §20.5) of OPTIONS answers
#: and 405 responses.
DEFAULT_ALLOW: tuple[str, ...] = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO")


@dataclass(frozen=True, slots=True, kw_only=True)
class SipConfig:
    """Every knob of the SIP engine, with RFC 3261 defaults.

    Durations are seconds (floats). The derived timers (``timer_b`` ... ``timer_m``) are
    properties computed from T1 and T4 per RFC 3261 Table 4; ``reliable`` selects the
    TCP/SCTP column (0 s waits) of that table.
    """

    #: T1, the round-trip-time estimate (RFC 3261 §17.1.1.1): 500 ms.
    t1: float = 0.5
    #: T2, the cap on non-INVITE request and INVITE response retransmit intervals: 4 s.
    t2: float = 4.0
    #: T4, the longest time a message stays in the network: 5 s.
    t4: float = 5.0
    #: Timer D over an unreliable transport: "> 32s for UDP" (Table 4); 0 s over TCP.
    timer_d_unreliable: float = 32.0
    #: Product token sent in ``User-Agent`` and ``Server`` headers; empty string: none sent.
    user_agent: str = "dialer-sip/0.1"
    #: ``Max-Forwards`` on requests we originate (RFC 3261 §8.1.1.6 recommends 70).
    max_forwards: int = 70
    #: Methods advertised in ``Allow``.
    allow: tuple[str, ...] = DEFAULT_ALLOW
    #: Upper bound on live transactions (client + server). A new request arriving above it is
    #: answered ``503 Service Unavailable`` statelessly; a new request of ours raises
    #: :class:`~sip.errors.LocalProtocolError`. Memory per transaction is ~1-2 KiB.
    max_transactions: int = 200_000
    #: Send ``100 Trying`` as soon as an INVITE arrives (RFC 3261 §17.2.1 requires it within
    #: 200 ms when the TU will not answer sooner; sending at once keeps the engine clock-free).
    send_100_trying: bool = True
    #: How many digest challenges one request may answer before the 401/407 is reported as a
    #: rejection. A ``stale=true`` challenge does not count (RFC 7616 §3.3).
    max_auth_attempts: int = 2
    #: How many times a re-INVITE that got ``491 Request Pending`` is retried (RFC 3261 §14.1)
    #: before the 491 is reported to the application.
    max_glare_retries: int = 3
    #: Retry-After (seconds) on the ``500`` that refuses a second re-INVITE while one is pending
    #: (RFC 3261 §14.2: "a value randomly chosen between 0 and 10 seconds"; we use a fixed value).
    reinvite_retry_after: int = 2
    #: An outgoing INVITE still unanswered after this many seconds is cancelled by the UA: a
    #: safety net like a proxy's Timer C (RFC 3261 §16.6, "> 3 min"), since Timer B stops once
    #: a provisional response arrives and the application normally cancels much sooner
    #: (ring timeouts). ``None`` disables it.
    invite_timeout: float | None = 180.0
    #: Transport of the local listening point: ``"udp"`` (unreliable: retransmissions run)
    #: or ``"tcp"`` (reliable: no retransmissions, Timers D/I/J/K are 0).
    transport: str = "udp"
    #: Extra header fields added to every request we originate (e.g. ``("X-Node", "a")``).
    extra_request_headers: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2):
            raise ValueError("SipConfig needs 0 < t1 <= t2")
        if self.t4 <= 0:
            raise ValueError("SipConfig needs t4 > 0")
        if self.transport not in ("udp", "tcp"):
            raise ValueError(f"unsupported transport {self.transport!r}: 'udp' or 'tcp'")

    @property
    def reliable(self) -> bool:
        """True when the transport is reliable (TCP): no retransmissions, zero linger timers."""
        return self.transport != "udp"

    @property
    def timer_b(self) -> float:
        """Timer B, INVITE client transaction timeout: 64*T1."""
        return 64 * self.t1

    @property
    def timer_d(self) -> float:
        """Timer D, wait for INVITE response retransmits: 32 s (UDP) or 0 (reliable)."""
        return 0.0 if self.reliable else self.timer_d_unreliable

    @property
    def timer_f(self) -> float:
        """Timer F, non-INVITE client transaction timeout: 64*T1."""
        return 64 * self.t1

    @property
    def timer_h(self) -> float:
        """Timer H, wait for the ACK of a non-2xx final response: 64*T1."""
        return 64 * self.t1

    @property
    def timer_i(self) -> float:
        """Timer I, wait for ACK retransmits: T4 (UDP) or 0 (reliable)."""
        return 0.0 if self.reliable else self.t4

    @property
    def timer_j(self) -> float:
        """Timer J, wait for non-INVITE request retransmits: 64*T1 (UDP) or 0 (reliable)."""
        return 0.0 if self.reliable else 64 * self.t1

    @property
    def timer_k(self) -> float:
        """Timer K, wait for non-INVITE response retransmits: T4 (UDP) or 0 (reliable)."""
        return 0.0 if self.reliable else self.t4

    @property
    def timer_l(self) -> float:
        """Timer L (RFC 6026), wait for retransmits of an accepted INVITE: 64*T1."""
        return 64 * self.t1

    @property
    def timer_m(self) -> float:
        """Timer M (RFC 6026), wait for 2xx retransmits and forked 2xx: 64*T1."""
        return 64 * self.t1

    @property
    def session_ack_timeout(self) -> float:
        """How long a UAS retransmits its 2xx waiting for the ACK (RFC 3261 §13.3.1.4): 64*T1."""
        return 64 * self.t1
