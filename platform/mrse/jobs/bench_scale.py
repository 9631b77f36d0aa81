"""`mrse bench-scale`: how every cost grows with the catalog, on synthetic catalogs of N items.

The catalogs are grown from a real one's encoder features (``mrse.features.synthetic``), so no
encoder runs and N can be a million on one machine. They measure cost, not retrieval quality.
For each N, every measurement runs in a fresh process (its peak memory is its own):

- ``build``: the run's item tower over N items, written to a Qdrant Edge shard (chunked),
  HNSW built; seconds, peak memory, size on disk. Then ANN recall@100 against exact search on
  the same shard, for the real test queries: unfiltered, and filtered to categories holding
  about 10% and 1% of the items.
- ``serve``: a real server on the shard (real online profiles of the real shoppers, the
  query log grown with N): seconds to SERVING, resident memory (all, and anonymous: the index's
  memory-mapped files excluded; ``index_memory`` measures what the opened shard itself holds);
  one client's p50/p99 over the test queries once ("cold": each query, shopper and hit met for
  the first time since start) and then again (the reported, steady-state figures); then two
  server processes under closed-loop load: the highest QPS whose p99 stays under 50 ms.
- ``train``: training steps on the N-item catalog (examples sampled from the grown event
  log, the same number at every N): examples/s, seconds per whole-catalog re-encoding (what
  index mining repeats every ``refresh_every`` steps), peak memory; for both miners.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import platform
import resource
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from queue import Empty

import numpy as np

logger = logging.getLogger(__name__)

RUN_KEYS = (
    "index_build_s", "index_disk_mb", "server_start_s", "server_rss_mb", "p50_ms", "p99_ms",
    "qps_at_p99_50ms", "recall100", "recall100_filter_10pct", "recall100_filter_1pct",
    "train_examples_per_s", "train_peak_rss_mb",
)  # fmt: skip
VERSION = "bench"


@dataclass(frozen=True)
class ScaleBenchConfig:
    data: Path  # the real dataset the synthetic catalogs grow from
    run: Path  # the model whose item tower fills the indexes and whose query tower serves
    work_dir: Path
    sizes: tuple[int, ...] = (25_000, 250_000, 1_000_000)
    noise: float = 0.3
    recall_queries: int = 300
    latency_requests: int = 400
    load_s: float = 10.0
    clients: tuple[int, ...] = (2, 4, 8, 16, 32)
    k: int = 100
    ef_sweep: tuple[int, ...] = (100, 200, 400)  # search-time HNSW ef also measured for recall
    train_steps: int = 40
    train_examples: int = 12_000
    mining: tuple[str, ...] = ("memory", "index")  # the first is the reported one
    edge: dict = field(default_factory=dict)  # EdgeOptions fields
    cache_dir: Path | None = None
    stages: tuple[str, ...] = ("build", "serve", "train")


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def in_child(fn, *args) -> dict:
    """``fn(*args)`` in a fresh spawned process; its dict result (peak memory is its own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    try:
        while True:
            try:
                ok, value = queue.get(timeout=2.0)
                break
            except Empty:
                if not proc.is_alive():
                    raise RuntimeError(
                        f"{fn.__name__} exited with code {proc.exitcode} before reporting "
                        "(out of memory?)"
                    ) from None
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    if not ok:
        raise RuntimeError(f"{fn.__name__} failed: {value}")
    return value


def _child(fn, args, queue) -> None:
    from mrse.logs import setup_logging

    setup_logging(False)
    try:
        queue.put((True, fn(*args)))
    except Exception as exc:  # reported to the parent, which raises
        logger.exception("%s failed", fn.__name__)
        queue.put((False, f"{type(exc).__name__}: {exc}"))


def _base(cfg: ScaleBenchConfig):
    """(real dataset, run, raw item features) — the encoders' cache must hold the features."""
    from mrse.data import load_dataset
    from mrse.encoders.cache import FeatureCache
    from mrse.encoders.features import encode_items
    from mrse.training.checkpoint import load_run

    dataset = load_dataset(cfg.data)
    run = load_run(cfg.run)
    with FeatureCache.open_default(cfg.cache_dir) as cache:
        feats, _ = encode_items(dataset, cache)
    return dataset, run, feats


def _catalog(cfg: ScaleBenchConfig, n: int, dataset, run, feats):
    from mrse.features.synthetic import synthetic_catalog

    return synthetic_catalog(
        dataset.items, feats, run.featurizer.stats, run.config.model, n, cfg.noise
    )


def index_config(cfg: ScaleBenchConfig, n: int):
    from mrse.index.base import EdgeOptions
    from mrse.index.build import IndexConfig

    return IndexConfig(root=cfg.work_dir / str(n) / "index", edge=EdgeOptions(**cfg.edge))


def _filters(items) -> dict[str, tuple[str, ...]]:
    from mrse.features.synthetic import category_filter

    return {share: category_filter(items["category"], s) for share, s in (("10pct", 0.1),
            ("1pct", 0.01))}  # fmt: skip


def _query_vectors(cfg: ScaleBenchConfig, dataset, run) -> np.ndarray:
    """(Q, D) the real test queries through the query tower (no profile: ANN recall is about
    the index, not the shopper)."""
    import torch

    from mrse.encoders.cache import FeatureCache
    from mrse.encoders.features import encode_query_texts
    from mrse.models.inference import encode_queries

    texts = list(dataset.queries["query"].astype(str))[: cfg.recall_queries]
    with FeatureCache.open_default(cfg.cache_dir) as cache:
        vecs = encode_query_texts(texts, cache)
    cold = run.featurizer.cold_profile()
    qf = run.featurizer.queries(texts, vecs, [cold] * len(texts), {})
    outs = encode_queries(run.model, qf, torch.zeros(1, run.config.model.dim))
    return torch.cat([o.embedding for o in outs]).numpy()


def build_stage(cfg: ScaleBenchConfig, n: int) -> dict:
    """Index N synthetic items; recall of the built shard. Runs in its own process."""
    from mrse.features.synthetic import synthetic_events
    from mrse.index.base import SearchFilter
    from mrse.index.build import item_attributes, open_index, write_items
    from mrse.index.points import lexical_terms

    t0 = time.perf_counter()
    dataset, run, feats = _base(cfg)
    cat = _catalog(cfg, n, dataset, run, feats)
    generate_s = time.perf_counter() - t0
    rss = {"generated": _rss_mb()}
    # the grown query log, which the server warms its query cache from
    data_dir = cfg.work_dir / str(n) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    events = synthetic_events(dataset.events, n, len(dataset.items))
    events.to_parquet(data_dir / "events.parquet", index=False)
    index_cfg = index_config(cfg, n)
    shutil.rmtree(index_cfg.root, ignore_errors=True)
    index = open_index(index_cfg, VERSION, run.config.model.dim)
    t1 = time.perf_counter()
    write_items(index, run.model, cat.features, list(cat.items["item_id"]),
                item_attributes(cat.items), lexical_terms(cat.items))  # fmt: skip
    written = time.perf_counter()
    filters = {"": None, **{f"_filter_{k}": v for k, v in _filters(cat.items).items()}}
    del cat, feats  # as `mrse index` does: the graph is built from the index alone
    rss["written"] = _rss_mb()
    index.optimize()
    built = time.perf_counter()
    rss["hnsw_built"] = _rss_mb()
    out = {
        "items": n,
        "events": len(events),
        "generate_s": round(generate_s, 1),
        "index_build_s": round(built - t1, 1),
        "index_write_s": round(written - t1, 1),
        "index_hnsw_s": round(built - written, 1),
        "indexed_vectors": index.indexed_vectors(),
        "build_peak_rss_mb": _peak_rss_mb(),
        "build_rss_mb": rss,
    }
    queries = _query_vectors(cfg, dataset, run)
    configured = index.options
    for suffix, cats in filters.items():
        f = SearchFilter(categories=cats) if cats else None
        exact, exact_ms = [], []
        for q in queries:
            a0 = time.perf_counter()
            exact.append({h.item_id for h in index.search(q, cfg.k, f, exact=True)})
            exact_ms.append((time.perf_counter() - a0) * 1e3)
        out[f"exact_p50_ms{suffix}"] = round(float(np.percentile(exact_ms, 50)), 2)
        if cats:
            out[f"categories{suffix}"] = len(cats)
        sweep = {}
        default_ef = configured.ef_for(f, cfg.k)
        for ef in sorted({default_ef, *cfg.ef_sweep}):
            # a search-time parameter: this ef with or without a filter
            index.options = replace(configured, hnsw_ef=ef, hnsw_ef_filtered=ef)
            recalls, ann_ms = [], []
            for q, truth in zip(queries, exact, strict=True):
                a0 = time.perf_counter()
                ann = {h.item_id for h in index.search(q, cfg.k, f)}
                ann_ms.append((time.perf_counter() - a0) * 1e3)
                if truth:
                    recalls.append(len(ann & truth) / len(truth))
            sweep[ef] = (
                round(float(np.mean(recalls)), 4),
                round(float(np.percentile(ann_ms, 50)), 2),
            )
        out[f"ef_sweep{suffix}"] = {
            str(ef): {"recall100": r, "p50_ms": ms} for ef, (r, ms) in sweep.items()
        }
        out[f"recall100{suffix}"], out[f"search_p50_ms{suffix}"] = sweep[default_ef]
    index.options = configured
    index.close()
    out["index_disk_mb"] = round(_du(index_cfg.root / VERSION) / 2**20, 1)
    return out


def _rss_mb() -> float:
    """This process's resident memory now (MB)."""
    return _memory(os.getpid())["VmRSS"]


def _du(path: Path) -> int:
    """Bytes allocated on disk (Edge preallocates its pages and WAL files sparsely)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def _profiles(cfg: ScaleBenchConfig) -> Path:
    """The real shoppers' online profiles (every real event through the worker's fold),
    written once; replica 0 of the synthetic catalog holds their items."""
    from mrse.data import load_dataset
    from mrse.features.store import FeatureStoreConfig, ProfileStore
    from mrse.streaming.producer import dataset_events
    from mrse.streaming.service import catalog_for_profiles
    from mrse.streaming.updater import ProfileUpdater

    where = cfg.work_dir / "profiles"
    if (where / "done").exists():
        return where
    shutil.rmtree(where, ignore_errors=True)
    store = ProfileStore(FeatureStoreConfig(data_dir=where))
    store.apply()
    dataset = load_dataset(cfg.data)
    catalog, profile = catalog_for_profiles(cfg.data, cfg.run, cfg.cache_dir)
    ProfileUpdater(store, catalog, profile).apply(dataset_events(dataset))

    (where / "done").write_text("ok")
    return where


def _serve_config(cfg: ScaleBenchConfig, n: int, port: int, workers: int):
    from mrse.experiments.assignment import Arm, Experiment
    from mrse.features.store import FeatureStoreConfig
    from mrse.serving.app import ServeConfig

    return ServeConfig(
        data=cfg.work_dir / str(n) / "data",
        models={VERSION: cfg.run},
        experiments=(Experiment("bench", (Arm("mrse", 1.0, VERSION, "mrse_v1", VERSION),)),),
        default_experiment="bench",
        index=index_config(cfg, n),
        feature_store=FeatureStoreConfig(data_dir=cfg.work_dir / "profiles"),
        address=f"127.0.0.1:{port}",
        workers=workers,
        feature_cache=cfg.cache_dir,
        watch_s=None,
    )


def serve_one(serve_cfg, ready) -> None:
    import asyncio

    from mrse.logs import setup_logging
    from mrse.serving.app import serve

    setup_logging(False)
    asyncio.run(serve(serve_cfg, on_ready=ready.set))


def _serve_many(serve_cfg, ready) -> None:
    from mrse.logs import setup_logging
    from mrse.serving.workers import serve_workers

    setup_logging(False)
    raise SystemExit(serve_workers(serve_cfg, ready))


def _memory(pid: int) -> dict[str, float]:
    """Resident memory of process ``pid`` (MB): all of it, and the anonymous part (what is
    not a memory-mapped file: the index's mmapped segments and the page cache excluded)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def start_server(target, serve_cfg, timeout: float = 900.0):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=target, args=(serve_cfg, ready))
    t0 = time.perf_counter()
    proc.start()
    while not ready.wait(0.05):
        if not proc.is_alive():
            raise RuntimeError(f"the server exited ({proc.exitcode}) before serving")
        if time.perf_counter() - t0 > timeout:
            proc.kill()
            raise TimeoutError("the server did not start in time")
    return proc, time.perf_counter() - t0


def stop_server(proc) -> None:
    import signal

    if proc.is_alive() and proc.pid is not None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.join(60)
    if proc.is_alive():
        proc.kill()


def search_requests(cfg: ScaleBenchConfig) -> list[bytes]:
    import pandas as pd

    from mrse.v1 import search_pb2

    q = pd.read_parquet(cfg.data / "queries.parquet")
    return [
        search_pb2.SearchRequest(
            query=str(query), user_id=user if isinstance(user, str) else "", k=cfg.k
        ).SerializeToString()
        for query, user in zip(q["query"], q["user_id"], strict=True)
    ]


def index_memory(cfg: ScaleBenchConfig, n: int) -> dict:
    """What the opened shard itself holds in anonymous memory (HNSW links, id tracker, payload
    indexes) after searches touched it: to tell the index's share of a server's memory from
    the server's own. Runs in its own process."""
    from mrse.index.build import open_index
    from mrse.training.checkpoint import load_run

    d = load_run(cfg.run).config.model.dim
    before = _memory(os.getpid())
    index = open_index(index_config(cfg, n), VERSION, d)
    rng = np.random.default_rng(0)
    for q in rng.standard_normal((200, d)).astype(np.float32):
        index.search(q, cfg.k)
    after = _memory(os.getpid())
    index.close()
    return {
        "index_rss_anon_mb": round(after["RssAnon"] - before["RssAnon"], 1),
        "index_rss_file_mb": round(after["RssFile"] - before["RssFile"], 1),
    }


def serve_stage(cfg: ScaleBenchConfig, n: int) -> dict:
    """Start-up, memory and latency of one server process; QPS of two."""
    import grpc
    import psutil

    from mrse.jobs.loadgen import run_load
    from mrse.streaming.broker import free_port
    from mrse.v1 import search_pb2, search_pb2_grpc

    requests = search_requests(cfg)
    port = free_port()
    proc, start_s = start_server(serve_one, _serve_config(cfg, n, port, 1))
    out: dict = {"server_start_s": round(start_s, 2)}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            reqs = [search_pb2.SearchRequest.FromString(r) for r in requests]

            def timed(batch) -> list[float]:
                lat = []
                for r in batch:
                    t = time.perf_counter()
                    stub.Search(r, timeout=30)
                    lat.append((time.perf_counter() - t) * 1e3)
                return lat

            # first pass: every query, shopper and hit page met for the first time since start
            # (the index's pages as the OS left them); then the same requests again, warm
            cold = timed(reqs)
            warm = timed([reqs[i % len(reqs)] for i in range(cfg.latency_requests)])
        for name, lat in (("", warm), ("_cold", cold)):
            out[f"p50_ms{name}"] = round(float(np.percentile(lat, 50)), 2)
            out[f"p99_ms{name}"] = round(float(np.percentile(lat, 99)), 2)
        mem = _memory(proc.pid)
        out["server_rss_mb"] = mem.get("VmRSS")
        out["server_rss_anon_mb"] = mem.get("RssAnon")
        out["server_rss_file_mb"] = mem.get("RssFile")
    finally:
        stop_server(proc)
    port = free_port()
    proc, start2 = start_server(_serve_many, _serve_config(cfg, n, port, 2))
    out["two_process_start_s"] = round(start2, 2)
    sweep = []
    try:
        for c in cfg.clients:
            r = run_load(f"127.0.0.1:{port}", requests, c, cfg.load_s, warmup_s=2.0)
            lat = np.asarray(r.latencies_ms)
            pct = {f"p{q}_ms": round(float(np.percentile(lat, q)), 2) if lat.size else None
                   for q in (50, 99)}  # fmt: skip
            row = {"clients": c, "qps": round(len(lat) / cfg.load_s, 1), "errors": r.errors,
                   **pct}  # fmt: skip
            sweep.append(row)
            logger.info("%d items, 2 processes, %d clients: %s", n, c, row)
            if row["p99_ms"] is None or row["p99_ms"] > 50:
                break
        children = psutil.Process(proc.pid).children(recursive=True)
        rss = sorted((c.memory_info().rss for c in children), reverse=True)[:2]
        out["two_process_rss_mb"] = [round(x / 2**20, 1) for x in rss]
    finally:
        stop_server(proc)
    ok = [
        r["qps"] for r in sweep if r["p99_ms"] is not None and r["p99_ms"] <= 50 and not r["errors"]
    ]
    out["qps_at_p99_50ms"] = max(ok) if ok else 0.0
    out["load_sweep"] = sweep
    return out


def train_stage(cfg: ScaleBenchConfig, n: int, mining: str) -> dict:
    """Training steps on the N-item catalog with ``mining``. Runs in its own process."""
    import pandas as pd
    import torch

    from mrse.data.dataset import Dataset, ValidationReport
    from mrse.encoders.cache import FeatureCache
    from mrse.features.synthetic import synthetic_events
    from mrse.losses.hybrid import HybridLoss
    from mrse.models.inference import encode_catalog
    from mrse.training.config import apply_overrides, load_config
    from mrse.training.distributed import init_from_env
    from mrse.training.examples import build_examples
    from mrse.training.trainer import (
        PreparedData,
        build_model,
        example_queries,
        item_memory,
        loss_weights,
        run_epoch,
        seed_everything,
        split_data,
    )

    torch.set_num_threads(1)
    dataset, run, feats = _base(cfg)
    cat = _catalog(cfg, n, dataset, run, feats)
    del feats
    rss = {"catalog": _rss_mb()}
    events = synthetic_events(dataset.events, n, len(dataset.items))
    with_query = events[events["query"].notna() & (events["query"].fillna("").str.strip() != "")]
    rng = np.random.default_rng(0)
    take = rng.choice(len(with_query), min(cfg.train_examples, len(with_query)), replace=False)
    sample = with_query.iloc[np.sort(take)]
    users = set(sample["user_id"].dropna())
    history = events[events["user_id"].isin(users)]
    items = cat.items.drop(columns="base").assign(description="", image="")
    grown = Dataset(cfg.data, items, history, pd.DataFrame(), pd.DataFrame(), None,
                    ValidationReport())  # fmt: skip
    config = apply_overrides(load_config("mrse"), {"loss": {"mining": mining}})
    examples = build_examples(replace(grown, events=sample))
    with FeatureCache.open_default(cfg.cache_dir) as cache:
        queries = example_queries(run.featurizer, history, cat.features, examples, config, cache)
    rss["examples"] = _rss_mb()
    prep = PreparedData(grown, run.featurizer.stats, cat.features, examples, queries)
    gen = seed_everything(0)
    split = split_data(prep, config)
    parallel = init_from_env()
    model, opt, dense = build_model(config, parallel)
    memory = item_memory(config)
    t0 = time.perf_counter()
    index = encode_catalog(model, cat.features)
    refresh_s = time.perf_counter() - t0
    rss["item_embeddings"] = _rss_mb()
    criterion = HybridLoss(**loss_weights(config))
    steps = min(cfg.train_steps, max(1, len(split.train) // config.batch_size))
    t1 = time.perf_counter()
    _, seen = run_epoch(model, opt, dense, criterion, prep, split, index, config, parallel, gen,
                        steps, f"train {n} ({mining})", memory)  # fmt: skip
    train_s = time.perf_counter() - t1
    return {
        "mining": mining,
        "steps": steps,
        "examples_per_s": round(seen / train_s, 1),
        "refresh_s": round(refresh_s, 2),
        "refreshes_per_epoch_index_mining": -(-len(split.train) // config.batch_size)
        // config.refresh_every,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_mb": {**rss, "trained": _rss_mb()},
    }


def run_scale_benchmark(cfg: ScaleBenchConfig) -> dict:
    cfg = replace(cfg, work_dir=cfg.work_dir.resolve(), run=cfg.run.resolve(),
                  data=cfg.data.resolve())  # fmt: skip
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict] = {}
    if "serve" in cfg.stages:
        in_child(_profiles_child, cfg)
    for n in cfg.sizes:
        row: dict = {}
        if "build" in cfg.stages:
            logger.info("%d items: building the index", n)
            row.update(in_child(build_stage, cfg, n))
        if "serve" in cfg.stages:
            logger.info("%d items: serving", n)
            row.update(in_child(serve_stage, cfg, n))
            row.update(in_child(index_memory, cfg, n))
            # the server's own memory: its anonymous memory less what the opened shard holds
            row["server_rss_excl_index_mb"] = round(
                row["server_rss_anon_mb"] - row["index_rss_anon_mb"], 1
            )
        if "train" in cfg.stages:
            for i, mining in enumerate(cfg.mining):
                logger.info("%d items: training with %s mining", n, mining)
                t = in_child(train_stage, cfg, n, mining)
                row.setdefault("train", {})[mining] = t
                if i == 0:
                    row["train_examples_per_s"] = t["examples_per_s"]
                    row["train_peak_rss_mb"] = t["peak_rss_mb"]
                    row["train_mining"] = mining
        runs[str(n)] = row
        logger.info("%d items: %s", n, {k: row.get(k) for k in RUN_KEYS})
    return {
        "benchmark": "bench-scale",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GB",
        "data": str(cfg.data),
        "run": str(cfg.run),
        "synthetic": "catalogs grown from the real items' encoder features with noise: they "
        "measure cost, not retrieval quality",
        "edge": cfg.edge,
        "runs": runs,
    }


def _profiles_child(cfg: ScaleBenchConfig) -> dict:
    return {"profiles": str(_profiles(cfg))}


# (JSON key, row label) of the markdown table, in order
TABLE_ROWS = (
    ("index_build_s", "index build (s): item tower + upsert + HNSW"),
    ("index_hnsw_s", "  of which HNSW graph (s)"),
    ("build_peak_rss_mb", "index build peak memory (MB)"),
    ("index_disk_mb", "index on disk (MB)"),
    ("server_start_s", "server start-up to SERVING (s)"),
    ("server_rss_mb", "server resident memory (MB), index pages included"),
    ("server_rss_excl_index_mb", "server's own memory (MB): anonymous less the opened shard's"),
    ("index_rss_anon_mb", "opened shard's own RAM (MB)"),
    ("p50_ms", "one client p50 (ms), steady"),
    ("p99_ms", "one client p99 (ms), steady"),
    ("p99_ms_cold", "one client p99 (ms), first pass after start"),
    ("qps_at_p99_50ms", "QPS at p99 < 50 ms, two processes"),
    ("two_process_start_s", "two processes: start-up (s), index copied per process"),
    ("recall100", "ANN recall@100, no filter"),
    ("recall100_filter_10pct", "ANN recall@100, 10% category filter"),
    ("recall100_filter_1pct", "ANN recall@100, 1% category filter"),
    ("search_p50_ms", "ANN search p50 (ms), no filter"),
    ("exact_p50_ms", "exact search p50 (ms), no filter"),
    ("train_examples_per_s", "training examples/s (memory mining)"),
    ("train_peak_rss_mb", "training peak memory (MB)"),
)


def markdown_table(result: dict) -> str:
    """The runs of a bench-scale result as a markdown table (one column per size)."""
    runs = result["runs"]
    sizes = sorted(runs, key=int)
    lines = ["| measure | " + " | ".join(f"{int(n):,} items" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]  # fmt: skip
    rows = list(TABLE_ROWS)
    for key, label in rows:
        cells = []
        for n in sizes:
            v = runs[n].get(key)
            cells.append("-" if v is None else f"{v:,}" if isinstance(v, int | float) else str(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for miner in ("index",):
        cells = [str(runs[n].get("train", {}).get(miner, {}).get("examples_per_s", "-"))
                 for n in sizes]  # fmt: skip
        lines.append(f"| training examples/s ({miner} mining) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
