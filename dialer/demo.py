"""``dialer demo``: the whole product on one machine, with simulated phones.

What it starts (and stops again, by pid, on Ctrl-C or when done):

- three SIPp phones playing reps: **ann** picks up after 2 s, **bob** is busy (486), **cat**
  lets it ring (packaged scenarios ``demo_rep_answer``, ``uas_busy``, ``demo_rep_no_answer``);
- one SIPp playing the trunk and the prospects behind it: rings, answers after 1 s, talks 3 s
  and hangs up (``demo_prospect``);
- the daemon itself, in this process, on the embedded PostgreSQL, configured for those phones
  (free ports, calling hours always open, short ring timeout, wrap-up and retry delay).

Then it posts a few sample leads (and a duplicate and an invalid one, to show the answers) and
prints each lead's timeline live: received -> reps rung -> answered -> prospect rung ->
bridged -> completed, with its time-to-call. Leads posted by hand meanwhile (``curl``) are
followed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import aiohttp

from dialer.config import Config, RepConfig, TimeRange, TrunkConfig
from dialer.domain import LeadStatus
from dialer.sipp import SippPeer, SippProcess, Transport, free_port

__all__ = ["DEMO_LEADS", "DemoOptions", "DemoPhones", "demo_config", "run_demo", "start_phones"]

#: The sample leads the demo posts.
DEMO_LEADS: Final[tuple[Mapping[str, Any], ...]] = (
    {
        "phone": "(415) 555-2671",
        "name": "Ada Lovelace",
        "email": "ada@Analytical.example",
        "company": "Analytical Engines",
        "source": "website",
        "intent": "high",
        "fields": {"form": "pricing", "seats": 25},
    },
    {
        "phone": "+44 20 7183 8750",
        "name": "Charles Babbage",
        "company": "Difference Ltd",
        "source": "partner",
        "intent": "medium",
    },
    {
        "phone": "+1 212 555 0199",
        "name": "Grace Hopper",
        "source": "webinar",
        "intent": "low",
        "submitted_at": "2099-01-01T00:00:00Z",
    },
)

#: Who the simulated reps are: id -> (scenario, what they do).
DEMO_REPS: Final[Mapping[str, tuple[str, str]]] = {
    "ann": ("demo_rep_answer", "picks up after 2 s"),
    "bob": ("uas_busy", "busy (486)"),
    "cat": ("demo_rep_no_answer", "lets it ring"),
}

_SETTLED: Final = frozenset(status.value for status in LeadStatus if status.is_terminal)
#: SIPp's own bound on a demo run: long enough for anyone watching.
_PHONE_LIFETIME_S: Final = 24 * 3600.0
_POLL_S: Final = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    """How the demo ends."""

    #: Print every timeline once, right after posting, and stop (calls in progress end).
    exit_after_posting: bool = False
    #: Follow the timelines live until every sample lead is settled, then stop.
    exit_when_settled: bool = False
    #: Bound on waiting for the sample leads to settle.
    settle_timeout_s: float = 120.0


@dataclass(slots=True)
class DemoPhones:
    """The running SIPp phones."""

    reps: dict[str, SippProcess]
    trunk: SippProcess
    sip_port: int


async def start_phones(stack: AsyncExitStack) -> DemoPhones:
    """Start the SIPp reps and trunk; ``stack`` stops them (SIGUSR1, SIGTERM, SIGKILL to their
    pids) on exit."""
    reps: dict[str, SippProcess] = {}
    for rep_id, (scenario, _what) in DEMO_REPS.items():
        peer = SippPeer(scenario=scenario, calls=None, timeout_s=_PHONE_LIFETIME_S)
        reps[rep_id] = await stack.enter_async_context(SippProcess(peer))
    trunk_peer = SippPeer(scenario="demo_prospect", calls=None, timeout_s=_PHONE_LIFETIME_S)
    trunk = await stack.enter_async_context(SippProcess(trunk_peer))
    return DemoPhones(reps=reps, trunk=trunk, sip_port=free_port(Transport.UDP))


def demo_config(base: Config, phones: DemoPhones) -> Config:
    """``base`` set up for the demo phones: reps, trunk, SIP port, quick timers, hours open."""
    reps = tuple(
        RepConfig(
            id=rep_id,
            name=f"{rep_id.title()} ({what})",
            sip_uri=f"sip:{rep_id}@127.0.0.1:{phones.reps[rep_id].local_port}",
        )
        for rep_id, (_scenario, what) in DEMO_REPS.items()
    )
    trunk = TrunkConfig(
        name="demo-trunk",
        proxy=f"sip:127.0.0.1:{phones.trunk.local_port}",
        options_interval_s=0,
    )
    return dataclasses.replace(
        base,
        sip=dataclasses.replace(base.sip, listen=f"127.0.0.1:{phones.sip_port}"),
        trunks=(trunk,),
        reps=reps,
        ringing=dataclasses.replace(base.ringing, ring_timeout_s=6.0, wrap_up_s=2.0),
        retry=dataclasses.replace(base.retry, retry_after_s=3.0, max_rounds=2),
        compliance=dataclasses.replace(
            base.compliance, calling_hours=TimeRange(start_minute=0, end_minute=24 * 60)
        ),
    )


# --------------------------------------------------------------------------- printing


def _short(lead: Mapping[str, Any]) -> str:
    return str(lead.get("name") or lead.get("phone") or lead["id"])[:16]


def _seconds(ms: Any) -> str:
    return f"{ms / 1000:.3f} s" if isinstance(ms, int | float) else "-"


def describe_event(event: Mapping[str, Any]) -> str:
    """One timeline event in words."""
    kind = str(event["kind"])
    data: Mapping[str, Any] = event.get("data") or {}
    rep = data.get("rep_id")
    status = f" ({data['status']})" if data.get("status") is not None else ""
    if kind == "received":
        extra = " ".join(f"{key}={json.dumps(value)}" for key, value in data.items())
        return f"received {extra}".rstrip()
    if kind == "routing":
        return f"routing (daemon {data.get('daemon')})"
    if kind == "recovered":
        return f"recovered from {data.get('from')} (was {data.get('previous_daemon')})"
    if kind == "ringing_reps":
        targets = ", ".join(data.get("targets") or [])
        return f"ringing {targets} ({data.get('mode')}, round {data.get('round')})"
    if kind == "rep_invited":
        return f"  INVITE -> {rep}"
    if kind == "rep_ringing":
        return f"  {rep}'s phone rings{status}"
    if kind == "rep_answered":
        return f"{rep} answered{status}"
    if kind == "rep_leg_ended":
        away = ", now away" if data.get("rep_away") else ""
        return f"  {rep}: {data.get('result')}{status}{away}"
    if kind == "calling_prospect":
        return f"calling the prospect with {rep} on the line (attempt {data.get('attempt')})"
    if kind == "prospect_ringing":
        return f"  prospect's phone rings{status}"
    if kind == "prospect_answered":
        return f"prospect answered{status}"
    if kind == "prospect_leg_ended":
        return f"  prospect: {data.get('result')}{status}"
    if kind == "connected":
        return f"bridged: {rep} <-> prospect"
    if kind == "completed":
        if data.get("reason"):
            return f"completed ({data['reason']})"
        return f"completed: {data.get('ended_by')} hung up after {_seconds(data.get('talk_ms'))}"
    if kind == "scheduled":
        return f"retry at {data.get('retry_at')} ({data.get('reason')})"
    if kind == "waiting_for_rep":
        return f"waiting for a free rep ({data.get('reason')})"
    reason = data.get("reason")
    return f"{kind}" + (f" ({reason})" if reason else "")


@dataclass(slots=True)
class _Followed:
    lead: dict[str, Any]
    received_at: datetime
    printed: int = 0


@dataclass(slots=True)
class TimelinePrinter:
    """Follows leads over the API and prints their new timeline events as they come."""

    http: aiohttp.ClientSession
    stream: TextIO
    followed: dict[str, _Followed] = field(default_factory=dict)

    def write(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    async def follow(self, lead_id: str) -> None:
        if lead_id not in self.followed:
            lead = await self._get(lead_id)
            received = datetime.fromisoformat(str(lead["received_at"]).replace("Z", "+00:00"))
            self.followed[lead_id] = _Followed(lead=lead, received_at=received)

    async def discover(self, since: datetime) -> None:
        """Follow leads posted by anyone since ``since`` (``curl`` while the demo runs)."""
        async with self.http.get(
            "/v1/leads", params={"since": since.isoformat(), "limit": "500"}
        ) as response:
            if response.status != 200:
                return
            page = await response.json()
        for lead in page.get("leads", []):
            await self.follow(str(lead["id"]))

    async def adopt_leftovers(self) -> int:
        """Follow the open leads an earlier run left (they are worked on now: no lead is
        ever dropped); only their new events are printed. Returns how many."""
        count = 0
        for status in LeadStatus:
            if status.is_terminal:
                continue
            async with self.http.get(
                "/v1/leads", params={"status": status.value, "limit": "100"}
            ) as response:
                if response.status != 200:
                    continue
                page = await response.json()
            for lead in page.get("leads", []):
                lead_id = str(lead["id"])
                if lead_id in self.followed:
                    continue
                await self.follow(lead_id)
                followed = self.followed[lead_id]
                followed.printed = len(followed.lead["timeline"])
                self.write(
                    f"  (lead {_short(followed.lead)} from an earlier run is "
                    f"{followed.lead['status']}: it is worked on too)"
                )
                count += 1
        return count

    async def _get(self, lead_id: str) -> dict[str, Any]:
        async with self.http.get(f"/v1/leads/{lead_id}") as response:
            lead: dict[str, Any] = await response.json()
        return lead

    async def poll(self) -> None:
        """Print what happened since the last poll."""
        for lead_id, followed in self.followed.items():
            if followed.lead["status"] in _SETTLED and followed.printed == len(
                followed.lead["timeline"]
            ):
                continue
            followed.lead = await self._get(lead_id)
            events = followed.lead["timeline"]
            for event in events[followed.printed :]:
                at = datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00"))
                offset = (at - followed.received_at).total_seconds()
                line = f"  {offset:+8.3f}s  {_short(followed.lead):<16}  {describe_event(event)}"
                self.write(line)
                if event["kind"] == "calling_prospect":
                    ttc = followed.lead["sla"].get("time_to_call_ms")
                    self.write(f"  {'':>9}  {'':<16}  >> time-to-call {_seconds(ttc)}")
            followed.printed = len(events)

    async def refresh(self) -> None:
        """Fetch every followed lead again, printing nothing."""
        for lead_id, followed in self.followed.items():
            followed.lead = await self._get(lead_id)

    def settled(self, lead_ids: list[str]) -> bool:
        return all(self.followed[lead_id].lead["status"] in _SETTLED for lead_id in lead_ids)

    def summary(self) -> None:
        self.write()
        self.write("Summary:")
        for followed in self.followed.values():
            lead = followed.lead
            sla = lead["sla"]
            rep = lead.get("assigned_rep") or "-"
            self.write(
                f"  {_short(lead):<16}  {lead['status']:<18} rep={rep:<4}"
                f"  time-to-call {_seconds(sla.get('time_to_call_ms')):>9}"
                f"  SLA {sla['status']} (due {sla['due_at']})"
            )

    def snapshot(self) -> None:
        """Every followed lead's whole timeline, as it stands."""
        for followed in self.followed.values():
            lead = followed.lead
            sla = lead["sla"]
            self.write()
            self.write(
                f"  lead {lead['id']}  {lead['name']}  {lead['phone']}  status={lead['status']}"
            )
            self.write(
                f"    received_at={lead['received_at']}  submitted_at={lead['submitted_at']}  "
                f"sla={sla['status']} (due {sla['due_at']})"
            )
            for event in lead["timeline"]:
                self.write(f"    #{event['seq']:<3} {event['at']:<28} {describe_event(event)}")


