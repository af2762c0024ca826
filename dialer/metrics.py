"""Prometheus metrics of one daemon, in a registry of its own (never the global one).

A per-app :class:`prometheus_client.CollectorRegistry` keeps tests independent (each app
counts from zero) and lets other modules register their collectors on ``Metrics.registry``.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

__all__ = ["INTAKE_LATENCY_BUCKETS", "Metrics"]

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
