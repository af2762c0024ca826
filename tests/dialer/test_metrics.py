"""dialer.metrics: per-app registries that count independently."""

from __future__ import annotations

from dialer.metrics import Metrics


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
