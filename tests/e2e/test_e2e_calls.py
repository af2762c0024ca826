"""Speed-to-lead end to end: ``dialer run`` as a subprocess, real SIPp reps and prospect.

A lead posted over HTTP rings the reps, the first to answer is bridged to the prospect, and the
lead ends ``connected`` then ``completed`` after the BYE, with its whole timeline and its
time-to-call; the prospect sees exactly one INVITE. Each failure path of the call layer ends in
its named lead state through the whole pipeline.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dialer.calls.controller import ControllerSettings
from dialer.sipp import SippPeer, scenario_path
from tests.conftest import DaemonProcess
from tests.support.pipeline import (
    daemon_floor,
    kinds,
    prospect_scenario,
    rep_scenario,
)
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.postgres, pytest.mark.sipp, pytest.mark.slow, needs_sipp]


def data_of(lead: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [event["data"] for event in lead["timeline"] if event["kind"] == kind]


async def test_posted_lead_is_bridged_then_completed_with_timeline_and_time_to_call(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {
        "ann": rep_scenario(tmp_path / "ann.xml", answer_ms=400),
        "bob": rep_scenario(tmp_path / "bob.xml", busy=True),
        "cat": rep_scenario(tmp_path / "cat.xml", answer_ms=None),
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=100, hangup_ms=1500)
    async with daemon_floor(tmp_path, database_url, daemons, reps=reps, prospect=prospect) as floor:
        await floor.start()
        lead_id = await floor.post(name="Ada Lovelace", intent="high")
        connected = await floor.wait(lead_id, "connected", "completed")
        assert connected["status"] == "connected"  # observed while the two talk
        assert connected["assigned_rep"] == "ann"
        lead = await floor.wait(lead_id, "completed")

        timeline = kinds(lead)
        assert timeline[:3] == ["received", "routing", "ringing_reps"]
        assert timeline[-1] == "completed"
        order = [
            timeline.index(kind)
            for kind in (
                "ringing_reps",
                "rep_answered",
                "calling_prospect",
                "prospect_answered",
                "connected",
                "completed",
            )
        ]
        assert order == sorted(order)
        assert sorted(d["rep_id"] for d in data_of(lead, "rep_invited")) == ["ann", "bob", "cat"]
        ended = {
            d["rep_id"]: (d["result"], d.get("status")) for d in data_of(lead, "rep_leg_ended")
        }
        assert ended == {"bob": ("busy", 486), "cat": ("cancelled", 487)}
        [answered] = data_of(lead, "rep_answered")
        assert answered == {"leg": answered["leg"], "rep_id": "ann", "status": 200}
        [calling] = data_of(lead, "calling_prospect")
        assert calling["rep_id"] == "ann" and calling["trunk"] == "sipp" and calling["attempt"] == 1
        [completed] = data_of(lead, "completed")
        assert completed["ended_by"] == "prospect" and completed["talk_ms"] >= 1000
        # Timestamps are the moments things happened, in order, in milliseconds at least.
        stamps = [event["at"] for event in lead["timeline"]]
        assert stamps == sorted(stamps)
        assert all("." in stamp for stamp in stamps[1:])

        assert lead["assigned_rep"] == "ann"
        sla = lead["sla"]
        assert sla["status"] == "met"
        # The rep took 400 ms to answer: time-to-call is at least that, and a few seconds at most.
        assert 400 <= sla["time_to_call_ms"] < 5000
        listed = await floor.listed(lead_id)
        assert listed["sla"]["time_to_call_ms"] == sla["time_to_call_ms"]
        assert listed["sla"]["first_touch_at"] is not None
        assert listed["sla"]["due_at"] == sla["due_at"]
        assert listed["status"] == "completed" and listed["assigned_rep"] == "ann"

        assert floor.invites(floor.prospect) == 1
        assert [floor.invites(floor.reps[r]) for r in ("ann", "bob", "cat")] == [1, 1, 1]


async def test_lead_list_paginates_and_filters_by_status(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {"ann": rep_scenario(tmp_path / "ann.xml", busy=True)}
    prospect = prospect_scenario(tmp_path / "prospect.xml")
    async with daemon_floor(tmp_path, database_url, daemons, reps=reps, prospect=prospect) as floor:
        await floor.start()
        ids = [await floor.post(external_id=f"page-{n}") for n in range(5)]
        # Each lead rings the busy rep in turn, then waits for good: the statuses settle.
        for _ in range(200):
            leads = [await floor.lead(lead_id) for lead_id in ids]
            if all(kinds(lead).count("rep_leg_ended") == 1 for lead in leads) and all(
                lead["status"] == "waiting_for_rep" for lead in leads
            ):
                break
            await asyncio.sleep(0.05)
        headers = {"Authorization": f"Bearer {floor.token}"}
        seen: list[str] = []
        cursor = ""
        for _ in range(5):
            params = {"limit": "2", "status": "waiting_for_rep"}
            if cursor:
                params["cursor"] = cursor
            async with floor.session().get("/v1/leads", params=params, headers=headers) as reply:
                assert reply.status == 200
                page = await reply.json()
            seen += [lead["id"] for lead in page["leads"]]
            assert all(lead["status"] == "waiting_for_rep" for lead in page["leads"])
            assert {lead["status_reason"] for lead in page["leads"]} == {"reps_no_answer"}
            cursor = page["next_cursor"] or ""
            if not cursor:
                break
        assert seen == ids
        async with floor.session().get(
            "/v1/leads", params={"status": "completed"}, headers=headers
        ) as reply:
            assert (await reply.json()) == {"leads": [], "next_cursor": None}
        for params in ({"status": "nope"}, {"limit": "0"}, {"since": "yesterday"}, {"cursor": "x"}):
            async with floor.session().get("/v1/leads", params=params, headers=headers) as reply:
                body = await reply.json()
                assert reply.status == 422, body
                assert body["error"]["field"] == next(iter(params))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("reps_no_answer", "waiting_for_rep"),
        ("prospect_busy", "prospect_busy"),
        ("prospect_no_answer", "prospect_no_answer"),
        ("rep_hung_up", "failed"),
        ("trunk_auth_failed", "failed"),
        ("prospect_failed_404", "failed"),
        ("prospect_failed_503", "failed"),
        ("do_not_call", "blocked_compliance"),
    ],
)
async def test_each_failure_path_ends_in_its_named_state(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess], case: str, expected: str
) -> None:
    rep = rep_scenario(tmp_path / "ann.xml", answer_ms=100)
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=100, hangup_ms=300)
    if case == "reps_no_answer":
        rep = rep_scenario(tmp_path / "ann.xml", answer_ms=None)
    elif case == "prospect_busy":
        prospect = prospect_scenario(tmp_path / "prospect.xml", final_status="486 Busy Here")
    elif case == "prospect_no_answer":
        prospect = prospect_scenario(
            tmp_path / "prospect.xml", answer_ms=200, final_status="480 Temporarily Unavailable"
        )
    elif case == "trunk_auth_failed":
        # The trunk refuses the daemon (no credentials configured for it): a final 401.
        prospect = prospect_scenario(tmp_path / "prospect.xml", final_status="401 Unauthorized")
    elif case.startswith("prospect_failed_"):
        # The number does not exist (404), or the only trunk cannot place the call (503: no
        # other trunk to fail over to): the prospect could not be reached.
        status = {"404": "404 Not Found", "503": "503 Service Unavailable"}[case[-3:]]
        prospect = prospect_scenario(tmp_path / "prospect.xml", final_status=status)
    elif case == "rep_hung_up":
        rep = rep_scenario(tmp_path / "ann.xml", answer_ms=100, hangup_before_bridge_ms=700)
        prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=None)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps={"ann": rep},
        prospect=prospect,
        ring_timeout_s=1.0,
        retry={"prospect_max_attempts": 1, "max_rounds": 1},
    ) as floor:
        await floor.start()
        headers = {"Authorization": f"Bearer {floor.token}"}
        if case == "do_not_call":
            async with floor.session().post("/v1/dnc/+14155552671", headers=headers) as reply:
                assert reply.status == 201
        lead_id = await floor.post()
        if case == "rep_hung_up":
            # The rep answers; the prospect rings; the rep gives up: the call cannot go on.
            await floor.wait(lead_id, "calling_prospect")
        lead = await floor.wait(lead_id, expected)
        last = lead["timeline"][-1]
        assert last["kind"] == expected
        assert (
            last["data"]["reason"]
            == {
                "reps_no_answer": "reps_no_answer",
                "prospect_busy": "prospect_busy",
                "prospect_no_answer": "prospect_no_answer",
                "rep_hung_up": "rep_hung_up",
                "trunk_auth_failed": "trunk_auth_failed",
                "prospect_failed_404": "prospect_failed",
                "prospect_failed_503": "prospect_failed",
                "do_not_call": "do_not_call",
            }[case]
        )
        if case.startswith("prospect_failed_"):
            [ended] = data_of(lead, "prospect_leg_ended")
            assert ended["result"] == "unreachable" and ended["status"] == int(case[-3:])
        prospect_calls = floor.invites(floor.prospect)
        assert prospect_calls == (0 if case in ("reps_no_answer", "do_not_call") else 1)
        assert floor.invites(floor.reps["ann"]) == (0 if case == "do_not_call" else 1)
        # Whatever happened, the rep is free again.
        async with floor.session().get("/v1/reps", headers=headers) as reply:
            [ann] = (await reply.json())["reps"]
        assert ann["reserved_by"] is None
        assert ann["status"] == "available"


async def test_trunk_at_max_calls_queues_the_prospect_leg_then_ends_trunk_busy(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    """``max_calls = 1``: while a first lead talks through the trunk, a second lead's rep
    answers; its prospect leg waits in the trunk's line (it is not dropped) for
    ``trunk_max_wait_s``; with its one routing round spent (``max_rounds = 1``; with rounds
    left the lead is routed again, tests/dialer/test_pipeline.py) the lead ends ``failed`` with
    reason ``trunk_busy``. The trunk never sees a second INVITE; the rep who answered is hung
    up and free again."""
    reps = {
        # Ann answers first and wins lead 1; Bob, slower, is CANCELled then takes lead 2.
        "ann": rep_scenario(tmp_path / "ann.xml", answer_ms=100),
        "bob": rep_scenario(tmp_path / "bob.xml", answer_ms=600),
    }
    # The first prospect stays on the line until the daemon hangs up (at the end of the test).
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=100, hangup_ms=None)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps=reps,
        prospect=prospect,
        ring_timeout_s=5.0,
        trunk_max_calls=1,
        retry={"prospect_max_attempts": 1, "max_rounds": 1},
    ) as floor:
        await floor.start()
        headers = {"Authorization": f"Bearer {floor.token}"}
        talking = await floor.wait(await floor.post(name="First Lead"), "connected")
        assert talking["assigned_rep"] == "ann"
        lead_id = await floor.post(name="Second Lead", phone="+14155552672")
        max_wait_s = ControllerSettings().trunk_max_wait_s
        lead = await floor.wait(lead_id, "failed", timeout=max_wait_s + 15)
        last = lead["timeline"][-1]
        assert last["kind"] == "failed"
        assert last["data"]["reason"] == "trunk_busy"
        [answered] = data_of(lead, "rep_answered")
        assert answered["rep_id"] == "bob"
        [ended] = data_of(lead, "prospect_leg_ended")
        assert ended["result"] == "trunk_busy" and "status" not in ended
        # Queued, not dropped: the refusal came after the whole wait in the trunk's line.
        waited = datetime.fromisoformat(last["at"]) - datetime.fromisoformat(
            next(e["at"] for e in lead["timeline"] if e["kind"] == "rep_answered")
        )
        assert max_wait_s - 0.5 <= waited.total_seconds() < max_wait_s + 5, waited
        assert "calling_prospect" not in kinds(lead)  # the prospect was never dialled
        assert floor.invites(floor.prospect) == 1  # the first lead's call only
        # Bob is hung up and free again; the first call goes on.
        async with floor.session().get("/v1/reps", headers=headers) as reply:
            states = {rep["id"]: rep for rep in (await reply.json())["reps"]}
        assert states["bob"]["status"] == "available" and states["bob"]["reserved_by"] is None
        assert (await floor.lead(talking["id"]))["status"] == "connected"


async def test_press1_voicemail_leg_is_on_the_timeline_and_in_the_report_per_rep(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    """``accept = "press1"`` through the daemon: the voicemail box ``vm`` picks up first and
    never presses a key (hung up after accept_timeout_s, ``rep_voicemail``), ``ann`` presses 1
    over SIP INFO and is bridged; the SLA report counts the voicemail for ``vm``."""
    reps = {
        "vm": SippPeer(scenario=scenario_path("press1_rep_voicemail"), calls=None, timeout_s=60),
        "ann": SippPeer(
            scenario=scenario_path("press1_rep_info"),
            pause_ms=1500,
            calls=None,
            timeout_s=60,
            keys={"digit": "1"},
        ),
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=100, hangup_ms=300)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps=reps,
        prospect=prospect,
        ring_timeout_s=10.0,
        ringing={"accept": "press1", "accept_timeout_s": 1.0},
    ) as floor:
        await floor.start()
        lead_id = await floor.post()
        lead = await floor.wait(lead_id, "completed")
        [voicemail] = data_of(lead, "rep_voicemail")
        assert voicemail["rep_id"] == "vm"
        assert lead["assigned_rep"] == "ann"
        ended = {d["rep_id"]: d["result"] for d in data_of(lead, "rep_leg_ended")}
        assert ended["vm"] == "voicemail"
        assert kinds(lead).index("rep_voicemail") < kinds(lead).index("rep_answered")
        assert floor.invites(floor.prospect) == 1
        headers = {"Authorization": f"Bearer {floor.token}"}
        async with floor.session().get(
            "/v1/reports/sla", params={"group_by": "rep"}, headers=headers
        ) as reply:
            assert reply.status == 200
            report = await reply.json()
        by_rep = {group["key"]: group for group in report["groups"]}
        assert by_rep["vm"]["voicemail"] == 1 and by_rep["vm"]["leads"] == 0
        assert by_rep["ann"]["voicemail"] == 0 and by_rep["ann"]["leads"] == 1
        assert report["total"]["voicemail"] == 1
