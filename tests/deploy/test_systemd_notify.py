"""dialer.systemd: sd_notify datagrams received on a real unix socket bound by the test."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dialer.api.keys import STORE_KEY
from dialer.app import Daemon
from dialer.config import parse_config
from dialer.systemd import (
    NOTIFY_SOCKET_ENV,
    WATCHDOG_PID_ENV,
    WATCHDOG_USEC_ENV,
    Notifier,
    notify_ready,
    notify_reloading,
    notify_status,
    notify_stopping,
    notify_watchdog,
    systemd_ctx,
    watchdog,
    watchdog_interval,
)

RECEIVE_TIMEOUT_S = 5.0


class NotifyReceiver:
    """The systemd side: a bound ``AF_UNIX`` datagram socket, read with a bounded wait."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def receive(self, timeout: float = RECEIVE_TIMEOUT_S) -> list[str]:
        """The next datagram's assignments (raises TimeoutError when none arrives)."""
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode("utf-8").split("\n")

    def pending(self) -> list[list[str]]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        datagrams: list[list[str]] = []
        for _ in range(10_000):
            try:
                datagrams.append(self.sock.recv(4096).decode("utf-8").split("\n"))
            except BlockingIOError:
                break
        return datagrams

    async def receive_async(self, timeout: float = RECEIVE_TIMEOUT_S) -> list[str]:
        """Like :meth:`receive`, without blocking the event loop the sender runs on."""
        self.sock.setblocking(False)
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        return data.decode("utf-8").split("\n")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # sun_path holds 108 bytes; pytest's tmp_path can be longer than that.
    path = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def receiver(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyReceiver]:
    """A filesystem-path NOTIFY_SOCKET, as systemd sets it for system services."""
    path = short_dir / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv(NOTIFY_SOCKET_ENV, str(path))
    monkeypatch.delenv(WATCHDOG_USEC_ENV, raising=False)
    monkeypatch.delenv(WATCHDOG_PID_ENV, raising=False)
    try:
        yield NotifyReceiver(sock)
    finally:
        sock.close()


@pytest.fixture
def abstract_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyReceiver]:
    """An abstract-namespace NOTIFY_SOCKET (``@name``), as systemd uses for user services."""
    name = f"dialer-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv(NOTIFY_SOCKET_ENV, "@" + name)
    try:
        yield NotifyReceiver(sock)
    finally:
        sock.close()


# --------------------------------------------------------------------------- one-shot messages


def test_ready_with_status_is_one_datagram(receiver: NotifyReceiver) -> None:
    assert notify_ready("database up") is True
    assert receiver.receive() == ["READY=1", "STATUS=database up"]


def test_stopping_and_watchdog(receiver: NotifyReceiver) -> None:
    assert notify_stopping() is True
    assert notify_watchdog() is True
    assert receiver.receive() == ["STOPPING=1"]
    assert receiver.receive() == ["WATCHDOG=1"]


def test_abstract_namespace_socket(abstract_receiver: NotifyReceiver) -> None:
    assert notify_ready() is True
    assert abstract_receiver.receive() == ["READY=1"]


def test_status_cannot_inject_another_assignment(receiver: NotifyReceiver) -> None:
    assert notify_status("draining\nREADY=1") is True
    assert receiver.receive() == ["STATUS=draining READY=1"]


def test_reloading_carries_the_monotonic_timestamp(receiver: NotifyReceiver) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notify_reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, stamp = receiver.receive()
    assert reloading == "RELOADING=1"
    key, _, value = stamp.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_malformed_assignment_is_a_programming_error(receiver: NotifyReceiver) -> None:
    with Notifier.from_env() as notifier, pytest.raises(ValueError, match="KEY=VALUE"):
        notifier.send("READY")


# --------------------------------------------------------------------------- no-ops and failures


def test_everything_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTIFY_SOCKET_ENV, raising=False)
    assert Notifier.from_env().enabled is False
    assert notify_ready() is False
    assert notify_stopping() is False
    assert notify_status("x") is False
    assert notify_watchdog() is False


@pytest.mark.parametrize("value", ["relative/notify", "vsock:2:1234", ""])
def test_unsupported_addresses_disable_notifications(value: str) -> None:
    notifier = Notifier.from_env({NOTIFY_SOCKET_ENV: value})
    assert notifier.enabled is False
    assert notifier.send("READY=1") is False


def test_missing_socket_returns_false_instead_of_raising(short_dir: Path) -> None:
    with Notifier.from_env({NOTIFY_SOCKET_ENV: str(short_dir / "gone")}) as notifier:
        assert notifier.enabled is True
        assert notifier.send("READY=1") is False
        assert notifier.send("READY=1") is False


def test_full_receive_queue_never_blocks_the_sender(receiver: NotifyReceiver) -> None:
    # The receiver never reads: a blocking sender would hang here once the queue is full
    # (net.unix.max_dgram_qlen); the non-blocking one reports False and carries on.
    results: list[bool] = []
    with Notifier.from_env() as notifier:
        for _ in range(5_000):
            results.append(notifier.send("WATCHDOG=1"))
            if not results[-1]:
                break
    assert results[0] is True
    assert results[-1] is False
    queued = receiver.pending()
    assert len(queued) == len(results) - 1
    assert all(datagram == ["WATCHDOG=1"] for datagram in queued)


