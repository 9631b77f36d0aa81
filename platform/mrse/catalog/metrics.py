"""Prometheus metrics of the catalog worker, read from its stats when scraped (nothing is
counted twice and the hot path pays nothing)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mrse.catalog.worker import CatalogStats


class CatalogStatsCollector:
    """Exposes a :class:`CatalogStats` as ``mrse_catalog_*`` metrics."""

    def __init__(self, stats: CatalogStats) -> None:
        self.stats = stats

    def collect(self):
        s = self.stats
        for name, doc, value in (
            ("consumed", "Catalog events read", s.consumed),
            ("encoded", "Items encoded and written to every served version's index", s.encoded),
            ("patched", "Price and stock changes written", s.patched),
            ("deleted", "Items deleted", s.deleted),
            ("stale", "Events older than the item's last (replays, duplicates)", s.stale),
            ("write_failures", "Failed index writes (retried)", s.write_failures),
        ):  # fmt: skip
            yield CounterMetricFamily(f"mrse_catalog_{name}", doc, value=value)
        dead = CounterMetricFamily(
            "mrse_catalog_dead_lettered", "Events sent to the DLQ by reason", labels=["reason"]
        )
        for reason, n in sorted(s.dead_lettered.items()):
            dead.add_metric([reason], n)
        yield dead
        yield GaugeMetricFamily(
            "mrse_catalog_blocked",
            "1 while the indexes cannot be written (the worker waits, committing nothing)",
            value=1.0 if s.blocked else 0.0,
        )


def catalog_registry(stats: CatalogStats) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CatalogStatsCollector(stats))
    return registry
