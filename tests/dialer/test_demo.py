"""``dialer demo``: SIPp phones, the daemon, sample leads bridged, and nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dialer.demo import describe_event
from tests.support.sipp import needs_sipp

REPO_ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parentheses.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def test_describe_event_reads_like_a_timeline() -> None:
    assert describe_event({"kind": "rep_answered", "data": {"rep_id": "ann", "status": 200}}) == (
        "ann answered (200)"
    )
    assert describe_event(
        {
            "kind": "ringing_reps",
            "data": {"targets": ["ann", "bob"], "mode": "parallel", "round": 1},
        }
    ) == ("ringing ann, bob (parallel, round 1)")
    assert describe_event({"kind": "blocked_compliance", "data": {"reason": "do_not_call"}}) == (
        "blocked_compliance (do_not_call)"
    )


@pytest.mark.sipp
@pytest.mark.postgres
@pytest.mark.slow
@needs_sipp
def test_demo_bridges_the_sample_leads_and_stops_everything_it_started(
    pg_tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dialer.cli",
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(pg_tmp_path / "pgdata"),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []
    phones: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "rep ann" in line:
                phones = children_of(process.pid)
            if line.startswith("Press Ctrl-C"):
                break
        out = "".join(lines)
        assert "Press Ctrl-C to stop." in out, out
        # Ctrl-C: everything stops, the phones (SIPp, by pid) included.
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert out.count("-> 202 ") == 3
    assert out.count("bridged: ann <-> prospect") == 3
    assert "bob: busy (486)" in out
    assert "cat: cancelled (487)" in out
    summary = out.split("Summary:", 1)[1]
    times = re.findall(r"completed\s+rep=ann\s+time-to-call\s+([0-9.]+) s", summary)
    assert len(times) == 3
    # Ann picks up after 2 s: nobody is called faster than that.
    assert all(float(value) >= 2.0 for value in times)
    assert len(phones) >= 4  # three reps and the trunk
    for pid in phones:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert not (pg_tmp_path / "pgdata" / "postmaster.pid").exists()
