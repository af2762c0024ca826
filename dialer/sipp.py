"""Run SIPp (the SIP traffic generator, Debian package ``sip-tester``) as a child process.

One harness for the tests, the benchmarks and ``dialer demo``: a :class:`SippPeer` says what to
run (scenario, port, transport, call count, rate, bounds), :class:`SippProcess` runs it on
127.0.0.1 and :class:`SippResult` is what SIPp recorded (its statistics CSV, its per-message
counts CSV, its message and error logs), parsed.

Rules that keep a test suite healthy:

* SIPp always stops by itself: every run has ``-timeout`` (a global bound) and, for callers, a
  call limit ``-m``; :meth:`SippProcess.wait` has its own bound on top, after which the process
  is stopped.
* We own the process: no ``-bg`` (which would fork and lose the pid); signals go to our child's
  pid only (SIGUSR1 for SIPp's soft exit, then SIGTERM, then SIGKILL).
* Nothing blocks on a pipe: stdin is ``/dev/null`` with ``-nostdin``; stdout and stderr go to
  files in the run's working directory, where every trace file is written too.
* Ports: the SIP port is chosen free (bound to port 0) unless given; the control port (``-cp``)
  and the media port (``-mp``) are chosen free as well, so several SIPp run side by side.

SIPp 3.6.1 quirks seen here (they shape how results read):

* An INVITE retransmission that reaches SIPp after it has answered (100/180/200 sent) is not
  recognised as a retransmission: the call fails as "unexpected message". On loopback our UAC
  retransmits an INVITE only when a 100 Trying took longer than T1 (500 ms) to be handled, so
  such failures mean a stall of the UAC (or of SIPp), not a protocol error.
* Once (one run in several hundred, on a loaded machine) a call stayed for good in a
  zero-length ``<pause/>``; ``uas_busy`` therefore has no pause, and tests give the other
  scenarios' pause a few milliseconds (``pause_ms``).

Exit codes (``sipp -h``): 0 all calls succeeded, 1 at least one failed, 97 exit on internal
command, 99 normal exit without calls processed, 255 (-1) fatal error, 254 (-2) cannot bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import enum
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = [
    "DEFAULT_KEYS",
    "SCENARIOS_DIR",
    "SippError",
    "SippNotInstalledError",
    "SippPeer",
    "SippProcess",
    "SippResult",
    "SippTimeoutError",
    "Transport",
    "find_sipp",
    "free_port",
    "scenario_path",
]

#: The scenarios shipped with the package (used by the demo, end-to-end tests and benchmarks).
SCENARIOS_DIR = Path(__file__).with_name("scenarios")

#: Keywords (``-key``) some packaged scenarios need, with the values used unless a peer sets them.
DEFAULT_KEYS: Mapping[str, Mapping[str, str]] = {
    "uas_auth": {"auth_user": "dialer", "auth_password": "secret", "auth_realm": "sipp.test"},
}

#: Built-in scenarios of SIPp itself (``-sn``).
BUILTIN_SCENARIOS = frozenset({"uac", "uas", "regexp", "branchc", "branchs"})

_LOOPBACK = "127.0.0.1"
#: How long SIPp gets to finish its calls after SIGUSR1, then after SIGTERM, before SIGKILL.
_SOFT_STOP_S = 2.0
_TERM_STOP_S = 2.0
#: How long :meth:`SippProcess.start` waits for SIPp to bind its SIP port.
_READY_TIMEOUT_S = 5.0
_READY_POLL_S = 0.01
#: How many characters of stderr an error message quotes.
_STDERR_TAIL = 2000


class SippError(RuntimeError):
    """SIPp could not be run, or did not behave (the message quotes its stderr)."""


class SippNotInstalledError(SippError):
    """The ``sipp`` binary is not on PATH."""


class SippTimeoutError(SippError):
    """SIPp did not exit in time; it has been stopped and ``result`` is what it recorded."""

    def __init__(self, message: str, result: SippResult) -> None:
        super().__init__(message)
        self.result = result


class Transport(enum.StrEnum):
    """SIPp's ``-t`` modes we use: one socket for every call."""

    #: UDP, one socket.
    UDP = "u1"
    #: TCP, one connection.
    TCP = "t1"

    @classmethod
    def parse(cls, name: str) -> Transport:
        """``"udp"``/``"tcp"`` (any case) or the SIPp mode itself (``"u1"``/``"t1"``)."""
        lowered = name.lower()
        if lowered in ("udp", "u1"):
            return cls.UDP
        if lowered in ("tcp", "t1"):
            return cls.TCP
        raise ValueError(f"unsupported SIPp transport {name!r} (udp or tcp)")

    @property
    def socket_type(self) -> socket.SocketKind:
        """The socket type SIPp listens with."""
        return socket.SOCK_DGRAM if self is Transport.UDP else socket.SOCK_STREAM


