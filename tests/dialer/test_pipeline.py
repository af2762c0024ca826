"""dialer.pipeline in-process: real PostgreSQL, the real call layer, SIPp reps and prospect.

Each test runs a :class:`Pipeline` on its own database with a :class:`CallController` on a
free port; reps and the trunk/prospect are SIPp processes playing scenarios made to measure
(tests/support/pipeline.py). Leads are stored directly and the pipeline is woken, as the API
does. The daemon-as-a-subprocess versions of these paths are in tests/e2e/test_e2e_*.py.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dialer.calls import CallEvent, CallEventKind
from dialer.calls.controller import (
    Call,
    CallController,
    ControllerSettings,
    EventBatchCallback,
    EventCallback,
)
from dialer.config import Config, parse_config
from dialer.domain import LeadStatus, RepStatus, RingPlan
from dialer.pipeline import CallStarter, Pipeline, PipelineSettings, sip_config_for
from dialer.routing import Router
from dialer.sipp import SippPeer, SippProcess
from dialer.store import NewLead, Store
from dialer.store.pipeline import LeadChanges, PipelineStore
from dialer.store.pool import create_pool
from dialer.store.routing import RoutingStore
from tests.support.pipeline import (
    calls_received,
    prospect_scenario,
    read_trace,
    rep_scenario,
)
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.postgres, pytest.mark.sipp, needs_sipp]

LEASE_S = 2.0


@dataclass
class Floor:
    """A running pipeline with its SIPp reps and prospect."""

    pipeline: Pipeline
    store: Store
    routing: RoutingStore
    reps: dict[str, SippProcess]
    prospect: SippProcess
    config: Config

    async def post(self, **fields: Any) -> str:
        lead, created = await self.store.create_lead(
            NewLead(
                phone=fields.pop("phone", "+14155552671"),
                name=fields.pop("name", "Pat Smith"),
                source="web",
                received_at=datetime.now(UTC),
                **fields,
            )
        )
        assert created
        self.pipeline.wake()
        return lead.id

    async def wait(self, lead_id: str, *statuses: LeadStatus, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            lead = await self.store.get_lead(lead_id)
            assert lead is not None
            status = lead.status
            if status in statuses:
                return status.value
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{lead_id} still {status}: {await self.kinds(lead_id)}")

    async def kinds(self, lead_id: str) -> list[str]:
        return [event.kind for event in await self.store.list_events(lead_id)]

    async def events(self, lead_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(event.kind, dict(event.data)) for event in await self.store.list_events(lead_id)]

    def invites(self, sipp: SippProcess) -> int:
        """Calls the peer received (initial INVITEs; re-INVITEs and retransmissions aside)."""
        return len(calls_received(read_trace(sipp)))


def config_for(
    reps: Mapping[str, int],
    trunk_port: int,
    *,
    trunk_max_calls: int = 100,
    **sections: Mapping[str, Any],
) -> Config:
    data: dict[str, Any] = {
        "trunks": [
            {
                "name": "sipp",
                "proxy": f"sip:127.0.0.1:{trunk_port}",
                "options_interval_s": 0,
                "max_cps": 1000,
                "max_calls": trunk_max_calls,
            }
        ],
        "reps": [
            {"id": rep_id, "sip_uri": f"sip:{rep_id}@127.0.0.1:{port}"}
            for rep_id, port in reps.items()
        ],
        "ringing": {"ring_timeout_s": 2, "wrap_up_s": 0, "max_missed": 100},
        "retry": {"retry_after_s": 0.2, "max_rounds": 1},
        "compliance": {"calling_hours": "00:00-24:00"},
        "daemon": {"lease_s": LEASE_S},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_config(data, env={})


@asynccontextmanager
async def floor(
    database_url: str,
    tmp_path: Path,
    reps: Mapping[str, Path],
    prospect: Path,
    *,
    instance_id: str = "test-daemon",
    pipeline_settings: Mapping[str, Any] | None = None,
    controller_settings: ControllerSettings | None = None,
    trunk_max_calls: int = 100,
    wrap_calls: Callable[[CallController], CallStarter] | None = None,
    **sections: Mapping[str, Any],
) -> AsyncIterator[Floor]:
    """Start SIPp reps and prospect, a call controller and the pipeline; stop all after.

    ``wrap_calls``: what the pipeline starts calls with instead of the bare controller."""
    async with AsyncExitStack() as stack:
        rep_procs = {
            rep_id: await stack.enter_async_context(
                SippProcess(SippPeer(scenario=path, calls=None, timeout_s=60))
            )
            for rep_id, path in reps.items()
        }
        trunk = await stack.enter_async_context(
            SippProcess(SippPeer(scenario=prospect, calls=None, timeout_s=60))
        )
        config = config_for(
            {rep_id: proc.local_port for rep_id, proc in rep_procs.items()},
            trunk.local_port,
            trunk_max_calls=trunk_max_calls,
            **sections,
        )
        pool = await create_pool(database_url, min_size=1, max_size=6)
        stack.push_async_callback(pool.close)
        controller = CallController(
            trunks=config.trunks, sip_config=sip_config_for(config), settings=controller_settings
        )
        await controller.start()
        stack.push_async_callback(controller.close)
        routing = RoutingStore(pool)
        await routing.sync_reps(config.reps)
        settings = PipelineSettings(
            instance_id=instance_id,
            lease_s=LEASE_S,
            poll_interval_s=0.1,
            waiting_recheck_s=0.3,
            drain_timeout_s=5,
            page_url_base="http://127.0.0.1:8080",
            **(pipeline_settings or {}),
        )
        pipeline = Pipeline(
            config=config,
            store=PipelineStore(pool, instance_id, lease_s=LEASE_S),
            routing_store=routing,
            router=Router(config),
            calls=controller if wrap_calls is None else wrap_calls(controller),
            settings=settings,
            listen_dsn=database_url,
        )
        await pipeline.start()
        stack.push_async_callback(pipeline.stop)
        yield Floor(pipeline, Store(pool), routing, rep_procs, trunk, config)


def ann_answers_bob_busy_cat_rings(tmp_path: Path) -> tuple[dict[str, Path], Path]:
    """Reps and prospect: ann answers after 300 ms, bob is busy, cat rings until cancelled;
    the prospect answers after 100 ms and hangs up 300 ms later."""
    reps = {
        "ann": rep_scenario(tmp_path / "ann.xml", answer_ms=300),
        "bob": rep_scenario(tmp_path / "bob.xml", busy=True),
        "cat": rep_scenario(tmp_path / "cat.xml", answer_ms=None),
    }
    return reps, prospect_scenario(tmp_path / "prospect.xml", answer_ms=100, hangup_ms=300)


async def test_lead_rings_reps_bridges_first_answer_and_completes(
    database_url: str, tmp_path: Path
) -> None:
    reps, prospect = ann_answers_bob_busy_cat_rings(tmp_path)
    async with floor(database_url, tmp_path, reps, prospect) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.COMPLETED)
        events = await f.events(lead_id)
        kinds = [kind for kind, _ in events]
        assert kinds[:3] == ["received", "routing", "ringing_reps"]
        assert kinds.count("rep_invited") == 3
        for expected in ("rep_answered", "calling_prospect", "prospect_answered", "connected"):
            assert kinds.count(expected) == 1, kinds
        assert kinds.index("rep_answered") < kinds.index("calling_prospect")
        assert kinds.index("calling_prospect") < kinds.index("connected") < kinds.index("completed")
        assert kinds[-1] == "completed"
        ended = {data["rep_id"]: data["result"] for kind, data in events if kind == "rep_leg_ended"}
        assert ended == {"bob": "busy", "cat": "cancelled"}
        answered = dict(events)["rep_answered"]
        assert answered["rep_id"] == "ann" and answered["status"] == 200
        completed = dict(events)["completed"]
        assert completed["rep_id"] == "ann" and completed["ended_by"] == "prospect"
        stored = await f.pipeline.store.get(lead_id)
        assert stored is not None
        assert stored.lead.assigned_rep == "ann"
        assert stored.first_touch_at is not None and stored.called_at is not None
        assert stored.first_touch_at <= stored.called_at
        assert stored.sla_due_at is not None and stored.claimed_by is None
        assert stored.prospect_attempts == 1 and stored.ring_rounds == 1
        assert f.invites(f.prospect) == 1
        assert [f.invites(f.reps[r]) for r in ("ann", "bob", "cat")] == [1, 1, 1]
        # Every rep is free again (wrap_up_s = 0) and nobody holds a reservation.
        for record in await f.routing.list_reps():
            assert record.status is RepStatus.AVAILABLE, record
            assert record.reserved_by is None, record
        decisions = await f.routing.decisions(lead_id)
        assert [d["outcome"] for d in decisions] == ["routed"]


class RecordingCalls:
    """The controller, with every batch the pipeline is given recorded on its way."""

    def __init__(self, calls: CallController) -> None:
        self.calls = calls
        self.batches: list[list[CallEvent]] = []

    def start_call(
        self,
        plan: RingPlan,
        *,
        on_event: EventCallback | None = None,
        on_events: EventBatchCallback | None = None,
    ) -> Call:
        assert on_event is None and on_events is not None, "the pipeline takes batches"
        pipeline_writer = on_events

        async def record(batch: Sequence[CallEvent]) -> None:
            self.batches.append(list(batch))
            result = pipeline_writer(batch)
            if inspect.isawaitable(result):
                await result

        return self.calls.start_call(plan, on_events=record)


#: The timeline kinds of the call events with a status change; call_ended is not written.
_TIMELINE_KIND = {
    CallEventKind.PROSPECT_INVITED: "calling_prospect",
    CallEventKind.BRIDGED: "connected",
}


async def test_call_events_are_written_in_batches_and_the_timeline_is_unchanged(
    database_url: str, tmp_path: Path
) -> None:
    reps, prospect = ann_answers_bob_busy_cat_rings(tmp_path)
    recorder: list[RecordingCalls] = []

    def wrap(calls: CallController) -> CallStarter:
        recorder.append(RecordingCalls(calls))
        return recorder[0]

    async with floor(database_url, tmp_path, reps, prospect, wrap_calls=wrap) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.COMPLETED)
        stored = await f.store.list_events(lead_id)
    batches = recorder[0].batches
    # The three INVITEs of the parallel ring reach the pipeline as one batch.
    assert [event.kind for event in batches[0]] == [CallEventKind.REP_INVITED] * 3
    # The timeline is the call's events in the order the call layer made them, each once,
    # with its own time and data: what the event-by-event writer recorded.
    call_part = [e for e in stored if e.kind not in ("received", "routing", "ringing_reps")]
    assert call_part[-1].kind == "completed"
    delivered = [e for batch in batches for e in batch if e.kind is not CallEventKind.CALL_ENDED]
    assert [(e.kind, e.at) for e in call_part[:-1]] == [
        (_TIMELINE_KIND.get(e.kind, e.kind.value), e.wall_at) for e in delivered
    ]
    for written, event in zip(call_part[:-1], delivered, strict=True):
        data = event.timeline_data()
        assert {key: written.data[key] for key in data} == data, (written, event)
    assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
    # The same kinds as the event-by-event writer's timeline of this floor (the order of
    # events from different SIP peers, e.g. cat's 487 and the prospect's 180, may race).
    kinds = [e.kind for e in stored]
    assert sorted(kinds) == sorted(
        ["received", "routing", "ringing_reps"]
        + ["rep_invited"] * 3
        + ["rep_ringing"] * 3
        + ["rep_leg_ended", "rep_answered", "calling_prospect", "prospect_ringing"]
        + ["rep_leg_ended", "prospect_answered", "connected", "completed"]
    )
    assert kinds[:6] == ["received", "routing", "ringing_reps"] + ["rep_invited"] * 3


async def test_a_bridged_call_frees_its_max_active_place_within_max_bridged(
    database_url: str, tmp_path: Path
) -> None:
    # Distinct answer delays: two SIPp reps answering at the same instant would race the
    # loser's CANCEL, and SIPp aborts such a call instead of answering the daemon's BYE.
    reps = {
        rep_id: rep_scenario(tmp_path / f"{rep_id}.xml", answer_ms=answer_ms)
        for rep_id, answer_ms in (("ann", 100), ("bob", 400), ("cat", 700))
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=100, hangup_ms=2500)
    async with floor(
        database_url,
        tmp_path,
        reps,
        prospect,
        pipeline_settings={"max_active": 1, "max_bridged": 1},
    ) as f:
        lead_ids = [await f.post(name=f"Lead {n}") for n in range(3)]
        most_connected = most_bridged_gauge = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            statuses = [(await f.store.get_lead(lead_id)) for lead_id in lead_ids]
            assert all(lead is not None for lead in statuses)
            connected = sum(1 for lead in statuses if lead and lead.status is LeadStatus.CONNECTED)
            most_connected = max(most_connected, connected)
            gauges = f.pipeline.gauges()
            assert gauges.calls_bridged <= gauges.leads_in_hand <= 3
            most_bridged_gauge = max(most_bridged_gauge, gauges.calls_bridged)
            if all(lead and lead.status is LeadStatus.COMPLETED for lead in statuses):
                break
            await asyncio.sleep(0.02)
        # One lead in progress at a time (max_active = 1), yet a second call is bridged while
        # the first talks; the third waits for one to end (max_bridged = 1).
        assert most_connected == 2
        assert most_bridged_gauge == 2
        for lead_id in lead_ids:
            assert await f.wait(lead_id, LeadStatus.COMPLETED, timeout=1) == "completed"
        await asyncio.sleep(0.1)  # the last lead's task ends after its final write
        assert f.pipeline.gauges().leads_in_hand == 0


async def test_no_answer_retries_then_waits_for_a_rep_who_becomes_available(
    database_url: str, tmp_path: Path
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=None)}
    prospect = prospect_scenario(tmp_path / "prospect.xml")
    async with floor(
        database_url,
        tmp_path,
        reps,
        prospect,
        ringing={"ring_timeout_s": 0.4},
        retry={"max_rounds": 2, "exclude_tried": False, "retry_after_s": 0.2},
    ) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.WAITING_FOR_REP)
        events = await f.events(lead_id)
        kinds = [kind for kind, _ in events]
        assert kinds.count("ringing_reps") == 2, kinds
        scheduled = [data for kind, data in events if kind == "scheduled"]
        assert [(d["reason"], d["round"]) for d in scheduled] == [("reps_no_answer", 1)]
        assert dict(events)["waiting_for_rep"] == {"reason": "reps_no_answer", "rounds": 2}
        assert f.invites(f.reps["ann"]) == 2
        # Ann is still "available" but did not answer: she is not offered the lead again...
        await asyncio.sleep(1.0)
        assert f.invites(f.reps["ann"]) == 2
        assert await f.store.get_lead(lead_id) is not None
        # ... until she becomes available (again): then the waiting lead rings her at once.
        await f.routing.set_status("ann", RepStatus.AWAY)
        await f.routing.set_status("ann", RepStatus.AVAILABLE)
        await f.wait(lead_id, LeadStatus.RINGING_REPS, LeadStatus.SCHEDULED)
        assert (await f.kinds(lead_id)).count("ringing_reps") == 3


async def test_prospect_busy_ends_the_lead_and_frees_the_rep(
    database_url: str, tmp_path: Path
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=50)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", final_status="486 Busy Here")
    async with floor(
        database_url, tmp_path, reps, prospect, retry={"prospect_max_attempts": 1}
    ) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.PROSPECT_BUSY)
        events = await f.events(lead_id)
        assert events[-1][0] == "prospect_busy"
        assert events[-1][1]["reason"] == "prospect_busy" and events[-1][1]["attempts"] == 1
        assert "connected" not in [kind for kind, _ in events]
        assert f.invites(f.prospect) == 1
        ann = await f.routing.get_rep("ann")
        assert ann is not None and ann.status is RepStatus.AVAILABLE and ann.reserved_by is None


async def test_prospect_no_answer_is_retried_later_within_attempts(
    database_url: str, tmp_path: Path
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=50)}
    prospect = prospect_scenario(
        tmp_path / "prospect.xml", answer_ms=100, final_status="480 Temporarily Unavailable"
    )
    async with floor(
        database_url,
        tmp_path,
        reps,
        prospect,
        retry={"prospect_max_attempts": 2, "prospect_retry_after_s": 0.3},
    ) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.PROSPECT_NO_ANSWER)
        events = await f.events(lead_id)
        kinds = [kind for kind, _ in events]
        assert kinds.count("calling_prospect") == 2
        [scheduled] = [data for kind, data in events if kind == "scheduled"]
        assert scheduled["reason"] == "prospect_no_answer" and scheduled["attempt"] == 1
        assert f.invites(f.prospect) == 2


@pytest.mark.parametrize(
    ("final_status", "calls"), [("503 Service Unavailable", 2), ("404 Not Found", 1)]
)
async def test_a_transient_prospect_failure_is_retried_a_missing_number_is_not(
    database_url: str, tmp_path: Path, final_status: str, calls: int
) -> None:
    """503 (the carrier cannot place the call now) is worth another attempt later; 404 (no
    such number) is final at once."""
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=50)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", final_status=final_status)
    async with floor(
        database_url,
        tmp_path,
        reps,
        prospect,
        retry={"prospect_max_attempts": 2, "prospect_retry_after_s": 0.3},
    ) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.FAILED)
        events = await f.events(lead_id)
        assert events[-1][0] == "failed" and events[-1][1]["reason"] == "prospect_failed"
        scheduled = [data for kind, data in events if kind == "scheduled"]
        assert [data["reason"] for data in scheduled] == ["prospect_failed"] * (calls - 1)
        assert f.invites(f.prospect) == calls


async def test_a_full_trunk_sends_the_lead_back_to_be_routed_again(
    database_url: str, tmp_path: Path
) -> None:
    """``max_calls = 1`` and the trunk busy with lead 1: lead 2's prospect leg waits its bounded
    time in the trunk's line, then the lead is routed again (not failed) and is bridged once
    lead 1's call ends. The trunk never carries two calls at once."""
    reps = {
        "ann": rep_scenario(tmp_path / "ann.xml", answer_ms=50),
        "bob": rep_scenario(tmp_path / "bob.xml", answer_ms=300),
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=1500)
    async with floor(
        database_url,
        tmp_path,
        reps,
        prospect,
        controller_settings=ControllerSettings(trunk_max_wait_s=0.3),
        trunk_max_calls=1,
        retry={"retry_after_s": 0.2, "max_rounds": 10},
    ) as f:
        first = await f.post(name="First")
        await f.wait(first, LeadStatus.CONNECTED)
        second = await f.post(name="Second", phone="+14155552672")
        await f.wait(second, LeadStatus.COMPLETED, timeout=20)
        await f.wait(first, LeadStatus.COMPLETED)
        events = await f.events(second)
        scheduled = [data for kind, data in events if kind == "scheduled"]
        assert scheduled and {data["reason"] for data in scheduled} == {"trunk_busy"}
        assert [kind for kind, _ in events].count("calling_prospect") == 1
        assert f.invites(f.prospect) == 2  # one call per lead, one after the other


