"""dialer.store.embedded: start/attach/stop of pgserver, handle counting, dead-pid pruning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from dialer.store.embedded import DATABASE_NAME, EmbeddedPostgres, _prune_dead_handles
from tests.conftest import stop_embedded_postgres


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_prune_dead_handles_keeps_live_pids(tmp_path: Path) -> None:
    gone = dead_pid()
    (tmp_path / ".handle_pids.json").write_text(json.dumps([gone, os.getpid()]))
    assert _prune_dead_handles(tmp_path) == [gone]
    assert json.loads((tmp_path / ".handle_pids.json").read_text()) == [os.getpid()]
    assert _prune_dead_handles(tmp_path) == []
    assert _prune_dead_handles(tmp_path / "missing") == []


async def test_handles_share_one_server_until_the_last_stops(pg_tmp_path: Path) -> None:
    data_dir = pg_tmp_path / "nested" / "pgdata"  # parents are created
    first, second = EmbeddedPostgres(data_dir), EmbeddedPostgres(data_dir)
    try:
        dsn = await first.start()
        assert f"/{DATABASE_NAME}?" in dsn
        # A handle left behind by a SIGKILLed process must not keep the server alive.
        handles = data_dir / ".handle_pids.json"
        handles.write_text(json.dumps([*json.loads(handles.read_text()), dead_pid()]))
        assert await second.start() == dsn
        assert json.loads(handles.read_text()) == [os.getpid()]

        await first.stop()
        conn = await asyncpg.connect(dsn)  # still served for the second handle
        assert await conn.fetchval("SELECT current_database()") == DATABASE_NAME
        await conn.close()

        await second.stop()
        assert not (data_dir / "postmaster.pid").exists()

        # Restart after a full stop works and keeps the data.
        again = EmbeddedPostgres(data_dir)
        assert await again.start() == dsn
        await again.stop()
    finally:
        stop_embedded_postgres(data_dir)
