"""dialer.metrics: per-app registries that count independently; the SIP endpoint's counters
read at scrape time."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

from dialer.metrics import (
    AIO_COUNTERS,
    UA_COUNTERS,
    Metrics,
    PipelineGauges,
    PipelineStatsCollector,
    SipStatsCollector,
)
from sip import UaStats
from sip.aio import AioStats, SipEndpoint


def test_each_metrics_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.leads_received.labels(outcome="created").inc()
    first.leads_rejected.labels(reason="invalid_field").inc(2)
    first.intake_latency.observe(0.003)
    text, content_type = first.render()
    assert content_type.startswith("text/plain")
    assert b'dialer_leads_received_total{outcome="created"} 1.0' in text
    assert b'dialer_leads_rejected_total{reason="invalid_field"} 2.0' in text
    assert b'dialer_intake_latency_seconds_bucket{le="0.005"} 1.0' in text
    other, _ = second.render()
    assert b'outcome="created"' not in other


def test_every_sip_stats_counter_is_exported() -> None:
    # A counter added to the SIP stack's stats must not stay invisible to operators.
    assert set(UA_COUNTERS) == {f.name for f in dataclasses.fields(UaStats)}
    assert set(AIO_COUNTERS) == {f.name for f in dataclasses.fields(AioStats)}
    names = [name for name, _ in (*UA_COUNTERS.values(), *AIO_COUNTERS.values())]
    assert len(set(names)) == len(names)


def sample(text: bytes, name: str) -> float:
    """The value of the unlabelled sample ``name`` in exposition ``text``."""
    [value] = [
        float(line.split()[1]) for line in text.decode().splitlines() if line.split(" ")[0] == name
    ]
    return value


async def test_sip_collector_reads_the_endpoints_live_counters_at_scrape_time() -> None:
    metrics = Metrics()
    endpoint = SipEndpoint()
    metrics.registry.register(SipStatsCollector(endpoint))
    text, _ = metrics.render()
    assert sample(text, "dialer_sip_messages_malformed_total") == 0  # not started: all zero
    async with endpoint:
        host, port = await endpoint.start("127.0.0.1", 0)
        stray = (
            f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bKnobody\r\n"
            "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n"
            "Call-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for datagram in (b"\x00\xffnoise", b"INVITE\r\n\r\n", stray):
                await loop.sock_sendto(sock, datagram, (host, port))
            async with asyncio.timeout(5):
                while endpoint.stats.datagrams_received < 3:
                    await asyncio.sleep(0.01)
        text, _ = metrics.render()
    assert sample(text, "dialer_sip_datagrams_received_total") == 3
    assert sample(text, "dialer_sip_messages_malformed_total") == 2
    assert sample(text, "dialer_sip_responses_unmatched_total") == 1
    assert sample(text, "dialer_sip_messages_received_total") == 1  # only the stray parsed
    assert sample(text, "dialer_sip_internal_errors_total") == 0
    assert b"# TYPE dialer_sip_send_errors_total counter" in text


def test_pipeline_gauges_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    now = PipelineGauges(leads_in_hand=7, calls_bridged=5, rep_snapshot_reads=3)
    metrics.registry.register(PipelineStatsCollector(lambda: now))
    text, _ = metrics.render()
    assert sample(text, "dialer_pipeline_leads_in_hand") == 7
    assert sample(text, "dialer_pipeline_calls_bridged") == 5
    assert sample(text, "dialer_routing_rep_snapshot_reads_total") == 3
    now = PipelineGauges(leads_in_hand=1, calls_bridged=0, rep_snapshot_reads=4)
    text, _ = metrics.render()
    assert sample(text, "dialer_pipeline_leads_in_hand") == 1
    assert b"# TYPE dialer_pipeline_calls_bridged gauge" in text
