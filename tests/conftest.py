"""Shared fixtures: one PostgreSQL per session, a fresh database per test, daemon subprocesses.

Database: ``DIALER_DATABASE_URL`` when set (a server where the user may CREATE DATABASE),
otherwise one embedded ``pgserver`` PostgreSQL in a temporary directory for the whole session.
A template database is migrated once; each test gets its own copy (``CREATE DATABASE ...
TEMPLATE``, a file copy taking tens of milliseconds), dropped afterwards, so tests never see
each other's rows.

Daemons: :func:`start_daemon` runs ``python -m dialer.cli run`` on a temp config, listening on
a free port (port 0, read back from the daemon's JSON log), and the ``daemons`` fixture kills
whatever a test left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dialer.store import Store
from dialer.store.embedded import EmbeddedPostgres
from dialer.store.migrate import apply_migrations
from dialer.store.pool import create_pool

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOKEN = "test-token-0123456789"


# --------------------------------------------------------------------------- database


def database_dsn(server_dsn: str, database: str) -> str:
    """``server_dsn`` pointing at ``database`` instead (works for socket and TCP URLs)."""
    parts = urlsplit(server_dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def _execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_data_root() -> Iterator[Path]:
    """A temporary directory for embedded PostgreSQL data, removed afterwards.

    Not under pytest's ``tmp_path``: as root, pgserver runs PostgreSQL as a ``pgserver`` system
    user, and every pytest session that starts (another suite running in parallel) resets
    ``/tmp/pytest-of-<user>`` to mode 0700, locking that user out of its own data directory.
    """
    path = Path(tempfile.mkdtemp(prefix="dialer-pg-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_tmp_path() -> Iterator[Path]:
    """Like ``tmp_path``, for embedded PostgreSQL data directories (see postgres_data_root)."""
    with postgres_data_root() as path:
        yield path


@pytest.fixture(scope="session")
def postgres_server_dsn() -> Iterator[str]:
    """DSN of a server where tests may create databases (its maintenance database)."""
    url = os.environ.get("DIALER_DATABASE_URL")
    if url:
        yield url
        return
    with postgres_data_root() as root:
        yield from _embedded_server_dsn(root / "data")


def _embedded_server_dsn(data_dir: Path) -> Iterator[str]:
    server = EmbeddedPostgres(data_dir)
    dsn = server.start_blocking()
    # A throwaway cluster: durability across OS crashes buys nothing here, speed does.
    asyncio.run(
        _execute(
            dsn,
            "ALTER SYSTEM SET fsync = off",
            "ALTER SYSTEM SET synchronous_commit = off",
            "ALTER SYSTEM SET full_page_writes = off",
            "SELECT pg_reload_conf()",
        )
    )
    try:
        yield dsn
    finally:
        server.stop_blocking()


@pytest.fixture(scope="session")
def template_database(postgres_server_dsn: str) -> Iterator[str]:
    """Name of a database with every migration applied, copied by :func:`database_url`."""
    name = f"dialer_template_{os.getpid()}"

    async def create() -> None:
        await _execute(postgres_server_dsn, f'DROP DATABASE IF EXISTS "{name}"')
        await _execute(postgres_server_dsn, f'CREATE DATABASE "{name}"')
        conn = await asyncpg.connect(database_dsn(postgres_server_dsn, name))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(_execute(postgres_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def empty_database_url(postgres_server_dsn: str) -> Iterator[str]:
    """A brand-new database without any migration (for migration tests)."""
    name = f"dialer_empty_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(postgres_server_dsn, f'CREATE DATABASE "{name}"'))
    yield database_dsn(postgres_server_dsn, name)
    asyncio.run(_execute(postgres_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(postgres_server_dsn: str, template_database: str) -> Iterator[str]:
    """A fresh, fully migrated database of this test alone."""
    name = f"dialer_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _execute(postgres_server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    )
    yield database_dsn(postgres_server_dsn, name)
    asyncio.run(_execute(postgres_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool (with the daemon's codecs) on this test's database."""
    pool = await create_pool(database_url, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def store(db_pool: asyncpg.Pool) -> Store:
    """The daemon's :class:`Store` on this test's database."""
    return Store(db_pool)


# --------------------------------------------------------------------------- daemons


def write_config(
    path: Path,
    *,
    data_dir: Path | None = None,
    database_url: str | None = None,
    tokens: tuple[str, ...] = (DEFAULT_TOKEN,),
    listen: str = "127.0.0.1:0",
    sip_listen: str | None = "127.0.0.1:0",
    extra: str = "",
) -> Path:
    """Write a daemon config (JSON logs, given database) to ``path``; returns ``path``.

    The SIP endpoint gets a free port unless ``sip_listen`` is None (then ``extra`` may hold
    its own ``[sip]`` table), so several daemons can run side by side.
    """
    lines = [
        "[api]",
        f"listen = {json.dumps(listen)}",
        f"tokens = {json.dumps(list(tokens))}",
        "[database]",
        f"url = {json.dumps(database_url or '')}",
        f"data_dir = {json.dumps(str(data_dir or path.parent / 'pgdata'))}",
        "pool_max = 4",
        "[daemon]",
        "drain_timeout_s = 5",
        "[log]",
        'format = "json"',
        'level = "info"',
    ]
    if sip_listen is not None:
        lines += ["[sip]", f"listen = {json.dumps(sip_listen)}"]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@dataclass
class DaemonProcess:
    """A ``dialer run`` subprocess; stderr (JSON log lines) goes to ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str = ""
    token: str = DEFAULT_TOKEN
    _log_offset: int = field(default=0, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_events(self) -> list[dict[str, object]]:
        """The JSON log lines written so far (non-JSON lines skipped)."""
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait for the ``listening`` log line and ``/readyz`` 200; returns the base URL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"daemon exited with {self.process.returncode}: {self.log_path.read_text()}"
                )
            if not self.base_url:
                for event in self.log_events():
                    if event.get("event") == "listening":
                        self.base_url = str(event["url"])
            if self.base_url:
                try:
                    with urllib.request.urlopen(self.base_url + "/readyz", timeout=2) as reply:
                        if reply.status == 200:
                            return self.base_url
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.05)
        raise TimeoutError(f"daemon not ready in {timeout}s: {self.log_path.read_text()}")

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL (no cleanup at all) and reap."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def start_daemon(config_path: Path, *, log_path: Path | None = None) -> DaemonProcess:
    """Start ``python -m dialer.cli run --config config_path`` (not waiting for readiness)."""
    log_path = log_path or config_path.with_suffix(f".{uuid.uuid4().hex[:6]}.log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DIALER_DATABASE_URL", None)  # the config file says which database to use
    env.pop("DIALER_API_TOKENS", None)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "dialer.cli", "run", "--config", str(config_path)],
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return DaemonProcess(process=process, log_path=log_path)


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop an embedded server a killed daemon left running in ``data_dir`` (immediate mode)."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)
    except (ValueError, IndexError, ProcessLookupError):
        return
    deadline = time.monotonic() + 10
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Append every daemon a test starts; any still running at teardown is killed."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.kill()
