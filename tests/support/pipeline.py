"""Helpers for the pipeline tests (tests/dialer/test_pipeline.py, tests/e2e/test_e2e_*.py).

- SIPp scenarios made to measure (:func:`rep_scenario`, :func:`prospect_scenario`): a rep that
  answers after N ms unless CANCELled first, a prospect that answers and hangs up after M ms,
  a busy or never-answering party, a broken SDP answer. Each is written to a file for
  :class:`dialer.sipp.SippPeer`.
- What each SIPp peer saw (:func:`read_trace`): every message with its time, so tests count the
  INVITEs a prospect got and check that no rep was rung for two leads at once.
- Daemon config for the pipeline (:func:`pipeline_config`) and small HTTP helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from dialer.sipp import SippPeer, SippProcess, Transport, free_port
from tests.conftest import DEFAULT_TOKEN, DaemonProcess, start_daemon

# --------------------------------------------------------------------------- scenarios

_HEADER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
"""

_FOOTER = """
  <label id="done"/>
  <nop hide="true"/>
  <ResponseTimeRepartition value="10, 20, 50, 100, 200, 500, 1000"/>
  <CallLengthRepartition value="10, 50, 100, 500, 1000, 5000, 10000"/>
</scenario>
"""

_RECV_INVITE = """
  <recv request="INVITE" crlf="true" rrs="true">
    <action>
      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="invite_cseq"/>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="caller"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="callee"/>
      {checks}
    </action>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[

      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
"""

# Rings until CANCELled, or until ``timeout`` ms pass (then goes to ``ontimeout``).
_CANCELLABLE = """
  <recv request="CANCEL" timeout="{timeout}" {ontimeout}>
  </recv>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" next="done">
  </recv>
"""

_GOOD_SDP = """v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=sendrecv"""

_BROKEN_SDP = """v=0
      this is not a session description
      m=audio not-a-port RTP/AVP"""

_ANSWER = """
  <label id="answer"/>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      {sdp}

    ]]>
  </send>
  <recv request="CANCEL" optional="true" next="late_cancel">
  </recv>
  <recv request="ACK" crlf="true" next="acked">
  </recv>
  <!-- the CANCEL crossed our 200: answer it (RFC 3261 9.2), the INVITE stays answered -->
  <label id="late_cancel"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" crlf="true">
  </recv>
  <label id="acked"/>
"""

_FINAL = """
  <label id="answer"/>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$invite_cseq] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK" next="done">
  </recv>
"""

# The bridge: the daemon re-INVITEs the rep with the prospect's media (or ends the call).
_REP_REINVITE = """
  <recv request="BYE" optional="true" next="bye">
  </recv>
  <recv request="INVITE">
  </recv>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      {sdp}

    ]]>
  </send>
  <recv request="ACK" crlf="true">
  </recv>
"""

# Talk, then wait for the other side's BYE up to ``timeout`` ms, else hang up ourselves.
_TALK = """
  <recv request="BYE" timeout="{timeout}" {ontimeout}>
  </recv>
  <label id="bye"/>
  <send next="done">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From:[$callee];tag=[pid]SIPpTag01[call_number]
      To:[$caller]
      [last_Call-ID:]
      CSeq: 100 BYE
      Max-Forwards: 70
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true" next="done">
  </recv>
"""

#: How long a party waits for something that should come, before SIPp fails the call.
_LONG_MS = 60_000


def _ring(answer_ms: int | None) -> str:
    if answer_ms is None:
        return _CANCELLABLE.format(timeout=_LONG_MS, ontimeout="")
    return _CANCELLABLE.format(timeout=max(1, answer_ms), ontimeout='ontimeout="answer"')


def _talk(hangup_ms: int | None) -> str:
    if hangup_ms is None:
        return _TALK.format(timeout=_LONG_MS, ontimeout="")
    return _TALK.format(timeout=max(1, hangup_ms), ontimeout='ontimeout="hangup"')


