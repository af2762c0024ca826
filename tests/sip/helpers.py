"""Shared helpers for the SIP engine tests: user agents wired in memory, scripted time.

A :class:`Wire` connects :class:`~sip.ua.UserAgent` objects by address and moves their
datagrams until nothing is left to deliver; time only moves when a test says so
(``advance``/``run_until``), always to the next deadline a UA asked for (the h11/aioquic
pattern: ``now = ua.get_timer()``). Addresses without a UA are *peers*: what is sent to them is
captured, and the test answers with literal bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sip.config import SipConfig
from sip.events import Event
from sip.message import Request, Response, parse_message
from sip.transaction import Address
from sip.ua import SequentialIds, UserAgent

T = TypeVar("T")

A: Address = ("127.0.0.1", 5060)
B: Address = ("127.0.0.1", 5070)
PEER: Address = ("127.0.0.1", 5080)

OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)
ANSWER = OFFER.replace(b"1 1", b"2 2").replace(b"4000", b"4002")


@dataclass
class Packet:
    """One message that crossed the wire."""

    time: float
    src: Address
    dst: Address
    data: bytes

    @property
    def message(self) -> Request | Response:
        """The parsed message."""
        return parse_message(self.data)

    @property
    def first_line(self) -> str:
        """``INVITE sip:... SIP/2.0`` or ``SIP/2.0 200 OK``."""
        return self.data.split(b"\r\n", 1)[0].decode()

    def is_request(self, method: str) -> bool:
        """Whether this is a ``method`` request."""
        return self.data.startswith(method.encode() + b" ")

    def is_response(self, status: int, method: str | None = None) -> bool:
        """Whether this is a ``status`` response (to ``method`` when given)."""
        if not self.data.startswith(f"SIP/2.0 {status} ".encode()):
            return False
        message = self.message
        return method is None or message.cseq.method == method


@dataclass
class Wire:
    """User agents connected in memory, with a scripted clock."""

    now: float = 0.0
    uas: dict[Address, UserAgent] = field(default_factory=dict)
    log: list[Packet] = field(default_factory=list)
    #: Return True to lose a packet (it is still logged, with ``lost`` marking).
    drop: Callable[[Packet], bool] | None = None
    lost: list[Packet] = field(default_factory=list)

    def add(self, address: Address, config: SipConfig | None = None, prefix: str = "") -> UserAgent:
        """A new UA at ``address``."""
        ua = UserAgent(
            config if config is not None else SipConfig(),
            local=address,
            ids=SequentialIds(prefix or f"u{address[1]}-"),
        )
        self.uas[address] = ua
        return ua

    def deliver(self, max_rounds: int = 100) -> list[Packet]:
        """Move datagrams until every UA is quiet; returns what moved. Packets to addresses
        without a UA are only logged (the test plays that peer)."""
        moved: list[Packet] = []
        for _ in range(max_rounds):
            batch: list[Packet] = []
            for src, ua in list(self.uas.items()):
                for data, dst in ua.datagrams_to_send(self.now):
                    batch.append(Packet(self.now, src, dst, data))
            if not batch:
                return moved
            for packet in batch:
                self.log.append(packet)
                moved.append(packet)
                if self.drop is not None and self.drop(packet):
                    self.lost.append(packet)
                    continue
                target = self.uas.get(packet.dst)
                if target is not None:
                    target.receive_datagram(packet.data, packet.src, self.now)
        raise AssertionError("the user agents kept talking for max_rounds rounds")

    def inject(self, data: bytes, src: Address, dst: Address) -> list[Packet]:
        """A peer at ``src`` sends ``data`` to the UA at ``dst``; returns what followed."""
        self.log.append(Packet(self.now, src, dst, data))
        self.uas[dst].receive_datagram(data, src, self.now)
        return self.deliver()

    def next_deadline(self) -> float | None:
        """The earliest timer of any UA."""
        timers = [t for t in (ua.get_timer() for ua in self.uas.values()) if t is not None]
        return min(timers) if timers else None

    def step(self) -> float | None:
        """Jump to the next deadline, fire it, deliver; returns the new time (None: idle)."""
        deadline = self.next_deadline()
        if deadline is None:
            return None
        self.now = max(self.now, deadline)
        for ua in self.uas.values():
            timer = ua.get_timer()
            if timer is not None and timer <= self.now:
                ua.handle_timer(self.now)
        self.deliver()
        return self.now

    def run_until(self, until: float, max_steps: int = 10_000) -> list[Packet]:
        """Fire every deadline up to ``until`` (inclusive) and set the clock to ``until``."""
        start = len(self.log)
        for _ in range(max_steps):
            deadline = self.next_deadline()
            if deadline is None or deadline > until:
                self.now = max(self.now, until)
                return self.log[start:]
            self.step()
        raise AssertionError("too many timer steps")

    def sent(self, src: Address | None = None, dst: Address | None = None) -> list[Packet]:
        """Logged packets, filtered by source and destination."""
        return [
            p for p in self.log if (src is None or p.src == src) and (dst is None or p.dst == dst)
        ]


def events(ua: UserAgent) -> list[Event]:
    """Every pending event of ``ua``."""
    out: list[Event] = []
    while (event := ua.next_event()) is not None:
        out.append(event)
    return out


def only(items: list[T]) -> T:
    """The single item of a list (fails loudly otherwise)."""
    assert len(items) == 1, items
    return items[0]


def response_bytes(
    request: Request,
    status: int,
    reason: str,
    *,
    to_tag: str | None = "peer-tag",
    extra: str = "",
    body: bytes = b"",
    contact: str = "<sip:peer@127.0.0.1:5080>",
) -> bytes:
    """A peer's response to ``request`` written out as literal text (Via/From/To/Call-ID/CSeq
    copied, ``extra`` header lines appended)."""
    headers = request.headers
    lines = [f"SIP/2.0 {status} {reason}"]
    lines.extend(f"Via: {via}" for via in headers.get_all("Via"))
    lines.append(f"From: {headers.get('From')}")
    to_value = headers.get("To") or ""
    if to_tag is not None and ";tag=" not in to_value:
        to_value += f";tag={to_tag}"
    lines.append(f"To: {to_value}")
    lines.append(f"Call-ID: {headers.get('Call-ID')}")
    lines.append(f"CSeq: {headers.get('CSeq')}")
    if status < 300 and contact:
        lines.append(f"Contact: {contact}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.extend(line for line in extra.split("\r\n") if line)
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
