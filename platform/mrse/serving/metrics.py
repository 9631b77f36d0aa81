"""Prometheus metrics of the server (one registry per server, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "mrse_request_seconds", "Search latency by arm and stage", ["arm", "stage"],
            registry=self.registry, buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.errors = Counter(
            "mrse_errors_total",
            "Failed requests by gRPC status code",
            ["code"],
            registry=self.registry,
        )
        self.degraded = Counter(
            "mrse_degraded_total", "Requests answered without personalisation because the "
            "feature store was unavailable", registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "mrse_batch_size", "Requests answered together by one engine call",
            registry=self.registry, buckets=BATCH_BUCKETS,
        )  # fmt: skip