def rep_scenario(
    path: Path,
    *,
    answer_ms: int | None = 200,
    hangup_ms: int | None = None,
    broken_sdp: bool = False,
    busy: bool = False,
    hangup_before_bridge_ms: int | None = None,
) -> Path:
    """A rep's phone: rings, answers after ``answer_ms`` unless CANCELled first (None: rings
    until CANCELled), takes the bridge re-INVITE, then waits for a BYE or hangs up after
    ``hangup_ms``. ``busy``: answers 486 at once. ``hangup_before_bridge_ms``: hangs up that
    long after answering, before any bridge. Checks the screen pop's ``X-Lead-Id``."""
    checks = (
        '<ereg regexp="^ *[0-9a-f-]{36}" search_in="hdr" header="X-Lead-Id:" '
        'check_it="true" assign_to="lead_ok"/>'
    )
    body = _HEADER.format(name=path.stem) + _RECV_INVITE.format(checks=checks)
    if busy:
        body += _FINAL.format(status="486 Busy Here")
    else:
        sdp = _BROKEN_SDP if broken_sdp else _GOOD_SDP
        body += _ring(answer_ms) + _ANSWER.format(sdp=sdp)
        if hangup_before_bridge_ms is not None:
            body += _talk(hangup_before_bridge_ms)
        else:
            body += _REP_REINVITE.format(sdp=_GOOD_SDP) + _talk(hangup_ms)
    body += '\n  <Reference variables="lead_ok,caller,callee,invite_cseq"/>' + _FOOTER
    path.write_text(body)
    return path


def prospect_scenario(
    path: Path,
    *,
    answer_ms: int | None = 100,
    hangup_ms: int | None = 300,
    final_status: str | None = None,
) -> Path:
    """The prospect behind the trunk: rings, then answers after ``answer_ms`` (None: rings
    until CANCELled) and hangs up after ``hangup_ms`` (None: waits for the daemon's BYE), or
    answers ``final_status`` (e.g. ``"486 Busy Here"``) instead of 200."""
    body = _HEADER.format(name=path.stem) + _RECV_INVITE.format(checks="")
    body += _ring(answer_ms)
    if final_status is not None:
        body += _FINAL.format(status=final_status)
    else:
        body += _ANSWER.format(sdp=_GOOD_SDP) + _talk(hangup_ms)
    body += '\n  <Reference variables="caller,callee,invite_cseq"/>' + _FOOTER
    path.write_text(body)
    return path


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True, slots=True)
class Traced:
    """One message in a SIPp ``-trace_msg`` log."""

    at: datetime
    received: bool
    start_line: str
    call_id: str
    cseq_method: str

    @property
    def method(self) -> str | None:
        """The request method (None for a response)."""
        first = self.start_line.split(" ", 1)[0]
        return None if first.startswith("SIP/") else first

    @property
    def status(self) -> int | None:
        """The response status (None for a request)."""
        parts = self.start_line.split(" ", 2)
        return int(parts[1]) if parts[0].startswith("SIP/") and len(parts) > 1 else None


_CHUNK = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(\w+) message (received|sent)[^\n]*\n",
    re.MULTILINE,
)


def read_trace(sipp: SippProcess) -> list[Traced]:
    """Every message the peer received or sent so far, in order."""
    path = sipp.workdir / "messages.log"
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    matches = list(_CHUNK.finditer(text))
    messages: list[Traced] = []
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        head = text[match.end() : end].strip("\n").split("\n\n", 1)[0].split("\n")
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        messages.append(
            Traced(
                at=datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f"),
                received=match.group(3) == "received",
                start_line=head[0].strip(),
                call_id=headers.get("call-id", headers.get("i", "")),
                cseq_method=headers.get("cseq", " ").split()[-1],
            )
        )
    return messages


def calls_received(messages: Iterable[Traced]) -> dict[str, list[Traced]]:
    """Messages by Call-ID, for calls that began with an INVITE we received."""
    calls: dict[str, list[Traced]] = {}
    for message in messages:
        if message.call_id in calls:
            calls[message.call_id].append(message)
        elif message.received and message.method == "INVITE":
            calls[message.call_id] = [message]
    return calls


def rung_intervals(messages: Iterable[Traced]) -> list[tuple[datetime, datetime | None]]:
    """For each call to this phone: from its INVITE to the moment it was over (BYE or CANCEL
    either way, or a failure answer sent); None when it never ended."""
    intervals: list[tuple[datetime, datetime | None]] = []
    for call in calls_received(messages).values():
        start = call[0].at
        end = next(
            (
                m.at
                for m in call
                if m.method in ("BYE", "CANCEL")
                or (not m.received and m.status is not None and m.status >= 300)
            ),
            None,
        )
        intervals.append((start, end))
    return sorted(intervals, key=lambda interval: interval[0])


