"""Operations on a running daemon: SIGHUP reloads reps and rules, SIGTERM drains.

- SIGHUP with an invalid file: one error line naming the key, the old config keeps routing.
- SIGHUP with a valid file: a rep added to the file becomes routable (a lead waiting for a rep
  is rung on them), a call in progress survives, a changed start-up section is only logged as
  ``restart required``, and the new rule-set version is recorded.
- SIGTERM with a call in progress: ``/readyz`` answers 503 at once, a lead posted meanwhile is
  stored but not claimed, the call finishes, the daemon exits 0.
- SIGTERM with a call that outlasts ``drain_timeout_s``: it is hung up at the deadline, its
  lead is released (no claim left) and the daemon exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from dialer.sipp import Transport, free_port
from tests.conftest import DaemonProcess, start_daemon
from tests.support.pipeline import (
    DaemonFloor,
    daemon_floor,
    kinds,
    pipeline_config,
    prospect_scenario,
    rep_scenario,
)
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.postgres, pytest.mark.sipp, pytest.mark.slow, needs_sipp]

#: A valid rule added by the reload (CEL over the lead).
WEB_RULE = """[[routing.rules]]
name = "web"
when = 'lead.source == "web"'
pool = { reps = ["alice", "bob"] }
"""

#: ``drain_timeout_s`` of every daemon config written by tests.support.pipeline.
DRAIN_TIMEOUT_S = 5.0


def write_floor_config(
    floor: DaemonFloor, path: Path, *, sip_port: int, reps: list[str], extra: str = "", **kw: Any
) -> Path:
    """A daemon config ringing only ``reps`` of the floor's SIPp reps."""
    text = pipeline_config(
        database_url=floor.database_url,
        sip_port=sip_port,
        trunk_port=floor.prospect.local_port,
        reps={rep_id: floor.reps[rep_id].local_port for rep_id in reps},
        **{**floor.config_extra, **kw},
    )
    path.write_text(text + extra)
    return path


async def start_with(floor: DaemonFloor, path: Path, sip_port: int) -> DaemonProcess:
    """Start a daemon on ``path`` and make it the floor's current daemon."""
    process = start_daemon(path)
    floor.daemons.append(process)
    await asyncio.to_thread(process.wait_ready)
    floor.daemon = process
    floor.sip_port = sip_port
    if floor.http is not None:
        await floor.http.close()
    floor.http = aiohttp.ClientSession(process.base_url, timeout=aiohttp.ClientTimeout(total=10))
    return process


async def wait_log(
    process: DaemonProcess, event: str, *, count: int = 1, timeout: float = 10.0
) -> list[dict[str, object]]:
    """Wait until ``event`` was logged ``count`` times; those log lines."""
    deadline = time.monotonic() + timeout
    found: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        found = [line for line in process.log_events() if line.get("event") == event]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no {event!r} x{count} in the log: {process.log_path.read_text()}")


async def lead_row(database_url: str, lead_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT status, claimed_by, assigned_rep FROM leads WHERE id = $1::uuid", lead_id
        )
    finally:
        await conn.close()
    assert row is not None
    return row


def notifications(sock: socket.socket) -> list[str]:
    """The sd_notify datagrams received so far, first line of each (``KEY=VALUE``)."""
    received = []
    while True:
        try:
            received.append(sock.recv(4096).decode().split("\n")[0])
        except BlockingIOError:
            return received


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's side of ``Type=notify``: daemons started now inherit ``NOTIFY_SOCKET``."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        yield sock


