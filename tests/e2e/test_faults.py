"""Faults the daemon must survive (issue 12 acceptance; ``make faults`` runs only these).

(a) Two daemons on one database under a steady lead stream; one is SIGKILLed while it has
    reps ringing: no lead is lost, none is bridged or completed twice, its reservations end
    within the lease, and its ringing leads are re-routed by the other daemon.
    (tests/e2e/test_e2e_two_daemons.py covers sharing without a kill; test_e2e_recovery.py a
    single daemon killed at three moments and replaced.)
(b) PostgreSQL restarted while leads are posted: every ``202`` lead is stored, every other
    answer is ``503`` with ``Retry-After`` and a JSON error, ``/readyz`` fails meanwhile, and
    processing resumes on its own.
(c) 20% UDP loss each way between the daemon and every SIPp peer (a seeded loss proxy): calls
    still complete, through retransmissions: requests whose first copy was lost get through on
    the same transaction, and (nearly) every lead rings one rep once and dials once.

SIGHUP and SIGTERM drain are in test_ops_reload_drain.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from dialer.sipp import Transport, free_port
from dialer.store.embedded import EmbeddedPostgres
from sip import Request, parse_message
from tests.conftest import (
    DEFAULT_TOKEN,
    DaemonProcess,
    database_dsn,
    postgres_data_root,
    start_daemon,
)
from tests.support.pipeline import (
    DaemonFloor,
    daemon_floor,
    kinds,
    pipeline_config,
    prospect_scenario,
    rep_scenario,
)
from tests.support.sipp import needs_sipp
from tests.support.udp_loss_proxy import UdpLossProxy

pytestmark = [pytest.mark.postgres, pytest.mark.sipp, pytest.mark.slow, needs_sipp]

LEASE_S = 2.0
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}
FINAL = frozenset({"completed", "failed", "no_rep_available", "blocked_compliance"})


async def start_config(floor: DaemonFloor, text: str, name: str) -> DaemonProcess:
    """Start a daemon on config ``text``; it becomes the floor's current daemon."""
    path = floor.tmp_path / f"{name}.toml"
    path.write_text(text)
    process = start_daemon(path)
    floor.daemons.append(process)
    await asyncio.to_thread(process.wait_ready)
    floor.daemon = process
    if floor.http is not None:
        await floor.http.close()
    floor.http = aiohttp.ClientSession(process.base_url, timeout=aiohttp.ClientTimeout(total=10))
    return process


def instance_id(process: DaemonProcess) -> str:
    """The daemon's instance id, from its ``pipeline started`` log line."""
    for line in process.log_events():
        if line.get("event") == "pipeline started":
            return str(line["instance_id"])
    raise AssertionError(f"no 'pipeline started' line: {process.log_path.read_text()}")


async def wait_statuses(
    database_url: str, lead_ids: list[str], wanted: frozenset[str], timeout: float
) -> dict[str, str]:
    """Poll until every lead's status is in ``wanted``; the statuses (asserted)."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            rows = await conn.fetch(
                "SELECT id::text AS id, status FROM leads WHERE id = ANY($1::uuid[])", lead_ids
            )
            statuses = {row["id"]: row["status"] for row in rows}
            if len(statuses) == len(lead_ids) and set(statuses.values()) <= wanted:
                return statuses
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    missing = set(lead_ids) - set(statuses)
    pending = {lead: status for lead, status in statuses.items() if status not in wanted}
    raise AssertionError(f"not settled after {timeout}s: missing={missing} pending={pending}")


async def event_counts(database_url: str) -> list[asyncpg.Record]:
    """Per lead: prospect calls, bridges, completions, and the daemons that routed it."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(
            """
            SELECT lead_id::text AS lead_id,
                   count(*) FILTER (WHERE kind = 'connected') AS bridges,
                   count(*) FILTER (WHERE kind = 'completed') AS completions
            FROM lead_events GROUP BY lead_id
            """
        )
    finally:
        await conn.close()


# --------------------------------------------------------------------------- (a) SIGKILL


