"""dialer.systemd: sd_notify datagrams received on a real unix socket bound by the test."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dialer.api.keys import STORE_KEY
from dialer.app import Daemon
from dialer.config import Config, parse_config
from dialer.sipp import Transport, free_port
from dialer.systemd import (
    NOTIFY_SOCKET_ENV,
    SERVICE_KEY,
    WATCHDOG_PID_ENV,
    WATCHDOG_USEC_ENV,
    Notifier,
    notify_ready,
    notify_reloading,
    notify_started,
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


async def test_ctx_pings_from_start_up_leaves_ready_to_notify_started_then_stopping(
    receiver: NotifyReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WATCHDOG_USEC_ENV, "40000")  # pings every 20 ms
    monkeypatch.setenv(WATCHDOG_PID_ENV, str(os.getpid()))
    events: list[str] = []
    app = app_with_resource(events)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert await receiver.receive_async() == ["STATUS=resource up"]
        # Contexts run before any site is bound: the ctx pings, but READY is not its to say.
        assert await receiver.receive_async() == ["WATCHDOG=1"]
        assert await receiver.receive_async() == ["WATCHDOG=1"]
        assert notify_started(app, "listening") is True
        assert notify_started(app, "listening again") is False  # READY once per run
        assert app[SERVICE_KEY].is_ready
        received = [await receiver.receive_async() for _ in range(4)]
        assert [d for d in received if d != ["WATCHDOG=1"]] == [["READY=1", "STATUS=listening"]]
    finally:
        await runner.cleanup()
    # STOPPING comes before the earlier context is torn down, and the pings stop with it.
    assert events == ["up", "down"]
    after_stop = [d for d in receiver.pending() if d != ["WATCHDOG=1"]]
    assert after_stop == [["STOPPING=1", "STATUS=stopping"]]
    await asyncio.sleep(0.06)
    assert receiver.pending() == []


async def test_ctx_without_watchdog_sends_no_pings(receiver: NotifyReceiver) -> None:
    app = app_with_resource([])
    runner = web.AppRunner(app)
    await runner.setup()
    await asyncio.sleep(0.05)
    notify_started(app)
    await runner.cleanup()
    assert receiver.pending() == [
        ["STATUS=resource up"],
        ["READY=1"],
        ["STOPPING=1", "STATUS=stopping"],
    ]


async def test_ctx_never_ready_sends_no_stopping(receiver: NotifyReceiver) -> None:
    # Start-up failed after the contexts (the HTTP bind, say): systemd learns from the exit
    # status; a STOPPING=1 for a service that never became ready would only confuse it.
    runner = web.AppRunner(app_with_resource([]))
    await runner.setup()
    await runner.cleanup()
    assert receiver.pending() == [["STATUS=resource up"]]


async def test_ctx_sends_nothing_when_an_earlier_context_fails(receiver: NotifyReceiver) -> None:
    runner = web.AppRunner(app_with_resource([], fail=True))
    with pytest.raises(OSError, match="unreachable"):
        await runner.setup()
    await runner.cleanup()
    assert receiver.pending() == []


async def test_ctx_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTIFY_SOCKET_ENV, raising=False)
    events: list[str] = []
    app = app_with_resource(events)
    runner = web.AppRunner(app)
    await runner.setup()
    assert notify_started(app) is False
    await runner.cleanup()
    assert events == ["up", "down"]


def test_notify_started_without_the_ctx_is_a_plain_ready(receiver: NotifyReceiver) -> None:
    assert notify_started(web.Application(), "up") is True
    assert receiver.receive() == ["READY=1", "STATUS=up"]


# --------------------------------------------------------------------------- the daemon


def daemon_config(database_url: str, api_port: int = 0) -> Config:
    return parse_config(
        {
            "api": {"listen": f"127.0.0.1:{api_port}", "allow_anonymous": True},
            "sip": {"listen": "127.0.0.1:0"},
            "database": {"url": database_url, "pool_max": 2},
        },
        env={},
    )


class ReadyProbe(threading.Thread):
    """systemd's side on its own thread: at the first ``READY=1``, connect to the API port.

    A thread, so the check happens the moment the datagram arrives, whatever the daemon's
    event loop is doing then; a loopback connect to a listening socket completes in the kernel
    even before the loop accepts it.
    """

    def __init__(self, receiver: NotifyReceiver, port: int) -> None:
        super().__init__(name="ready-probe", daemon=True)
        self.receiver = receiver
        self.port = port
        self.datagrams: list[list[str]] = []
        self.accepting_at_ready: bool | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                datagram = self.receiver.receive(timeout=0.5)
            except TimeoutError:
                continue
            self.datagrams.append(datagram)
            if "READY=1" in datagram:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                except OSError:
                    self.accepting_at_ready = False
                else:
                    self.accepting_at_ready = True
                return


@pytest.mark.postgres
async def test_daemon_says_ready_once_when_http_accepts_connections(
    receiver: NotifyReceiver, database_url: str
) -> None:
    port = free_port(Transport.TCP)
    probe = ReadyProbe(receiver, port)
    probe.start()
    daemon = Daemon(daemon_config(database_url, port))
    await daemon.start()
    try:
        await asyncio.to_thread(probe.join, 10)
        assert not probe.is_alive(), "no READY=1 within 10 s"
        # READY arrived after the database and the HTTP bind, not from inside start-up.
        assert probe.accepting_at_ready is True
        assert STORE_KEY in daemon.app
        async with aiohttp.ClientSession(daemon.url) as http, http.get("/readyz") as response:
            assert response.status == 200
    finally:
        await daemon.stop()
    datagrams = probe.datagrams + receiver.pending()
    ready = [d for d in datagrams if "READY=1" in d]
    assert ready == [["READY=1", f"STATUS=listening on {daemon.url}"]]
    assert datagrams.index(ready[0]) < datagrams.index(["STOPPING=1"])


@pytest.mark.postgres
async def test_daemon_that_cannot_bind_its_api_port_never_says_ready(
    receiver: NotifyReceiver, database_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        daemon = Daemon(daemon_config(database_url, taken.getsockname()[1]))
        with pytest.raises(OSError):
            await daemon.start()
    # Database, migrations and SIP came up and went down again; systemd heard nothing, so
    # the unit fails on the exit status instead of counting as started.
    assert daemon.app[STORE_KEY].pool.is_closing()
    assert receiver.pending() == []
