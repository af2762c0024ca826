"""kill -9 of the daemon at three moments of a lead's life; a restart loses nothing.

(a) after 202, before routing: the leads are routed after the restart and nobody is rung twice;
(b) while reps ring: the lead is recovered by another daemon once the lease lapses and its reps
    are rung again (the prospect was never dialled, so is dialled once);
(c) while connected: the call is not re-dialled; the lead is completed (``daemon_restart``).
In every case the reps reserved by the dead daemon are free again within the lease.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import DaemonProcess
from tests.support.pipeline import daemon_floor, kinds, prospect_scenario, rep_scenario
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.postgres, pytest.mark.sipp, pytest.mark.slow, needs_sipp]

LEASE_S = 2.0


async def reservations_after(database_url: str, moment: datetime) -> list[datetime]:
    """``reserved_until`` of every rep reserved past ``moment``."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT reserved_until FROM reps WHERE reserved_by IS NOT NULL AND reserved_until > $1",
            moment,
        )
    finally:
        await conn.close()
    return [row["reserved_until"] for row in rows]


async def assert_reps_free_within_lease(database_url: str, killed_at: datetime) -> None:
    # The dead daemon's reservations end at most one lease after its last heartbeat.
    assert await reservations_after(database_url, killed_at + timedelta(seconds=LEASE_S)) == []
    await asyncio.sleep(max(0.0, (killed_at - datetime.now(UTC)).total_seconds() + LEASE_S))
    assert await reservations_after(database_url, datetime.now(UTC)) == []


async def test_a_killed_after_202_before_routing(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {
        "ann": rep_scenario(tmp_path / "ann.xml", answer_ms=100),
        "bob": rep_scenario(tmp_path / "bob.xml", answer_ms=100),
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=200)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps=reps,
        prospect=prospect,
        lease_s=LEASE_S,
        instance_id="node-1",
        ring_size=1,
    ) as floor:
        first = await floor.start("first")
        # Hold routing back: the pipeline claims leads but cannot read the reps.
        blocker = await asyncpg.connect(database_url)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE reps IN ACCESS EXCLUSIVE MODE")
        try:
            ids = [await floor.post(external_id=f"a-{n}") for n in range(3)]
            for lead_id in ids:
                lead = await floor.lead(lead_id)
                assert lead["status"] in ("received", "routing"), kinds(lead)
            first.kill()  # SIGKILL: no shutdown code runs
            assert first.process.returncode == -9
        finally:
            await transaction.rollback()
            await blocker.close()
        # Same instance id: the restarted daemon takes its own leads back at once.
        started = time.monotonic()
        await floor.start("second")
        for lead_id in ids:
            lead = await floor.wait(lead_id, "completed")
            assert kinds(lead).count("ringing_reps") == 1, kinds(lead)
        assert time.monotonic() - started < 15
        assert floor.invites(floor.prospect) == 3
        assert sum(floor.invites(floor.reps[r]) for r in ("ann", "bob")) == 3


async def test_b_killed_while_reps_ring(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=2500)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=200)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps=reps,
        prospect=prospect,
        lease_s=LEASE_S,
        ring_timeout_s=10,
    ) as floor:
        first = await floor.start("first")
        lead_id = await floor.post()
        await floor.wait(lead_id, "ringing_reps")
        for _ in range(100):  # the INVITE is on its way
            if floor.invites(floor.reps["ann"]):
                break
            await asyncio.sleep(0.02)
        first.kill()
        killed_at = datetime.now(UTC)
        await assert_reps_free_within_lease(database_url, killed_at)
        # Another daemon (another instance id) takes the lead over once the lease lapsed.
        await floor.start("second")
        lead = await floor.wait(lead_id, "completed", timeout=20)
        timeline = kinds(lead)
        assert timeline.count("ringing_reps") == 2
        [recovered] = [e["data"] for e in lead["timeline"] if e["kind"] == "recovered"]
        assert recovered["from"] == "ringing_reps" and recovered["previous_daemon"]
        assert floor.invites(floor.reps["ann"]) == 2  # rung again: the first call died with us
        assert floor.invites(floor.prospect) == 1


async def test_c_killed_while_connected(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=100)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=100, hangup_ms=20_000)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps=reps,
        prospect=prospect,
        lease_s=LEASE_S,
        instance_id="node-1",
    ) as floor:
        first = await floor.start("first")
        lead_id = await floor.post()
        await floor.wait(lead_id, "connected")
        first.kill()
        killed_at = datetime.now(UTC)
        await assert_reps_free_within_lease(database_url, killed_at)
        await floor.start("second")
        lead = await floor.wait(lead_id, "completed")
        assert kinds(lead)[-2:] == ["recovered", "completed"]
        assert lead["timeline"][-1]["data"]["reason"] == "daemon_restart"
        assert lead["assigned_rep"] == "ann"
        assert lead["sla"]["time_to_call_ms"] is not None
        # Not re-dialled: each party got exactly one call.
        await asyncio.sleep(0.5)
        assert floor.invites(floor.prospect) == 1
        assert floor.invites(floor.reps["ann"]) == 1
        headers = {"Authorization": f"Bearer {floor.token}"}
        async with floor.session().get("/v1/reps", headers=headers) as reply:
            [ann] = (await reply.json())["reps"]
        assert ann["status"] == "available" and ann["reserved_by"] is None
