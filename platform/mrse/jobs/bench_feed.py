"""Live feed benchmark: from a click produced to Kafka to the first ``Recommend`` answer that
reflects it.

The whole path runs as deployed on one machine: the embedded broker, the stream worker (its
micro-batches folded into the feature store), the gRPC server reading that store, an Edge
index of the run. For each of ``shoppers`` shoppers (the test queries', one at a time): their
feed, then one click on an item of a category absent from that feed, produced to the
clickstream topic; then the feed is asked every ``poll_ms`` until it changes. The latency is
produce -> the first changed answer (it includes up to one poll interval); a feed that never
changes within ``timeout_s`` counts as a miss.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import grpc
import numpy as np
from tqdm.auto import tqdm

from mrse.data import load_dataset
from mrse.experiments.assignment import Arm, Experiment
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.index.build import IndexConfig, build_index
from mrse.kafka_client import client_options
from mrse.serving.background import BackgroundServer
from mrse.serving.engine import SearchEngine, load_bundle
from mrse.serving.query_encoding import build_query_vectors
from mrse.streaming.broker import EmbeddedBroker
from mrse.streaming.events import Event
from mrse.streaming.producer import dataset_events
from mrse.streaming.service import catalog_for_profiles
from mrse.streaming.topics import CLICKS, ensure_topics
from mrse.streaming.updater import ProfileUpdater
from mrse.streaming.worker import StreamWorker, WorkerConfig
from mrse.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)


def until_changed(
    feed: Callable[[], tuple[str, ...]],
    before: tuple[str, ...],
    start: float,
    timeout_s: float,
    poll_s: float,
) -> tuple[float | None, tuple[str, ...]]:
    """Ask ``feed`` every ``poll_s`` until its answer differs from ``before``: (seconds since
    ``start``, a ``time.perf_counter`` reading, and the changed answer), or (None, the last
    answer) once ``timeout_s`` have passed since ``start``."""
    after = before
    while time.perf_counter() - start < timeout_s:
        after = feed()
        if after != before:
            return time.perf_counter() - start, after
        time.sleep(poll_s)
    return None, after


@dataclass(frozen=True)
class FeedBenchConfig:
    data: Path
    run: Path
    work_dir: Path
    shoppers: int = 200
    k: int = 20
    poll_ms: float = 5.0
    timeout_s: float = 10.0
    cache_dir: Path | None = None


def run_feed_benchmark(cfg: FeedBenchConfig) -> dict:
    """Build the stack, time ``cfg.shoppers`` clicks; the result JSON (module docstring)."""
    dataset = load_dataset(cfg.data)
    index = IndexConfig(root=cfg.work_dir / "index")
    build_index(cfg.data, cfg.run, index, "bench-feed", cfg.cache_dir)
    store = ProfileStore(FeatureStoreConfig(data_dir=cfg.work_dir / "feast"))
    store.apply()
    catalog, profile = catalog_for_profiles(cfg.data, cfg.run, cfg.cache_dir)
    updater = ProfileUpdater(store, catalog, profile)
    updater.apply(dataset_events(dataset))
    bundle = load_bundle("bench-feed", cfg.run, index)
    arm = Arm("mrse", 1.0, "bench-feed", "mrse_v1", "bench-feed")
    engine = SearchEngine({"bench-feed": bundle}, {"bench": Experiment("bench", (arm,))}, "bench",
                          build_query_vectors("minilm-int8", 1000), store)  # fmt: skip
    users = list(dict.fromkeys(u for u in dataset.queries["user_id"] if isinstance(u, str)))
    users = users[: cfg.shoppers]
    category = dict(zip(dataset.items["item_id"], dataset.items["category"], strict=True))
    by_category = dataset.items.groupby("category")["item_id"].first().to_dict()
    latencies: list[float] = []
    misses = 0
    with EmbeddedBroker(log_path=cfg.work_dir / "broker.log") as broker:
        ensure_topics(broker.bootstrap, [CLICKS])
        wc = WorkerConfig(
            bootstrap=broker.bootstrap, group_id="bench-feed", session_timeout_ms=2000
        )
        worker = StreamWorker(wc, updater)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        if not worker.ready.wait(60):
            raise TimeoutError("the stream worker did not join its group within 60 s")
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0,
                                 **client_options())  # fmt: skip
        try:
            with BackgroundServer(engine) as server, grpc.insecure_channel(server.target) as ch:
                stub = search_pb2_grpc.SearchServiceStub(ch)

                def feed(user: str) -> tuple[str, ...]:
                    req = search_pb2.RecommendRequest(user_id=user, k=cfg.k)
                    return tuple(r.item_id for r in stub.Recommend(req, timeout=10).results)

                for n, user in enumerate(tqdm(users, desc="feed after a click", unit="shopper")):
                    before = feed(user)
                    shown = {category.get(i) for i in before}
                    item = next((i for c, i in by_category.items() if c not in shown), None)
                    if item is None:
                        continue
                    start = time.perf_counter()
                    click = Event(f"bench-feed:{n}", user, item, "click", time.time(), None)
                    producer.send(CLICKS, key=user.encode(), value=click.to_json())
                    producer.flush()
                    took, _ = until_changed(lambda u=user: feed(u), before, start,
                                            cfg.timeout_s, cfg.poll_ms / 1000)  # fmt: skip
                    if took is None:
                        misses += 1
                    else:
                        latencies.append(took)
        finally:
            producer.close()
            stop.set()
            thread.join(30)
            engine.close()
    ms = np.array(latencies) * 1000
    return {
        "benchmark": "feed after a click (produce -> first changed Recommend answer)",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "dataset": dataset.name,
        "run": str(cfg.run),
        "shoppers": len(latencies) + misses,
        "changed": len(latencies),
        "misses": misses,
        "poll_ms": cfg.poll_ms,
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p90_ms": round(float(np.percentile(ms, 90)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "max_ms": round(float(ms.max()), 1) if len(ms) else None,
    }