async def _post_samples(printer: TimelinePrinter, run_tag: str) -> list[str]:
    http = printer.http
    lead_ids: list[str] = []
    for index, sample in enumerate(DEMO_LEADS):
        body = {**sample, "external_id": f"demo-{run_tag}-{index + 1}"}
        async with http.post("/v1/leads", json=body) as response:
            reply = await response.json()
        lead_ids.append(str(reply["id"]))
        printer.write(
            f"POST /v1/leads  {sample['name']:<16} {sample['phone']:<18} "
            f"-> {response.status} {reply['id']} ({reply['phone']})"
        )
    duplicate = {**DEMO_LEADS[0], "external_id": f"demo-{run_tag}-1"}
    async with http.post("/v1/leads", json=duplicate) as response:
        reply = await response.json()
    printer.write(
        f"POST /v1/leads  same external_id again              "
        f"-> {response.status} {reply['id']} (duplicate: the first lead)"
    )
    async with http.post("/v1/leads", json={"phone": "12345", "intent": "urgent"}) as response:
        error = (await response.json())["error"]
    printer.write(
        f"POST /v1/leads  phone 12345                          "
        f"-> {response.status} {error['code']} field={error['field']}: {error['message']}"
    )
    for lead_id in lead_ids:
        await printer.follow(lead_id)
    return lead_ids


