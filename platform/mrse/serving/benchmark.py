"""`mrse serve bench`: closed-loop load against the gRPC server on a real catalog.

One server (this process, its own event loop thread), one load process (spawned). For each
query-encoding design: one client, p50/p99 latency and the server-side split into feature
fetch, query encoding, search and explanation. Then the chosen design under 1..N concurrent
clients: QPS against p50/p99. Requests cycle through the dataset's test queries with their
shoppers' ids, so every request reads a real online profile from the feature store.
"""

from __future__ import annotations

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
from mrse.experiments.assignment import Arm, Experiment
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.index.build import IndexConfig, build_index, open_index
from mrse.serving.background import BackgroundServer
from mrse.serving.engine import SearchEngine, SearchOutcome, load_bundle
from mrse.serving.loadgen import LoadResult, run_load
from mrse.serving.query_encoding import build_query_vectors
from mrse.serving.validation import ValidRequest
from mrse.streaming.producer import dataset_events
from mrse.streaming.service import catalog_for_profiles
from mrse.streaming.updater import ProfileUpdater
from mrse.v1 import search_pb2

logger = logging.getLogger(__name__)

# (name, encoder, cache size): the designs compared with one client
DESIGNS = (
    ("minilm fp32 (PyTorch)", "minilm", 0),
    ("minilm int8 (ONNX Runtime)", "minilm-int8", 0),
    ("minilm int8 + warm query cache", "minilm-int8", 50_000),
)
STAGES = ("features", "encode", "search", "explain")


@dataclass(frozen=True)
class ServeBenchConfig:
    data: Path
    run: Path
    work_dir: Path
    k: int = 100
    duration_s: float = 15.0
    warmup_s: float = 3.0
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    max_concurrency: int = 32  # server: requests in flight, and the largest batch
    warm_queries: int = 10_000
    cache_dir: Path | None = None


class _Recorder:
    """Wraps the engine to keep each request's server-side stage timings, with its end time."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine
        self.records: list[tuple[float, dict[str, float]]] = []
        self._lock = threading.Lock()

    def search_many(self, reqs: list[ValidRequest]) -> list[SearchOutcome | Exception]:
        outcomes = self.engine.search_many(reqs)
        now = time.time()
        with self._lock:
            for o in outcomes:
                if isinstance(o, SearchOutcome):
                    self.records.append((now, {**o.timings, "batch": len(reqs)}))
        return outcomes

    def warm_up(self) -> None:
        self.engine.warm_up()

    def window(self, start: float, end: float) -> list[dict[str, float]]:
        with self._lock:
            return [t for ts, t in self.records if start <= ts <= end]


def _latency_stats(lat_ms: list[float]) -> dict[str, float]:
    a = np.asarray(lat_ms)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def _stage_stats(records: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if records:
        out["batch_size"] = {"mean": round(float(np.mean([r["batch"] for r in records])), 2)}
    for stage in STAGES:
        v = np.asarray([r[stage] for r in records if stage in r]) * 1e3
        if v.size:
            out[stage] = {
                "p50_ms": round(float(np.percentile(v, 50)), 3),
                "p99_ms": round(float(np.percentile(v, 99)), 3),
            }
    return out


def _measure(server: BackgroundServer, rec: _Recorder, requests, cfg, concurrency: int) -> dict:
    result: LoadResult = run_load(
        server.target, requests, concurrency, cfg.duration_s, cfg.warmup_s
    )
    n = len(result.latencies_ms)
    return {
        "clients": concurrency,
        "requests": n,
        "errors": result.errors,
        "qps": round(n / cfg.duration_s, 1),
        **_latency_stats(result.latencies_ms),
        "server_stages": _stage_stats(rec.window(result.window_start, result.window_end)),
    }


def _requests(dataset, k: int) -> list[bytes]:
    q = dataset.queries
    return [
        search_pb2.SearchRequest(
            query=query, user_id=user if isinstance(user, str) else "", k=k
        ).SerializeToString()
        for query, user in zip(q["query"], q["user_id"], strict=True)
    ]


def run_serve_benchmark(cfg: ServeBenchConfig) -> dict:
    import torch

    torch.set_num_threads(1)
    dataset = load_dataset(cfg.data)
    index_cfg = IndexConfig(root=cfg.work_dir / "index")
    logger.info("building the index for %s", cfg.run)
    index_summary = build_index(cfg.data, cfg.run, index_cfg, "bench", cfg.cache_dir)
    store = ProfileStore(FeatureStoreConfig(data_dir=cfg.work_dir / "feast"))
    store.apply()
    catalog, profile = catalog_for_profiles(cfg.data, cfg.run, cfg.cache_dir)
    events = dataset_events(dataset)
    ProfileUpdater(store, catalog, profile).apply(events)
    logger.info("online profiles written for %d events", len(events))
    from mrse.training.checkpoint import load_run

    dim = load_run(cfg.run).config.model.dim
    bundle = load_bundle("bench", cfg.run, cfg.data, open_index(index_cfg, "bench", dim))
    experiment = Experiment("bench", (Arm("mrse", 1.0, "bench", "mrse_v1", "bench"),))
    requests = _requests(dataset, cfg.k)
    designs = []
    sweep = []
    try:
        for i, (name, encoder, cache) in enumerate(DESIGNS):
            vectors = build_query_vectors(encoder, cache, dataset, cfg.warm_queries)
            engine = SearchEngine({"bench": bundle}, {"bench": experiment}, "bench", vectors, store)
            rec = _Recorder(engine)
            with BackgroundServer(rec, max_concurrency=cfg.max_concurrency) as server:  # type: ignore[arg-type]
                logger.info("design %s: 1 client for %.0fs", name, cfg.duration_s)
                row = _measure(server, rec, requests, cfg, 1)
                row["design"] = name
                row["cache_hit_rate"] = (
                    round(vectors.hits / max(vectors.hits + vectors.misses, 1), 3) if cache else 0.0
                )
                designs.append(row)
                if i == len(DESIGNS) - 1:
                    for c in cfg.concurrency:
                        logger.info("design %s: %d clients for %.0fs", name, c, cfg.duration_s)
                        sweep.append(_measure(server, rec, requests, cfg, c))
    finally:
        bundle.index.close()
    return {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "dataset": dataset.name,
        "items": len(dataset.items),
        "run": str(cfg.run),
        "k": cfg.k,
        "duration_s": cfg.duration_s,
        "max_concurrency": cfg.max_concurrency,
        "index": index_summary,
        "designs": designs,
        "concurrency": sweep,
        "design_under_load": DESIGNS[-1][0],
    }


def plot_serve_benchmark(result: dict, path: Path) -> None:
    """Latency (p50, p99) against throughput for the concurrency sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["concurrency"]
    fig, ax = plt.subplots(figsize=(6, 4))
    qps = [r["qps"] for r in rows]
    ax.plot(qps, [r["p50_ms"] for r in rows], "o-", label="p50")
    ax.plot(qps, [r["p99_ms"] for r in rows], "s-", label="p99")
    for r in rows:
        ax.annotate(f"{r['clients']}", (r["qps"], r["p99_ms"]), textcoords="offset points",
                    xytext=(3, 4), fontsize=8)  # fmt: skip
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.set_xlabel("throughput (queries/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{result['dataset']} ({result['items']:,} items), k={result['k']}: clients")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
