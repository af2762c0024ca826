"""Ring-and-bridge load: N calls, each ringing 3 SIPp reps in parallel, then a SIPp prospect.

    .venv/bin/python benchmarks/bridge.py [--rate 100] [--calls 1500] [--answer-delay-ms 500]
                                          [--hold-s 8] [--loop uvloop|asyncio] [--json]
                                          [--tracemalloc [--trace-after-s 36] [--trace-frames N]]

Every call is one :class:`dialer.calls.controller.CallController` call of a 3-rep parallel
plan: rep A (SIPp ``calls_rep_answer``) answers after ``--answer-delay-ms``, reps B and C
(``calls_rep_cancelled``) ring until they get CANCEL with the "Call completed elsewhere"
Reason; the prospect (SIPp ``uas_answer_then_bye`` behind the "trunk") answers at once,
is bridged by the re-INVITE to rep A and hangs up after ``--hold-s``, which keeps
``rate x hold x 2`` legs up at once (100 calls/s x 8 s x 2 = 1,600 legs).

Reported, from the controller's own timestamps (``loop.time()`` when the event was handled):

* rep 200 received -> prospect INVITE sent (``prospect_invited_at - rep_answered_at``),
* prospect 200 received -> bridge complete (``bridged_at - prospect_answered_at``: the
  re-INVITE round trip to rep A on loopback is included),

as p50/p99/max, plus calls/s held, the highest number of live SIP legs, the failed count, the
CPU of this process (``resource.getrusage``) and what each SIPp peer counted. Rules of
/work/shared/BENCHMARKING.md: this process is pinned to CPU 1 and the SIPp peers to CPU 0 on
a 2-core machine, every SIPp gets ``-buff_size 4194304``. Everything is bounded: the offered
load lasts ``calls / rate`` seconds, then calls in flight get ``hold + DRAIN_S`` seconds.

``--tracemalloc``: Python memory still allocated per call once every call is bridged
(``--trace-after-s`` later: 36 s is past the set-up transactions' 64*T1), by source line, so
memory per held call in the call layer is measured, not inferred from RSS (slows the run:
keep the rate low, e.g. ``--rate 40 --calls 400 --hold-s 60``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialer.calls import BridgeSettings, CallOutcome, CallResult
from dialer.calls.controller import Call, CallController, ControllerSettings
from dialer.config import TrunkConfig
from dialer.domain import LeadContext, RingMode, RingPlan, RingTarget
from dialer.sipp import SippPeer, SippProcess, SippResult, scenario_path
from sip.config import SipConfig

MAX_CALLS = 100_000
MAX_RATE = 2_000.0
#: After the last call is offered, extra time (beyond the hold) for calls in flight.
DRAIN_S = 20.0
BUFF_SIZE = 4_194_304
SIPP_CPUS = "0"
DAEMON_CPU = 1
SAMPLE_S = 0.1


@dataclass
class Report:
    """One run, as printed (and as ``--json``)."""

    loop: str
    offered_cps: float
    calls: int
    answer_delay_ms: int
    hold_s: float
    completed: int = 0
    other_results: dict[str, int] = field(default_factory=dict)
    not_finished: int = 0
    elapsed_s: float = 0.0
    held_cps: float = 0.0
    max_live_legs: int = 0
    cpu_s: float = 0.0
    cpu_percent_of_core: float = 0.0
    rep200_to_prospect_invite_ms: dict[str, float] = field(default_factory=dict)
    prospect200_to_bridged_ms: dict[str, float] = field(default_factory=dict)
    sipp: dict[str, str] = field(default_factory=dict)
    #: ``--tracemalloc``: Python memory per held call and the lines holding most of it.
    traced: dict[str, object] = field(default_factory=dict)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 / p99 / max in milliseconds (empty when there is nothing to measure)."""
    if not values:
        return {}
    ordered = sorted(v * 1000.0 for v in values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(p99, 3),
        "max": round(ordered[-1], 3),
    }


def sipp_peer(scenario: str, calls: int, *, pause_ms: int | None, timeout_s: float) -> SippPeer:
    return SippPeer(
        scenario=scenario_path(scenario),
        calls=calls,
        pause_ms=pause_ms,
        timeout_s=timeout_s,
        buff_size=BUFF_SIZE,
        trace_messages=False,
        cpus=SIPP_CPUS if (os.cpu_count() or 1) >= 2 else None,
    )