async def test_a_rep_who_keeps_missing_is_put_away(database_url: str, tmp_path: Path) -> None:
    reps = {
        "ann": rep_scenario(tmp_path / "ann.xml", answer_ms=None),
        "bob": rep_scenario(tmp_path / "bob.xml", answer_ms=None),
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml")
    async with floor(
        database_url,
        tmp_path,
        reps,
        prospect,
        ringing={"ring_timeout_s": 0.3, "max_missed": 1},
        routing={"fallback": {"name": "fallback", "ring": {"size": 1}}},
    ) as f:
        lead_id = await f.post()
        # Each rep rings once, misses it and is put away; then nobody is left to ring.
        for _ in range(300):
            records = await f.routing.list_reps()
            if all(record.status is RepStatus.AWAY for record in records):
                break
            await asyncio.sleep(0.02)
        await f.wait(lead_id, LeadStatus.WAITING_FOR_REP)
        await asyncio.sleep(0.5)  # nothing else happens: nobody is available
        events = await f.events(lead_id)
        ended = [data for kind, data in events if kind == "rep_leg_ended"]
        assert sorted(data["rep_id"] for data in ended) == ["ann", "bob"]
        assert all(data["result"] == "no_answer" and data["rep_away"] for data in ended)
        assert [(r.id, r.status) for r in await f.routing.list_reps()] == [
            ("ann", RepStatus.AWAY),
            ("bob", RepStatus.AWAY),
        ]
        assert [f.invites(f.reps[r]) for r in ("ann", "bob")] == [1, 1]


async def test_leads_of_a_dead_daemon_resume_from_their_status(
    database_url: str, tmp_path: Path
) -> None:
    """ringing_reps -> rung again; calling_prospect -> not re-dialled now; connected -> done."""
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=50)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=200)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        store = Store(pool)
        dead = PipelineStore(pool, "dead-daemon", lease_s=0.5)
        ids = {}
        for status in (
            LeadStatus.RINGING_REPS,
            LeadStatus.CALLING_PROSPECT,
            LeadStatus.CONNECTED,
        ):
            lead, _ = await store.create_lead(
                NewLead(phone="+14155552671", received_at=datetime.now(UTC))
            )
            [claim] = await dead.claim_ready(1)
            assert claim.lead.id == lead.id
            await dead.update(
                lead.id,
                at=datetime.now(UTC),
                kind=status.value,
                status=status,
                changes=LeadChanges(
                    add_prospect_attempt=status is not LeadStatus.RINGING_REPS,
                    assigned_rep=None if status is LeadStatus.RINGING_REPS else "ann",
                ),
            )
            ids[status] = lead.id
    finally:
        await pool.close()
    async with floor(
        database_url,
        tmp_path,
        reps,
        prospect,
        retry={"prospect_max_attempts": 2, "prospect_retry_after_s": 3600},
    ) as f:
        await f.wait(ids[LeadStatus.RINGING_REPS], LeadStatus.COMPLETED)
        await f.wait(ids[LeadStatus.CALLING_PROSPECT], LeadStatus.SCHEDULED)
        await f.wait(ids[LeadStatus.CONNECTED], LeadStatus.COMPLETED)
        events = await f.events(ids[LeadStatus.CONNECTED])
        assert [kind for kind, _ in events][-2:] == ["recovered", "completed"]
        assert events[-1][1]["reason"] == "daemon_restart"
        assert events[-2][1]["previous_daemon"] == "dead-daemon"
        events = await f.events(ids[LeadStatus.CALLING_PROSPECT])
        assert events[-1][0] == "scheduled" and events[-1][1]["reason"] == "daemon_restart"
        # Only the re-routed lead reached the prospect; the other two were not re-dialled.
        assert f.invites(f.prospect) == 1
        assert f.invites(f.reps["ann"]) == 1