def find_sipp() -> str:
    """The path of the ``sipp`` binary; raise :class:`SippNotInstalledError` when missing."""
    path = shutil.which("sipp")
    if path is None:
        raise SippNotInstalledError(
            "sipp not found on PATH: install the Debian/Ubuntu package 'sip-tester' "
            "(apt-get install sip-tester) or run scripts/install-system-deps.sh"
        )
    return path


def scenario_path(name: str) -> Path:
    """Path of a packaged scenario by name (``"uas_answer"`` or ``"uas_answer.xml"``)."""
    path = SCENARIOS_DIR / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.is_file():
        known = sorted(p.stem for p in SCENARIOS_DIR.glob("*.xml"))
        raise FileNotFoundError(f"no packaged SIPp scenario {name!r}; known: {known}")
    return path


def free_port(transport: Transport = Transport.UDP, host: str = _LOOPBACK) -> int:
    """A port that is free for both UDP and TCP on ``host`` right now (bind to 0, then check
    the other protocol). Another process may still take it before SIPp does; the window is
    small and :meth:`SippProcess.start` reports a bind failure clearly."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, transport.socket_type) as first:
            first.bind((host, 0))
            port: int = first.getsockname()[1]
            other = socket.SOCK_STREAM if transport is Transport.UDP else socket.SOCK_DGRAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind((host, port))
                except OSError:
                    continue
        return port
    raise SippError("could not find a port free for both UDP and TCP")


@dataclass(frozen=True, slots=True)
class SippPeer:
    """What to run. Every field has a default that suits a small functional test.

    ``scenario`` is a packaged scenario name (see :data:`SCENARIOS_DIR`), a path to an XML
    file, or a SIPp built-in (``"uac"``, ``"uas"``). ``remote`` makes SIPp a caller towards
    ``(host, port)``; without it SIPp only answers.
    """

    scenario: str | Path = "uas"
    remote: tuple[str, int] | None = None
    local_port: int | None = None
    transport: Transport = Transport.UDP
    #: ``-m``: exit after this many calls (None: no limit, then ``timeout_s`` ends the run).
    calls: int | None = 1
    #: ``-r`` calls per ``rate_period_ms`` (callers only).
    rate: float | None = None
    rate_period_ms: int | None = None
    #: ``-l``: most simultaneous calls.
    max_concurrent: int | None = None
    #: ``-d``: length of every ``<pause/>`` without its own duration (answer delay, hold time);
    #: None leaves SIPp's default (0 ms).
    pause_ms: int | None = None
    #: ``-timeout``: SIPp exits after this many seconds whatever happens.
    timeout_s: float = 30.0
    #: ``-recv_timeout``: a call waiting longer than this for a message fails (ms).
    recv_timeout_ms: int | None = None
    #: ``-buff_size``: socket buffers in bytes (4194304 above ~2,000 calls/s).
    buff_size: int | None = None
    #: ``-key name value``: keywords used as ``[name]`` in the scenario.
    keys: Mapping[str, str] = field(default_factory=dict)
    #: ``-set name value``: global variables of the scenario.
    variables: Mapping[str, str] = field(default_factory=dict)
    #: ``-s``: user part of the Request-URI the caller sends to.
    service: str | None = None
    #: ``-au`` / ``-ap``: credentials for ``[authentication]`` in caller scenarios.
    auth_username: str | None = None
    auth_password: str | None = None
    #: ``-trace_msg``: log every message (turn off for load runs: it costs SIPp CPU and disk).
    trace_messages: bool = True
    #: ``-fd``: how often (s) a statistics row is written.
    stat_period_s: int = 1
    #: Pin SIPp to these CPUs with ``taskset -c`` (benchmarks).
    cpus: str | None = None
    #: Working directory for the trace files (a fresh temporary one when None).
    workdir: Path | None = None
    #: Anything else, appended verbatim.
    extra_args: Sequence[str] = ()

    def scenario_args(self) -> list[str]:
        """``-sn name`` for a built-in, else ``-sf path``."""
        if isinstance(self.scenario, str) and self.scenario in BUILTIN_SCENARIOS:
            return ["-sn", self.scenario]
        path = Path(self.scenario)
        if not path.suffix and not path.is_absolute():
            path = scenario_path(str(self.scenario))
        if not path.is_file():
            raise FileNotFoundError(f"SIPp scenario {path} does not exist")
        return ["-sf", str(path)]


def _row_int(row: Mapping[str, str], name: str) -> int:
    value = row.get(name, "").strip()
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class MessageCount:
    """One line of a scenario as ``-trace_counts`` counted it."""

    index: int
    name: str
    #: "Sent", "Recv", or "Pause" / other scenario element kinds.
    kind: str
    count: int
    retransmissions: int
    timeouts: int
    unexpected: int


@dataclass(frozen=True, slots=True)
class SippResult:
    """What one SIPp run recorded."""

    #: SIPp's exit code, or minus the signal number when a signal ended it (SIGKILL: -9).
    exit_code: int
    workdir: Path
    #: Last row of the ``-trace_stat`` CSV (empty when SIPp wrote none).
    stats: Mapping[str, str]
    #: Per scenario line, from the ``-trace_counts`` CSV.
    counts: tuple[MessageCount, ...]
    message_log: Path | None
    error_log: Path | None
    stdout_path: Path
    stderr_path: Path

    @property
    def successful_calls(self) -> int:
        """Calls that reached the end of the scenario."""
        return _row_int(self.stats, "SuccessfulCall(C)")

    @property
    def failed_calls(self) -> int:
        """Calls that failed, for any reason."""
        return _row_int(self.stats, "FailedCall(C)")

    @property
    def created_calls(self) -> int:
        """Calls SIPp created (outgoing or incoming)."""
        return _row_int(self.stats, "TotalCallCreated")

    @property
    def failed_unexpected_message(self) -> int:
        """Calls failed because a message came that the scenario did not expect."""
        return _row_int(self.stats, "FailedUnexpectedMessage(C)")

    @property
    def failed_timeouts(self) -> int:
        """Calls failed on a receive timeout or after the last UDP retransmission."""
        return _row_int(self.stats, "FailedTimeoutOnRecv(C)") + _row_int(
            self.stats, "FailedMaxUDPRetrans(C)"
        )

    @property
    def retransmissions(self) -> int:
        """Messages SIPp retransmitted (the ``Retransmissions(C)`` statistic)."""
        return _row_int(self.stats, "Retransmissions(C)")

    @property
    def retransmissions_received(self) -> int:
        """Retransmissions the peer sent and SIPp recognised, over every scenario line."""
        return sum(c.retransmissions for c in self.counts if c.kind == "Recv")

    @property
    def retransmissions_sent(self) -> int:
        """Retransmissions SIPp sent, over every scenario line."""
        return sum(c.retransmissions for c in self.counts if c.kind == "Sent")

    @property
    def unexpected_messages(self) -> int:
        """Messages received where the scenario expected something else."""
        return sum(c.unexpected for c in self.counts)

    @property
    def out_of_call_messages(self) -> int:
        """Messages that matched no call."""
        return _row_int(self.stats, "OutOfCallMsgs(C)")

    @property
    def dead_call_messages(self) -> int:
        """Messages for calls that had already ended."""
        return _row_int(self.stats, "DeadCallMsgs(C)")

    @property
    def clean(self) -> bool:
        """Exit code 0 and no failure, retransmission or stray message of any kind."""
        return (
            self.exit_code == 0
            and self.failed_calls == 0
            and self.unexpected_messages == 0
            and self.retransmissions_sent == 0
            and self.retransmissions_received == 0
            and self.out_of_call_messages == 0
            and self.dead_call_messages == 0
        )

    def messages(self) -> str:
        """The whole ``-trace_msg`` log ("" when tracing was off)."""
        if self.message_log is None or not self.message_log.is_file():
            return ""
        return self.message_log.read_text(errors="replace")

    def errors(self) -> str:
        """The ``-trace_err`` log: unexpected messages and their reason ("" when none)."""
        if self.error_log is None or not self.error_log.is_file():
            return ""
        return self.error_log.read_text(errors="replace")

    def stderr(self) -> str:
        """What SIPp wrote on stderr."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.is_file() else ""

    def summary(self) -> str:
        """One line for assertion messages and logs."""
        return (
            f"exit={self.exit_code} ok={self.successful_calls} failed={self.failed_calls} "
            f"unexpected={self.unexpected_messages} retrans_sent={self.retransmissions_sent} "
            f"retrans_recv={self.retransmissions_received} ooc={self.out_of_call_messages} "
            f"dead={self.dead_call_messages} workdir={self.workdir}"
        )