def traced_per_call(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, held: int, *, stacks: bool
) -> dict[str, object]:
    """Python memory allocated between the snapshots and still live, per held call, with the
    source lines that allocated the most (``--tracemalloc``); with ``stacks``, the six
    biggest allocation stacks are printed to stderr."""
    diff = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in diff)

    def where(stat: tracemalloc.StatisticDiff) -> str:
        frame = stat.traceback[0]
        return f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"

    if stacks:
        for stat in after.compare_to(before, "traceback")[:6]:
            print(f"--- {stat.size_diff / max(1, held):.0f} B/call", file=sys.stderr)
            for line in stat.traceback.format()[-16:]:
                print(line, file=sys.stderr)
    return {
        "held_calls": held,
        "bytes_per_call": round(total / max(1, held)),
        "top_lines": [
            {
                "where": where(stat),
                "bytes_per_call": round(stat.size_diff / max(1, held)),
                "blocks_per_call": round(stat.count_diff / max(1, held), 2),
            }
            for stat in diff[:30]
        ],
    }


def make_plan(reps: list[SippProcess]) -> RingPlan:
    return RingPlan(
        targets=tuple(
            RingTarget(rep_id=f"rep{i}", uri=f"sip:rep{i}@127.0.0.1:{p.local_port}")
            for i, p in enumerate(reps)
        ),
        mode=RingMode.PARALLEL,
        ring_timeout_s=30.0,
        prospect_number="+15551230000",
        caller_id="+15550100000",
        lead=LeadContext(
            lead_id="lead-42",
            phone="+15551230000",
            name="Pat Smith",
            source="web",
            page_url="http://127.0.0.1:8080/leads/lead-42",
        ),
    )


