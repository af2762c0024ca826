"""TrunkPool: max_calls, max_cps token bucket, the bounded waiting line, keepalive, failover."""

from __future__ import annotations

import pytest

from dialer.calls.trunks import (
    DigestCredentials,
    TokenBucket,
    TrunkGrant,
    TrunkPool,
    TrunkRefusal,
    TrunkRefusalReason,
    TrunkSettings,
    TrunkStatus,
    TrunkWaiting,
)
from dialer.config import TrunkConfig


def trunk(
    name: str = "primary",
    *,
    max_calls: int = 2,
    max_cps: float = 100.0,
    options_interval_s: float = 0.0,
    username: str = "",
) -> TrunkConfig:
    return TrunkConfig(
        name=name,
        proxy=f"sip:{name}@127.0.0.1:5080;transport=udp",
        username=username,
        password="s3cret" if username else "",
        max_calls=max_calls,
        max_cps=max_cps,
        options_interval_s=options_interval_s,
    )


def granted(decision: object) -> TrunkGrant:
    assert isinstance(decision, TrunkGrant), decision
    return decision


def test_trunk_config_is_trunk_settings() -> None:
    settings: TrunkSettings = trunk()
    assert settings.name == "primary"


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(2.0, now=0.0)
    assert bucket.burst == 2.0
    assert bucket.take(0.0) and bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.next_token_at(0.0) == pytest.approx(0.5)
    assert bucket.refill_time() == pytest.approx(0.5)
    assert not bucket.take(0.49)
    assert bucket.take(0.5)
    assert bucket.take(10.0) and bucket.take(10.0) and not bucket.take(10.0)  # capped at burst
    unlimited = TokenBucket(0.0, now=0.0)
    assert all(unlimited.take(0.0) for _ in range(1000))
    assert unlimited.refill_time() is None


def test_max_calls_queues_then_serves_in_order_on_release() -> None:
    pool = TrunkPool([trunk(max_calls=2)], now=0.0, max_waiting=2)
    first = granted(pool.request(0.0))
    second = granted(pool.request(0.0))
    assert first.trunk.active_calls == 2
    third = pool.request(0.1)
    fourth = pool.request(0.2)
    assert isinstance(third, TrunkWaiting) and isinstance(fourth, TrunkWaiting)
    fifth = pool.request(0.3)
    assert isinstance(fifth, TrunkRefusal)
    assert fifth.reason is TrunkRefusalReason.QUEUE_FULL
    assert pool.pop_decisions() == []

    pool.release(first, 1.0)
    decisions = pool.pop_decisions()
    assert [d.ticket for d in decisions] == [third.ticket]
    assert isinstance(decisions[0], TrunkGrant)
    assert pool.waiting == 1
    assert pool.withdraw(fourth.ticket)
    pool.release(second, 1.5)
    assert pool.pop_decisions() == []
    assert pool.trunk("primary").active_calls == 1


def test_new_requests_do_not_overtake_the_line() -> None:
    pool = TrunkPool([trunk(max_calls=1)], now=0.0)
    grant = granted(pool.request(0.0))
    waiting = pool.request(0.0)
    assert isinstance(waiting, TrunkWaiting)
    pool.release(grant, 1.0)
    assert [d.ticket for d in pool.pop_decisions()] == [waiting.ticket]
    assert isinstance(pool.request(1.0), TrunkWaiting)  # the slot went to the one in line


def test_cps_limit_queues_until_the_next_token() -> None:
    pool = TrunkPool([trunk(max_calls=100, max_cps=2.0)], now=0.0)
    granted(pool.request(0.0))
    granted(pool.request(0.0))
    waiting = pool.request(0.0)
    assert isinstance(waiting, TrunkWaiting)
    assert pool.get_timer() == pytest.approx(0.5)
    pool.handle_timer(0.25)
    assert pool.pop_decisions() == []
    pool.handle_timer(0.5)
    decisions = pool.pop_decisions()
    assert len(decisions) == 1 and isinstance(decisions[0], TrunkGrant)
    assert decisions[0].ticket == waiting.ticket and decisions[0].granted_at == 0.5
    assert pool.get_timer() is None