def _read_last_stat_row(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="", errors="replace") as stream:
        rows = list(csv.reader(stream, delimiter=";"))
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


def _read_counts(path: Path | None) -> tuple[MessageCount, ...]:
    if path is None or not path.is_file():
        return ()
    with path.open(newline="", errors="replace") as stream:
        rows = list(csv.reader(stream, delimiter=";"))
    if len(rows) < 2:
        return ()
    row = dict(zip(rows[0], rows[-1], strict=False))
    # Columns are "<index>_<name>_<Counter>", e.g. "0_INVITE_Sent", "3_ACK_Unexp".
    lines: dict[tuple[int, str], dict[str, int]] = {}
    for column, value in row.items():
        index_text, _, rest = column.partition("_")
        name, _, counter = rest.rpartition("_")
        if not index_text.isdigit() or not name:
            continue
        try:
            number = int(value)
        except ValueError:
            number = 0
        lines.setdefault((int(index_text), name), {})[counter] = number
    result: list[MessageCount] = []
    for (index, name), counters in sorted(lines.items()):
        if "Sent" in counters:
            kind, count = "Sent", counters["Sent"]
        elif "Recv" in counters:
            kind, count = "Recv", counters["Recv"]
        else:
            kind, count = name, counters.get("Sessions", 0)
        result.append(
            MessageCount(
                index=index,
                name=name,
                kind=kind,
                count=count,
                retransmissions=counters.get("Retrans", 0),
                timeouts=counters.get("Timeout", 0),
                unexpected=counters.get("Unexp", 0),
            )
        )
    return tuple(result)