async def test_a_daemon_killed_under_load_loses_nothing_and_the_other_takes_over(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {f"rep{n}": rep_scenario(tmp_path / f"rep{n}.xml", answer_ms=1200) for n in range(4)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=200)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps=reps,
        prospect=prospect,
        lease_s=LEASE_S,
        ring_size=1,
        ring_timeout_s=10,
        retry={"max_rounds": 3, "prospect_retry_after_s": 0.5},
    ) as floor:
        victim = await floor.start("victim")
        survivor = await floor.start("survivor")
        victim_id, survivor_id = instance_id(victim), instance_id(survivor)
        timeout = aiohttp.ClientTimeout(total=10)
        lead_ids: list[str] = []
        killed = asyncio.Event()
        async with (
            aiohttp.ClientSession(victim.base_url, timeout=timeout) as to_victim,
            aiohttp.ClientSession(survivor.base_url, timeout=timeout) as to_survivor,
        ):

            async def stream() -> None:
                for n in range(24):
                    session = to_victim if n % 2 == 0 and not killed.is_set() else to_survivor
                    body = {"phone": "+14155552671", "source": "stream", "external_id": f"s{n}"}
                    async with session.post("/v1/leads", json=body, headers=AUTH) as reply:
                        assert reply.status == 202, await reply.text()
                        lead_ids.append(str((await reply.json())["id"]))
                    await asyncio.sleep(0.15)

            streaming = asyncio.create_task(stream())
            conn = await asyncpg.connect(database_url)
            try:
                ringing: list[str] = []
                for _ in range(200):  # the victim has reps ringing: kill it now
                    rows = await conn.fetch(
                        "SELECT id::text AS id FROM leads"
                        " WHERE claimed_by = $1 AND status = 'ringing_reps'",
                        victim_id,
                    )
                    ringing = [row["id"] for row in rows]
                    if ringing:
                        break
                    await asyncio.sleep(0.05)
                assert ringing, "the victim never had a lead ringing"
                victim.kill()
                killed.set()
                killed_at = datetime.now(UTC)
                await streaming
                # Its reservations end within one lease of its last heartbeat.
                held = await conn.fetchval(
                    "SELECT count(*) FROM reps WHERE reserved_by = $1 AND reserved_until > $2",
                    victim_id,
                    killed_at + timedelta(seconds=LEASE_S),
                )
                assert held == 0
                await asyncio.sleep(LEASE_S + 0.5)
                held = await conn.fetchval(
                    "SELECT count(*) FROM reps WHERE reserved_by = $1 AND reserved_until > now()",
                    victim_id,
                )
                assert held == 0
            finally:
                await conn.close()

        assert len(set(lead_ids)) == 24
        statuses = await wait_statuses(database_url, lead_ids, FINAL, timeout=60)
        assert set(statuses.values()) == {"completed"}, statuses
        for row in await event_counts(database_url):
            assert row["bridges"] == 1 and row["completions"] == 1, dict(row)
        assert floor.http is not None
        for lead_id in ringing:
            lead = await floor.lead(lead_id)
            [recovered] = [e["data"] for e in lead["timeline"] if e["kind"] == "recovered"]
            assert recovered["from"] == "ringing_reps", recovered
            assert recovered["previous_daemon"] == victim_id
            assert recovered["daemon"] == survivor_id
            assert kinds(lead).count("ringing_reps") >= 2
        assert survivor.process.poll() is None


# --------------------------------------------------------------------------- (b) PG restart


@dataclass
class Answer:
    """One ``POST /v1/leads`` answer."""

    external_id: str
    status: int
    body: dict[str, Any]
    retry_after: str | None


@contextlib.asynccontextmanager
async def dedicated_postgres() -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    """An embedded PostgreSQL of this test alone (it is restarted); (server, admin DSN)."""
    with postgres_data_root() as root:
        server = EmbeddedPostgres(root / "data")
        admin = await asyncio.to_thread(server.start_blocking)
        try:
            yield server, admin
        finally:
            await asyncio.to_thread(server.stop_blocking)


