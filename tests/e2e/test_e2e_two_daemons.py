"""Two daemons (two processes, separate SIP ports) on one database share 200 leads.

Every lead is handled exactly once (one prospect call, one bridge, one completion each) and no
rep is ever rung for two leads at once: each SIPp rep records the calls it gets, and the calls
on one phone never overlap.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.conftest import DaemonProcess
from tests.support.pipeline import (
    calls_received,
    daemon_floor,
    overlapping,
    post_lead,
    prospect_scenario,
    read_trace,
    rep_scenario,
    rung_intervals,
)
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.postgres, pytest.mark.sipp, pytest.mark.slow, needs_sipp]

LEADS = 200
REPS = 10


async def test_two_daemons_share_leads_without_double_handling_or_double_ringing(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {
        f"rep{n:02d}": rep_scenario(tmp_path / f"rep{n:02d}.xml", answer_ms=30) for n in range(REPS)
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=20, hangup_ms=100)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps=reps,
        prospect=prospect,
        lease_s=5.0,
        ring_size=1,
        ring_timeout_s=5,
    ) as floor:
        first = await floor.start("first")
        second = await floor.start("second")
        token = second.token
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(first.base_url, timeout=timeout) as one,
            aiohttp.ClientSession(second.base_url, timeout=timeout) as two,
        ):
            sessions = (one, two)

            async def client(number: int) -> list[str]:
                ids = []
                for n in range(number, LEADS, 8):
                    body = {"phone": "+14155552671", "source": "load", "external_id": f"l{n}"}
                    ids.append(str((await post_lead(sessions[n % 2], token, body))["id"]))
                    await asyncio.sleep(0.01)
                return ids

            lead_ids = [i for ids in await asyncio.gather(*map(client, range(8))) for i in ids]
        assert len(set(lead_ids)) == LEADS

        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + 90
            done = 0
            while time.monotonic() < deadline:
                done = await conn.fetchval("SELECT count(*) FROM leads WHERE status = 'completed'")
                if done == LEADS:
                    break
                await asyncio.sleep(0.25)
            rows = await conn.fetch("SELECT status, count(*) AS n FROM leads GROUP BY status")
            statuses = {row["status"]: row["n"] for row in rows}
            assert done == LEADS, statuses
            rows = await conn.fetch(
                """
                SELECT lead_id,
                       count(*) FILTER (WHERE kind = 'calling_prospect') AS calls,
                       count(*) FILTER (WHERE kind = 'connected') AS bridges,
                       count(*) FILTER (WHERE kind = 'completed') AS completions,
                       count(*) FILTER (WHERE kind = 'recovered') AS recoveries,
                       array_agg(DISTINCT data->>'daemon')
                           FILTER (WHERE kind = 'routing') AS daemons
                FROM lead_events GROUP BY lead_id
                """
            )
        finally:
            await conn.close()

        assert len(rows) == LEADS
        for row in rows:
            assert (row["calls"], row["bridges"], row["completions"]) == (1, 1, 1), dict(row)
            assert row["recoveries"] == 0
        workers = {daemon for row in rows for daemon in row["daemons"]}
        assert len(workers) == 2, workers  # both daemons took their share

        await asyncio.sleep(0.5)  # the last BYEs are answered
        assert len(calls_received(read_trace(floor.prospect))) == LEADS
        total_rep_calls = 0
        for rep_id, sipp in floor.reps.items():
            intervals = rung_intervals(read_trace(sipp))
            total_rep_calls += len(intervals)
            assert overlapping(intervals) == [], rep_id
        assert total_rep_calls >= LEADS