async def test_stopping_hands_ringing_leads_back(database_url: str, tmp_path: Path) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=None)}
    prospect = prospect_scenario(tmp_path / "prospect.xml")
    async with floor(database_url, tmp_path, reps, prospect, ringing={"ring_timeout_s": 30}) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.RINGING_REPS)
        await asyncio.sleep(0.2)
        await f.pipeline.stop()
        events = await f.events(lead_id)
        assert events[-1][0] == "scheduled" and events[-1][1]["reason"] == "shutdown"
        stored = await f.pipeline.store.get(lead_id)
        assert stored is not None and stored.claimed_by is None
        ann = await f.routing.get_rep("ann")
        assert ann is not None and ann.reserved_by is None
        assert [m.method for m in read_trace(f.reps["ann"]) if m.received] == [
            "INVITE",
            "CANCEL",
            "ACK",
        ]


async def test_reroute_goes_to_the_overflow_pool_without_the_rep_who_missed(
    database_url: str, tmp_path: Path
) -> None:
    reps = {
        "ann": rep_scenario(tmp_path / "ann.xml", answer_ms=None),
        "bob": rep_scenario(tmp_path / "bob.xml", answer_ms=100),
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=100, hangup_ms=200)
    async with floor(
        database_url,
        tmp_path,
        reps,
        prospect,
        ringing={"ring_timeout_s": 0.4},
        retry={"max_rounds": 2, "exclude_tried": True, "retry_after_s": 0.2},
        routing={
            "rules": [
                {
                    "name": "first",
                    "when": "true",
                    "pool": {"reps": ["ann"]},
                    "overflow": {"reps": ["bob"]},
                }
            ],
            "fallback": {"pool": {"reps": ["ann"]}},
        },
    ) as f:
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.COMPLETED)
        events = await f.events(lead_id)
        assert [data["rep_id"] for kind, data in events if kind == "rep_answered"] == ["bob"]
        assert f.invites(f.reps["ann"]) == 1  # ann missed it and is not rung again
        decisions = await f.routing.decisions(lead_id)
        pools = [d["explanation"]["pool"] for d in decisions if d["outcome"] == "routed"]
        assert pools == ["rule", "overflow"]
        second = decisions[-1]["explanation"]["candidates"]
        assert {"rep": "ann", "reason": "excluded: already missed"}.items() <= next(
            c for c in second if c["rep"] == "ann"
        ).items()


