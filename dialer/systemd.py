"""A tiny ``sd_notify(3)`` client: tell systemd when the daemon is ready, alive and stopping.

The protocol is one datagram per notification, newline-separated ``KEY=VALUE`` assignments,
sent to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract-namespace
name written with a leading ``@``). systemd sets that variable for ``Type=notify`` units; when it
is unset (a terminal, a container, the tests) every call here is a no-op returning ``False``.

Sending never blocks and a failed send never raises into the daemon: the socket is non-blocking,
and an ``OSError`` is logged once, then the notification is dropped. A lost ``WATCHDOG=1`` is
made up by the next ping; a lost ``READY=1`` shows up as a start time-out in ``systemctl
status``, which is where one looks.

- :func:`systemd_ctx` is the ``cleanup_ctx`` the composition root appends **last**: watchdog
  pings while running, STOPPING when shutdown begins. It does not say READY: aiohttp runs the
  contexts inside ``AppRunner.setup()``, before ``TCPSite.start()`` binds the HTTP port, and
  systemd acts on the first READY it hears. The composition root calls :func:`notify_started`
  once the site is bound (database, SIP and HTTP all up), and that is the one READY of a run.
- :func:`notify_ready`, :func:`notify_reloading`, :func:`notify_stopping`,
  :func:`notify_status` are one-shot helpers for code that has news for ``systemctl status``.
- :func:`watchdog_interval` and :func:`watchdog` implement ``WatchdogSec=``: ping at half the
  interval systemd asks for, only when ``$WATCHDOG_PID`` (if set) is this process. The pings
  come from the event loop itself, so a loop stuck in blocking code stops them and systemd
  restarts the daemon: exactly what the watchdog is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Final

from aiohttp import web

from dialer.logs import get_logger

__all__ = [
    "NOTIFY_SOCKET_ENV",
    "SERVICE_KEY",
    "WATCHDOG_PID_ENV",
    "WATCHDOG_USEC_ENV",
    "Notifier",
    "ServiceLink",
    "notify_ready",
    "notify_reloading",
    "notify_started",
    "notify_status",
    "notify_stopping",
    "notify_watchdog",
    "systemd_ctx",
    "watchdog",
    "watchdog_interval",
]

#: Where systemd listens for notifications (set for ``Type=notify`` services).
NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
#: The watchdog period in microseconds (``WatchdogSec=``), set only when the watchdog is on.
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
#: The PID the watchdog settings are meant for; children that inherit them must not ping.
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"

#: Pings per watchdog period: sd_watchdog_enabled(3) recommends half the period.
_PINGS_PER_PERIOD: Final = 2

_log = get_logger("dialer.systemd")


def _socket_address(value: str) -> bytes | None:
    """``$NOTIFY_SOCKET`` as a ``sendto`` address; None for what sd_notify(3) also refuses."""
    if value.startswith("@"):
        # Linux abstract namespace: the name starts with a NUL byte instead of '@'.
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None  # relative paths and vsock: addresses are not supported


def _one_line(text: str) -> str:
    """A value that cannot smuggle another ``KEY=VALUE`` line into the datagram."""
    return " ".join(text.split())


class Notifier:
    """One ``$NOTIFY_SOCKET`` destination; :meth:`send` is a non-blocking, never-raising send.

    Keeps one datagram socket open for its lifetime (the watchdog sends every few seconds);
    :meth:`close` releases it. A disabled notifier (no socket) accepts every call and sends
    nothing.
    """

    def __init__(self, address: bytes | None) -> None:
        self._address = address
        self._socket: socket.socket | None = None
        self._failure_logged = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The notifier ``$NOTIFY_SOCKET`` describes (disabled when unset, empty or unusable)."""
        env = os.environ if env is None else env
        value = env.get(NOTIFY_SOCKET_ENV, "")
        if not value:
            return cls(None)
        address = _socket_address(value)
        if address is None:
            _log.warning("unsupported NOTIFY_SOCKET address, notifications disabled", value=value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True when the kernel accepted it."""
        if self._address is None or not assignments:
            return False
        for assignment in assignments:
            if "=" not in assignment or "\n" in assignment:
                raise ValueError(f"not a single KEY=VALUE assignment: {assignment!r}")
        payload = "\n".join(assignments).encode("utf-8")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(payload, self._address)
        except OSError as exc:
            # Full receive queue (BlockingIOError), systemd gone or restarting: the next
            # notification may get through; logging each failure would flood the journal.
            if not self._failure_logged:
                self._failure_logged = True
                _log.warning("systemd notification failed", error=str(exc), sent=assignments[0])
            return False
        return True

    def close(self) -> None:
        """Close the socket (a later :meth:`send` opens a new one)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _notify_once(*assignments: str) -> bool:
    with Notifier.from_env() as notifier:
        return notifier.send(*assignments)


def _with_status(first: str, status: str | None) -> tuple[str, ...]:
    return (first,) if status is None else (first, f"STATUS={_one_line(status)}")


def notify_ready(status: str | None = None) -> bool:
    """``READY=1``: start-up finished (systemd ends ``activating`` and starts the watchdog)."""
    return _notify_once(*_with_status("READY=1", status))


def notify_reloading(status: str | None = None) -> bool:
    """``RELOADING=1`` with the monotonic timestamp systemd 253+ asks for; follow with READY."""
    monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return _notify_once(*_with_status("RELOADING=1", status), f"MONOTONIC_USEC={monotonic_usec}")


def notify_stopping(status: str | None = None) -> bool:
    """``STOPPING=1``: shutdown has begun (``systemctl status`` shows ``deactivating``)."""
    return _notify_once(*_with_status("STOPPING=1", status))


def notify_status(text: str) -> bool:
    """``STATUS=text``: the one-line status ``systemctl status`` shows (newlines flattened)."""
    return _notify_once(f"STATUS={_one_line(text)}")


def notify_watchdog() -> bool:
    """One ``WATCHDOG=1`` keep-alive ping (:func:`watchdog` sends them periodically)."""
    return _notify_once("WATCHDOG=1")


def watchdog_interval(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between pings (half of ``$WATCHDOG_USEC``), or None when the watchdog is off.

    Off when the variable is unset or not a positive integer, or when ``$WATCHDOG_PID`` is set
    to another process (a child that inherited the environment).
    """
    env = os.environ if env is None else env
    pid = os.getpid() if pid is None else pid
    try:
        usec = int(env.get(WATCHDOG_USEC_ENV, ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdog_pid = env.get(WATCHDOG_PID_ENV, "")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != pid:
                return None
        except ValueError:
            return None
    return usec / 1_000_000 / _PINGS_PER_PERIOD


async def watchdog(notifier: Notifier, interval: float) -> None:
    """Send ``WATCHDOG=1`` now and every ``interval`` seconds until cancelled."""
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive; got {interval!r}")
    while True:
        notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval)


class ServiceLink:
    """One run of the daemon as systemd sees it: READY at most once, then STOPPING.

    :func:`systemd_ctx` publishes it under :data:`SERVICE_KEY`; :func:`notify_started` sends
    its READY once the HTTP site is bound.
    """

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._ready = False

    @property
    def is_ready(self) -> bool:
        """True once :meth:`ready` has run (whether or not the datagram got through)."""
        return self._ready

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` the first time; later calls send nothing and return False.

        Once: systemd ends ``activating`` on the first READY it hears, so that one must mean
        "everything is up"; later READYs belong to reloads, after their ``RELOADING=1``
        (:mod:`dialer.reload`).
        """
        if self._ready:
            return False
        self._ready = True
        return self._notifier.send(*_with_status("READY=1", status))


#: The running app's :class:`ServiceLink` (set by :func:`systemd_ctx`).
SERVICE_KEY = web.AppKey("systemd_service", ServiceLink)


def notify_started(app: web.Application, status: str | None = None) -> bool:
    """``READY=1`` for ``app``, to be called once start-up is complete (HTTP site bound).

    Goes through the app's :func:`systemd_ctx` link, so READY is sent once per run however
    often this is called; an app without that context gets a plain :func:`notify_ready`.
    """
    link = app.get(SERVICE_KEY)
    sent = notify_ready(status) if link is None else link.ready(status)
    if sent:
        _log.info("systemd notified: ready", status=status)
    return sent


async def systemd_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: watchdog pings while running; STOPPING on shutdown after READY.

    Append it **last**: on shutdown it runs first, so STOPPING is sent before anything is torn
    down. READY is :func:`notify_started`'s job (module docstring). A start-up that fails before
    READY (the HTTP port taken, say) sends no STOPPING either: the exit status tells systemd.
    The pings start here, a moment before READY (only the HTTP bind lies between): they come
    from the event loop, which is already the one that will serve the daemon.
    Without ``$NOTIFY_SOCKET`` the link is disabled and nothing is sent.
    """
    notifier = Notifier.from_env()
    link = ServiceLink(notifier)
    app[SERVICE_KEY] = link
    if not notifier.enabled:
        yield
        return
    interval = watchdog_interval()
    pinger: asyncio.Task[None] | None = None
    try:
        if interval is not None:
            _log.info("systemd watchdog on", interval_s=interval)
            pinger = asyncio.create_task(watchdog(notifier, interval), name="systemd-watchdog")
        yield
    finally:
        if link.is_ready:
            notifier.send("STOPPING=1", "STATUS=stopping")
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        notifier.close()
