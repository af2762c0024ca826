"""Prometheus metrics of one daemon, in a registry of its own (never the global one).

A per-app :class:`prometheus_client.CollectorRegistry` keeps tests independent (each app
counts from zero) and lets other modules register their collectors on ``Metrics.registry``.

The SIP endpoint's own counters (:class:`sip.UaStats`, :class:`sip.aio.AioStats`: malformed
messages, responses for unknown transactions, send errors…) are read at scrape time by
:class:`SipStatsCollector`, so counting them costs the SIP hot path nothing more than the
integer increments it already does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from sip import UaStats
from sip.aio import AioStats, SipEndpoint

__all__ = [
    "AIO_COUNTERS",
    "INTAKE_LATENCY_BUCKETS",
    "UA_COUNTERS",
    "Metrics",
    "PipelineGauges",
    "PipelineStatsCollector",
    "SipStatsCollector",
]

#: Seconds; dense below 50 ms, where the intake target lies.
INTAKE_LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    """The daemon's collectors and their registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        #: Leads accepted by ``POST /v1/leads``; ``outcome`` is ``created`` or ``duplicate``.
        self.leads_received = Counter(
            "dialer_leads_received",
            "Leads accepted by the intake API.",
            ["outcome"],
            registry=self.registry,
        )
        #: Lead posts refused; ``reason`` is the error code of the response.
        self.leads_rejected = Counter(
            "dialer_leads_rejected",
            "Lead posts refused by the intake API, by reason.",
            ["reason"],
            registry=self.registry,
        )
        #: Time from request arrival to response for ``POST /v1/leads`` (stored or refused).
        self.intake_latency = Histogram(
            "dialer_intake_latency_seconds",
            "Latency of POST /v1/leads, from request to response.",
            buckets=INTAKE_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (``text/plain; version=0.0.4``)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: :class:`sip.UaStats` field -> (metric name without ``_total``, help).
UA_COUNTERS: Final[dict[str, tuple[str, str]]] = {
    "messages_received": (
        "dialer_sip_messages_received",
        "SIP messages parsed and handled by the user agent.",
    ),
    "malformed": (
        "dialer_sip_messages_malformed",
        "SIP messages that did not parse (answered 400 when an answerable request, else dropped).",
    ),
    "unmatched_responses": (
        "dialer_sip_responses_unmatched",
        "SIP responses matching no client transaction (dropped).",
    ),
    "unmatched_acks": (
        "dialer_sip_acks_unmatched",
        "SIP ACKs matching no transaction and no dialog awaiting one (dropped).",
    ),
    "overload_rejections": (
        "dialer_sip_overload_rejections",
        "SIP requests refused with 503 because the transaction limit was reached.",
    ),
    "forked_2xx": (
        "dialer_sip_forked_2xx",
        "Extra 2xx answers from forked INVITEs (ACKed, then hung up with BYE).",
    ),
}

#: :class:`sip.aio.AioStats` field -> (metric name without ``_total``, help).
AIO_COUNTERS: Final[dict[str, tuple[str, str]]] = {
    "datagrams_received": (
        "dialer_sip_datagrams_received",
        "SIP datagrams received (over TCP: framed messages).",
    ),
    "datagrams_sent": (
        "dialer_sip_datagrams_sent",
        "SIP datagrams sent (over TCP: messages).",
    ),
    "internal_errors": (
        "dialer_sip_internal_errors",
        "Exceptions raised by the SIP stack on some input, logged and survived (a bug).",
    ),
    "events_dropped": (
        "dialer_sip_events_dropped",
        "SIP events dropped because the application did not consume them (queue full).",
    ),
    "tcp_connections": (
        "dialer_sip_tcp_connections",
        "SIP TCP connections opened or accepted.",
    ),
    "tcp_framing_errors": (
        "dialer_sip_tcp_framing_errors",
        "SIP TCP streams closed because they could not be framed.",
    ),
    "send_errors": (
        "dialer_sip_send_errors",
        "SIP messages that could not be sent (socket error, failed connect, unknown host).",
    ),
    "dns_lookups": (
        "dialer_sip_dns_lookups",
        "Host name lookups started by the SIP transport (cache misses).",
    ),
    "dns_failures": (
        "dialer_sip_dns_failures",
        "Host name lookups by the SIP transport that failed or timed out.",
    ),
}


class SipStatsCollector:
    """A Prometheus collector exporting a :class:`~sip.aio.SipEndpoint`'s counters as they
    are at scrape time (one ``<name>_total`` counter per field of :data:`UA_COUNTERS` and
    :data:`AIO_COUNTERS`). Before the endpoint is started every counter reads 0.

    Register it on :attr:`Metrics.registry` once the endpoint exists (the calls context does).
    """

    def __init__(self, endpoint: SipEndpoint) -> None:
        self._endpoint = endpoint

    def describe(self) -> Iterator[CounterMetricFamily]:
        """The families without samples, so the registry can refuse duplicate names."""
        for name, documentation in (*UA_COUNTERS.values(), *AIO_COUNTERS.values()):
            yield CounterMetricFamily(name, documentation)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """One counter family per stats field, valued from the live stats."""
        endpoint = self._endpoint
        try:
            ua_stats = endpoint.ua.stats
        except RuntimeError:  # not started yet: the UA does not exist, nothing was counted
            ua_stats = UaStats()
        yield from _families(UA_COUNTERS, ua_stats)
        yield from _families(AIO_COUNTERS, endpoint.stats)


def _families(
    table: dict[str, tuple[str, str]], stats: UaStats | AioStats
) -> Iterator[CounterMetricFamily]:
    for field_name, (name, documentation) in table.items():
        yield CounterMetricFamily(name, documentation, value=getattr(stats, field_name))


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineGauges:
    """The pipeline's work in hand at one moment (``Pipeline.gauges``)."""

    #: Leads this daemon holds (routing, ringing, calling the prospect, bridged).
    leads_in_hand: int
    #: Of those, calls bridged (rep and prospect talking; no pipeline work until they end).
    calls_bridged: int
    #: Reads of every rep for routing since start (``dialer.roster``).
    rep_snapshot_reads: int


#: :class:`PipelineGauges` field -> (family, name, help) on ``/metrics``.
_PIPELINE_FAMILIES: Final[
    dict[str, tuple[type[GaugeMetricFamily] | type[CounterMetricFamily], str, str]]
] = {
    "leads_in_hand": (
        GaugeMetricFamily,
        "dialer_pipeline_leads_in_hand",
        "Leads this daemon is working on or holding a bridged call for.",
    ),
    "calls_bridged": (
        GaugeMetricFamily,
        "dialer_pipeline_calls_bridged",
        "Bridged calls this daemon holds until they end.",
    ),
    "rep_snapshot_reads": (
        CounterMetricFamily,
        "dialer_routing_rep_snapshot_reads",
        "Reads of every rep's live state for routing (one serves many decisions).",
    ),
}


class PipelineStatsCollector:
    """Exports :class:`PipelineGauges` as read at scrape time from ``read``."""

    def __init__(self, read: Callable[[], PipelineGauges]) -> None:
        self._read = read

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The families without samples, so the registry can refuse duplicate names."""
        for family, name, documentation in _PIPELINE_FAMILIES.values():
            yield family(name, documentation)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The gauges' values now."""
        gauges = self._read()
        for field_name, (family, name, documentation) in _PIPELINE_FAMILIES.items():
            yield family(name, documentation, value=getattr(gauges, field_name))