async def run(args: argparse.Namespace) -> Report:
    report = Report(
        loop=args.loop,
        offered_cps=args.rate,
        calls=args.calls,
        answer_delay_ms=args.answer_delay_ms,
        hold_s=args.hold_s,
    )
    load_s = args.calls / args.rate
    sipp_timeout = load_s + args.hold_s + DRAIN_S + 10.0
    peers = {
        "rep_answer": sipp_peer(
            "calls_rep_answer", args.calls, pause_ms=args.answer_delay_ms, timeout_s=sipp_timeout
        ),
        "rep_ring_b": sipp_peer(
            "calls_rep_cancelled", args.calls, pause_ms=None, timeout_s=sipp_timeout
        ),
        "rep_ring_c": sipp_peer(
            "calls_rep_cancelled", args.calls, pause_ms=None, timeout_s=sipp_timeout
        ),
        "prospect": sipp_peer(
            "uas_answer_then_bye",
            args.calls,
            pause_ms=int(args.hold_s * 1000),
            timeout_s=sipp_timeout,
        ),
    }
    async with contextlib.AsyncExitStack() as stack:
        processes = {
            name: await stack.enter_async_context(SippProcess(peer)) for name, peer in peers.items()
        }
        reps = [processes["rep_answer"], processes["rep_ring_b"], processes["rep_ring_c"]]
        controller = CallController(
            trunks=[
                TrunkConfig(
                    name="primary",
                    proxy=f"sip:127.0.0.1:{processes['prospect'].local_port}",
                    max_calls=args.calls,
                    max_cps=0.0,  # unlimited: the trunk is not what is measured
                    options_interval_s=0,
                )
            ],
            sip_config=SipConfig(user_agent=""),
            settings=ControllerSettings(
                bridge=BridgeSettings(prospect_ring_timeout_s=30.0),
                shutdown_timeout_s=5.0,
            ),
        )
        await controller.start()
        loop = asyncio.get_running_loop()
        calls: list[Call] = []
        max_legs = 0

        async def sample() -> None:
            nonlocal max_legs
            while True:
                max_legs = max(max_legs, controller.endpoint.ua.active_legs)
                await asyncio.sleep(SAMPLE_S)

        sampler = asyncio.create_task(sample())
        if args.tracemalloc:
            tracemalloc.start(max(1, args.trace_frames))
            baseline = tracemalloc.take_snapshot()
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = loop.time()
        try:
            for index in range(args.calls):
                due = started + index / args.rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                calls.append(controller.start_call(make_plan(reps)))
            if args.tracemalloc:
                # Every call placed; once the last is bridged (answer delay, a second for the
                # bridge), every call is held: the memory they hold is the difference. Later
                # (--trace-after-s) the set-up's transactions have ended (64*T1 after the 2xx,
                # RFC 6026): what a call holds for as long as it lasts.
                await asyncio.sleep(args.answer_delay_ms / 1000 + 1.0 + args.trace_after_s)
                held = sum(1 for c in calls if c.outcome is None)
                report.traced = traced_per_call(
                    baseline, tracemalloc.take_snapshot(), held, stacks=args.trace_frames > 1
                )
                tracemalloc.stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.hold_s + DRAIN_S + args.answer_delay_ms / 1000):
                    await asyncio.gather(*(c.wait_ended() for c in calls))
            elapsed = loop.time() - started
            cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await controller.close()
        results: dict[str, SippResult] = {}
        for name, process in processes.items():
            results[name] = await process.wait(sipp_timeout + 10.0)

    outcomes: list[CallOutcome] = [c.outcome for c in calls if c.outcome is not None]
    report.not_finished = len(calls) - len(outcomes)
    for outcome in outcomes:
        if outcome.result is CallResult.COMPLETED:
            report.completed += 1
        else:
            report.other_results[outcome.result.value] = (
                report.other_results.get(outcome.result.value, 0) + 1
            )
    report.elapsed_s = round(elapsed, 3)
    report.held_cps = round(report.completed / load_s, 1) if load_s else 0.0
    report.max_live_legs = max_legs
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    report.cpu_s = round(cpu, 2)
    report.cpu_percent_of_core = round(100.0 * cpu / elapsed, 1) if elapsed else 0.0
    report.rep200_to_prospect_invite_ms = percentiles(
        [
            o.prospect_invited_at - o.rep_answered_at
            for o in outcomes
            if o.prospect_invited_at is not None and o.rep_answered_at is not None
        ]
    )
    report.prospect200_to_bridged_ms = percentiles(
        [
            o.bridged_at - o.prospect_answered_at
            for o in outcomes
            if o.bridged_at is not None and o.prospect_answered_at is not None
        ]
    )
    report.sipp = {
        name: result.summary().rsplit(" workdir=", 1)[0] for name, result in results.items()
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rate", type=float, default=100.0, help="new calls per second")
    parser.add_argument("--calls", type=int, default=1500, help="calls to place")
    parser.add_argument("--answer-delay-ms", type=int, default=500, help="rep A answers after")
    parser.add_argument("--hold-s", type=float, default=8.0, help="prospect hangs up after")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace Python allocations: memory per held call and where (slows the run)",
    )
    parser.add_argument(
        "--trace-after-s",
        type=float,
        default=0.0,
        help="--tracemalloc: take the snapshot this long after the last call was bridged",
    )
    parser.add_argument(
        "--trace-frames",
        type=int,
        default=1,
        help="--tracemalloc: frames per allocation (> 1 also prints the biggest stacks)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.rate <= MAX_RATE or not 0 < args.calls <= MAX_CALLS:
        parser.error(f"--rate must be in (0, {MAX_RATE:g}] and --calls in (0, {MAX_CALLS}]")
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {DAEMON_CPU})
    if args.loop == "uvloop":
        import uvloop

        report = uvloop.run(run(args))
    else:
        report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(
            f"{report.loop}: offered {report.offered_cps:g} calls/s x {report.calls} "
            f"(answer {report.answer_delay_ms} ms, hold {report.hold_s:g} s)\n"
            f"  completed {report.completed}, other {report.other_results}, "
            f"not finished {report.not_finished}; held {report.held_cps} calls/s\n"
            f"  max live legs {report.max_live_legs}; CPU {report.cpu_s} s "
            f"({report.cpu_percent_of_core}% of a core over {report.elapsed_s} s)\n"
            f"  rep 200 -> prospect INVITE ms {report.rep200_to_prospect_invite_ms}\n"
            f"  prospect 200 -> bridged ms   {report.prospect200_to_bridged_ms}"
        )
        for name, summary in report.sipp.items():
            print(f"  sipp {name}: {summary}")
    return 0 if report.not_finished == 0 and not report.other_results else 1


if __name__ == "__main__":
    raise SystemExit(main())
