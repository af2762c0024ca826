"""Issue 8, acceptance 3: SIGKILL of the daemon while a webhook is in flight; after a restart on
the same data directory the notification is delivered, once per idempotency key.

The daemon runs as a subprocess on its own embedded PostgreSQL with a ``[notify]`` webhook to
a receiver on 127.0.0.1 started here. The lead's ``lead.received`` row is written with its
first pipeline step; the receiver holds the first delivery open (it never answers it), the
daemon is killed with that request in flight, the receiver starts answering 200, and a new
daemon delivers the claimed row once the dead daemon's short claim lease (``lease_s``) ran out.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dialer.notify.channels import IDEMPOTENCY_HEADER
from tests.conftest import DaemonProcess, start_daemon, stop_embedded_postgres, write_config
from tests.support.notify import WebhookReceiver, load_webhook_schema, schema_errors

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRET = "whsec-crash-test"
#: One delivery attempt's time-out; the daemon is killed well within it.
ATTEMPT_TIMEOUT_S = 2.0
#: The claim lease: how long a killed daemon's claimed row waits before anyone redelivers it
#: (the shortest the config accepts: the attempt time-out + 3 s).
LEASE_S = ATTEMPT_TIMEOUT_S + 3.0
#: Bound on each wait of this test.
WAIT_S = 30.0


class HoldingReceiver(WebhookReceiver):
    """The first request is held open, never answered (until :meth:`release` at teardown);
    every later one is handled as :class:`WebhookReceiver` does (signature, idempotency)."""

    def __init__(self) -> None:
        super().__init__(secret=SECRET)
        self.first_arrived = asyncio.Event()
        self._release = asyncio.Event()
        self.held_keys: list[str] = []

    def release(self) -> None:
        self._release.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not self.first_arrived.is_set():
            self.first_arrived.set()
            self.held_keys.append(request.headers.get(IDEMPOTENCY_HEADER, ""))
            await request.read()
            # The sender is killed while waiting here; bounded so teardown never hangs.
            async with asyncio.timeout(WAIT_S):
                await self._release.wait()
            return web.Response(status=503, text="released at teardown")
        return await super()._handle(request)


def notify_config(url: str) -> str:
    return f"""
[notify]
lease_s = "{LEASE_S}s"
poll_interval_s = "0.2s"
backoff_base_s = "0.2s"
backoff_max_s = "1s"
drain_timeout_s = "1s"

[[notify.webhooks]]
name = "crm"
url = {json.dumps(url)}
secret = {json.dumps(SECRET)}
events = ["lead.received"]
timeout_s = "{ATTEMPT_TIMEOUT_S}s"
"""


async def post_lead(daemon: DaemonProcess) -> str:
    headers = {"Authorization": f"Bearer {daemon.token}"}
    body = {"phone": "+14155552671", "source": "crash", "external_id": "notify-1"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(daemon.base_url, timeout=timeout) as http,
        http.post("/v1/leads", json=body, headers=headers) as response,
    ):
        assert response.status == 202, await response.text()
        lead_id: str = (await response.json())["id"]
        return lead_id


async def wait_processed(receiver: WebhookReceiver) -> None:
    deadline = time.monotonic() + WAIT_S
    while not receiver.processed and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def test_webhook_in_flight_at_sigkill_is_delivered_after_restart(
    tmp_path: Path, pg_tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    receiver = HoldingReceiver()
    url = await receiver.start()
    data_dir = pg_tmp_path / "pgdata"
    config = write_config(tmp_path / "dialer.toml", data_dir=data_dir, extra=notify_config(url))
    try:
        first = start_daemon(config)
        daemons.append(first)
        await asyncio.to_thread(first.wait_ready)
        lead_id = await post_lead(first)
        async with asyncio.timeout(WAIT_S):
            await receiver.first_arrived.wait()
        first.process.kill()  # SIGKILL with the delivery in flight: no shutdown code runs
        assert await asyncio.to_thread(first.process.wait, 10) == -9
        assert receiver.processed == {}  # the held request was never answered

        second = start_daemon(config)
        daemons.append(second)
        await asyncio.to_thread(second.wait_ready)
        await wait_processed(receiver)

        assert list(receiver.processed) == receiver.held_keys  # the same idempotency key
        (key,) = receiver.processed
        assert key.endswith(":crm")
        payload = receiver.processed[key]
        assert payload["type"] == "lead.received"
        assert payload["data"]["lead"]["id"] == lead_id
        assert schema_errors(payload, load_webhook_schema()) == []
        assert receiver.bad_signatures == 0
        # Give a duplicate (a second claim of the same row) the time to show up: none does.
        await asyncio.sleep(LEASE_S + 0.5)
        assert receiver.duplicates == 0
        assert receiver.attempts[key] == 1  # answered attempts; the held one is not counted
        assert second.terminate() == 0
    finally:
        receiver.release()
        for daemon in daemons:
            daemon.kill()
        stop_embedded_postgres(data_dir)
        await receiver.stop()