async def test_b_postgres_restart_under_load(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with dedicated_postgres() as (server, admin):
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute("CREATE DATABASE faults")
        finally:
            await conn.close()
        database_url = database_dsn(admin, "faults")
        reps = {f"rep{n}": rep_scenario(tmp_path / f"rep{n}.xml", answer_ms=50) for n in range(3)}
        prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=100)
        async with daemon_floor(
            tmp_path,
            database_url,
            daemons,
            reps=reps,
            prospect=prospect,
            lease_s=LEASE_S,
            ring_size=1,
            retry={"max_rounds": 3, "prospect_retry_after_s": 0.5},
        ) as floor:
            daemon = await floor.start("pg-restart")
            http = floor.session()
            answers: list[Answer] = []
            readiness: list[int] = []
            streaming = True

            async def stream() -> None:
                for n in range(80):
                    body = {"phone": "+14155552671", "source": "stream", "external_id": f"p{n}"}
                    async with http.post("/v1/leads", json=body, headers=AUTH) as reply:
                        answers.append(
                            Answer(
                                f"p{n}",
                                reply.status,
                                await reply.json(),
                                reply.headers.get("Retry-After"),
                            )
                        )
                    await asyncio.sleep(0.05)

            async def probe() -> None:
                while streaming:
                    async with http.get("/readyz") as reply:
                        readiness.append(reply.status)
                    await asyncio.sleep(0.1)

            streaming_task = asyncio.create_task(stream())
            probing = asyncio.create_task(probe())
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.stop_blocking)
            await asyncio.sleep(1.5)
            restarted = await asyncio.to_thread(server.start_blocking)
            assert database_dsn(restarted, "faults") == database_url
            await streaming_task
            streaming = False
            await probing

            statuses = [answer.status for answer in answers]
            assert set(statuses) <= {202, 503}, statuses
            assert 503 in statuses and 503 in readiness, (statuses, readiness)
            assert readiness[-1] == 200
            for answer in answers:
                if answer.status == 503:
                    assert answer.retry_after is not None
                    assert answer.body["error"]["code"] == "unavailable", answer
            accepted = {a.external_id: str(a.body["id"]) for a in answers if a.status == 202}
            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch(
                    "SELECT id::text AS id, external_id FROM leads WHERE source = 'stream'"
                )
            finally:
                await conn.close()
            stored = {row["external_id"]: row["id"] for row in rows}
            for external_id, lead_id in accepted.items():
                assert stored.get(external_id) == lead_id, external_id
            # After the restart the daemon picks up every stored lead by itself.
            done = await wait_statuses(database_url, list(stored.values()), FINAL, timeout=60)
            assert set(done.values()) == {"completed"}, done
            after = await floor.post(external_id="after-restart")
            await floor.wait(after, "completed", timeout=20)
            assert daemon.process.poll() is None


# --------------------------------------------------------------------------- (c) UDP loss


@dataclass(frozen=True, slots=True)
class Sent:
    """One request the daemon sent through a loss proxy, and whether the proxy dropped it."""

    method: str
    branch: str
    call_id: str
    delivered: bool


class RecordingLossProxy(UdpLossProxy):
    """The loss proxy, also keeping every request the daemon sent (the copies it dropped too).

    Timer A/E retransmissions reuse the transaction's Via branch, so a branch seen more than
    once is a retransmission, and one whose first copy was dropped and a later copy delivered
    is a transaction that retransmission carried through.
    """

    def __init__(self, peer: tuple[str, int], *, loss: float, seed: int) -> None:
        super().__init__(peer, loss=loss, seed=seed)
        self.sent: list[Sent] = []

    def _from_client(self, data: bytes, client: tuple[str, int]) -> None:
        dropped_before = self.stats.to_peer_dropped
        super()._from_client(data, client)
        message = parse_message(data)
        if isinstance(message, Request):
            branch = message.top_via.branch or ""
            delivered = self.stats.to_peer_dropped == dropped_before
            self.sent.append(Sent(message.method, branch, message.call_id, delivered))

    def transactions(self) -> dict[tuple[str, str], list[bool]]:
        """Per (method, branch) of every request but ACK: delivered or not, per copy sent.

        ACK is left out: it is no transaction, and the daemon re-sends it only when a 2xx is
        retransmitted, with whatever branch it chose.
        """
        copies: dict[tuple[str, str], list[bool]] = {}
        for sent in self.sent:
            if sent.method != "ACK":
                copies.setdefault((sent.method, sent.branch), []).append(sent.delivered)
        return copies


#: Leads posted through the lossy path, and the reps (SIPp peers behind proxies) they share.
LOSSY_LEADS = 8
LOSSY_REPS = 2
#: The prospect answers after 4 s and hangs up after 2 s of talk; the rep answers after 0.1 s.
PROSPECT_ANSWER_MS = 4000
PROSPECT_HANGUP_MS = 2000
#: How many leads may need a second ringing round or prospect attempt. Why 2:
#:
#: With t1_s = 0.2 the daemon re-sends an unanswered INVITE at +0.2, 0.6, 1.4, 3.0, 6.2 s
#: (Timer A), each SIPp peer re-sends its 200 at +0.5, 1.5, 3.5, 7.5 s until it is ACKed, and
#: every datagram is dropped with p = 0.2, so one 200/ACK exchange fails with 1 - 0.8^2 = 0.36.
#: A lead needs a second go (a re-dial, which this test must not mistake for a retransmission)
#: when, before the bridge:
#:
#: - no 200 of the rep reaches the daemon within the 8 s ring timeout: ~0.04 %;
#: - the rep's SIPp gets the bridge re-INVITE before any ACK of its 200: SIPp aborts a call on
#:   a message its scenario does not expect there. The re-INVITE leaves when the prospect
#:   answers; after 4 s the rep's 200 went out four times, so ~0.2 * 0.36^3 plus the cases
#:   where the first 200 was lost too: ~1.5 %;
#: - the prospect hangs up before the re-INVITE's 200 arrives: with 2 s of talk ~0.25 %;
#: - the prospect leg itself fails (six INVITE copies or six 200s lost): ~0.01 %.
#:
#: A Monte Carlo of these exchanges gives p ≈ 2 % per lead, so P(3 or more of 8 leads need a
#: second go) ≈ 4e-4. (With the prospect answering after 0.1 s and hanging up after 0.3 s,
#: as this test once did, p ≈ 25 %: a quarter of the leads completed only by re-dialling.)
LOSSY_SECOND_GOES_ALLOWED = 2


