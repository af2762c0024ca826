"""Time to call under load: the daemon, SIPp reps and prospects, and an HTTP lead generator.

    .venv/bin/python benchmarks/time_to_call.py run --rate 50 --duration 20
    .venv/bin/python benchmarks/time_to_call.py sweep --rates 20,50,100,200 --duration 20 \
        --plot benchmarks/results/time_to_call_sweep.png
    .venv/bin/python benchmarks/time_to_call.py soak --rate 50 --duration 300 --window 60
    .venv/bin/python benchmarks/time_to_call.py overload --rate 100      # runs 1x and 2x
    .venv/bin/python benchmarks/time_to_call.py held --calls 1000 --rate 50

Every point starts a fresh floor (``benchmarks/load_common.py``): ``dialer run`` on its own
embedded PostgreSQL (pinned with its database to CPU 1), SIPp UAS processes playing R reps
(answer after a delay drawn from a discretised lognormal, some busy 486, some never answering)
and one SIPp UAS as the trunk's prospects (all pinned to CPU 0, ``-buff_size 4194304``), then
posts leads at L leads/s for T seconds (open loop), waits (bounded) for every lead to settle,
reads every lead's timeline back (GET /v1/leads/{id}) and reports, from the daemon's own
timestamps:

- lead received -> first rep INVITE sent (``rep_invited``), for leads rung in one round;
- rep 200 (``rep_answered``) -> prospect INVITE sent (``calling_prospect``);
- prospect 200 (``prospect_answered``) -> bridged (``connected``);
- time to call (received -> ``calling_prospect``) and the daemon's own share of it: time to
  call minus the winning rep's answer delay (``rep_answered`` - that rep's ``rep_invited``);
- leads/s connected, most concurrent SIP legs, daemon and PostgreSQL CPU/RSS, SIP messages/s
  (counted by SIPp), errors by kind, lost leads (a 202 not ending ``completed`` or parked as
  ``waiting_for_rep``/``scheduled``) and reps rung for two leads at once.

The ceiling (``--ceiling``, on by default for ``run``/``sweep``): a SIPp UAC calling the same
rep scenario (answering at once) on the same CPUs, at the same SIP leg rate (K rep legs + one
prospect leg per lead), in the same invocation: what SIPp to SIPp does on this machine.

Bounded: at most ``MAX_DURATION_S`` of offered load per point and ``--drain`` seconds to settle;
every process started here is stopped by its pid (SIGTERM then SIGKILL for the daemon; SIPp's
SIGUSR1/SIGTERM/SIGKILL). Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_common import (
    DONE_STATUSES,
    PARKED_STATUSES,
    AnswerDelay,
    Floor,
    FloorSpec,
    LeadGenerator,
    analyse,
    fetch_leads,
    lead_times,
    load_average,
    percentiles,
    proc_cpu_seconds,
    rep_scenario_xml,
    sip_message_total,
    sipp_errors,
    wait_settled,
    window_stats,
)

from dialer.sipp import SCENARIOS_DIR, SippPeer, SippProcess

MAX_DURATION_S = 3600.0
MAX_RATE = 2000.0
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def reps_for(rate: float, spec: FloorSpec) -> int:
    """Enough reps that routing rarely runs out: each lead holds K reps while ringing and the
    winner through the call (answer + hold + wrap-up), times a margin of 2."""
    ring_s = spec.answer.median_ms / 1000 * 1.5
    busy_s = ring_s + spec.prospect_answer_ms / 1000 + spec.hold_ms / 1000 + spec.wrap_up_s
    return max(30, math.ceil(2 * rate * (spec.ring_size * ring_s + busy_s)))


async def run_point(
    spec: FloorSpec,
    rate: float,
    duration: float,
    *,
    drain: float,
    label: str = "",
    keep: bool = False,
    soak_window: float | None = None,
) -> dict[str, Any]:
    """One offered rate on a fresh floor; the report as a dict."""
    if not 0 < rate <= MAX_RATE or not 0 < duration <= MAX_DURATION_S:
        raise SystemExit(f"rate must be in (0, {MAX_RATE}] and duration in (0, {MAX_DURATION_S}]")
    load_before = load_average()
    floor = Floor(spec)
    report: dict[str, Any] = {"label": label, "rate": rate, "duration_s": duration}
    try:
        async with floor:
            await asyncio.sleep(1.0)  # a baseline resource sample
            before = floor.sample()
            generator = LeadGenerator(
                floor.base_url,
                rate=rate,
                duration=duration,
                run_id=f"{label or 'run'}-{time.time():.0f}",
            )
            load_start = time.monotonic()
            posted = await generator.run()
            load_end = time.monotonic()
            accepted = sum(1 for p in posted if p.status == 202)
            counts = await wait_settled(
                floor.base_url,
                expected=accepted,
                timeout=drain,
                settled=DONE_STATUSES | PARKED_STATUSES,
            )
            settled_at = time.monotonic()
            after = floor.sample()
            ids = [p.lead_id for p in posted if p.status == 202 and p.lead_id]
            leads = await fetch_leads(floor.base_url, ids)
            sipp_results, exit_code = await floor.stop()
        report.update(analyse(posted, leads))
        report["generator_skipped"] = generator.skipped
        report["settle_s"] = round(settled_at - load_end, 1)
        report["status_counts_at_end"] = dict(counts)
        report["resources"] = window_stats(floor.samples, load_start, load_end)
        report["rss_mb_before"] = round(before.daemon_rss / 2**20, 1)
        report["rss_mb_after"] = round(after.daemon_rss / 2**20, 1)
        elapsed = max(1e-9, settled_at - load_start)
        report["sip_messages_per_s"] = round(sip_message_total(sipp_results) / elapsed, 1)
        report["errors"] = {
            **sipp_errors(sipp_results),
            **{f"http_{k}": v for k, v in report["http_errors"].items()},
        }
        report["daemon_exit_code"] = exit_code
        report["reps"] = spec.reps
        report["ring_size"] = spec.ring_size
        report["load_avg_before"] = round(load_before, 2)
        report["load_avg_after"] = round(load_average(), 2)
        if soak_window:
            report["windows"] = soak_windows(posted, leads, floor, load_start, soak_window)
        report["workdir"] = str(floor.workdir) if keep else None
    finally:
        if not keep:
            floor.cleanup()
    return report


def soak_windows(
    posted: list[Any], leads: dict[str, Any], floor: Floor, load_start: float, window: float
) -> list[dict[str, Any]]:
    """Per window of lead arrival: own-share p99 and the daemon's RSS at the window's end."""
    first_sent = min(p.sent_at for p in posted)
    buckets: dict[int, list[float]] = {}
    for p in posted:
        if not p.lead_id or p.lead_id not in leads:
            continue
        t = lead_times(leads[p.lead_id])
        if (
            None in (t.received, t.calling_prospect, t.rep_answered, t.winner_invited)
            or t.rounds != 1
        ):
            continue
        assert t.received and t.calling_prospect and t.rep_answered and t.winner_invited
        own = (t.calling_prospect - t.received - (t.rep_answered - t.winner_invited)) * 1000
        buckets.setdefault(int((p.sent_at - first_sent) // window), []).append(own)
    rows = []
    for index in sorted(buckets):
        start = load_start + index * window
        stats = window_stats(floor.samples, start, start + window)
        rows.append({"window": index, "own_share_ms": percentiles(buckets[index]), **stats})
    return rows


# --------------------------------------------------------------------------- ceiling


async def ceiling(spec: FloorSpec, leg_rate: float, duration: float) -> dict[str, Any]:
    """SIPp UAC -> SIPp UAS (the rep scenario, answering at once) at ``leg_rate`` calls/s."""
    floor = Floor(spec)  # only for CPU choice and a work directory
    workdir = floor.workdir
    rep_xml = workdir / "ceiling_rep.xml"
    rep_xml.write_text(rep_scenario_xml(AnswerDelay(kind="fixed", median_ms=1)))
    calls = max(1, round(leg_rate * duration))
    uas = SippProcess(
        SippPeer(
            scenario=rep_xml,
            calls=None,
            timeout_s=duration + 60,
            buff_size=spec.buff_size,
            trace_messages=False,
            cpus=floor.sipp_cpus,
            workdir=workdir / "uas",
        )
    )
    # The UAC stands in for the daemon: on the daemon's CPU.
    uac_peer = SippPeer(
        scenario=SCENARIOS_DIR / "load_uac.xml",
        remote=None,
        calls=calls,
        rate=leg_rate,
        timeout_s=duration + 60,
        buff_size=spec.buff_size,
        trace_messages=False,
        cpus=floor.daemon_cpus,
        workdir=workdir / "uac",
        service="rep00000",
        extra_args=("-trace_rtt", "-rtt_freq", "1"),
    )
    try:
        async with uas:
            uac = SippProcess(replace(uac_peer, remote=uas.address))
            started = time.monotonic()
            await uac.start()
            cpu_uas0 = proc_cpu_seconds(uas.pid or 0) or 0.0
            last_uac_cpu = 0.0
            while uac.running and time.monotonic() - started < duration + 60:
                last_uac_cpu = proc_cpu_seconds(uac.pid or 0) or last_uac_cpu
                await asyncio.sleep(0.2)
            result = await uac.wait(timeout=5)
            elapsed = time.monotonic() - started
            cpu_uas = (proc_cpu_seconds(uas.pid or 0) or cpu_uas0) - cpu_uas0
        rtts = []
        for path in (workdir / "uac").glob("*_rtt.csv"):
            with path.open() as stream:
                for row in csv.reader(stream, delimiter=";"):
                    with contextlib.suppress(ValueError, IndexError):
                        rtts.append(float(row[1]))
        return {
            "leg_rate": leg_rate,
            "calls": calls,
            "successful": result.successful_calls,
            "failed": result.failed_calls,
            "retransmissions": result.retransmissions,
            "elapsed_s": round(elapsed, 1),
            "uac_cpu_pct": round(100 * last_uac_cpu / elapsed, 1),
            "uas_cpu_pct": round(100 * cpu_uas / elapsed, 1),
            "invite_to_200_ms": percentiles(rtts),
        }
    finally:
        floor.cleanup()


# --------------------------------------------------------------------------- reporting


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


METRICS = (
    ("lead_to_first_rep_invite_ms", "lead->rep INVITE"),
    ("rep_200_to_prospect_invite_ms", "rep 200->prospect INVITE"),
    ("prospect_200_to_bridged_ms", "prospect 200->bridged"),
    ("own_share_ms", "own share of time-to-call"),
    ("time_to_call_ms", "time-to-call (incl. rep answer)"),
    ("rep_answer_delay_ms", "rep answer delay (simulated)"),
    ("http_ms", "POST /v1/leads (client)"),
)


def table(report: dict[str, Any]) -> str:
    """One point as a text table."""
    res = report.get("resources", {})
    lines = [
        f"offered {report['rate']:g} leads/s for {report['duration_s']:g}s  "
        f"(measured {_fmt(report.get('offered_leads_per_s'))}/s), reps {report['reps']}, "
        f"ring size {report['ring_size']}, load avg {report['load_avg_before']} -> "
        f"{report['load_avg_after']}",
        f"posted {report['posted']}  accepted {report['accepted']}  connected "
        f"{report['connected_leads']} (goodput {_fmt(report.get('goodput_per_s'))}/s, served "
        f"{_fmt(report.get('served_per_s'))}/s)  "
        f"multi-round {report['multi_round_leads']}  LOST {report['lost_leads']}  "
        f"unfinished {report.get('unfinished_leads', '-')}  "
        f"double-rung {len(report['double_rung'])}  settle {report['settle_s']}s",
        f"statuses {report['statuses']}",
        f"max concurrent SIP legs {report['max_concurrent_legs']}  SIP msgs/s "
        f"{report['sip_messages_per_s']}  daemon CPU {res.get('daemon_cpu_pct')}% "
        f"RSS {res.get('daemon_rss_mb')} MB  PostgreSQL CPU {res.get('db_cpu_pct')}%",
        f"errors {report['errors']}",
        "",
        f"{'ms':34} {'n':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}",
    ]
    for key, name in METRICS:
        p = report.get(key) or {}
        lines.append(
            f"{name:34} {p.get('n', 0):>6} {_fmt(p.get('p50')):>8} {_fmt(p.get('p90')):>8} "
            f"{_fmt(p.get('p99')):>8} {_fmt(p.get('max')):>8}"
        )
    if "ceiling" in report:
        c = report["ceiling"]
        rt = c["invite_to_200_ms"]
        lines.append(
            f"ceiling SIPp->SIPp {c['leg_rate']:g} legs/s: ok {c['successful']} failed "
            f"{c['failed']} retrans {c['retransmissions']}, UAC CPU {c['uac_cpu_pct']}% UAS CPU "
            f"{c['uas_cpu_pct']}%, INVITE->200 p50/p99/max {rt['p50']}/{rt['p99']}/{rt['max']} ms"
        )
    return "\n".join(lines)


def markdown_row(report: dict[str, Any]) -> str:
    own = report["own_share_ms"]
    inv = report["lead_to_first_rep_invite_ms"]
    r2p = report["rep_200_to_prospect_invite_ms"]
    br = report["prospect_200_to_bridged_ms"]
    res = report.get("resources", {})
    c = report.get("ceiling")
    ceiling_text = f"{c['failed']} failed, UAC {c['uac_cpu_pct']}%" if c else "-"
    return (
        f"| {report['rate']:g} | {_fmt(report.get('connected_per_s'))} | "
        f"{report['max_concurrent_legs']} | {_fmt(inv['p50'])} / {_fmt(inv['p99'])} | "
        f"{_fmt(r2p['p50'])} / {_fmt(r2p['p99'])} | {_fmt(br['p50'])} / {_fmt(br['p99'])} | "
        f"{_fmt(own['p50'])} / {_fmt(own['p90'])} / **{_fmt(own['p99'])}** / {_fmt(own['max'])} | "
        f"{res.get('daemon_cpu_pct')}% / {res.get('db_cpu_pct')}% | {res.get('daemon_rss_mb')} | "
        f"{report['sip_messages_per_s']} | {report['lost_leads']} "
        f"({report.get('unfinished_leads', '-')}) | "
        f"{len(report['double_rung'])} | "
        f"{_errors_short(report['errors'])} | {ceiling_text} | {report['load_avg_before']} |"
    )


def _errors_short(errors: dict[str, int]) -> str:
    shown = {k.replace("sipp_", ""): v for k, v in errors.items() if v}
    return ", ".join(f"{k} {v}" for k, v in shown.items()) or "0"


MARKDOWN_HEADER = (
    "| leads/s offered | connected/s | max legs | lead->rep INVITE p50/p99 ms | "
    "rep 200->prospect INVITE p50/p99 | prospect 200->bridged p50/p99 | "
    "own share p50/p90/p99/max | CPU daemon/PG | RSS MB | SIP msg/s | lost (unfinished) | "
    "double-rung | "
    "SIP errors | ceiling (SIPp->SIPp) | load avg |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def plot_sweep(reports: list[dict[str, Any]], path: Path) -> None:
    """Latency percentiles vs offered load (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [r["rate"] for r in reports]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, name, style in (
        ("own_share_ms", "own share", "-"),
        ("lead_to_first_rep_invite_ms", "lead->rep INVITE", "--"),
        ("rep_200_to_prospect_invite_ms", "rep 200->prospect INVITE", ":"),
    ):
        for pct, marker in (("p50", "o"), ("p99", "s")):
            values = [r[key][pct] if r[key][pct] is not None else float("nan") for r in reports]
            axes[0].plot(rates, values, style, marker=marker, label=f"{name} {pct}")
    axes[0].axhline(100, color="red", linewidth=0.8, label="100 ms target")
    axes[0].set_xlabel(f"offered leads/s (parallel ring of {reports[0]['ring_size']})")
    axes[0].set_ylabel("ms (daemon timestamps)")
    axes[0].set_yscale("log")
    axes[0].set_title("daemon's share of time-to-call vs offered load")
    axes[0].legend(fontsize=7)
    axes[0].grid(True, which="both", alpha=0.3)
    # Served (first rep INVITEs per second while the pipeline worked) and goodput (bridged per
    # second until the last bridge) are the pipeline's throughput; bridged leads divided by the
    # offered seconds would count the backlog called during the drain as if it kept up.
    axes[1].plot(rates, [r.get("served_per_s") or 0 for r in reports], "o-", label="served leads/s")
    axes[1].plot(
        rates, [r.get("goodput_per_s") or 0 for r in reports], "D-", label="goodput (bridged/s)"
    )
    axes[1].plot(rates, rates, ":", color="grey", label="offered")
    axes[1].plot(
        rates, [r["resources"].get("daemon_cpu_pct") for r in reports], "s--", label="daemon CPU %"
    )
    axes[1].plot(
        rates, [r["resources"].get("db_cpu_pct") for r in reports], "^--", label="PG CPU %"
    )
    axes[1].set_xlabel("offered leads/s")
    axes[1].set_title("throughput and CPU (1 core = 100%)")
    axes[1].legend(fontsize=7)
    axes[1].grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- modes


def spec_from(args: argparse.Namespace, rate: float) -> FloorSpec:
    spec = FloorSpec(
        ring_size=args.ring_size,
        rep_sipps=args.rep_sipps,
        ring_timeout_s=args.ring_timeout,
        answer=AnswerDelay(
            kind=args.answer,
            median_ms=args.answer_median_ms,
            sigma=args.answer_sigma,
            min_ms=args.answer_min_ms,
            max_ms=args.answer_max_ms,
        ),
        p_busy=args.p_busy,
        p_no_answer=args.p_no_answer,
        hold_ms=args.hold_ms,
        wrap_up_s=args.wrap_up,
        pin=not args.no_pin,
        database_url=args.database_url,
        pool_max=args.pool_max,
        log_level=args.log_level,
        sipp_timeout_s=args.duration + args.drain + 300,
    )
    return replace(spec, reps=args.reps or reps_for(rate, spec))


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    mode = args.mode
    if mode == "held":
        args.ring_size = 1
        args.p_busy = args.p_no_answer = 0.0
        args.hold_ms = int(args.hold_s * 1000)
        args.reps = args.reps or args.calls + 50
        duration = args.calls / args.rate
        args.duration = duration
        spec = spec_from(args, args.rate)
        report = await held_point(spec, args.rate, args.calls, args.hold_s)
        reports.append(report)
        print(json.dumps(report, indent=1))
        return reports
    rates = [float(r) for r in args.rates.split(",")] if mode == "sweep" else [args.rate]
    if mode == "overload":
        rates = [args.rate, 2 * args.rate]
    for rate in rates:
        spec = spec_from(args, rate)
        window = args.window if mode == "soak" else None
        report = await run_point(
            spec,
            rate,
            args.duration,
            drain=args.drain,
            label=f"{mode}-{rate:g}",
            keep=args.keep,
            soak_window=window,
        )
        if args.ceiling and mode in ("run", "sweep"):
            report["ceiling"] = await ceiling(
                spec, rate * (spec.ring_size + 1), min(args.duration, 20)
            )
        reports.append(report)
        print(table(report), flush=True)
        if window:
            for row in report["windows"]:
                own = row["own_share_ms"]
                print(
                    f"  window {row['window']}: n {own['n']} own p50 {own['p50']} p99 {own['p99']} "
                    f"daemon RSS {row['daemon_rss_mb']} MB CPU {row['daemon_cpu_pct']}%"
                )
        print(flush=True)
    print(MARKDOWN_HEADER)
    for report in reports:
        print(markdown_row(report))
    if mode == "sweep" and args.plot:
        plot_sweep(reports, Path(args.plot))
        print(f"plot written to {args.plot}")
    return reports


async def gauge(http: aiohttp.ClientSession, name: str) -> float | None:
    """One unlabelled sample of the daemon's ``/metrics`` (None when absent)."""
    async with http.get("/metrics") as reply:
        text = await reply.text()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x (None with fewer than 3 points or no spread)."""
    if len(points) < 3:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


async def held_point(spec: FloorSpec, rate: float, calls: int, hold_s: float) -> dict[str, Any]:
    """``calls`` bridged calls held ``hold_s`` each: the daemon's memory per held call.

    Memory per call is the slope of the daemon's RSS over the number of bridged calls
    (``dialer_pipeline_calls_bridged`` on ``/metrics``) sampled every 2 s while the calls
    ramp up, from 10% of ``calls`` on: what one more held call costs, without the start-up
    and allocator high-water marks a single before/after difference would include.
    """
    floor = Floor(spec)
    report: dict[str, Any] = {"mode": "held", "calls": calls, "rate": rate, "hold_s": hold_s}
    ramp: list[dict[str, float]] = []
    try:
        async with floor, aiohttp.ClientSession(floor.base_url) as http:
            await asyncio.sleep(2.0)
            before = floor.sample()
            generator = LeadGenerator(
                floor.base_url, rate=rate, duration=calls / rate, run_id=f"held-{time.time():.0f}"
            )
            posting = asyncio.create_task(generator.run())
            started = time.monotonic()
            # Sample the ramp until every call is bridged, bounded by the hold (the first
            # calls start ending then) and by the posting time plus two minutes.
            deadline = started + min(hold_s * 0.9, calls / rate + 120)
            bridged = 0.0
            while time.monotonic() < deadline:
                await asyncio.sleep(2.0)
                bridged = await gauge(http, "dialer_pipeline_calls_bridged") or 0.0
                sample = floor.sample()
                ramp.append(
                    {
                        "t": round(sample.t - started, 1),
                        "bridged": bridged,
                        "rss_mb": round(sample.daemon_rss / 2**20, 2),
                        "db_rss_mb": round(sample.db_rss / 2**20, 1),
                        "cpu_s": round(sample.daemon_cpu_s, 2),
                    }
                )
                if bridged >= calls:
                    break
            await posting
            plateau = floor.sample()
            report["bridged_at_plateau"] = bridged
            report["plateau_after_s"] = round(plateau.t - started, 1)
            report["rss_mb_before"] = round(before.daemon_rss / 2**20, 1)
            report["rss_mb_plateau"] = round(plateau.daemon_rss / 2**20, 1)
            report["db_rss_mb_plateau"] = round(plateau.db_rss / 2**20, 1)
            steady = [row for row in ramp if row["bridged"] >= calls / 10]
            per_call = slope([(row["bridged"], row["rss_mb"] * 1024) for row in steady])
            report["kb_per_held_call"] = None if per_call is None else round(per_call, 2)
            report["ramp"] = ramp
            t0 = time.monotonic()
            cpu0 = plateau.daemon_cpu_s
            await asyncio.sleep(5)
            idle = floor.sample()
            report["daemon_cpu_pct_while_holding"] = round(
                100 * (idle.daemon_cpu_s - cpu0) / (time.monotonic() - t0), 1
            )
            # Let the calls end (the prospects hang up after hold_s).
            counts = dict(
                await wait_settled(
                    floor.base_url, expected=calls, timeout=hold_s + 60, settled={"completed"}
                )
            )
            await asyncio.sleep(3)
            ended = floor.sample()
            report["completed_after_hold"] = counts.get("completed", 0)
            report["rss_mb_after_hangup"] = round(ended.daemon_rss / 2**20, 1)
            ids = [p.lead_id for p in generator.posted if p.lead_id]
            leads = await fetch_leads(floor.base_url, ids)
            report["analysis"] = analyse(generator.posted, leads)
            sipp_results, _code = await floor.stop()
            report["errors"] = sipp_errors(sipp_results)
    finally:
        floor.cleanup()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("run", "sweep", "soak", "overload", "held"))
    parser.add_argument("--rate", type=float, default=50.0, help="leads/s (run/soak/overload/held)")
    parser.add_argument("--rates", default="20,50,100,200", help="sweep: comma-separated leads/s")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of offered load")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to let leads settle")
    parser.add_argument("--window", type=float, default=60.0, help="soak: window seconds")
    parser.add_argument("--ring-size", type=int, default=3)
    parser.add_argument("--reps", type=int, default=0, help="0: enough for the rate")
    parser.add_argument("--rep-sipps", type=int, default=2)
    parser.add_argument("--ring-timeout", type=float, default=5.0)
    parser.add_argument("--answer", default="lognormal", choices=("lognormal", "uniform", "fixed"))
    parser.add_argument("--answer-median-ms", type=float, default=400.0)
    parser.add_argument("--answer-sigma", type=float, default=0.5)
    parser.add_argument("--answer-min-ms", type=float, default=100.0)
    parser.add_argument("--answer-max-ms", type=float, default=1000.0)
    parser.add_argument("--p-busy", type=float, default=0.1)
    parser.add_argument("--p-no-answer", type=float, default=0.1)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--wrap-up", type=float, default=0.0)
    parser.add_argument("--calls", type=int, default=1000, help="held: concurrent calls")
    parser.add_argument("--hold-s", type=float, default=90.0, help="held: talk time")
    parser.add_argument("--database-url", default="", help="empty: embedded PostgreSQL")
    parser.add_argument("--pool-max", type=int, default=10)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep work directories")
    parser.add_argument("--plot", default=str(RESULTS_DIR / "time_to_call_sweep.png"))
    parser.add_argument("--json", default="", help="write the reports to this file")
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) >= 2 and not args.no_pin:
        os.sched_setaffinity(0, {0})  # the generator shares CPU 0 with SIPp
    reports = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(reports, indent=1, default=str))
        print(f"JSON written to {args.json}")


if __name__ == "__main__":
    main()
