"""`mrse bench-replica`: how long a new replica and a rollout take to serve on the embedded
backend when they start from the catalog worker's snapshot, at N items (the synthetic catalogs
of `mrse bench-scale`; its build stage writes the shard, and runs here when it is missing).

Per N, on an embedded broker:

1. The built shard (HNSW graph built) is published as a snapshot standing at the start of the
   index topic, as the catalog worker publishes its own (``publish_s``: the copy).
2. ``changes`` index writes follow it on the topic (new vectors for some items, a new price for
   others): what a replica must catch up on.
3. A new replica: a server process with an empty index directory and no dataset, following the
   topic with the snapshot directory. ``replica_start_s``: from the process's start to SERVING
   (the snapshot copied, the model loaded, the changes applied, the warm-up query); then a
   filtered search must find exactly the re-priced items.
4. A rollout on that replica under one client's closed-loop load: a version whose snapshot is
   published is marked ready and the arm pointed at it. ``rollout_s``: from that write to the
   first answer from the new version (``watch_s`` included); ``rollout_failed`` requests.
5. Where N <= ``replay_max``: the same rollout of a version with no snapshot, its index
   replayed from its own topic as before snapshots (``rollout_replay_s``), for comparison.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

from mrse.jobs.bench_scale import (
    VERSION,
    ScaleBenchConfig,
    build_stage,
    in_child,
    index_config,
    search_requests,
    serve_one,
    start_server,
    stop_server,
)

logger = logging.getLogger(__name__)

TOPIC = "bench.index"
PRICE = 99_999.0  # the re-priced items' new price: a filter on it finds exactly them


def _ids(cfg: ScaleBenchConfig, n: int) -> list[str]:
    from mrse.data import load_dataset
    from mrse.features.synthetic import synthetic_items

    return list(synthetic_items(load_dataset(cfg.data).items, n)["item_id"])


def _changes(ids: list[str], count: int, dim: int, seed: int = 0):
    """``count`` index writes: half the items get new vectors, half a new price."""
    from mrse.catalog.writes import IndexWrites, Upsert
    from mrse.index.points import attribute_payload

    rng = np.random.default_rng(seed)
    chosen = [ids[i] for i in rng.choice(len(ids), size=count, replace=False)]
    writes = IndexWrites()
    half = count // 2
    for item_id in chosen[:half]:
        vec = rng.standard_normal(dim).astype(np.float32)
        payload = attribute_payload("bench", "bench", 10.0)
        writes.add("upsert", item_id, upsert=Upsert(payload, {VERSION: (vec, {})}))
    for item_id in chosen[half:]:
        writes.add("patch", item_id, patch={"price": PRICE})
    return writes, len(chosen) - half


def _backfill(bootstrap: str, shard: Path, dim: int, ids: list[str], version: str) -> None:
    """The whole shard written to ``version``'s own index topic, as the catalog worker writes
    a new version without snapshots (vectors and payloads as stored; no lexical terms)."""
    from mrse.catalog.worker import TopicSink
    from mrse.catalog.writes import IndexWrites, Upsert
    from mrse.index.base import SearchFilter
    from mrse.index.edge import EdgeIndex

    index = EdgeIndex(shard, dim)
    sink = TopicSink(bootstrap, TOPIC)
    try:
        for s in range(0, len(ids), 1000):
            chunk = ids[s : s + 1000]
            vectors = index.vectors(chunk)
            writes = IndexWrites()
            for hit in index.among(chunk, SearchFilter(in_stock=(True, False))):
                own = {k: v for k, v in hit.payload.items() if k in ("_x", "_p")}
                payload = {k: v for k, v in hit.payload.items() if k != "item_id" and k not in own}
                vec = (vectors[hit.item_id], own)
                writes.add("upsert", hit.item_id, upsert=Upsert(payload, {version: vec}))
            sink.write(writes, backfill=version)
    finally:
        sink.close()
        index.close()


def _serve_config(cfg: ScaleBenchConfig, n: int, port: int, bootstrap: str, url: str):
    from mrse.catalog.service import CatalogFollow
    from mrse.experiments.assignment import Arm, Experiment
    from mrse.serving.app import ServeConfig

    work = cfg.work_dir / str(n)
    return ServeConfig(
        data=None,  # a replica needs its config, models, index and stores only
        models={VERSION: cfg.run},
        experiments=(Experiment("bench", (Arm("mrse", 1.0, VERSION, "mrse_v1", VERSION),)),),
        default_experiment="bench",
        index=replace(index_config(cfg, n), root=work / "replica"),
        address=f"127.0.0.1:{port}",
        feature_cache=cfg.cache_dir,
        experiments_url=url,
        watch_s=0.5,
        retire_grace_s=2.0,
        catalog=CatalogFollow(bootstrap, TOPIC, catch_up_s=600.0, snapshots=work / "snapshots"),
    )


class _Load:
    """One client's closed-loop searches: when each answer came and from which version."""

    def __init__(self, address: str, requests: list[bytes]) -> None:
        self.address, self.requests = address, requests
        self.answers: list[tuple[float, str]] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        import grpc

        from mrse.v1 import search_pb2, search_pb2_grpc

        reqs = [search_pb2.SearchRequest.FromString(r) for r in self.requests]
        with grpc.insecure_channel(self.address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            i = 0
            while not self._stop.is_set():
                try:
                    r = stub.Search(reqs[i % len(reqs)], timeout=30)
                    self.answers.append((time.monotonic(), r.model_version))
                except grpc.RpcError:
                    self.failed += 1
                i += 1

    def first_from(self, version: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = next((t for t, v in self.answers if v == version), None)
            if hit is not None:
                return hit
            time.sleep(0.05)
        raise TimeoutError(f"no answer from {version} in {timeout:.0f}s")


def _rollout(url: str, run: Path, version: str, load: _Load, timeout: float) -> float:
    """Mark ``version`` ready and point the arm at it; seconds to its first answer."""
    from mrse.experiments.store import ExperimentStore
    from mrse.jobs.rollout import set_arm

    store = ExperimentStore(url)
    try:
        store.put_model(version, str(run))
        store.mark_ready(version, time.time(), {0: 0})
        t0 = time.monotonic()
        set_arm(store, "bench", "mrse", version=version)
    finally:
        store.close()
    return load.first_from(version, timeout) - t0


def _repriced(address: str, k: int) -> int:
    """How many items a search filtered to the new price finds."""
    import grpc

    from mrse.v1 import search_pb2, search_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        req = search_pb2.SearchRequest(query="dress", k=k, filters=[
            search_pb2.FieldFilter(field="price", gte=PRICE, lte=PRICE)])  # fmt: skip
        return len(stub.Search(req, timeout=60).results)


def replica_stage(cfg: ScaleBenchConfig, n: int, changes: int, replay_max: int) -> dict:
    """Steps 1-5 of the module's description for N items. Runs in its own process."""
    from mrse.catalog.snapshots import SnapshotStore
    from mrse.catalog.worker import TopicSink
    from mrse.streaming.broker import EmbeddedBroker, free_port
    from mrse.training.checkpoint import load_run

    work = cfg.work_dir / str(n)
    shard = index_config(cfg, n).root / VERSION
    dim = load_run(cfg.run).config.model.dim
    for d in ("snapshots", "replica"):
        shutil.rmtree(work / d, ignore_errors=True)
    (work / "experiments.db").unlink(missing_ok=True)
    url = f"sqlite:///{work / 'experiments.db'}"
    ids = _ids(cfg, n)
    out: dict = {"replica_changes": changes}
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        store = SnapshotStore(work / "snapshots", TOPIC)
        t = time.perf_counter()
        store.write({VERSION: shard}, {0: 0}, {VERSION: n})
        out["publish_s"] = round(time.perf_counter() - t, 2)
        allocated = sum(p.stat().st_blocks * 512 for p in shard.rglob("*") if p.is_file())
        out["snapshot_mb"] = round(allocated / 2**20, 1)  # on disk (the files are sparse)
        writes, repriced = _changes(ids, changes, dim)
        sink = TopicSink(broker.bootstrap, TOPIC)
        sink.write(writes)
        sink.close()
        port = free_port()
        address = f"127.0.0.1:{port}"
        proc, start_s = start_server(serve_one, _serve_config(cfg, n, port, broker.bootstrap, url))
        out["replica_start_s"] = round(start_s, 2)
        try:
            found = _repriced(address, min(repriced, 1000))
            out["replica_repriced_found"] = f"{found}/{min(repriced, 1000)}"
            if found != min(repriced, 1000):
                raise AssertionError(f"the replica did not catch up: {out}")
            # a new version, its snapshot published by the worker before it was marked ready
            store.write({"rolled": shard}, {0: 0}, {"rolled": n})
            with _Load(address, search_requests(cfg)) as load:
                time.sleep(1.0)
                out["rollout_s"] = round(_rollout(url, cfg.run, "rolled", load, 600), 2)
                if n <= replay_max:  # before snapshots: the whole index from its topic
                    t = time.perf_counter()
                    _backfill(broker.bootstrap, shard, dim, ids, "replayed")
                    out["backfill_write_s"] = round(time.perf_counter() - t, 1)
                    out["rollout_replay_s"] = round(
                        _rollout(url, cfg.run, "replayed", load, 3600), 2
                    )
                time.sleep(1.0)
            out["rollout_requests"] = len(load.answers)
            out["rollout_failed"] = load.failed
        finally:
            stop_server(proc)
    logger.info("%d items: %s", n, out)
    return out


def run_replica_benchmark(
    cfg: ScaleBenchConfig, changes: int = 1000, replay_max: int = 25_000
) -> dict:
    cfg = replace(cfg, work_dir=cfg.work_dir.resolve(), run=cfg.run.resolve(),
                  data=cfg.data.resolve())  # fmt: skip
    runs: dict[str, dict] = {}
    for n in cfg.sizes:
        row: dict = {}
        if not (index_config(cfg, n).root / VERSION).is_dir():
            logger.info("%d items: building the index", n)
            row.update(in_child(build_stage, cfg, n))
        logger.info("%d items: a new replica and a rollout from snapshots", n)
        row.update(in_child(replica_stage, cfg, n, changes, replay_max))
        runs[str(n)] = row
    import os
    import platform

    return {
        "benchmark": "bench-replica",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "data": str(cfg.data),
        "run": str(cfg.run),
        "synthetic": "catalogs grown from the real items' encoder features: they measure cost",
        "runs": runs,
    }
