"""Full calls per second of our UAC against a SIPp UAS, side by side with SIPp's own UAC.

    .venv/bin/python benchmarks/sip_calls.py [--rate 500] [--duration 5] [--transport udp]
                                             [--loop uvloop|asyncio] [--json]

A call is INVITE -> 100 -> 180 -> 200 -> ACK -> BYE -> 200 (the packaged ``uas_answer``
scenario, no answer delay, hung up at once). Two runs, same offered rate, same call count:

1. baseline: SIPp UAC (built-in ``uac``) -> SIPp UAS, the ceiling this machine allows;
2. ours: ``sip.aio.SipEndpoint`` (uvloop by default) -> SIPp UAS.

Following benchmarks/README rules (/work/shared/BENCHMARKING.md): the UAC (SIPp or this
process) is pinned to CPU 1 and the SIPp UAS to CPU 0 when the machine has two; every SIPp gets
``-buff_size 4194304``; the figure to quote is the ratio to the baseline measured in the same
run, with the failed count. CPU per call: this process from ``resource.getrusage``, SIPp from
``/proc/<pid>/stat`` sampled every 50 ms until it exits (the last partial interval is lost:
SIPp figures are a slight underestimate). Everything is bounded: at most ``--duration`` seconds
of offered load, then at most ``DRAIN_S`` seconds for the calls in flight; SIPp has its own
``-timeout``.

This module is meant to be wired in as the ``calls`` subcommand of ``benchmarks/sip_core.py``:
``main(argv)`` takes the subcommand's arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.sipp import SippPeer, SippProcess, SippResult, Transport
from sip.aio import SipEndpoint
from sip.config import SipConfig
from sip.events import CallAnswered, CallRejected, CallTerminated, Event
from sip.sdp import Direction, make_inactive_offer

MAX_RATE = 20_000
MAX_DURATION_S = 120.0
#: After the last call is offered, how long calls in flight may take to finish.
DRAIN_S = 20.0
BUFF_SIZE = 4_194_304
CPU_SAMPLE_S = 0.05
UAS_CPU = "0"
UAC_CPU = 1
OFFER = make_inactive_offer("127.0.0.1", sess_id="1").with_direction(Direction.SENDRECV).serialize()


@dataclass
class RunResult:
    """One side-by-side row."""

    setup: str
    offered_cps: float
    calls: int
    completed: int
    failed: int
    elapsed_s: float
    uac_cpu_s: float
    uas_cpu_s: float
    uas_failed: int
    uas_retransmissions: int
    setup_ms_p50: float | None = None
    setup_ms_p99: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def achieved_cps(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def uac_us_per_call(self) -> float:
        return 1e6 * self.uac_cpu_s / self.completed if self.completed else float("nan")

    @property
    def uas_us_per_call(self) -> float:
        return 1e6 * self.uas_cpu_s / self.completed if self.completed else float("nan")

    @property
    def uac_core_percent(self) -> float:
        return 100.0 * self.uac_cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _two_cpus() -> bool:
    return len(os.sched_getaffinity(0)) >= 2 and (os.cpu_count() or 1) >= 2


def _proc_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # After the ")" of comm: field 3 is state, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / ticks


async def _sample_cpu(process: SippProcess, sink: list[float]) -> None:
    """Keep the latest CPU time of ``process`` in ``sink[0]`` until it exits."""
    while process.running and process.pid is not None:
        value = _proc_cpu_seconds(process.pid)
        if value is not None:
            sink[0] = value
        await asyncio.sleep(CPU_SAMPLE_S)


def _uas_peer(
    calls: int, transport: Transport, duration: float, workdir: Path, pin: bool
) -> SippPeer:
    return SippPeer(
        scenario="uas_answer",
        transport=transport,
        calls=calls,
        timeout_s=duration + DRAIN_S + 10,
        buff_size=BUFF_SIZE,
        trace_messages=False,
        cpus=UAS_CPU if pin else None,
        workdir=workdir,
    )


async def run_baseline(
    rate: float, duration: float, transport: Transport, workdir: Path, pin: bool
) -> RunResult:
    """SIPp UAC -> SIPp UAS at ``rate`` for ``duration`` seconds."""
    calls = max(1, round(rate * duration))
    uas_cpu, uac_cpu = [0.0], [0.0]
    async with SippProcess(_uas_peer(calls, transport, duration, workdir / "base-uas", pin)) as uas:
        sampler = asyncio.create_task(_sample_cpu(uas, uas_cpu))
        uac_peer = SippPeer(
            scenario="uac",
            remote=uas.address,
            transport=transport,
            calls=calls,
            rate=rate,
            max_concurrent=max(100, int(rate * 2)),
            timeout_s=duration + DRAIN_S + 10,
            buff_size=BUFF_SIZE,
            trace_messages=False,
            cpus=str(UAC_CPU) if pin else None,
            workdir=workdir / "base-uac",
        )
        started = time.monotonic()
        async with SippProcess(uac_peer) as uac:
            uac_sampler = asyncio.create_task(_sample_cpu(uac, uac_cpu))
            uac_result = await uac.wait(duration + DRAIN_S + 15)
            elapsed = time.monotonic() - started
            await uac_sampler
        uas_result = await uas.wait(DRAIN_S)
        await sampler
    return RunResult(
        setup="SIPp UAC -> SIPp UAS",
        offered_cps=rate,
        calls=calls,
        completed=uac_result.successful_calls,
        failed=uac_result.failed_calls + max(0, calls - uac_result.created_calls),
        elapsed_s=elapsed,
        uac_cpu_s=uac_cpu[0],
        uas_cpu_s=uas_cpu[0],
        uas_failed=uas_result.failed_calls,
        uas_retransmissions=uas_result.retransmissions_received + uas_result.retransmissions_sent,
        notes=_notes(uac_result) + _notes(uas_result),
    )


def _notes(result: SippResult) -> list[str]:
    return [] if result.exit_code == 0 else [result.summary()]


class _CallDriver:
    """Offers ``calls`` calls at ``rate`` and hangs each up as soon as it is answered."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.started_at: dict[str, float] = {}
        self.setup_ms: list[float] = []
        self.completed = 0
        self.failed = 0
        self.endpoint: SipEndpoint | None = None
        self.done = asyncio.get_running_loop().create_future()
        self._clock: Callable[[], float] = asyncio.get_running_loop().time

    def on_event(self, event: Event) -> None:
        endpoint = self.endpoint
        assert endpoint is not None
        if isinstance(event, CallAnswered):
            started = self.started_at.get(event.leg_id)
            if started is not None:
                self.setup_ms.append(1000 * (self._clock() - started))
            endpoint.bye(event.leg_id)
        elif isinstance(event, CallTerminated):
            if event.status == 200:
                self.completed += 1
            else:
                self.failed += 1
            self._finished()
        elif isinstance(event, CallRejected):
            self.failed += 1
            self._finished()

    def _finished(self) -> None:
        if self.completed + self.failed >= self.calls and not self.done.done():
            self.done.set_result(None)