async def test_a_rep_freed_in_the_database_is_routed_to_without_reading_the_reps_again(
    database_url: str, tmp_path: Path
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=100)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=100)
    async with floor(
        database_url, tmp_path, reps, prospect, pipeline_settings={"rep_snapshot_s": 60}
    ) as f:
        first = await f.post()
        await f.wait(first, LeadStatus.COMPLETED)
        reads = f.pipeline.roster.reads
        # The snapshot says ann is busy on the first lead; her release was announced
        # ('rep:ann') and marked in the snapshot, so the next lead rings her on it.
        second = await f.post()
        await f.wait(second, LeadStatus.COMPLETED)
        assert f.pipeline.roster.reads == reads
        assert f.invites(f.reps["ann"]) == 2


async def test_a_lead_never_waits_on_an_old_snapshot_while_a_rep_is_free(
    database_url: str, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", answer_ms=100)}
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=100)
    async with floor(
        database_url, tmp_path, reps, prospect, pipeline_settings={"rep_snapshot_s": 60}
    ) as f:
        await f.routing.set_status("ann", RepStatus.AWAY)
        lead_id = await f.post()
        await f.wait(lead_id, LeadStatus.WAITING_FOR_REP)
        # Ann comes back unannounced (the trigger off): the snapshot still says away, for
        # another minute. Re-routing the waiting lead must not trust it.
        await db_pool.execute("ALTER TABLE reps DISABLE TRIGGER reps_notify_free")
        try:
            await f.routing.set_status("ann", RepStatus.AVAILABLE)
        finally:
            await db_pool.execute("ALTER TABLE reps ENABLE TRIGGER reps_notify_free")
        reads = f.pipeline.roster.reads
        await f.wait(lead_id, LeadStatus.COMPLETED)
        assert f.pipeline.roster.reads > reads
        assert f.invites(f.reps["ann"]) == 1