async def _show(
    base_url: str,
    *,
    config: Config,
    phones: DemoPhones,
    options: DemoOptions,
    stop_event: asyncio.Event,
    stream: TextIO,
) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base_url, timeout=timeout) as http:
        printer = TimelinePrinter(http=http, stream=stream)
        printer.write(f"dialer demo: daemon listening on {base_url}")
        printer.write(f"             embedded PostgreSQL in {config.database.data_dir}")
        printer.write(f"             SIP on 127.0.0.1:{phones.sip_port}; simulated phones (SIPp):")
        for rep_id, (_scenario, what) in DEMO_REPS.items():
            port = phones.reps[rep_id].local_port
            printer.write(f"               rep {rep_id:<4} sip:{rep_id}@127.0.0.1:{port:<6} {what}")
        printer.write(
            f"               trunk    sip:127.0.0.1:{phones.trunk.local_port:<10} prospects pick "
            "up after 1 s, talk 3 s"
        )
        printer.write()
        started = datetime.now(UTC)
        if not options.exit_after_posting and await printer.adopt_leftovers():
            printer.write()
        lead_ids = await _post_samples(printer, time.strftime("%Y%m%d%H%M%S"))
        printer.write()
        if options.exit_after_posting:
            await printer.refresh()
            printer.snapshot()
            return
        printer.write("Live timelines (seconds since each lead was received):")
        deadline = time.monotonic() + options.settle_timeout_s
        summarized = False
        while not stop_event.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await printer.discover(started)
                await printer.poll()
            if not summarized and printer.settled(lead_ids):
                summarized = True
                printer.summary()
                if options.exit_when_settled:
                    return
                printer.write()
                printer.write(
                    f"Try it:  curl -s -XPOST {base_url}/v1/leads "
                    "-H 'Content-Type: application/json' \\"
                )
                printer.write('             -d \'{"phone": "+1 415 555 2671", "name": "You"}\'')
                printer.write(f"         curl -s {base_url}/v1/leads | python3 -m json.tool")
                printer.write("Press Ctrl-C to stop.")
            if options.exit_when_settled and time.monotonic() > deadline:
                printer.write("dialer demo: leads did not settle in time")
                printer.summary()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), _POLL_S)


async def run_demo(
    config: Config, *, options: DemoOptions | None = None, stream: TextIO | None = None
) -> None:
    """Start the phones and the daemon, post the samples, show the timelines; stop everything
    on Ctrl-C (SIGINT/SIGTERM) or when ``options`` say so."""
    from dialer.app import Daemon, serve

    options = options or DemoOptions()
    out = stream or sys.stdout
    stop_event = asyncio.Event()
    async with AsyncExitStack() as stack:
        phones = await start_phones(stack)
        demo = demo_config(config, phones)

        async def on_ready(daemon: Daemon) -> None:
            try:
                await _show(
                    daemon.url,
                    config=demo,
                    phones=phones,
                    options=options,
                    stop_event=stop_event,
                    stream=out,
                )
            finally:
                if options.exit_after_posting or options.exit_when_settled:
                    stop_event.set()

        await serve(demo, allow_anonymous=True, on_ready=on_ready, stop_event=stop_event)