def overlapping(intervals: Sequence[tuple[datetime, datetime | None]]) -> list[str]:
    """Descriptions of calls that started before the previous one on the same phone ended."""
    problems = []
    for (start, end), (next_start, _) in itertools.pairwise(intervals):
        if end is None or next_start < end:
            problems.append(f"call at {next_start} while the one from {start} lasted to {end}")
    return problems


# --------------------------------------------------------------------------- daemon config


def toml_value(value: Any) -> str:
    """A TOML literal for a str, number, bool or list of those."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def pipeline_config(
    *,
    database_url: str,
    sip_port: int,
    trunk_port: int,
    reps: Mapping[str, int],
    lease_s: float = 2.0,
    instance_id: str = "",
    ring_timeout_s: float = 3.0,
    ring_size: int | None = None,
    wrap_up_s: float = 0.0,
    max_missed: int = 100,
    retry: Mapping[str, Any] | None = None,
    ringing: Mapping[str, Any] | None = None,
    token: str = DEFAULT_TOKEN,
    trunk_max_calls: int = 500,
) -> str:
    """A whole daemon config (TOML): API on a free port with ``token``, ``database_url``,
    JSON logs, SIP on ``sip_port``, SIPp reps on ``reps`` (id -> port) and the prospect
    behind a SIPp trunk on ``trunk_port`` taking ``trunk_max_calls`` calls at once; calling
    hours always open."""
    lines = [
        "[api]",
        'listen = "127.0.0.1:0"',
        f"tokens = [{json.dumps(token)}]",
        "[database]",
        f"url = {json.dumps(database_url)}",
        "pool_max = 6",
        "[sip]",
        f'listen = "127.0.0.1:{sip_port}"',
        "[[trunks]]",
        'name = "sipp"',
        f'proxy = "sip:127.0.0.1:{trunk_port}"',
        'caller_id = "+15550100000"',
        "options_interval_s = 0",
        f"max_calls = {trunk_max_calls}",
        "max_cps = 1000",
    ]
    for rep_id, port in reps.items():
        lines += ["[[reps]]", f'id = "{rep_id}"', f'sip_uri = "sip:{rep_id}@127.0.0.1:{port}"']
    lines += [
        "[ringing]",
        f"ring_timeout_s = {ring_timeout_s}",
        f"wrap_up_s = {wrap_up_s}",
        f"max_missed = {max_missed}",
        *(f"{key} = {toml_value(value)}" for key, value in (ringing or {}).items()),
        "[retry]",
    ]
    for key, value in {"retry_after_s": 0.5, "max_rounds": 1, **(retry or {})}.items():
        lines.append(f"{key} = {toml_value(value)}")
    lines += [
        "[compliance]",
        'calling_hours = "00:00-24:00"',
        "[daemon]",
        f"lease_s = {lease_s}",
        "drain_timeout_s = 5",
    ]
    if instance_id:
        lines.append(f'instance_id = "{instance_id}"')
    lines += ["[log]", 'format = "json"', 'level = "info"']
    if ring_size is not None:
        lines += ["[routing.fallback]", f"ring = {{ size = {ring_size} }}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTTP


async def post_lead(
    http: aiohttp.ClientSession, token: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """POST /v1/leads; the reply (asserts 202)."""
    async with http.post(
        "/v1/leads", json=dict(body), headers={"Authorization": f"Bearer {token}"}
    ) as response:
        reply: dict[str, Any] = await response.json()
        assert response.status == 202, reply
        return reply


async def get_lead(http: aiohttp.ClientSession, token: str, lead_id: str) -> dict[str, Any]:
    """GET /v1/leads/{id}."""
    async with http.get(
        f"/v1/leads/{lead_id}", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        reply: dict[str, Any] = await response.json()
        assert response.status == 200, reply
        return reply


async def wait_for_lead(
    http: aiohttp.ClientSession,
    token: str,
    lead_id: str,
    statuses: Iterable[str],
    *,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Poll the lead until its status is one of ``statuses``; the lead (TimeoutError names the
    last status and timeline)."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    lead: dict[str, Any] = {}
    while time.monotonic() < deadline:
        lead = await get_lead(http, token, lead_id)
        if lead["status"] in wanted:
            return lead
        await asyncio.sleep(0.05)
    kinds = [event["kind"] for event in lead.get("timeline", [])]
    raise TimeoutError(f"lead {lead_id} still {lead.get('status')} after {timeout}s: {kinds}")


def kinds(lead: Mapping[str, Any]) -> list[str]:
    """The kinds of a lead's timeline events, in order."""
    return [event["kind"] for event in lead["timeline"]]


