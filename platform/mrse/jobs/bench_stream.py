"""Stream worker benchmark: throughput on a backlog, and freshness under a steady replay.

Freshness = time from handing an event to the Kafka producer to the end of the feature-store
push that contains it (from then on the server reads it). Producer, broker and worker share one
clock on this machine.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from mrse.data import load_dataset
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.kafka_client import client_options
from mrse.streaming.events import Event
from mrse.streaming.producer import dataset_events
from mrse.streaming.service import catalog_for_profiles
from mrse.streaming.topics import ensure_topics
from mrse.streaming.updater import ProfileUpdater
from mrse.streaming.worker import StreamWorker, WorkerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamBenchConfig:
    data: Path
    work_dir: Path
    bootstrap: str | None = None  # None: start the embedded broker
    rate: float = 2000.0
    steady_events: int = 20_000
    warmup_s: float = 3.0  # events sent in the first seconds (cold caches, connections) not counted
    max_batch: int = 1000
    cache_dir: Path | None = None


def _worker(cfg: StreamBenchConfig, bootstrap: str, topic: str, catalog, profile, on_written=None):
    store = ProfileStore(FeatureStoreConfig(data_dir=cfg.work_dir / f"feast-{topic}"))
    store.apply()
    wc = WorkerConfig(
        bootstrap=bootstrap, topic=topic, dead_letter_topic=f"{topic}.dlq",
        group_id=f"bench-{topic}",
        max_batch=cfg.max_batch, session_timeout_ms=2000,
    )  # fmt: skip
    return StreamWorker(wc, ProfileUpdater(store, catalog, profile), on_written)


def _produce(
    bootstrap: str, topic: str, events: list[Event], rate: float, sent: dict[str, float]
) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=1, **client_options())
    start = time.monotonic()
    for i, e in enumerate(events):
        if rate > 0:
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        sent[e.event_id] = time.time()
        producer.send(topic, key=e.user_id.encode(), value=e.to_json())
    producer.flush()
    producer.close()


def _produce_to_file(
    bootstrap: str, topic: str, events: list[Event], rate: float, out: str
) -> None:
    sent: dict[str, float] = {}
    _produce(bootstrap, topic, events, rate, sent)
    Path(out).write_text(json.dumps(sent))


def _produce_in_subprocess(
    bootstrap: str, topic: str, events: list[Event], rate: float, work_dir: Path
) -> dict[str, float]:
    import multiprocessing

    work_dir.mkdir(parents=True, exist_ok=True)
    out = work_dir / f"sent-{topic}.json"
    proc = multiprocessing.get_context("fork").Process(
        target=_produce_to_file, args=(bootstrap, topic, events, rate, str(out))
    )
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"producer process failed with exit code {proc.exitcode}")
    return json.loads(out.read_text())


def run_stream_benchmark(cfg: StreamBenchConfig) -> dict:
    from mrse.streaming.broker import EmbeddedBroker

    dataset = load_dataset(cfg.data)
    catalog, profile = catalog_for_profiles(cfg.data, None, cfg.cache_dir)
    events = dataset_events(dataset)
    broker = None if cfg.bootstrap else EmbeddedBroker().start()
    bootstrap = cfg.bootstrap or broker.bootstrap
    try:
        # 1. throughput: the whole log is waiting; time the worker draining it
        topic = f"bench-backlog-{int(time.time())}"
        ensure_topics(bootstrap, [topic, f"{topic}.dlq"])
        _produce(bootstrap, topic, events, 0.0, {})
        done = threading.Event()
        first: list[float] = []

        def mark(batch, t):
            if not first:
                first.append(time.perf_counter())

        w = _worker(cfg, bootstrap, topic, catalog, profile, mark)
        start = time.perf_counter()
        stats = w.run(stop=done, idle_exit_s=3.0)
        drain = time.perf_counter() - (first[0] if first else start) - 3.0
        throughput = stats.applied / max(drain, 1e-9)

        # 2. freshness: a steady stream at cfg.rate events/s
        topic = f"bench-steady-{int(time.time())}"
        ensure_topics(bootstrap, [topic, f"{topic}.dlq"])
        written: dict[str, float] = {}

        def record(batch, t):
            for e in batch:
                written[e.event_id] = t

        steady = [
            Event(f"s{i}:{e.event_id}", e.user_id, e.item_id, e.type, e.ts, e.query)
            for i, e in enumerate(
                (events * (cfg.steady_events // len(events) + 1))[: cfg.steady_events]
            )
        ]
        stop = threading.Event()
        w = _worker(cfg, bootstrap, topic, catalog, profile, record)
        t = threading.Thread(target=w.run, kwargs={"stop": stop}, daemon=True)
        t.start()
        if not w.ready.wait(timeout=60):  # consumer group joined, partitions assigned
            raise RuntimeError("the stream worker did not join its consumer group in 60 s")
        # The producer is another process, as a site's clickstream is: in this process its
        # sender thread would compete with the worker for the GIL and delay the events.
        sent = _produce_in_subprocess(bootstrap, topic, steady, cfg.rate, cfg.work_dir)
        deadline = time.time() + 60
        while len(written) < len(steady) and time.time() < deadline:
            time.sleep(0.1)
        stop.set()
        t.join(timeout=30)
    finally:
        if broker is not None:
            broker.stop()
    t0 = min(sent.values()) if sent else 0.0
    measured = [k for k in sent if sent[k] >= t0 + cfg.warmup_s]
    lat = np.array([written[k] - sent[k] for k in measured if k in written]) * 1000.0
    lost = sum(1 for k in sent if k not in written)
    return {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "broker": cfg.bootstrap or "embedded Tansu",
        "dataset": dataset.name,
        "throughput_events": stats.applied,
        "throughput_events_per_s": round(throughput, 1),
        "steady_rate_events_per_s": cfg.rate,
        "steady_events": len(steady),
        "steady_measured": int(len(lat)),
        "steady_not_written": lost,
        "warmup_s": cfg.warmup_s,
        "freshness_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "freshness_ms_p99": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "freshness_ms_max": round(float(lat.max()), 1) if len(lat) else None,
    }
