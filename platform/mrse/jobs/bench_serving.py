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
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np

from mrse.data import load_dataset
from mrse.experiments.assignment import Arm, Experiment
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.index.build import IndexConfig, build_index
from mrse.jobs.loadgen import LoadResult, run_load
from mrse.serving.app import ServeConfig, build_engine
from mrse.serving.background import BackgroundServer
from mrse.serving.engine import SearchEngine, SearchOutcome
from mrse.serving.validation import ValidRequest
from mrse.streaming.producer import dataset_events
from mrse.streaming.service import catalog_for_profiles
from mrse.streaming.updater import ProfileUpdater
from mrse.v1 import search_pb2

logger = logging.getLogger(__name__)

# (name, query encoder, cache size, concurrency sweep): the designs compared with one client;
# the served default also under 1..N concurrent clients
DESIGNS = (
    ("minilm fp32 (PyTorch)", "minilm", 0, False),
    ("minilm int8 (ONNX Runtime)", "minilm-int8", 0, False),
    ("minilm int8 + warm query cache", "minilm-int8", 50_000, True),
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
    concurrency: tuple[int, ...] = (1, 2, 4, 6, 8, 12, 16, 32)
    max_concurrency: int = 32  # server: requests in flight, and the largest batch
    warm_queries: int = 10_000
    workers: int = 2  # also sweep this many server processes on one port (1: skip)
    ngram_run: Path | None = None  # a run trained with model.use_query_text = false
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

    def close(self) -> None:
        self.engine.close()

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


def _measure(
    target: str, rec: _Recorder | None, requests, cfg, concurrency: int, method: str = "Search"
) -> dict:
    result: LoadResult = run_load(
        target, requests, concurrency, cfg.duration_s, cfg.warmup_s, method
    )
    n = len(result.latencies_ms)
    stages = rec.window(result.window_start, result.window_end) if rec is not None else []
    return {
        "clients": concurrency,
        "requests": n,
        "errors": result.errors,
        "qps": round(n / cfg.duration_s, 1),
        **_latency_stats(result.latencies_ms),
        "server_stages": _stage_stats(stages),
    }


def _run_workers(cfg, all_ready) -> None:
    from mrse.logs import setup_logging
    from mrse.serving.workers import serve_workers

    setup_logging(False)
    raise SystemExit(serve_workers(cfg, all_ready))


def _measure_workers(cfg: ServeBenchConfig, requests, workers: int) -> list[dict]:
    """The served default as ``workers`` server processes on one port: the concurrency sweep
    (server-side stage times are per process and not collected here)."""
    import multiprocessing as mp
    import signal as sig

    from mrse.streaming.broker import free_port

    port = free_port()
    serve_cfg = replace(
        bench_serve_config(cfg),
        address=f"127.0.0.1:{port}",
        max_concurrency=cfg.max_concurrency,
        workers=workers,
    )
    ctx = mp.get_context("spawn")
    all_ready = ctx.Event()
    proc = ctx.Process(target=_run_workers, args=(serve_cfg, all_ready))
    proc.start()
    target = f"127.0.0.1:{port}"
    try:
        while not all_ready.wait(1.0):
            if not proc.is_alive():
                raise RuntimeError(f"the server processes exited ({proc.exitcode})")
        rows = []
        for c in cfg.concurrency:
            logger.info("%d server processes: %d clients for %.0fs", workers, c, cfg.duration_s)
            rows.append(_measure(target, None, requests, cfg, c))
        return rows
    finally:
        if proc.pid is not None and proc.is_alive():
            os.kill(proc.pid, sig.SIGTERM)
        proc.join(60)


def _requests(dataset, k: int) -> list[bytes]:
    q = dataset.queries
    return [
        search_pb2.SearchRequest(
            query=query, user_id=user if isinstance(user, str) else "", k=k
        ).SerializeToString()
        for query, user in zip(q["query"], q["user_id"], strict=True)
    ]


def bench_serve_config(
    cfg: ServeBenchConfig,
    encoder: str = "minilm-int8",
    cache: int = 50_000,
    run: Path | None = None,
    retrieval: str = "dense",
) -> ServeConfig:
    """The benchmark's server: one model (``cfg.run``, or ``run`` with its own index), one
    arm, the online profiles written by setup; the served default's query encoding unless
    ``encoder`` / ``cache`` say otherwise."""
    run = run or cfg.run
    version = _index_name(cfg, run)  # the index was built under this name
    experiment = Experiment("bench", (Arm("mrse", 1.0, version, "mrse_v1", version, retrieval),))
    return ServeConfig(
        data=cfg.data,
        models={version: run},
        experiments=(experiment,),
        default_experiment="bench",
        index=IndexConfig(root=cfg.work_dir / "index"),
        feature_store=FeatureStoreConfig(data_dir=cfg.work_dir / "feast"),
        query_encoder=encoder,
        query_cache=cache,
        warm_queries=cfg.warm_queries,
        torch_threads=1,
        feature_cache=cfg.cache_dir,
    )


def bench_engine(
    cfg: ServeBenchConfig,
    encoder: str,
    cache: int,
    run: Path | None = None,
    retrieval: str = "dense",
) -> SearchEngine:
    """The benchmark's engine, in this process (see :func:`bench_serve_config`)."""
    return build_engine(bench_serve_config(cfg, encoder, cache, run, retrieval))


def _call_requests(dataset, k: int, photos: int = 100) -> dict[str, list[bytes]]:
    """More like this, shop by photo and feed requests from the test queries: each query's seed
    item (``mrse.evaluation.similar``) as the positive example, (for the first ``photos``) its
    photo altered as a shopper's (``mrse.evaluation.photo``), and each query's shopper's feed
    (their online profile, written by setup)."""
    import random

    from mrse.evaluation.photo import alter_photo, photo_cases
    from mrse.evaluation.similar import similar_cases

    cases = similar_cases(dataset.qrels, dataset.items["item_id"])
    shots, photo = photo_cases(dataset)
    shots = shots[:photos]
    return {
        "SimilarItems": [search_pb2.SimilarItemsRequest(positive_ids=[c.seed], k=k)
                         .SerializeToString() for c in cases],
        "SearchByPhoto": [search_pb2.SearchByPhotoRequest(
            photo=alter_photo(photo[c.seed], random.Random(c.query_id)), k=k,
        ).SerializeToString() for c in shots],
        "Recommend": [search_pb2.RecommendRequest(user_id=u, k=k).SerializeToString()
                      for u in dataset.queries["user_id"].dropna()],
    }  # fmt: skip


def _measure_calls(cfg: ServeBenchConfig, dataset, requests) -> dict:
    """One client per call: Search on a dense arm and on a hybrid arm, in alternation (dense,
    hybrid, dense, hybrid: their ratio from neighbouring runs), then SimilarItems,
    SearchByPhoto and Recommend on the dense arm's server."""
    calls = _call_requests(dataset, cfg.k)
    rows: list[dict] = []
    for rep in range(2):
        for retrieval in ("dense", "hybrid"):
            engine = bench_engine(cfg, "minilm-int8", 50_000, retrieval=retrieval)
            rec = _Recorder(engine)
            try:
                with BackgroundServer(rec, max_concurrency=cfg.max_concurrency) as server:  # type: ignore[arg-type]
                    logger.info("Search (%s), pass %d: 1 client", retrieval, rep + 1)
                    row = _measure(server.target, rec, requests, cfg, 1)
                    rows.append({"call": f"Search ({retrieval})", "pass": rep + 1, **row})
                    if retrieval == "dense" and rep == 1:
                        for method, reqs in calls.items():
                            logger.info("%s: 1 client", method)
                            row = _measure(server.target, rec, reqs, cfg, 1, method)
                            rows.append({"call": method, "pass": 1, **row})
            finally:
                engine.close()
    by = {(r["call"], r["pass"]): r for r in rows}
    pairs = [(by[("Search (dense)", p)], by[("Search (hybrid)", p)]) for p in (1, 2)]
    return {
        "rows": rows,
        "hybrid_p99_ratio": [round(h["p99_ms"] / d["p99_ms"], 3) for d, h in pairs],
        "hybrid_qps_ratio": [round(h["qps"] / d["qps"], 3) for d, h in pairs],
    }


def _index_name(cfg: ServeBenchConfig, run: Path) -> str:
    return "bench" if run == cfg.run else "bench-ngram"


def _setup(cfg: ServeBenchConfig, dataset) -> dict:
    """The indexes and the online profiles (every event of the dataset, through the worker's
    fold)."""
    summary: dict = {}
    for run in (cfg.run, cfg.ngram_run):
        if run is None:
            continue
        logger.info("building the index for %s", run)
        name = _index_name(cfg, run)
        summary[name] = build_index(
            cfg.data, run, IndexConfig(root=cfg.work_dir / "index"), name, cfg.cache_dir
        )
    store = ProfileStore(FeatureStoreConfig(data_dir=cfg.work_dir / "feast"))
    store.apply()
    catalog, profile = catalog_for_profiles(cfg.data, cfg.run, cfg.cache_dir)
    events = dataset_events(dataset)
    ProfileUpdater(store, catalog, profile).apply(events)
    logger.info("online profiles written for %d events", len(events))
    return summary


def run_serve_benchmark(cfg: ServeBenchConfig, only_calls: bool = False) -> dict:
    """The designs, the concurrency sweeps and every call with one client (``only_calls``: the
    calls alone)."""
    dataset = load_dataset(cfg.data)
    index_summary = _setup(cfg, dataset)
    requests = _requests(dataset, cfg.k)
    calls = _measure_calls(cfg, dataset, requests)
    if only_calls:
        return {"date": date.today().isoformat(),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "dataset": dataset.name, "items": len(dataset.items), "run": str(cfg.run),
                "k": cfg.k, "duration_s": cfg.duration_s, "calls": calls}  # fmt: skip
    designs, sweeps = [], {}
    designs_to_run = [
        (name, encoder, cache, sweep, None) for name, encoder, cache, sweep in DESIGNS
    ]
    if cfg.ngram_run is not None:
        designs_to_run.insert(2, ("n-gram query path (no text encoder)", "minilm-int8", 0, False,
                                  cfg.ngram_run))  # fmt: skip
    for name, encoder, cache, sweep, run in designs_to_run:
        engine = bench_engine(cfg, encoder, cache, run)
        rec = _Recorder(engine)
        try:
            with BackgroundServer(rec, max_concurrency=cfg.max_concurrency) as server:  # type: ignore[arg-type]
                logger.info("design %s: 1 client for %.0fs", name, cfg.duration_s)
                row = _measure(server.target, rec, requests, cfg, 1)
                row["design"] = name
                designs.append(row)
                if sweep:
                    sweeps[name] = []
                    for c in cfg.concurrency:
                        logger.info("design %s: %d clients for %.0fs", name, c, cfg.duration_s)
                        sweeps[name].append(_measure(server.target, rec, requests, cfg, c))
        finally:
            engine.close()
    if cfg.workers > 1:
        name = f"{DESIGNS[-1][0]}, {cfg.workers} server processes"
        sweeps[name] = _measure_workers(cfg, requests, cfg.workers)
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
        "concurrency": sweeps,
        "calls": calls,
    }