def _port_is_bound(port: int, transport: Transport, pid: int) -> bool:
    """Whether ``pid`` has a socket bound to ``port`` (listening, for TCP), from /proc."""
    tables = ("udp", "udp6") if transport is Transport.UDP else ("tcp", "tcp6")
    inodes: set[str] = set()
    for table in tables:
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            listening = transport is Transport.UDP or fields[3] == "0A"
            if local_port == port and listening:
                inodes.add(fields[9])
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


class SippProcess:
    """One running SIPp. Use as ``async with SippProcess(peer) as sipp: ...`` (stops it on
    exit), or call :meth:`start`, :meth:`wait` and :meth:`stop` yourself."""

    def __init__(self, peer: SippPeer) -> None:
        self.peer = peer
        self.local_port = peer.local_port or free_port(peer.transport)
        self._owns_workdir = peer.workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="sipp-")) if peer.workdir is None else peer.workdir
        )
        self._process: asyncio.subprocess.Process | None = None
        self._result: SippResult | None = None
        self._started_at = 0.0

    # -- command line ----------------------------------------------------------------------

    @property
    def stdout_path(self) -> Path:
        """Where SIPp's screen output goes."""
        return self.workdir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        """Where SIPp's errors go."""
        return self.workdir / "stderr.log"

    def command(self) -> list[str]:
        """The full command line (``taskset`` first when ``cpus`` is set)."""
        peer = self.peer
        args: list[str] = []
        if peer.cpus is not None:
            taskset = shutil.which("taskset")
            if taskset is None:
                raise SippError("taskset not found (Debian package util-linux)")
            args += [taskset, "-c", peer.cpus]
        args.append(find_sipp())
        if peer.remote is not None:
            args.append(f"{peer.remote[0]}:{peer.remote[1]}")
        args += peer.scenario_args()
        args += ["-i", _LOOPBACK, "-p", str(self.local_port), "-bind_local"]
        args += ["-t", peer.transport.value]
        args += ["-cp", str(free_port(Transport.UDP))]
        args += ["-mp", str(_free_even_port())]
        args += ["-nostdin", "-timeout", f"{peer.timeout_s:g}s"]
        args += ["-trace_stat", "-stf", str(self.workdir / "stats.csv")]
        args += ["-fd", str(peer.stat_period_s), "-trace_counts"]
        args += ["-trace_err", "-error_file", str(self.workdir / "errors.log")]
        args += ["-trace_screen", "-screen_file", str(self.workdir / "screen.log")]
        if peer.trace_messages:
            args += ["-trace_msg", "-message_file", str(self.workdir / "messages.log")]
        if peer.calls is not None:
            args += ["-m", str(peer.calls)]
        if peer.rate is not None:
            args += ["-r", f"{peer.rate:g}"]
        if peer.rate_period_ms is not None:
            args += ["-rp", f"{peer.rate_period_ms}ms"]
        if peer.max_concurrent is not None:
            args += ["-l", str(peer.max_concurrent)]
        if peer.pause_ms is not None:
            args += ["-d", str(peer.pause_ms)]
        if peer.recv_timeout_ms is not None:
            args += ["-recv_timeout", str(peer.recv_timeout_ms)]
        if peer.buff_size is not None:
            args += ["-buff_size", str(peer.buff_size)]
        if peer.service is not None:
            args += ["-s", peer.service]
        if peer.auth_username is not None:
            args += ["-au", peer.auth_username]
        if peer.auth_password is not None:
            args += ["-ap", peer.auth_password]
        stem = Path(str(peer.scenario)).stem
        for name, value in {**DEFAULT_KEYS.get(stem, {}), **peer.keys}.items():
            args += ["-key", name, value]
        for name, value in peer.variables.items():
            args += ["-set", name, value]
        args += list(peer.extra_args)
        return args

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Our child's pid (None before :meth:`start`)."""
        return self._process.pid if self._process is not None else None

    @property
    def address(self) -> tuple[str, int]:
        """Where SIPp listens: ``("127.0.0.1", local_port)``."""
        return (_LOOPBACK, self.local_port)

    @property
    def running(self) -> bool:
        """Started and not yet exited."""
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start SIPp and wait until it has bound its SIP port (so a caller can send at once).

        Raises :class:`SippError` when SIPp exits first (bad scenario, port taken...).
        """
        if self._process is not None:
            raise SippError("this SippProcess was already started")
        command = self.command()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=self.workdir,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to forward
            )
        self._started_at = time.monotonic()
        deadline = self._started_at + _READY_TIMEOUT_S
        pid = self._process.pid
        while not _port_is_bound(self.local_port, self.peer.transport, pid):
            if self._process.returncode is not None or time.monotonic() > deadline:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._process.wait(), _READY_POLL_S)
                code = self._process.returncode
                if code is None:
                    await self.stop()
                raise SippError(
                    f"SIPp did not bind {self.peer.transport.name} port {self.local_port} "
                    f"(exit code {code}): {self._stderr_tail()}\ncommand: {' '.join(command)}"
                )
            await asyncio.sleep(_READY_POLL_S)

    async def wait(self, timeout: float | None = None) -> SippResult:  # noqa: ASYNC109
        """Wait for SIPp to exit by itself and return what it recorded.

        ``timeout`` defaults to the peer's ``timeout_s`` plus a margin. When it expires SIPp is
        stopped and :class:`SippTimeoutError` (carrying the result) is raised.
        """
        process = self._require_started()
        bound = timeout if timeout is not None else self.peer.timeout_s + 10.0
        try:
            await asyncio.wait_for(process.wait(), bound)
        except TimeoutError:
            result = await self.stop()
            raise SippTimeoutError(
                f"SIPp (pid {process.pid}) still running after {bound:g}s; stopped. "
                f"{result.summary()}",
                result,
            ) from None
        return self._collect()

    async def stop(self) -> SippResult:
        """Stop SIPp if it is still running (SIGUSR1, then SIGTERM, then SIGKILL, each to our
        child's pid only) and return what it recorded."""
        process = self._require_started()
        for sig, grace in (
            (signal.SIGUSR1, _SOFT_STOP_S),
            (signal.SIGTERM, _TERM_STOP_S),
            (signal.SIGKILL, None),
        ):
            if process.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                continue
        return self._collect()

    async def __aenter__(self) -> SippProcess:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.returncode is None:
            await self.stop()

    def cleanup(self) -> None:
        """Remove the working directory when this object created it (keep it to debug)."""
        if self._owns_workdir and not self.running:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------

    def _require_started(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise SippError("SIPp has not been started")
        return self._process

    def _stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-_STDERR_TAIL:].strip()
        except OSError:
            return ""

    def _collect(self) -> SippResult:
        if self._result is not None:
            return self._result
        process = self._require_started()
        code = process.returncode
        assert code is not None
        counts_files = sorted(self.workdir.glob("*_counts.csv"))
        message_log = self.workdir / "messages.log"
        error_log = self.workdir / "errors.log"
        self._result = SippResult(
            exit_code=code,
            workdir=self.workdir,
            stats=_read_last_stat_row(self.workdir / "stats.csv"),
            counts=_read_counts(counts_files[-1] if counts_files else None),
            message_log=message_log if message_log.exists() else None,
            error_log=error_log if error_log.exists() else None,
            stdout_path=self.stdout_path,
            stderr_path=self.stderr_path,
        )
        return self._result


def _free_even_port() -> int:
    # RTP convention: media on an even port, RTCP on the next one; SIPp also binds the two
    # ports after those for video RTP/RTCP, so all four must be free.
    for _ in range(50):
        port = free_port(Transport.UDP)
        if port % 2 or port + 3 > 65535:
            continue
        if all(_udp_port_free(port + offset) for offset in (1, 2, 3)):
            return port
    raise SippError("could not find a free even UDP port for SIPp media")


def _udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((_LOOPBACK, port))
        except OSError:
            return False
    return True
