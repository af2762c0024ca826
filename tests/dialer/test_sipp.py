"""Tests of dialer.sipp: the harness itself, and the packaged scenarios against SIPp itself."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dialer.sipp import (
    SCENARIOS_DIR,
    SippError,
    SippNotInstalledError,
    SippPeer,
    SippProcess,
    SippTimeoutError,
    Transport,
    find_sipp,
    free_port,
    scenario_path,
)
from tests.support.sipp import needs_sipp, run_pair, test_scenario

# -- pure parts ------------------------------------------------------------------------------

STATS_CSV = (
    "StartTime;LastResetTime;CurrentTime;TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);"
    "FailedCall(P);FailedCall(C);FailedUnexpectedMessage(C);OutOfCallMsgs(C);DeadCallMsgs(C);"
    "Retransmissions(C);\n"
    "2026-01-01\t10:00:00.0;2026-01-01\t10:00:00.0;2026-01-01\t10:00:01.0;0;0;0;0;0;0;0;0;0;\n"
    "2026-01-01\t10:00:00.0;2026-01-01\t10:00:01.0;2026-01-01\t10:00:02.0;7;1;5;1;2;1;3;4;6;\n"
)
COUNTS_CSV = (
    "CurrentTime;ElapsedTime;0_INVITE_Recv;0_INVITE_Retrans;0_INVITE_Timeout;0_INVITE_Unexp;"
    "1_100_Sent;1_100_Retrans;2_Pause_Sessions;2_Pause_Unexp;3_200_Sent;3_200_Retrans;"
    "3_200_Timeout;4_ACK_Recv;4_ACK_Retrans;4_ACK_Timeout;4_ACK_Unexp;\n"
    "2026-01-01\t10:00:02.0;00:00:02:000000;7;2;0;1;7;0;0;1;6;3;0;5;0;1;0;\n"
)


def fake_run_dir(tmp_path: Path) -> Path:
    (tmp_path / "stats.csv").write_text(STATS_CSV)
    (tmp_path / "uas_4242_counts.csv").write_text(COUNTS_CSV)
    return tmp_path


def test_stat_and_count_files_are_parsed(tmp_path: Path) -> None:
    from dialer.sipp import _read_counts, _read_last_stat_row

    stats = _read_last_stat_row(fake_run_dir(tmp_path) / "stats.csv")
    assert stats["SuccessfulCall(C)"] == "5"
    assert stats["TotalCallCreated"] == "7"
    counts = _read_counts(tmp_path / "uas_4242_counts.csv")
    assert [(c.index, c.name, c.kind, c.count) for c in counts] == [
        (0, "INVITE", "Recv", 7),
        (1, "100", "Sent", 7),
        (2, "Pause", "Pause", 0),
        (3, "200", "Sent", 6),
        (4, "ACK", "Recv", 5),
    ]
    invite = counts[0]
    assert (invite.retransmissions, invite.unexpected) == (2, 1)
    assert counts[2].unexpected == 1
    assert counts[3].retransmissions == 3
    assert counts[4].timeouts == 1


def test_missing_files_give_empty_results(tmp_path: Path) -> None:
    from dialer.sipp import _read_counts, _read_last_stat_row

    assert _read_last_stat_row(tmp_path / "nothing.csv") == {}
    assert _read_counts(None) == ()
    (tmp_path / "header_only.csv").write_text("A;B;\n")
    assert _read_last_stat_row(tmp_path / "header_only.csv") == {}


def test_transport_names() -> None:
    assert Transport.parse("UDP") is Transport.UDP
    assert Transport.parse("t1") is Transport.TCP
    with pytest.raises(ValueError, match="udp or tcp"):
        Transport.parse("sctp")


def test_packaged_scenarios_resolve_by_name() -> None:
    assert scenario_path("uas_answer") == SCENARIOS_DIR / "uas_answer.xml"
    assert scenario_path("uas_busy.xml").is_file()
    with pytest.raises(FileNotFoundError, match="uas_answer"):
        scenario_path("no_such_scenario")


def test_free_port_is_bindable_for_both_protocols() -> None:
    import socket

    port = free_port(Transport.TCP)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))


def test_missing_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SippNotInstalledError, match="sip-tester"):
        find_sipp()


# -- with SIPp -------------------------------------------------------------------------------


@pytest.mark.sipp
@needs_sipp
def test_command_line_is_bounded_and_owned(tmp_path: Path) -> None:
    peer = SippPeer(
        scenario="uas_auth",
        calls=3,
        timeout_s=12,
        pause_ms=250,
        keys={"auth_password": "pw"},
        variables={"x": "1"},
        cpus="0",
        workdir=tmp_path,
    )
    command = SippProcess(peer).command()
    joined = " ".join(command)
    assert command[:3] == [command[0], "-c", "0"] and command[0].endswith("taskset")
    assert "-bg" not in command
    for expected in ("-nostdin", "-timeout 12s", "-m 3", "-d 250", "-t u1", "-bind_local"):
        assert expected in joined
    assert "-key auth_password pw" in joined
    assert "-key auth_user dialer" in joined  # packaged default
    assert "-set x 1" in joined
    assert f"-sf {SCENARIOS_DIR / 'uas_auth.xml'}" in joined
    builtin = SippProcess(SippPeer(scenario="uac", remote=("127.0.0.1", 5060))).command()
    assert "-sn uac" in " ".join(builtin)
    assert "127.0.0.1:5060" in builtin


PAIRS = [
    # (answering scenario, calling scenario, server options, client options, must appear)
    ("uas_answer", "uac", {"pause_ms": 50}, {}, ["SIP/2.0 180 Ringing", "BYE sip:"]),
    ("uas_early_media", str(test_scenario("uac_call")), {}, {}, ["SIP/2.0 183 Session"]),
    ("uas_busy", str(test_scenario("uac_expect_busy")), {}, {}, ["SIP/2.0 486 Busy Here"]),
    (
        "uas_ring_no_answer",
        str(test_scenario("uac_cancel")),
        {},
        {"pause_ms": 50},
        ["CANCEL sip:", "SIP/2.0 487 Request Terminated"],
    ),
    (
        "uas_auth",
        str(test_scenario("uac_auth")),
        {},
        {"auth_username": "dialer", "auth_password": "secret"},
        ["SIP/2.0 401 Unauthorized", "Authorization: Digest"],
    ),
    (
        "uas_answer_then_bye",
        str(test_scenario("uac_remote_bye")),
        {"pause_ms": 50},
        {},
        ["BYE sip:sipp@127.0.0.1"],
    ),
]


@pytest.mark.sipp
@needs_sipp
@pytest.mark.parametrize(
    ("server_scenario", "client_scenario", "server_options", "client_options", "expected"),
    PAIRS,
    ids=[p[0] for p in PAIRS],
)
@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TCP], ids=["udp", "tcp"])
async def test_packaged_scenario_against_sipp(
    tmp_path: Path,
    server_scenario: str,
    client_scenario: str,
    server_options: dict[str, int],
    client_options: dict[str, str | int],
    expected: list[str],
    transport: Transport,
) -> None:
    calls = 2
    server = SippPeer(
        scenario=server_scenario,
        transport=transport,
        calls=calls,
        timeout_s=15,
        workdir=tmp_path / "uas",
        **server_options,  # type: ignore[arg-type]
    )
    client = SippPeer(
        scenario=client_scenario,
        calls=calls,
        rate=20,
        timeout_s=15,
        workdir=tmp_path / "uac",
        **client_options,  # type: ignore[arg-type]
    )
    uas, uac = await run_pair(server, client)
    for result in (uas, uac):
        assert result.clean, f"{result.summary()}\n{result.errors()[-2000:]}"
        assert result.successful_calls == calls
        assert result.created_calls == calls
    log = uas.messages()
    assert log.count("message received") >= calls
    for text in expected:
        assert text in log, f"{text!r} not in the UAS message log"
    assert f"{transport.name} message" in log


@pytest.mark.sipp
@needs_sipp
async def test_wrong_password_is_a_failed_call(tmp_path: Path) -> None:
    server = SippPeer(scenario="uas_auth", timeout_s=10, workdir=tmp_path / "uas")
    client = SippPeer(
        scenario=test_scenario("uac_auth"),
        auth_username="dialer",
        auth_password="not-the-password",
        timeout_s=10,
        workdir=tmp_path / "uac",
    )
    uas, uac = await run_pair(server, client)
    assert uas.exit_code == 1
    assert uas.failed_calls == 1
    assert uas.successful_calls == 0
    assert "SIP/2.0 403 Forbidden" in uas.messages()
    assert not uac.clean


@pytest.mark.sipp
@needs_sipp
async def test_a_peer_stopped_early_is_reaped(tmp_path: Path) -> None:
    # A UAS with a call ringing forever: the soft exit (SIGUSR1) waits for the call, so stop()
    # must escalate, and the pid must be gone afterwards.
    server = SippProcess(
        SippPeer(scenario="uas_ring_no_answer", calls=None, timeout_s=60, workdir=tmp_path / "s")
    )
    await server.start()
    client = SippProcess(
        SippPeer(
            scenario=test_scenario("uac_cancel"),
            remote=server.address,
            pause_ms=60_000,
            timeout_s=60,
            workdir=tmp_path / "c",
        )
    )
    await client.start()
    try:
        for _ in range(200):  # until the call rings (bounded: 2 s)
            if "180 Ringing" in (tmp_path / "s" / "messages.log").read_text(errors="replace"):
                break
            await asyncio.sleep(0.01)
        assert server.running and client.running
        pids = [server.pid, client.pid]
        server_result = await server.stop()
        client_result = await client.stop()
    finally:
        await client.stop()
        await server.stop()
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not server.running
    assert server_result.exit_code != 0 or server_result.successful_calls == 0
    assert client_result.successful_calls == 0
    assert server_result.workdir == tmp_path / "s"


@pytest.mark.sipp
@needs_sipp
async def test_wait_bound_stops_sipp_and_raises(tmp_path: Path) -> None:
    process = SippProcess(SippPeer(scenario="uas_answer", timeout_s=60, workdir=tmp_path))
    await process.start()
    with pytest.raises(SippTimeoutError) as info:
        await process.wait(timeout=0.3)
    assert not process.running
    assert info.value.result.successful_calls == 0
    assert process.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)


@pytest.mark.sipp
@needs_sipp
async def test_sipp_stops_by_itself_at_its_global_timeout(tmp_path: Path) -> None:
    process = SippProcess(SippPeer(scenario="uas_answer", timeout_s=1, workdir=tmp_path))
    await process.start()
    result = await process.wait(timeout=10)
    assert result.successful_calls == 0
    assert result.created_calls == 0


@pytest.mark.sipp
@needs_sipp
async def test_port_already_taken_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        process = SippProcess(SippPeer(local_port=port, workdir=tmp_path))
        with pytest.raises(SippError, match="did not bind"):
            await process.start()
    assert not process.running


@pytest.mark.sipp
@needs_sipp
async def test_invalid_scenario_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<scenario><send><![CDATA[ not closed")
    process = SippProcess(SippPeer(scenario=broken, workdir=tmp_path / "run"))
    with pytest.raises(SippError, match="exit code"):
        await process.start()
    assert not process.running
