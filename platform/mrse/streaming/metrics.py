"""Prometheus metrics of the stream worker, read from its stats when scraped (nothing is
counted twice and the hot path pays nothing)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mrse.streaming.worker import WorkerStats


class WorkerStatsCollector:
    """Exposes a :class:`WorkerStats` as ``mrse_stream_*`` metrics."""

    def __init__(self, stats: WorkerStats) -> None:
        self.stats = stats

    def collect(self):
        s = self.stats
        for name, doc, value in (
            ("consumed", "Events read from the clicks topic", s.consumed),
            ("applied", "Events folded into profiles", s.applied),
            ("duplicates", "Events skipped as already applied", s.duplicates),
            ("dead_letter_failures", "Failed attempts to write the DLQ (retried)",
             s.dead_letter_failures),
            ("commit_failures", "Offset commits refused after a rebalance", s.commit_failures),
            ("store_failures", "Failed feature-store writes (retried)", s.store_failures),
        ):  # fmt: skip
            yield CounterMetricFamily(f"mrse_stream_{name}", doc, value=value)
        dead = CounterMetricFamily(
            "mrse_stream_dead_lettered", "Events sent to the DLQ by reason", labels=["reason"]
        )
        for reason, n in sorted(s.dead_lettered.items()):
            dead.add_metric([reason], n)
        yield dead
        yield GaugeMetricFamily(
            "mrse_stream_dead_letter_blocked",
            "1 while the DLQ cannot be written (the worker waits, committing nothing)",
            value=1.0 if s.dead_letter_blocked else 0.0,
        )
        yield GaugeMetricFamily(
            "mrse_stream_store_blocked",
            "1 while the feature store cannot be written (the worker waits, committing nothing)",
            value=1.0 if s.store_blocked else 0.0,
        )


def worker_registry(stats: WorkerStats) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(WorkerStatsCollector(stats))
    return registry
