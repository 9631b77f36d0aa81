"""The stream worker's Prometheus metrics follow its stats."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mrse.streaming.metrics import worker_registry
from mrse.streaming.worker import WorkerStats


def _samples(registry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_follow_the_worker_stats():
    stats = WorkerStats()
    registry = worker_registry(stats)
    assert _samples(registry)[("mrse_stream_dead_letter_blocked", ())] == 0
    stats.consumed, stats.applied = 10, 7
    stats.dead_lettered["bad_json"] += 2
    stats.dead_lettered["oversized"] += 1
    stats.dead_letter_failures, stats.dead_letter_blocked = 3, True
    got = _samples(registry)  # read at scrape time: no re-registration needed
    assert got[("mrse_stream_consumed_total", ())] == 10
    assert got[("mrse_stream_applied_total", ())] == 7
    assert got[("mrse_stream_dead_lettered_total", (("reason", "bad_json"),))] == 2
    assert got[("mrse_stream_dead_lettered_total", (("reason", "oversized"),))] == 1
    assert got[("mrse_stream_dead_letter_failures_total", ())] == 3
    assert got[("mrse_stream_dead_letter_blocked", ())] == 1
