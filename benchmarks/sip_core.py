"""Micro-benchmarks of the sans-I/O SIP core.

    .venv/bin/python benchmarks/sip_core.py parse [--seconds 1.0] [--repeat 5] [--json]
    .venv/bin/python benchmarks/sip_core.py calls ...   (see benchmarks/sip_calls.py)

``parse`` measures, on one typical INVITE with an SDP body (about 900 bytes):

- ``parse``: ``sip.message.parse_message(data)`` (start line, every header checked against the
  RFC 3261 grammar, Content-Length framing);
- ``parse+access``: the same, then what a transaction layer reads next (top Via branch, CSeq,
  Call-ID, From and To tags), so the lazily built typed values are paid for too;
- ``serialize``: ``bytes(message)`` of the parsed request;
- ``parse+serialize``: both, one after the other (a proxy's or B2BUA's work per message).

Each figure runs batches for at least ``--seconds`` of wall time (and at most ``MAX_ITERATIONS``
calls), ``--repeat`` times; the table shows the best and the median run in messages per CPU
second of this process (so other processes on a shared machine disturb it less). Nothing is
asserted: compare runs made back to back (see benchmarks/README.md).

Subcommands live in ``SUBCOMMANDS`` (name -> ``main(argv) -> exit code``), so another benchmark
of the core is one more entry.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sip.message import Request, parse_message

#: Upper bound on calls per measured run, whatever ``--seconds`` says.
MAX_ITERATIONS = 5_000_000
#: Upper bound on ``--seconds`` and ``--repeat``, so a run is always bounded in time.
MAX_SECONDS = 60.0
MAX_REPEAT = 50
BATCH = 500

SDP = (
    b"v=0\r\n"
    b"o=dialer 3847592031 3847592031 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

#: A typical INVITE as a dialer sends it to a rep's phone.
INVITE = (
    b"INVITE sip:rep-1042@192.0.2.50:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-5d3c1a9f7e2b4c68;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Acme Leads" <sip:dialer@192.0.2.10>;tag=7c1e9b2a54\r\n'
    b"To: <sip:rep-1042@192.0.2.50>\r\n"
    b"Call-ID: 3f9a8c2e-61d4-4b7a-9c0e-5a1b2c3d4e5f@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:dialer@192.0.2.10:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY\r\n"
    b"Supported: timer, replaces\r\n"
    b"User-Agent: dialer/0.1\r\n"
    b"X-Lead-Id: 018f2a6c-7b3e-7d21-9a4c-3e5f6a7b8c9d\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def _measure(call: Callable[[], object], seconds: float) -> float:
    """Calls per CPU second of ``call`` over one run of at least ``seconds`` of wall time.

    CPU time of this process (``time.process_time``) rather than wall time, so that the other
    processes of a shared machine do not count against the code measured.
    """
    iterations = 0
    deadline = time.perf_counter() + seconds
    cpu_start = time.process_time()
    while True:
        for _ in range(BATCH):
            call()
        iterations += BATCH
        if time.perf_counter() >= deadline or iterations >= MAX_ITERATIONS:
            return iterations / max(time.process_time() - cpu_start, 1e-9)


def _access(message: Request) -> None:
    _ = message.top_via.branch, message.cseq, message.call_id, message.from_.tag, message.to.tag


def parse_cases() -> dict[str, Callable[[], object]]:
    """The measured operations, by name."""
    parsed = parse_message(INVITE)
    assert isinstance(parsed, Request)
    assert bytes(parsed) == INVITE

    def parse() -> object:
        return parse_message(INVITE)

    def parse_access() -> None:
        message = parse_message(INVITE)
        assert isinstance(message, Request)
        _access(message)

    def serialize() -> object:
        return parsed.serialize()

    def parse_serialize() -> object:
        return parse_message(INVITE).serialize()

    return {
        "parse": parse,
        "parse+access": parse_access,
        "serialize": serialize,
        "parse+serialize": parse_serialize,
    }


def _table(rows: dict[str, list[float]], size: int) -> str:
    lines = [
        f"INVITE with SDP body: {size} bytes; Python {platform.python_version()}",
        f"{'operation':<16} {'best msg/s':>12} {'median msg/s':>13} {'CPU µs/msg':>11}",
    ]
    for name, rates in rows.items():
        best = max(rates)
        lines.append(
            f"{name:<16} {best:>12,.0f} {statistics.median(rates):>13,.0f} {1e6 / best:>11.1f}"
        )
    return "\n".join(lines)


def parse_main(argv: Sequence[str] | None = None) -> int:
    """The ``parse`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="sip_core.py parse", description="parse/serialize rate of a typical INVITE"
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per operation")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 0.01), MAX_SECONDS)
    repeat = min(max(args.repeat, 1), MAX_REPEAT)

    rows: dict[str, list[float]] = {}
    for name, call in parse_cases().items():
        _measure(call, min(seconds, 0.2))  # warm-up
        rows[name] = [_measure(call, seconds) for _ in range(repeat)]

    if args.json:
        print(
            json.dumps(
                {
                    "message_bytes": len(INVITE),
                    "python": platform.python_version(),
                    "seconds_per_run": seconds,
                    "results": {
                        name: {"best_per_s": max(r), "median_per_s": statistics.median(r)}
                        for name, r in rows.items()
                    },
                },
                indent=2,
            )
        )
    else:
        print(_table(rows, len(INVITE)))
    return 0


def calls_main(argv: Sequence[str] | None = None) -> int:
    """The ``calls`` subcommand: full calls against SIPp (benchmarks/sip_calls.py)."""
    import sip_calls  # sibling script: its directory is sys.path[0] when run as a script

    result: int = sip_calls.main(argv)
    return result


#: Subcommand name -> entry point taking the remaining arguments.
SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "parse": parse_main,
    "calls": calls_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SUBCOMMANDS:
        names = " | ".join(SUBCOMMANDS)
        print(f"usage: sip_core.py {{{names}}} [options]  (-h after a subcommand for help)")
        return 2
    return SUBCOMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