async def run_ours(
    rate: float, duration: float, transport: Transport, workdir: Path, pin: bool
) -> RunResult:
    """Our UAC (this process, pinned to one core) -> SIPp UAS."""
    calls = max(1, round(rate * duration))
    uas_cpu = [0.0]
    loop = asyncio.get_running_loop()
    driver = _CallDriver(calls)
    config = SipConfig(transport="udp" if transport is Transport.UDP else "tcp")
    endpoint = SipEndpoint(config, on_event=driver.on_event)
    driver.endpoint = endpoint
    await endpoint.start("127.0.0.1", 0)
    try:
        async with SippProcess(
            _uas_peer(calls, transport, duration, workdir / "ours-uas", pin)
        ) as uas:
            sampler = asyncio.create_task(_sample_cpu(uas, uas_cpu))
            target = f"sip:service@{uas.address[0]}:{uas.address[1]}"
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = loop.time()
            for number in range(calls):
                due = started + number / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                leg = endpoint.invite(target, from_uri="sip:bench@127.0.0.1", body=OFFER)
                driver.started_at[leg] = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(driver.done, DRAIN_S)
            elapsed = loop.time() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            uas_result = await uas.wait(DRAIN_S)
            await sampler
    finally:
        await endpoint.close()
    setup_ms = sorted(driver.setup_ms)
    unfinished = calls - driver.completed - driver.failed
    return RunResult(
        setup="our UAC -> SIPp UAS",
        offered_cps=rate,
        calls=calls,
        completed=driver.completed,
        failed=driver.failed + unfinished,
        elapsed_s=elapsed,
        uac_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        uas_cpu_s=uas_cpu[0],
        uas_failed=uas_result.failed_calls,
        uas_retransmissions=uas_result.retransmissions_received + uas_result.retransmissions_sent,
        setup_ms_p50=_percentile(setup_ms, 50),
        setup_ms_p99=_percentile(setup_ms, 99),
        notes=_notes(uas_result)
        + ([f"{unfinished} calls unfinished after the drain"] if unfinished else [])
        + (
            [f"{endpoint.stats.internal_errors} internal errors"]
            if endpoint.stats.internal_errors
            else []
        ),
    )


