"""The live pages' LISTEN/NOTIFY channel (:mod:`dialer.store.live`), on real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from dialer.store import StoreUnavailableError
from dialer.store.live import MAX_PAYLOAD_BYTES, LiveChannel


class Inbox:
    """Payloads a channel heard, and whether it lost its connection."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self.lost = asyncio.Event()
        self._arrived = asyncio.Event()

    def __call__(self, payload: str) -> None:
        self.payloads.append(payload)
        self._arrived.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[str]:
        async with asyncio.timeout(timeout):
            while len(self.payloads) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.payloads


@pytest.fixture
async def channels(database_url: str) -> AsyncIterator[tuple[LiveChannel, LiveChannel]]:
    first, second = LiveChannel(database_url), LiveChannel(database_url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_payloads_reach_every_listener_in_order_in_one_call(
    channels: tuple[LiveChannel, LiveChannel],
) -> None:
    first, second = channels
    heard_first, heard_second = Inbox(), Inbox()
    await first.open(heard_first)
    await second.open(heard_second)
    assert first.connected and second.connected
    sent = [f"payload-{index}" for index in range(50)]
    # A repeated payload is folded into the first by PostgreSQL (one transaction): callers
    # that need both make them differ (the relay numbers its payloads).
    await first.notify([*sent, "payload-0"])
    await first.notify(["next call"])
    # Every payload, in order, to the other daemon; PostgreSQL delivers to the sender as well.
    assert await heard_second.wait_for(len(sent) + 1) == [*sent, "next call"]
    assert await heard_first.wait_for(len(sent) + 1) == [*sent, "next call"]


async def test_an_oversized_payload_is_refused_before_sending(
    channels: tuple[LiveChannel, LiveChannel],
) -> None:
    first, second = channels
    heard = Inbox()
    await first.open(Inbox())
    await second.open(heard)
    with pytest.raises(ValueError, match="payload"):
        await first.notify(["small", "x" * (MAX_PAYLOAD_BYTES + 1)])
    # The largest accepted payload goes through (PostgreSQL's limit, not a stricter one).
    largest = "é" * (MAX_PAYLOAD_BYTES // 2) + "x"
    assert len(largest.encode()) == MAX_PAYLOAD_BYTES
    await first.notify([largest])
    assert await heard.wait_for(1) == [largest]


async def test_failures_are_store_unavailable_errors() -> None:
    channel = LiveChannel("postgresql://nobody@127.0.0.1:1/none", timeout_s=2.0)
    with pytest.raises(StoreUnavailableError):
        await channel.open(Inbox())
    assert not channel.connected
    with pytest.raises(StoreUnavailableError, match="not connected"):
        await channel.notify(["hello"])
    await channel.close()


async def test_a_killed_connection_is_reported_and_can_be_reopened(
    channels: tuple[LiveChannel, LiveChannel], database_url: str
) -> None:
    first, second = channels
    inbox = Inbox()
    lost = asyncio.Event()
    await first.open(inbox, lost.set)
    await second.open(Inbox())
    admin = await asyncpg.connect(database_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'dialer-live' AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert killed == 2
    async with asyncio.timeout(5):
        await lost.wait()
    assert not first.connected
    await first.open(inbox, lost.set)
    await second.open(Inbox())
    await second.notify(["after the outage"])
    assert await inbox.wait_for(1) == ["after the outage"]
