"""An embedded PostgreSQL server in a data directory, via ``pgserver``.

``pgserver`` runs a real PostgreSQL (16) from its wheel, listening on a Unix socket inside the
data directory only (no TCP port). Its calls block (``initdb``, ``pg_ctl -w start``), so this
module runs them in a worker thread.

Sharing: several processes may point at the same data directory. ``pgserver`` serialises
start/stop with an inter-process lock file and keeps the pids of the processes using the
server in ``<data_dir>/.handle_pids.json``; the first user starts the server, the others
attach, and only the last one to leave stops it. A process killed with SIGKILL never removes
its pid, which would keep the server running forever; so, under that same lock, this module
drops the pids of processes that no longer exist before attaching (after a crash the restarted
daemon re-attaches to the still-running server and becomes its owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar

import asyncpg

__all__ = ["DATABASE_NAME", "EmbeddedPostgres", "EmbeddedPostgresError"]

#: The database the daemon uses inside the embedded server.
DATABASE_NAME = "dialer"

_HANDLE_FILE = ".handle_pids.json"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started."""


def _import_pgserver() -> Any:
    # platformdirs warns on import when XDG_RUNTIME_DIR is unset (containers, CI): noise only.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _prune_dead_handles(data_dir: Path) -> list[int]:
    """Remove pids of dead processes from pgserver's handle list; returns the removed pids."""
    path = data_dir / _HANDLE_FILE
    if not path.exists():
        return []
    try:
        pids = [int(pid) for pid in json.loads(path.read_text())]
    except (ValueError, TypeError):
        pids = []
    dead = [pid for pid in pids if not _pid_alive(pid)]
    if dead:
        path.write_text(json.dumps([pid for pid in pids if pid not in dead]))
    return dead


class EmbeddedPostgres:
    """One handle on the embedded server of ``data_dir``.

    Handles in one process are counted here (pgserver counts processes, not handles): the
    server is released when the last handle of the last process stops.
    """

    #: Started handles per data directory, in this process.
    _handles: ClassVar[dict[Path, int]] = {}
    _handles_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._server: Any = None
        self._admin_dsn: str | None = None

    @property
    def dsn(self) -> str:
        """Connection URL of the daemon's database (after :meth:`start`)."""
        if self._admin_dsn is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not started")
        return self._admin_dsn.replace("/postgres?", f"/{DATABASE_NAME}?", 1)

    @property
    def admin_dsn(self) -> str:
        """Connection URL of the server's ``postgres`` database (after :meth:`start`)."""
        if self._admin_dsn is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not started")
        return self._admin_dsn

    def start_blocking(self) -> str:
        """Start or attach to the server (blocking); returns the admin DSN."""
        if self._server is not None:
            raise EmbeddedPostgresError("embedded PostgreSQL handle already started")
        pgserver = _import_pgserver()
        # The data directory itself, not only its parent: pgserver.get_server creates a missing
        # one with mkdir(exist_ok=False) before taking its inter-process lock, so two daemons
        # starting together on a new directory raced there and one failed with FileExistsError.
        # initdb (under that lock) accepts an existing empty directory.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._handles_lock:
            with pgserver.PostgresServer._lock:
                _prune_dead_handles(self.data_dir)
                if not self._handles.get(self.data_dir):
                    # pgserver caches a server object per data dir even after this process
                    # detached from it (while another process kept it running); that stale
                    # object would not re-register our pid. Start from a fresh one.
                    pgserver.PostgresServer._instances.pop(self.data_dir, None)
            try:
                server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
            except Exception as exc:  # pgserver raises bare subprocess/assertion errors
                log = self.data_dir / "log"
                raise EmbeddedPostgresError(
                    f"cannot start embedded PostgreSQL in {self.data_dir}: {exc!r} (see {log})"
                ) from exc
            self._handles[self.data_dir] = self._handles.get(self.data_dir, 0) + 1
        self._server = server
        self._admin_dsn = str(server.get_uri())
        return self._admin_dsn

    def stop_blocking(self) -> None:
        """Detach; stops the server when this is the last process using it (blocking)."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._handles_lock:
            remaining = self._handles.get(self.data_dir, 1) - 1
            if remaining > 0:
                self._handles[self.data_dir] = remaining
                return
            self._handles.pop(self.data_dir, None)
            server.cleanup()

    async def start(self) -> str:
        """Start or attach to the server and ensure the daemon's database exists.

        Returns the DSN of that database.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.start_blocking)
        await self._ensure_database()
        return self.dsn

    async def stop(self) -> None:
        """Detach (stopping the server if this was its last user)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.stop_blocking)

    async def _ensure_database(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME
            )
            if not exists:
                # Another process sharing the data dir may create it first.
                with contextlib.suppress(
                    asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError
                ):
                    await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            await conn.close()
