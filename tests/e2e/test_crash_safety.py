"""A lead that got 202 survives SIGKILL of the daemon; a restart on the same data dir has it.

The daemon runs as a subprocess on its own embedded PostgreSQL (the default deployment). Leads
are posted by concurrent clients and the daemon is SIGKILLed while requests are still in
flight, right after a batch of 202s; a new daemon on the same data directory must serve every
lead that was acknowledged, each with its ``received`` event.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import DaemonProcess, start_daemon, stop_embedded_postgres, write_config

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

KILL_AFTER_ACKS = 60
CLIENTS = 8


async def post_until_killed(daemon: DaemonProcess) -> list[str]:
    """Post leads from several clients; SIGKILL the daemon after KILL_AFTER_ACKS 202s."""
    acknowledged: list[str] = []
    killed = asyncio.Event()
    headers = {"Authorization": f"Bearer {daemon.token}"}

    async def client(http: aiohttp.ClientSession, client_id: int) -> None:
        for n in range(1000):  # bounded: the kill comes long before
            if killed.is_set():
                return
            body = {"phone": "+14155552671", "source": "crash", "external_id": f"{client_id}-{n}"}
            try:
                async with http.post("/v1/leads", json=body, headers=headers) as response:
                    if response.status == 202:
                        acknowledged.append((await response.json())["id"])
            except (TimeoutError, aiohttp.ClientError):
                return  # the daemon is gone mid-request: that lead was never acknowledged
            if len(acknowledged) >= KILL_AFTER_ACKS and not killed.is_set():
                daemon.process.kill()  # SIGKILL: no shutdown code runs at all
                killed.set()

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(daemon.base_url, timeout=timeout) as http:
        await asyncio.gather(*(client(http, i) for i in range(CLIENTS)))
    return acknowledged


def get_json(url: str, token: str) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        body: dict[str, object] = json.loads(reply.read())
        return body


async def test_every_acknowledged_lead_survives_sigkill(
    tmp_path: Path, pg_tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    data_dir = pg_tmp_path / "pgdata"
    config = write_config(tmp_path / "dialer.toml", data_dir=data_dir)
    try:
        first = start_daemon(config)
        daemons.append(first)
        await asyncio.to_thread(first.wait_ready)
        acknowledged = await post_until_killed(first)
        assert first.process.wait(timeout=10) == -9
        assert len(acknowledged) >= KILL_AFTER_ACKS

        second = start_daemon(config)
        daemons.append(second)
        base_url = await asyncio.to_thread(second.wait_ready)
        for lead_id in acknowledged:
            lead = await asyncio.to_thread(get_json, f"{base_url}/v1/leads/{lead_id}", second.token)
            assert lead["id"] == lead_id
            timeline = lead["timeline"]
            assert isinstance(timeline, list) and timeline[0]["kind"] == "received"

        # Graceful stop: exit 0, and the embedded server is released even though the killed
        # daemon never unregistered from it.
        assert second.terminate() == 0
        assert not (data_dir / "postmaster.pid").exists()
    finally:
        for daemon in daemons:
            daemon.kill()
        stop_embedded_postgres(data_dir)
