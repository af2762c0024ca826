"""Two daemons on one embedded data directory share one PostgreSQL, started once, stopped last."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonProcess, start_daemon, stop_embedded_postgres, write_config

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def request(url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as reply:
        return reply.status, json.loads(reply.read())


def test_two_daemons_share_the_embedded_server(
    tmp_path: Path, pg_tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    data_dir = pg_tmp_path / "pgdata"
    try:
        first = start_daemon(write_config(tmp_path / "a.toml", data_dir=data_dir))
        second = start_daemon(write_config(tmp_path / "b.toml", data_dir=data_dir))
        daemons.extend([first, second])
        url_a = first.wait_ready()
        url_b = second.wait_ready()
        postmaster_pid = (data_dir / "postmaster.pid").read_text().splitlines()[0]

        status, lead = request(f"{url_a}/v1/leads", first.token, {"phone": "+14155552671"})
        assert status == 202
        status, seen = request(f"{url_b}/v1/leads/{lead['id']}", second.token)
        assert status == 200 and seen["id"] == lead["id"]

        # The first daemon leaves: the server stays up for the second one.
        assert first.terminate() == 0
        assert (data_dir / "postmaster.pid").read_text().splitlines()[0] == postmaster_pid
        status, seen = request(f"{url_b}/v1/leads/{lead['id']}", second.token)
        assert status == 200

        # The last one leaves: the server stops.
        assert second.terminate() == 0
        assert not (data_dir / "postmaster.pid").exists()
    finally:
        for daemon in daemons:
            daemon.kill()
        stop_embedded_postgres(data_dir)
