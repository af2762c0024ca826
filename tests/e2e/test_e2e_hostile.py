"""Malformed or hostile input on every interface: a clear error, and the daemon keeps serving.

Bad HTTP bodies get a 4xx JSON error; garbage datagrams at the SIP port, SIP responses for
transactions nobody started and requests for dialogs that do not exist are dropped or answered
(400, 481, 403), and each one dropped is counted on ``/metrics``
(``dialer_sip_messages_malformed_total``, ``dialer_sip_responses_unmatched_total``); a rep whose
phone answers with a broken SDP fails that leg and the lead moves on to the next rep.
Throughout, a lead posted afterwards is still routed, rung and bridged.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import DaemonProcess
from tests.support.pipeline import daemon_floor, kinds, prospect_scenario, rep_scenario
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.postgres, pytest.mark.sipp, pytest.mark.slow, needs_sipp]

# (body, content type, expected status, expected error code)
BAD_BODIES: list[tuple[bytes, str, int, str]] = [
    (b"{not json", "application/json", 400, "malformed_json"),
    (b'{"phone": "+14155552671"}', "text/plain", 415, "unsupported_media_type"),
    (b'["+14155552671"]', "application/json", 400, "invalid_body"),
    (b'{"phone": "12345"}', "application/json", 422, "invalid_field"),
    (b'{"phone": "+14155552671", "intent": "urgent"}', "application/json", 422, "invalid_field"),
    (b"\xff\xfe\x00garbage", "application/json", 400, "malformed_json"),
    (b"[" * 100_000, "application/json", 413, "body_too_large"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "application/json", 400, "malformed_json"),
    (b'{"phone": NaN}', "application/json", 400, "malformed_json"),
]


def sip_request(method: str, port: int, *, call_id: str, extra: tuple[str, ...] = ()) -> bytes:
    """A request from a UDP client at any port (``rport``: answers come back to it)."""
    lines = [
        f"{method} sip:dialer@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKhostile{call_id}",
        "From: <sip:mallory@127.0.0.1>;tag=m1",
        "To: <sip:dialer@127.0.0.1>" + (";tag=unknown" if method == "BYE" else ""),
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port: int, datagrams: list[bytes], *, wait_s: float = 1.0) -> list[bytes]:
    """Send datagrams to the daemon's SIP port; every datagram that came back."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(wait_s)
        for datagram in datagrams:
            sock.sendto(datagram, ("127.0.0.1", port))
        for _ in range(50):
            try:
                data, _addr = sock.recvfrom(65535)
            except TimeoutError:
                break
            replies.append(data)
    return replies