def _percentile(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, round(pct / 100 * (len(values) - 1)))
    return values[index]


def _table(rows: Sequence[RunResult]) -> str:
    header = (
        "| setup | offered cps | calls | completed | failed | achieved cps | UAC CPU % core "
        "| UAC CPU µs/call | SIPp UAS CPU µs/call | UAS failed | UAS retrans | setup p50/p99 ms |"
    )
    lines = [header, "|" + "---|" * 12]
    for row in rows:
        latency = (
            f"{row.setup_ms_p50:.2f} / {row.setup_ms_p99:.2f}"
            if row.setup_ms_p50 is not None and row.setup_ms_p99 is not None
            else "-"
        )
        lines.append(
            f"| {row.setup} | {row.offered_cps:g} | {row.calls} | {row.completed} | {row.failed} "
            f"| {row.achieved_cps:.0f} | {row.uac_core_percent:.0f}% | {row.uac_us_per_call:.0f} "
            f"| {row.uas_us_per_call:.0f} | {row.uas_failed} | {row.uas_retransmissions} "
            f"| {latency} |"
        )
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> list[RunResult]:
    transport = Transport.parse(args.transport)
    workdir = Path(args.workdir) if args.workdir else Path.cwd() / "var" / "bench-sip-calls"
    workdir.mkdir(parents=True, exist_ok=True)
    baseline = await run_baseline(args.rate, args.duration, transport, workdir, args.pin)
    ours = await run_ours(args.rate, args.duration, transport, workdir, args.pin)
    return [baseline, ours]


def main(argv: Sequence[str] | None = None) -> int:
    """Run both setups and print a Markdown table (or JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="offered calls/s")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of offered load")
    parser.add_argument("--transport", default="udp", choices=("udp", "tcp"))
    parser.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    parser.add_argument("--workdir", default="", help="SIPp trace directory (default var/)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate must be in (0, {MAX_RATE}]")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S:g}]")
    args.pin = _two_cpus()
    if args.pin:
        os.sched_setaffinity(0, {UAC_CPU})  # this process is the UAC under test
    loop_factory = None
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        rows = runner.run(_run(args))
    if args.json:
        payload = [
            {
                **asdict(row),
                "achieved_cps": row.achieved_cps,
                "uac_us_per_call": row.uac_us_per_call,
                "uas_us_per_call": row.uas_us_per_call,
            }
            for row in rows
        ]
        print(json.dumps({"loop": args.loop, "transport": args.transport, "runs": payload}))
    else:
        print(
            f"loop={args.loop} transport={args.transport} rate={args.rate:g}/s "
            f"duration={args.duration:g}s pinned={args.pin}"
        )
        print(_table(rows))
        base, ours = rows
        if base.uac_cpu_s > 0 and ours.completed and base.completed:
            print(
                f"\nour UAC CPU per call / SIPp UAC CPU per call = "
                f"{ours.uac_us_per_call / base.uac_us_per_call:.1f}x"
            )
        for row in rows:
            for note in row.notes:
                print(f"note ({row.setup}): {note}")
    return 0 if all(row.failed == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
