"""Concurrent press-1 prompt legs on one core: RTP pacing jitter and CPU.

    .venv/bin/python benchmarks/prompts.py [--streams 100,200,400] [--find-knee]
                                           [--duration 5] [--pacer shared|per-stream]
                                           [--loop uvloop|asyncio] [--realtime] [--json]

Each run opens N :class:`sip.aio.rtp.RtpStream`\\ s in this process (pinned to CPU 1, uvloop by
default), answers them all with the SDP of one UDP sink, and loops the shipped ``press1``
prompt on every stream (paced 20 ms G.711 packets, 50 packets/s per stream, starts spread
over one 20 ms period as legs answered at random moments would be). The sink is a separate
Python process pinned to CPU 0 that timestamps every arrival with ``time.perf_counter_ns``
(``CLOCK_MONOTONIC``) and, for each pair of consecutive packets of a stream, records
``|inter-arrival - 20 ms|``: the pacing jitter a phone's jitter buffer has to absorb.
Reported: that deviation's p50/p99/max, lost packets, the sender's CPU (``getrusage``, % of
one core) over the measured window, and the sender's own view (how late each pacing wake-up
was against the packet's due time, from ``loop.time()``).

``--find-knee`` first measures N = 10 (the same-run baseline: what the machine's scheduling
alone does), then doubles N from 100 until the p99 reaches the 5 ms target (or 3,200), then
bisects to the highest N that holds it. Everything is bounded: 1 s warm-up + ``--duration``
seconds per run, the sink exits after ``SINK_MAX_S`` whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import random
import resource
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sip.aio.rtp import RtpEngine, RtpEngineConfig, RtpStream
from sip.g711 import Codec
from sip.prompt import Prompt, load_prompt, tone
from sip.rtp import make_audio_offer

PROMPT_FILE = Path(__file__).resolve().parent.parent / "dialer" / "prompts" / "press1.wav"
PTIME_NS = 20_000_000
TARGET_P99_MS = 5.0
WARMUP_S = 1.0
MAX_DURATION_S = 60.0
MAX_STREAMS = 3200
BASELINE_STREAMS = 10
SINK_MAX_S = 150.0
SINK_CPU = 0
SENDER_CPU = 1
SINK_BUFFER = 16 * 1024 * 1024
#: SCHED_FIFO priority with --realtime (low: above every normal process, below the kernel's).
REALTIME_PRIORITY = 10


# -- the sink (a separate process) -----------------------------------------------------------


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def _pin(cpu: int, realtime: bool) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        except (OSError, AttributeError) as error:
            print(f"# cannot use SCHED_FIFO ({error}); running with normal priority", flush=True)


def run_sink(realtime: bool) -> int:
    """Receive until STOP; print one JSON line of statistics (between START and STOP)."""
    _pin(SINK_CPU, realtime)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SINK_BUFFER)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    print(sock.getsockname()[1], flush=True)
    ssrcs = array("L")
    sequences = array("H")
    arrivals = array("q")
    recording = False
    deadline = time.monotonic() + SINK_MAX_S
    clock = time.perf_counter_ns
    while time.monotonic() < deadline:
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        now = clock()
        if data[:1] == b"\x80":
            if recording:
                ssrcs.append(int.from_bytes(data[8:12], "big"))
                sequences.append(int.from_bytes(data[2:4], "big"))
                arrivals.append(now)
            continue
        if data == b"START":
            recording = True
        elif data == b"STOP":
            break
    last: dict[int, tuple[int, int]] = {}
    deviations: list[float] = []
    lost = reordered = 0
    for ssrc, seq, arrival in zip(ssrcs, sequences, arrivals, strict=True):
        previous = last.get(ssrc)
        last[ssrc] = (seq, arrival)
        if previous is None:
            continue
        step = (seq - previous[0]) % 65536
        if step == 0 or step > 32768:
            reordered += 1
            continue
        lost += step - 1
        if step == 1:
            deviations.append(abs(arrival - previous[1] - PTIME_NS) / 1e6)
    deviations.sort()
    print(
        json.dumps(
            {
                "packets": len(arrivals),
                "streams": len(last),
                "lost": lost,
                "reordered": reordered,
                "p50_ms": _percentile(deviations, 0.50),
                "p99_ms": _percentile(deviations, 0.99),
                "p999_ms": _percentile(deviations, 0.999),
                "max_ms": deviations[-1] if deviations else math.nan,
            }
        ),
        flush=True,
    )
    return 0


# -- the sender (this process) ---------------------------------------------------------------


@dataclass
class RunResult:
    """One row of the table."""

    streams: int
    pacer: str
    loop: str
    duration_s: float
    packets: int
    expected_packets: int
    lost: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    sender_cpu_pct: float
    wakeups_per_s: float
    late_p99_ms: float
    late_max_ms: float
    rcvbuf_errors: int

    @property
    def ok(self) -> bool:
        return self.p99_ms < TARGET_P99_MS and self.lost == 0


def _udp_rcvbuf_errors() -> int:
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return 0
    udp = [line.split() for line in lines if line.startswith("Udp:")]
    if len(udp) < 2 or "RcvbufErrors" not in udp[0]:
        return 0
    return int(udp[1][udp[0].index("RcvbufErrors")])


def _load_prompt() -> Prompt:
    if PROMPT_FILE.exists():
        return load_prompt(PROMPT_FILE)
    from sip.prompt import RINGBACK_EU

    return tone(RINGBACK_EU, Codec.PCMU)


def _instrument_lateness(stream: RtpStream, lateness: list[float]) -> None:
    """Record, for each pacing wake-up of ``stream``, how late it is for the packet due."""
    loop = asyncio.get_running_loop()
    sender = stream.session.sender
    original: Callable[[float], None] = stream.transmit

    def transmit(now: float) -> None:
        due = sender.next_send_time()
        if due is not None:
            lateness.append(loop.time() - due)
        original(now)

    stream.transmit = transmit  # type: ignore[method-assign]


async def _run_once(
    streams: int, duration: float, shared: bool, loop_name: str, sink_port: int
) -> RunResult:
    loop = asyncio.get_running_loop()
    prompt = _load_prompt()
    answer = make_audio_offer("127.0.0.1", sink_port, sess_id="1").serialize()
    control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lateness: list[float] = []
    config = RtpEngineConfig(ports=None, shared_pacer=shared, comfort_silence=True)
    async with RtpEngine(config) as engine:
        opened = [await engine.open_stream() for _ in range(streams)]
        for stream in opened:
            stream.apply_answer(answer)
        # Legs answer at random moments: spread the starts over one packet period.
        rng = random.Random(streams)
        starts = [
            loop.call_later(
                rng.uniform(0, 0.02), functools.partial(stream.play, prompt, repeat=True)
            )
            for stream in opened
        ]
        await asyncio.sleep(WARMUP_S)
        for stream in opened:
            _instrument_lateness(stream, lateness)
        rcvbuf_before = _udp_rcvbuf_errors()
        control.sendto(b"START", ("127.0.0.1", sink_port))
        wakeups_before = engine.stats.timer_wakeups
        sent_before = engine.stats.datagrams_sent
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        wall_before = time.perf_counter()
        await asyncio.sleep(duration)
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - wall_before
        sent = engine.stats.datagrams_sent - sent_before
        wakeups = engine.stats.timer_wakeups - wakeups_before
        for stream in opened:
            stream.stop_audio()
        await asyncio.sleep(0.05)  # the last packets reach the sink before STOP
        control.sendto(b"STOP", ("127.0.0.1", sink_port))
        rcvbuf_errors = _udp_rcvbuf_errors() - rcvbuf_before
        for handle in starts:
            handle.cancel()
    control.close()
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    lateness.sort()
    return RunResult(
        streams=streams,
        pacer="shared" if shared else "per-stream",
        loop=loop_name,
        duration_s=round(wall, 3),
        packets=0,
        expected_packets=sent,
        lost=0,
        p50_ms=math.nan,
        p99_ms=math.nan,
        p999_ms=math.nan,
        max_ms=math.nan,
        sender_cpu_pct=round(100 * cpu / wall, 1),
        wakeups_per_s=round(wakeups / wall, 1),
        late_p99_ms=round(1000 * _percentile(lateness, 0.99), 3),
        late_max_ms=round(1000 * (lateness[-1] if lateness else math.nan), 3),
        rcvbuf_errors=rcvbuf_errors,
    )


def run(streams: int, duration: float, shared: bool, loop_name: str, realtime: bool) -> RunResult:
    """One measured run with its own sink process."""
    sink = subprocess.Popen(
        [sys.executable, __file__, "--sink", *(["--realtime"] if realtime else [])],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        sink_port = int(sink.stdout.readline())
        runner = _loop_runner(loop_name)
        result = runner(_run_once(streams, duration, shared, loop_name, sink_port))
        line = sink.stdout.readline()
        sink.wait(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    received = json.loads(line)
    result.packets = received["packets"]
    result.lost = received["lost"]
    for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
        setattr(result, key, round(received[key], 3))
    return result


def _loop_runner(loop_name: str) -> Callable[[Coroutine[Any, Any, RunResult]], RunResult]:
    def runner(coro: Coroutine[Any, Any, RunResult]) -> RunResult:
        if loop_name == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as uv_runner:
                return uv_runner.run(coro)
        return asyncio.run(coro)

    return runner


HEADER = (
    f"{'N':>5} {'pacer':>10} {'loop':>7} {'pkts':>8} {'lost':>5} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'p99.9':>7} {'max ms':>7} {'CPU %':>6} {'wake/s':>7} "
    f"{'late99':>7} {'ok':>3}"
)


def _row(r: RunResult) -> str:
    return (
        f"{r.streams:>5} {r.pacer:>10} {r.loop:>7} {r.packets:>8} {r.lost:>5} "
        f"{r.p50_ms:>7.3f} {r.p99_ms:>7.3f} {r.p999_ms:>7.3f} {r.max_ms:>7.2f} "
        f"{r.sender_cpu_pct:>6.1f} {r.wakeups_per_s:>7.0f} {r.late_p99_ms:>7.3f} "
        f"{'yes' if r.ok else 'NO':>3}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--streams", default="50,100,200,400", help="comma-separated N")
    parser.add_argument("--find-knee", action="store_true", help="search the highest N")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--pacer", default="shared", choices=("shared", "per-stream", "both"))
    parser.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    parser.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run sender and sink as SCHED_FIFO (needs root): measures the code, not the "
        "other processes sharing the cores",
    )
    args = parser.parse_args(argv)
    if args.sink:
        return run_sink(args.realtime)
    duration = min(max(args.duration, 1.0), MAX_DURATION_S)
    _pin(SENDER_CPU, args.realtime)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    pacers = [True, False] if args.pacer == "both" else [args.pacer == "shared"]
    results: list[RunResult] = []

    def measure(n: int, shared: bool) -> RunResult:
        result = run(n, duration, shared, args.loop, args.realtime)
        results.append(result)
        if args.json:
            print(json.dumps(asdict(result) | {"ok": result.ok}), flush=True)
        else:
            if len(results) == 1:
                print(HEADER)
            print(_row(result), flush=True)
        return result

    for shared in pacers:
        if args.find_knee:
            # The same-run baseline: what this machine's scheduling alone does to 10 streams.
            measure(BASELINE_STREAMS, shared)
            good, bad, n = 0, 0, 100
            while n <= MAX_STREAMS:
                if measure(n, shared).ok:
                    good, n = n, n * 2
                else:
                    bad = n
                    break
            while bad and bad - good > max(25, good // 8):
                middle = (good + bad) // 2
                if measure(middle, shared).ok:
                    good = middle
                else:
                    bad = middle
            if not args.json:
                label = "shared" if shared else "per-stream"
                print(f"# knee ({label} pacer): highest N with p99 < {TARGET_P99_MS} ms: {good}")
        else:
            for n in (int(x) for x in args.streams.split(",") if x.strip()):
                measure(min(n, MAX_STREAMS), shared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