def stray_response(sip_port: int, status: str, method: str, call_id: str) -> bytes:
    """A response to a request the daemon never sent (its Via branch names no transaction)."""
    return (
        f"SIP/2.0 {status}\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bKnobodysent{call_id}\r\n"
        "From: <sip:dialer@127.0.0.1>;tag=a\r\nTo: <sip:x@127.0.0.1>;tag=b\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def sip_counters(http: aiohttp.ClientSession) -> dict[str, float]:
    """The daemon's ``dialer_sip_*_total`` counters, from ``GET /metrics``."""
    async with http.get("/metrics") as reply:
        assert reply.status == 200
        text = await reply.text()
    counters: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("dialer_sip_") and name.endswith("_total"):
            counters[name] = float(value)
    return counters


def increase(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The counters that rose, by how much."""
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


def final_statuses(replies: list[bytes]) -> dict[str, int]:
    """Call-ID -> final status of each answer (retransmissions collapse)."""
    finals: dict[str, int] = {}
    for reply in replies:
        lines = reply.decode(errors="replace").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        call_id = next(
            line.split(":", 1)[1].strip() for line in lines if line.startswith("Call-ID")
        )
        if status >= 200:
            finals[call_id] = status
    return finals


async def test_hostile_input_everywhere_and_a_broken_sdp_answer(
    tmp_path: Path, database_url: str, daemons: list[DaemonProcess]
) -> None:
    reps = {
        "ann": rep_scenario(tmp_path / "ann.xml", answer_ms=100, broken_sdp=True),
        "bob": rep_scenario(tmp_path / "bob.xml", answer_ms=900),
    }
    prospect = prospect_scenario(tmp_path / "prospect.xml", answer_ms=50, hangup_ms=300)
    async with daemon_floor(
        tmp_path,
        database_url,
        daemons,
        reps=reps,
        prospect=prospect,
        ring_timeout_s=3,
        retry={"max_rounds": 2, "exclude_tried": True},
    ) as floor:
        daemon = await floor.start()
        http = floor.session()
        headers = {"Authorization": f"Bearer {floor.token}"}

        # HTTP: every bad body is a 4xx with the error object.
        for body, content_type, status, code in BAD_BODIES:
            async with http.post(
                "/v1/leads", data=body, headers={**headers, "Content-Type": content_type}
            ) as reply:
                answer = await reply.json()
                assert reply.status == status, (body[:40], answer)
                assert answer["error"]["code"] == code, (body[:40], answer)
        async with http.get("/v1/leads/not-a-lead", headers=headers) as reply:
            assert reply.status == 404
        async with http.post("/v1/leads", json={"phone": "+14155552671"}) as reply:
            assert reply.status == 401  # no token

        # SIP: garbage, responses nobody asked for, requests for nothing.
        sip_port = floor.sip_port
        garbage = [
            b"",  # empty, like a CRLF keep-alive: ignored, not counted as malformed
            b"\x00\x01\x02\xff" * 64,
            b"INVITE\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",  # a response without a header: malformed too
            bytes(range(256)) * 200,  # a 51 kB datagram of noise
            b"REGISTER sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n",
        ]
        stray_responses = [
            stray_response(sip_port, "200 OK", "INVITE", "stray-200"),
            stray_response(sip_port, "180 Ringing", "INVITE", "stray-180"),
            stray_response(sip_port, "481 Call/Transaction Does Not Exist", "BYE", "stray-481"),
        ]
        answerable = [
            sip_request("OPTIONS", sip_port, call_id="bad-header", extra=("Max-Forwards: many",)),
            sip_request("BYE", sip_port, call_id="no-such-dialog"),
            sip_request(
                "INVITE", sip_port, call_id="incoming", extra=("Contact: <sip:m@127.0.0.1:9>",)
            ),
        ]
        before = await sip_counters(http)
        assert before["dialer_sip_messages_malformed_total"] == 0, before
        replies = await asyncio.to_thread(exchange, sip_port, [*garbage, *stray_responses])
        assert replies == []  # nothing answerable: dropped, counted (and logged at debug)
        counted = await sip_counters(http)
        # Every datagram arrived (the empty one too); five did not parse; the three responses
        # parsed but matched no transaction. Nothing else moved: no send, no internal error.
        assert increase(before, counted) == {
            "dialer_sip_datagrams_received_total": len(garbage) + len(stray_responses),
            "dialer_sip_messages_malformed_total": len(garbage) - 1,
            "dialer_sip_messages_received_total": len(stray_responses),
            "dialer_sip_responses_unmatched_total": len(stray_responses),
        }
        replies = await asyncio.to_thread(exchange, sip_port, answerable)
        # Malformed: 400; a dialog nobody has: 481; nobody may call the daemon: 403.
        assert final_statuses(replies) == {
            "bad-header": 400,
            "no-such-dialog": 481,
            "incoming": 403,
        }
        after = await sip_counters(http)
        assert after["dialer_sip_messages_malformed_total"] == before[
            "dialer_sip_messages_malformed_total"
        ] + len(garbage)  # the bad Max-Forwards too
        assert (
            after["dialer_sip_responses_unmatched_total"]
            == counted["dialer_sip_responses_unmatched_total"]
        )
        assert after["dialer_sip_internal_errors_total"] == 0

        # A rep answering with a broken SDP: that leg fails, the lead moves on to Bob.
        lead_id = await floor.post()
        lead = await floor.wait(lead_id, "completed", timeout=20)
        timeline = kinds(lead)
        assert timeline.count("ringing_reps") == 2, timeline
        rounds = [e["data"] for e in lead["timeline"] if e["kind"] == "ringing_reps"]
        assert sorted(rounds[0]["targets"]) == ["ann", "bob"]
        assert rounds[1]["targets"] == ["bob"]  # Ann's phone broke the bridge: not again
        [retry] = [e["data"] for e in lead["timeline"] if e["kind"] == "scheduled"]
        assert retry["reason"] == "bridge_failed"
        assert lead["assigned_rep"] == "bob"
        assert floor.invites(floor.reps["ann"]) == 1
        assert floor.invites(floor.prospect) == 1

        # Still serving, still alive.
        async with http.get("/healthz") as reply:
            assert reply.status == 200
        assert daemon.process.poll() is None