# --------------------------------------------------------------------------- watchdog


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({WATCHDOG_USEC_ENV: "20000000"}, 10.0),
        ({WATCHDOG_USEC_ENV: "3000000", WATCHDOG_PID_ENV: "4242"}, 1.5),
        ({WATCHDOG_USEC_ENV: "3000000", WATCHDOG_PID_ENV: "1"}, None),  # a parent's settings
        ({WATCHDOG_USEC_ENV: "0"}, None),
        ({WATCHDOG_USEC_ENV: "soon"}, None),
        ({WATCHDOG_USEC_ENV: "3000000", WATCHDOG_PID_ENV: "me"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_period_for_this_process(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env, pid=4242) == expected


def test_watchdog_interval_defaults_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WATCHDOG_USEC_ENV, "1000000")
    monkeypatch.setenv(WATCHDOG_PID_ENV, str(os.getpid()))
    assert watchdog_interval() == 0.5


async def test_watchdog_pings_until_cancelled(receiver: NotifyReceiver) -> None:
    with Notifier.from_env() as notifier:
        pinger = asyncio.create_task(watchdog(notifier, 0.01))
        try:
            pings = [await receiver.receive_async() for _ in range(3)]
        finally:
            pinger.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pinger
    assert pings == [["WATCHDOG=1"]] * 3


async def test_watchdog_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await watchdog(Notifier(None), 0)


# --------------------------------------------------------------------------- systemd_ctx


def app_with_resource(receiver_events: list[str], *, fail: bool = False) -> web.Application:
    """An app whose first context stands for the database: it reports itself on the socket."""
    app = web.Application()

    async def resource_ctx(app: web.Application) -> AsyncIterator[None]:
        if fail:
            raise OSError("database unreachable")
        with Notifier.from_env() as notifier:
            notifier.send("STATUS=resource up")
        receiver_events.append("up")
        yield
        receiver_events.append("down")

    app.cleanup_ctx.append(resource_ctx)
    app.cleanup_ctx.append(systemd_ctx)
    return app


async def test_ctx_sends_ready_after_earlier_contexts_then_pings_then_stopping(
    receiver: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WATCHDOG_USEC_ENV, "40000")  # pings every 20 ms
    monkeypatch.setenv(WATCHDOG_PID_ENV, str(os.getpid()))
    events: list[str] = []
    runner = web.AppRunner(app_with_resource(events))
    await runner.setup()
    try:
        assert await receiver.receive_async() == ["STATUS=resource up"]
        assert await receiver.receive_async() == ["READY=1", "STATUS=ready"]
        assert await receiver.receive_async() == ["WATCHDOG=1"]
        assert await receiver.receive_async() == ["WATCHDOG=1"]
    finally:
        await runner.cleanup()
    # STOPPING comes before the earlier context is torn down, and the pings stop with it.
    assert events == ["up", "down"]
    after_stop = [d for d in receiver.pending() if d != ["WATCHDOG=1"]]
    assert after_stop == [["STOPPING=1", "STATUS=stopping"]]
    await asyncio.sleep(0.06)
    assert receiver.pending() == []


async def test_ctx_without_watchdog_sends_no_pings(receiver: NotifyReceiver) -> None:
    runner = web.AppRunner(app_with_resource([]))
    await runner.setup()
    await asyncio.sleep(0.05)
    await runner.cleanup()
    assert receiver.pending() == [
        ["STATUS=resource up"],
        ["READY=1", "STATUS=ready"],
        ["STOPPING=1", "STATUS=stopping"],
    ]


async def test_ctx_sends_nothing_when_an_earlier_context_fails(receiver: NotifyReceiver) -> None:
    runner = web.AppRunner(app_with_resource([], fail=True))
    with pytest.raises(OSError, match="unreachable"):
        await runner.setup()
    await runner.cleanup()
    assert receiver.pending() == []


async def test_ctx_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTIFY_SOCKET_ENV, raising=False)
    events: list[str] = []
    runner = web.AppRunner(app_with_resource(events))
    await runner.setup()
    await runner.cleanup()
    assert events == ["up", "down"]


@pytest.mark.postgres
async def test_daemon_reports_ready_once_its_database_is_up(
    receiver: NotifyReceiver, database_url: str
) -> None:
    config = parse_config(
        {
            "api": {"listen": "127.0.0.1:0", "allow_anonymous": True},
            "database": {"url": database_url, "pool_max": 2},
        },
        env={},
    )
    daemon = Daemon(config)
    # Until the composition root appends it, wire it here the way it will be wired there.
    if systemd_ctx not in daemon.app.cleanup_ctx:
        daemon.app.cleanup_ctx.append(systemd_ctx)
    await daemon.start()
    try:
        ready = await receiver.receive_async()
        assert "READY=1" in ready
        assert STORE_KEY in daemon.app
        async with aiohttp.ClientSession(daemon.url) as http, http.get("/readyz") as response:
            assert response.status == 200
    finally:
        await daemon.stop()
    assert any("STOPPING=1" in datagram for datagram in receiver.pending())