async def test_sighup_rejects_an_invalid_config_then_applies_a_valid_one(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess], notify: socket.socket
) -> None:
    reps = {
        "alice": rep_scenario(tmp_path / "alice.xml", answer_ms=50),
        "bob": rep_scenario(tmp_path / "bob.xml", answer_ms=50),
    }
    # The first call stays up until the reload is done: it must survive it.
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=4000)
    async with daemon_floor(
        tmp_path, database_url, daemons, reps=reps, prospect=prospect, ring_timeout_s=5
    ) as floor:
        sip_port = free_port(Transport.UDP)
        path = write_floor_config(
            floor, tmp_path / "dialer.toml", sip_port=sip_port, reps=["alice"]
        )
        daemon = await start_with(floor, path, sip_port)
        assert "READY=1" in notifications(notify)

        first = await floor.post(external_id="first")
        await floor.wait(first, "connected", timeout=10)
        # alice is on the call; with only alice configured the next lead waits for a rep.
        second = await floor.post(external_id="second", phone="+14155552672")
        await floor.wait(second, "waiting_for_rep", timeout=10)

        # An invalid file: rejected with one error line naming the key; nothing changes.
        write_floor_config(
            floor,
            path,
            sip_port=sip_port,
            reps=["alice", "bob"],
            extra='[[routing.rules]]\nname = "broken"\nwhen = "lead.("\n',
        )
        daemon.process.send_signal(signal.SIGHUP)
        [rejected] = await wait_log(daemon, "config reload rejected; old config kept")
        assert str(rejected["key"]).startswith("routing.rules"), rejected
        errors = [line for line in daemon.log_events() if line.get("level") == "error"]
        assert errors == [rejected]
        # systemd hears the reload begin and end, even when it is rejected.
        assert notifications(notify) == ["RELOADING=1", "READY=1"]
        await asyncio.sleep(0.5)
        assert (await floor.lead(second))["status"] == "waiting_for_rep"
        assert daemon.process.poll() is None

        # A valid file: bob is added, a rule sends web leads to alice and bob (a new rule-set
        # version), and a start-up section changes, which needs a restart.
        write_floor_config(
            floor,
            path,
            sip_port=sip_port,
            reps=["alice", "bob"],
            lease_s=3.0,
            extra=WEB_RULE,
        )
        daemon.process.send_signal(signal.SIGHUP)
        [reloaded] = await wait_log(daemon, "config reloaded")
        [restart] = await wait_log(
            daemon, "config reload: restart required for changed sections; ignored"
        )
        assert restart["sections"] == ["daemon"]
        assert reloaded["version"] != reloaded["previous_version"]
        assert notifications(notify) == ["RELOADING=1", "READY=1"]

        lead = await floor.wait(second, "connected", "completed", timeout=10)
        assert lead["assigned_rep"] == "bob"
        ringing = [e["data"] for e in lead["timeline"] if e["kind"] == "ringing_reps"]
        assert [(r["rule"], r["version"]) for r in ringing] == [("web", reloaded["version"])]
        # The call in progress during both reloads was never cut.
        done = await floor.wait(first, "completed", timeout=15)
        assert done["assigned_rep"] == "alice"
        assert kinds(done).count("calling_prospect") == 1
        completed = next(e for e in done["timeline"] if e["kind"] == "completed")
        assert completed["data"].get("ended_by") == "prospect", completed
        assert floor.invites(floor.reps["bob"]) == 1

        conn = await asyncpg.connect(database_url)
        try:
            versions = await conn.fetchval("SELECT count(*) FROM routing_rulesets")
        finally:
            await conn.close()
        assert versions >= 2
        assert daemon.terminate() == 0


async def test_sigterm_drains_a_call_in_progress_and_claims_nothing_new(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {"alice": rep_scenario(tmp_path / "alice.xml", answer_ms=50)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=2000)
    async with daemon_floor(
        tmp_path, database_url, daemons, reps=reps, prospect=prospect, ring_timeout_s=5
    ) as floor:
        daemon = await floor.start("drain")
        lead_id = await floor.post(external_id="in-progress")
        await floor.wait(lead_id, "connected", timeout=10)

        daemon.process.send_signal(signal.SIGTERM)
        await wait_log(daemon, "pipeline draining")
        async with floor.session().get("/readyz") as reply:
            assert reply.status == 503
            assert (await reply.json())["status"] == "draining"
        # Still answering: a lead posted now is stored for another daemon, never claimed here.
        late = await floor.post(external_id="late", phone="+14155552672")

        code = await asyncio.to_thread(daemon.process.wait, 20)
        assert code == 0
        row = await lead_row(database_url, lead_id)
        assert (row["status"], row["claimed_by"]) == ("completed", None)
        late_row = await lead_row(database_url, late)
        assert (late_row["status"], late_row["claimed_by"]) == ("received", None)
        assert floor.invites(floor.reps["alice"]) == 1


async def test_sigterm_hangs_up_at_the_drain_timeout_and_releases_the_lead(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {"alice": rep_scenario(tmp_path / "alice.xml", answer_ms=50)}
    # The prospect never hangs up: only the drain deadline ends this call.
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=None)
    async with daemon_floor(
        tmp_path, database_url, daemons, reps=reps, prospect=prospect, ring_timeout_s=5
    ) as floor:
        daemon = await floor.start("drain-timeout")
        lead_id = await floor.post(external_id="long-call")
        await floor.wait(lead_id, "connected", timeout=10)

        signalled = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(daemon.process.wait, 30)
        took = time.monotonic() - signalled
        assert code == 0
        assert took >= DRAIN_TIMEOUT_S - 0.5, took
        [timed_out] = await wait_log(daemon, "drain timeout: hanging up calls in progress")
        assert timed_out["leads"] == 1
        row = await lead_row(database_url, lead_id)
        assert row["claimed_by"] is None
        assert row["status"] != "connected"
        conn = await asyncpg.connect(database_url)
        try:
            reserved = await conn.fetchval(
                "SELECT count(*) FROM reps WHERE reserved_by IS NOT NULL"
            )
        finally:
            await conn.close()
        assert reserved == 0