async def test_c_calls_complete_through_20_percent_udp_loss(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {
        f"rep{n}": rep_scenario(tmp_path / f"rep{n}.xml", answer_ms=100) for n in range(LOSSY_REPS)
    }
    prospect = prospect_scenario(
        tmp_path / "prospect.xml", answer_ms=PROSPECT_ANSWER_MS, hangup_ms=PROSPECT_HANGUP_MS
    )
    async with (
        daemon_floor(tmp_path, database_url, daemons, reps=reps, prospect=prospect) as floor,
        contextlib.AsyncExitStack() as stack,
    ):
        proxies = {
            name: await stack.enter_async_context(
                RecordingLossProxy(("127.0.0.1", sipp.local_port), loss=0.2, seed=seed)
            )
            for seed, (name, sipp) in enumerate(
                [*floor.reps.items(), ("prospect", floor.prospect)], start=1
            )
        }
        sip_port = free_port(Transport.UDP)
        text = pipeline_config(
            database_url=database_url,
            sip_port=sip_port,
            trunk_port=proxies["prospect"].port,
            reps={rep_id: proxies[rep_id].port for rep_id in floor.reps},
            lease_s=LEASE_S,
            ring_size=1,
            ring_timeout_s=8,
            retry={"max_rounds": 5, "prospect_retry_after_s": 0.5, "prospect_max_attempts": 5},
        )
        # A shorter T1 keeps the test quick; the retransmission logic is the same.
        text = text.replace(
            f'listen = "127.0.0.1:{sip_port}"', f'listen = "127.0.0.1:{sip_port}"\nt1_s = 0.2'
        )
        await start_config(floor, text, "lossy")
        lead_ids = []
        for n in range(LOSSY_LEADS):
            lead_ids.append(await floor.post(external_id=f"lossy{n}"))
            await asyncio.sleep(0.2)
        statuses = await wait_statuses(database_url, lead_ids, FINAL, timeout=90)
        assert set(statuses.values()) == {"completed"}, statuses
        for name, proxy in proxies.items():
            stats = proxy.stats
            assert stats.to_peer_dropped > 0 and stats.from_peer_dropped > 0, (name, stats)
        for row in await event_counts(database_url):
            assert row["bridges"] == 1 and row["completions"] == 1, dict(row)

        # Retransmission did the work: requests whose first copy the proxy dropped reached the
        # peer in a later copy on the same Via branch (same transaction: Timer A/E, not a
        # new call). 24 INVITE and 8 BYE transactions: P(no first copy dropped) = 0.8^32 < 1e-3.
        rescued = {
            (name, *key): copies
            for name, proxy in proxies.items()
            for key, copies in proxy.transactions().items()
            if not copies[0] and any(copies[1:])
        }
        assert rescued, {name: proxy.sent for name, proxy in proxies.items()}
        # ... and re-dialling did not: nearly every lead rang one rep once and dialled its
        # prospect once (see LOSSY_SECOND_GOES_ALLOWED for how many may not).
        goes = await ringing_rounds_and_prospect_attempts(database_url, lead_ids)
        second_goes = {lead: counts for lead, counts in goes.items() if counts != (1, 1, 1, 1)}
        assert len(goes) == LOSSY_LEADS
        assert len(second_goes) <= LOSSY_SECOND_GOES_ALLOWED, second_goes


async def ringing_rounds_and_prospect_attempts(
    database_url: str, lead_ids: list[str]
) -> dict[str, tuple[int, int, int, int]]:
    """Per lead: ``ring_rounds``, ``prospect_attempts``, and the ``ringing_reps`` and
    ``calling_prospect`` events of its timeline (the counters and the events must agree)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """
            SELECT l.id::text AS id, l.ring_rounds, l.prospect_attempts,
                   count(*) FILTER (WHERE e.kind = 'ringing_reps') AS ringing,
                   count(*) FILTER (WHERE e.kind = 'calling_prospect') AS calling
            FROM leads l JOIN lead_events e ON e.lead_id = l.id
            WHERE l.id = ANY($1::uuid[])
            GROUP BY l.id
            """,
            lead_ids,
        )
    finally:
        await conn.close()
    return {
        row["id"]: (row["ring_rounds"], row["prospect_attempts"], row["ringing"], row["calling"])
        for row in rows
    }
