"""The live event hub: rep isolation, bounded buffers, replay after Last-Event-ID, cards."""

from __future__ import annotations

import asyncio

import pytest

from dialer.web.events import EventHub, LiveEvent


def ringing(rep: str, lead: str) -> LiveEvent:
    return LiveEvent(kind="ringing", rep_id=rep, lead_id=lead, data={"lead": {"id": lead}})


async def test_a_console_receives_only_its_own_reps_events() -> None:
    hub = EventHub()
    alice = hub.subscribe(rep_id="alice")
    bob = hub.subscribe(rep_id="bob")
    board = hub.subscribe(dashboard=True)
    hub.publish(ringing("alice", "L1"))
    hub.publish(ringing("bob", "L2"))
    hub.publish(LiveEvent(kind="lead", lead_id="L3"))  # no rep: dashboard only

    got_alice = await alice.next(0.1)
    assert got_alice is not None and got_alice.lead_id == "L1"
    assert await alice.next(0.01) is None
    got_bob = await bob.next(0.1)
    assert got_bob is not None and got_bob.lead_id == "L2"
    assert await bob.next(0.01) is None
    seen = [await board.next(0.1) for _ in range(3)]
    assert [event.lead_id for event in seen if event] == ["L1", "L2", "L3"]


async def test_next_wakes_up_on_publish() -> None:
    hub = EventHub()
    sub = hub.subscribe(rep_id="alice")
    waiter = asyncio.create_task(sub.next(5.0))
    await asyncio.sleep(0)
    hub.publish(ringing("alice", "L1"))
    event = await asyncio.wait_for(waiter, 1.0)
    assert event is not None and event.kind == "ringing"


def test_a_slow_subscriber_is_dropped_without_blocking_the_publisher() -> None:
    hub = EventHub(buffer=3)
    slow = hub.subscribe(rep_id="alice")
    fast = hub.subscribe(rep_id="alice", buffer=100)
    for index in range(10):
        hub.publish(ringing("alice", f"L{index}"))
    assert slow.dropped and slow.closed
    assert not fast.dropped and fast.pending == 10
    assert hub.subscriber_count == 1


def test_ids_carry_the_boot_and_replay_follows_last_event_id() -> None:
    hub = EventHub(history=10)
    sub = hub.subscribe(rep_id="alice")
    first = hub.publish(ringing("alice", "L1"))
    hub.publish(ringing("bob", "L2"))
    third = hub.publish(ringing("alice", "L3"))
    assert first.id.startswith(hub.boot + "-")
    replay = hub.replay_after(first.id, sub)
    assert replay is not None and [event.id for event in replay] == [third.id]
    # An id of another daemon run (a restart) cannot be replayed: the page gets a snapshot.
    assert hub.replay_after("deadbeef-1", sub) is None
    assert EventHub().replay_after(first.id, sub) is None
    assert hub.replay_after("garbage", sub) is None


def test_replay_gives_up_when_history_is_too_short() -> None:
    hub = EventHub(history=2)
    sub = hub.subscribe(rep_id="alice")
    first = hub.publish(ringing("alice", "L1"))
    for index in range(5):
        hub.publish(ringing("alice", f"M{index}"))
    assert hub.replay_after(first.id, sub) is None


def test_open_cards_follow_ringing_and_leg_end() -> None:
    hub = EventHub()
    hub.publish(ringing("alice", "L1"))
    hub.publish(ringing("alice", "L2"))
    hub.publish(ringing("bob", "L3"))
    assert [card.lead_id for card in hub.open_cards("alice")] == ["L1", "L2"]
    hub.publish(LiveEvent(kind="leg_ended", rep_id="alice", lead_id="L1"))
    assert [card.lead_id for card in hub.open_cards("alice")] == ["L2"]
    hub.publish(LiveEvent(kind="answered", rep_id="alice", lead_id="L2"))
    assert hub.winner_of("L2") == "alice"
    hub.publish(LiveEvent(kind="call_ended", rep_id="alice", lead_id="L2"))
    assert hub.open_cards("alice") == [] and hub.winner_of("L2") is None
    assert [card.lead_id for card in hub.all_open_cards()] == ["L3"]


async def test_close_ends_every_subscription() -> None:
    hub = EventHub()
    sub = hub.subscribe(dashboard=True)
    waiter = asyncio.create_task(sub.next(5.0))
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(waiter, 1.0) is None
    assert sub.closed and hub.subscriber_count == 0
    assert hub.subscribe(rep_id="alice").closed


def test_a_subscription_needs_a_rep_or_the_dashboard() -> None:
    with pytest.raises(ValueError, match="rep id"):
        EventHub().subscribe()