# --------------------------------------------------------------------------- daemon floor


@dataclass
class DaemonFloor:
    """SIPp reps and prospect, and the ``dialer run`` subprocess(es) ringing them."""

    tmp_path: Path
    database_url: str
    reps: dict[str, SippProcess]
    prospect: SippProcess
    config_extra: dict[str, Any]
    daemons: list[DaemonProcess]
    http: aiohttp.ClientSession | None = None
    daemon: DaemonProcess | None = None
    #: The SIP port of the daemon last started.
    sip_port: int = 0

    def config_path(self, name: str, *, sip_port: int, **overrides: Any) -> Path:
        """Write a config for one daemon of this floor."""
        text = pipeline_config(
            database_url=self.database_url,
            sip_port=sip_port,
            trunk_port=self.prospect.local_port,
            reps={rep_id: proc.local_port for rep_id, proc in self.reps.items()},
            **{**self.config_extra, **overrides},
        )
        path = self.tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    async def start(self, name: str = "daemon", **overrides: Any) -> DaemonProcess:
        """Start a daemon on a free SIP port and wait until it serves; it becomes ``daemon``
        (and ``http`` points at it)."""
        sip_port = free_port(Transport.UDP)
        process = start_daemon(self.config_path(name, sip_port=sip_port, **overrides))
        self.daemons.append(process)
        await asyncio.to_thread(process.wait_ready)
        self.daemon = process
        self.sip_port = sip_port
        if self.http is not None:
            await self.http.close()
        self.http = aiohttp.ClientSession(process.base_url, timeout=aiohttp.ClientTimeout(total=10))
        return process

    @property
    def token(self) -> str:
        assert self.daemon is not None
        return self.daemon.token

    def session(self) -> aiohttp.ClientSession:
        assert self.http is not None, "no daemon started"
        return self.http

    async def post(self, **fields: Any) -> str:
        """POST a lead (202 asserted); its id."""
        body = {"phone": "+14155552671", "name": "Pat Smith", "source": "web", **fields}
        return str((await post_lead(self.session(), self.token, body))["id"])

    async def lead(self, lead_id: str) -> dict[str, Any]:
        return await get_lead(self.session(), self.token, lead_id)

    async def wait(self, lead_id: str, *statuses: str, timeout: float = 20.0) -> dict[str, Any]:
        return await wait_for_lead(self.session(), self.token, lead_id, statuses, timeout=timeout)

    async def listed(self, lead_id: str) -> dict[str, Any]:
        """The lead as ``GET /v1/leads`` lists it."""
        async with self.session().get(
            "/v1/leads", params={"limit": "500"}, headers={"Authorization": f"Bearer {self.token}"}
        ) as response:
            assert response.status == 200
            page = await response.json()
        return next(lead for lead in page["leads"] if lead["id"] == lead_id)

    def invites(self, sipp: SippProcess) -> int:
        """Calls ``sipp`` received (initial INVITEs only)."""
        return len(calls_received(read_trace(sipp)))

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None


@contextlib.asynccontextmanager
async def daemon_floor(
    tmp_path: Path,
    database_url: str,
    daemons: list[DaemonProcess],
    *,
    reps: Mapping[str, Path | SippPeer],
    prospect: Path,
    **config: Any,
) -> AsyncIterator[DaemonFloor]:
    """Start SIPp for ``reps`` (id -> scenario, or a whole :class:`SippPeer` when it needs
    ``-key`` values) and the prospect; no daemon yet (``start``).
    Everything is stopped on exit (daemons SIGTERMed, then killed)."""
    async with contextlib.AsyncExitStack() as stack:
        rep_procs = {
            rep_id: await stack.enter_async_context(
                SippProcess(
                    rep
                    if isinstance(rep, SippPeer)
                    else SippPeer(scenario=rep, calls=None, timeout_s=120)
                )
            )
            for rep_id, rep in reps.items()
        }
        trunk = await stack.enter_async_context(
            SippProcess(SippPeer(scenario=prospect, calls=None, timeout_s=120))
        )
        floor = DaemonFloor(tmp_path, database_url, rep_procs, trunk, dict(config), daemons)
        try:
            yield floor
        finally:
            await floor.close()
            for process in daemons:
                if process.process.poll() is None:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(process.terminate, 10)
                process.kill()
