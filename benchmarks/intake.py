"""Intake benchmark: POST /v1/leads throughput and latency against a real daemon.

Starts ``dialer run`` as a subprocess on its own embedded PostgreSQL (a fresh temporary data
directory unless ``--data-dir``/``--database-url`` is given), waits for ``/readyz``, posts a
warm-up batch, then posts ``--leads`` unique leads from ``--concurrency`` concurrent clients
(keep-alive connections) and prints throughput and latency percentiles measured by the client,
plus the CPU time the daemon process used.

    .venv/bin/python benchmarks/intake.py --leads 20000 --concurrency 32

Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(directory: Path, args: argparse.Namespace, port: int) -> Path:
    data_dir = args.data_dir or directory / "pgdata"
    config = directory / "dialer.toml"
    config.write_text(
        "\n".join(
            [
                "[api]",
                f'listen = "127.0.0.1:{port}"',
                f'tokens = ["{TOKEN}"]',
                "[database]",
                f"url = {json.dumps(args.database_url or '')}",
                f"data_dir = {json.dumps(str(data_dir))}",
                f"pool_max = {args.pool_max}",
                "[log]",
                'format = "json"',
                f'level = "{args.log_level}"',
            ]
        )
        + "\n"
    )
    return config


def start_daemon(config: Path, log_path: Path, cpu: str | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "dialer.cli", "run", "--config", str(config)]
    if cpu is not None:
        command = ["taskset", "-c", cpu, *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=log, env=env)


def wait_ready(
    process: subprocess.Popen[bytes], log_path: Path, url: str, timeout: float = 60
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"daemon exited: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return url
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"daemon not ready after {timeout}s: {log_path.read_text()}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


async def post_leads(
    base_url: str, count: int, concurrency: int, run_id: str
) -> tuple[list[float], dict[int, int], float]:
    """Post ``count`` unique leads; returns latencies (s), status counts, wall time (s)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            body = {
                "phone": "+14155552671",
                "name": "Bench Lead",
                "email": "bench@example.com",
                "source": "bench",
                "external_id": f"{run_id}-{index}",
                "intent": "high",
                "fields": {"form": "pricing", "n": index},
            }
            started = time.perf_counter()
            async with http.post("/v1/leads", json=body, headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)
            statuses[response.status] = statuses.get(response.status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, statuses, wall


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--pool-max", type=int, default=10)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="daemon (and the embedded PostgreSQL it starts) on CPU 1, this client on CPU 0",
    )
    args = parser.parse_args()

    if args.pin:
        os.sched_setaffinity(0, {0})
    workdir = Path(tempfile.mkdtemp(prefix="dialer-bench-"))
    port = free_port()
    config = write_config(workdir, args, port)
    log_path = workdir / "daemon.log"
    process = start_daemon(config, log_path, "1" if args.pin else None)
    try:
        base_url = wait_ready(process, log_path, f"http://127.0.0.1:{port}")
        run_id = f"{int(time.time())}"
        asyncio.run(post_leads(base_url, args.warmup, args.concurrency, run_id + "w"))
        cpu_before = cpu_seconds(process.pid)
        latencies, statuses, wall = asyncio.run(
            post_leads(base_url, args.leads, args.concurrency, run_id)
        )
        cpu_used = cpu_seconds(process.pid) - cpu_before
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if args.data_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    ms = 1000.0
    print(f"leads            {args.leads} (+{args.warmup} warm-up), concurrency {args.concurrency}")
    print(f"statuses         {dict(sorted(statuses.items()))}")
    print(f"throughput       {args.leads / wall:,.0f} leads/s over {wall:.2f} s")
    print(
        f"latency (ms)     p50 {percentile(latencies, 0.50) * ms:.1f}  "
        f"p90 {percentile(latencies, 0.90) * ms:.1f}  "
        f"p99 {percentile(latencies, 0.99) * ms:.1f}  "
        f"max {max(latencies) * ms:.1f}  mean {statistics.fmean(latencies) * ms:.1f}"
    )
    print(
        f"daemon CPU       {cpu_used:.2f} s ({cpu_used / wall * 100:.0f}% of one core; "
        "embedded PostgreSQL not included)"
    )


if __name__ == "__main__":
    main()