def test_waiting_too_long_is_refused() -> None:
    pool = TrunkPool([trunk(max_calls=1)], now=0.0, max_wait_s=3.0)
    granted(pool.request(0.0))
    waiting = pool.request(1.0)
    assert isinstance(waiting, TrunkWaiting)
    assert pool.get_timer() == 4.0
    pool.handle_timer(4.0)
    assert pool.pop_decisions() == [
        TrunkRefusal(ticket=waiting.ticket, reason=TrunkRefusalReason.WAIT_EXPIRED, at=4.0)
    ]
    assert pool.waiting == 0


def test_full_first_trunk_spills_to_the_next() -> None:
    pool = TrunkPool([trunk("a", max_calls=1), trunk("b", max_calls=1)], now=0.0)
    assert granted(pool.request(0.0)).trunk.name == "a"
    assert granted(pool.request(0.0)).trunk.name == "b"
    assert isinstance(pool.request(0.0), TrunkWaiting)


def test_failover_on_503_and_on_a_dead_trunk() -> None:
    pool = TrunkPool([trunk("a"), trunk("b")], now=0.0)
    first = granted(pool.request(0.0))
    assert first.trunk.name == "a"
    assert pool.invite_result("a", 0.1, status=503)  # fail over
    assert pool.trunk("a").status is TrunkStatus.UP  # 503 is not "down"
    pool.release(first, 0.1)
    retry = granted(pool.request(0.1, exclude=frozenset({"a"})))
    assert retry.trunk.name == "b"
    assert not pool.invite_result("b", 0.2, status=486)  # a real answer: no failover

    # An INVITE that got nothing back marks the trunk down; new calls skip it.
    assert pool.invite_result("a", 1.0, status=None)
    assert pool.trunk("a").status is TrunkStatus.DOWN
    assert granted(pool.request(1.0)).trunk.name == "b"
    refused = pool.request(1.0, exclude=frozenset({"b"}))
    assert isinstance(refused, TrunkRefusal)
    assert refused.reason is TrunkRefusalReason.NO_TRUNK_UP


def test_options_keepalive_marks_down_and_up() -> None:
    pool = TrunkPool([trunk("a", options_interval_s=30.0)], now=0.0, down_after_failures=2)
    assert [t.name for t in pool.options_due(0.0)] == ["a"]
    assert pool.options_due(0.0) == []  # in flight: not again
    pool.options_result("a", 0.05, status=200)
    assert pool.get_timer() == 30.0
    assert [t.name for t in pool.options_due(30.0)] == ["a"]
    pool.options_result("a", 32.0, status=None)
    assert pool.trunk("a").status is TrunkStatus.UP  # one miss is not enough
    pool.options_due(60.0)
    pool.options_result("a", 62.0, status=503)
    assert pool.trunk("a").status is TrunkStatus.DOWN
    refused = pool.request(62.0)
    assert isinstance(refused, TrunkRefusal)
    pool.options_due(90.0)
    pool.options_result("a", 90.01, status=404)  # any answer but 503: a SIP server is there
    assert pool.trunk("a").status is TrunkStatus.UP
    assert granted(pool.request(91.0)).trunk.name == "a"


def test_a_trunk_going_down_refuses_those_waiting_for_it() -> None:
    pool = TrunkPool([trunk("a", max_calls=1, options_interval_s=30.0)], now=0.0)
    granted(pool.request(0.0))
    waiting = pool.request(0.0)
    assert isinstance(waiting, TrunkWaiting)
    pool.options_due(0.0)
    pool.options_result("a", 1.0, status=None)
    assert pool.pop_decisions() == [
        TrunkRefusal(ticket=waiting.ticket, reason=TrunkRefusalReason.NO_TRUNK_UP, at=1.0)
    ]
    # A down trunk is probed again soon rather than after its whole interval.
    assert pool.get_timer() == pytest.approx(2.0)


def test_credentials_and_request_uri() -> None:
    pool = TrunkPool([trunk("a", username="acct"), trunk("b")], now=0.0)
    assert pool.trunk("a").credentials == DigestCredentials("acct", "s3cret")
    assert "s3cret" not in repr(pool.trunk("a").credentials)
    assert pool.trunk("b").credentials is None
    assert pool.trunk("a").request_uri("+15551230000") == (
        "sip:+15551230000@127.0.0.1:5080;user=phone"
    )
    with pytest.raises(ValueError, match="unique"):
        TrunkPool([trunk("a"), trunk("a")], now=0.0)
