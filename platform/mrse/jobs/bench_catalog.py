"""`mrse bench-catalog`: how fast catalog changes reach search, on the embedded default.

As deployed: the embedded broker, the catalog worker in its own process
(``servers/catalog_worker.py``), and a search engine (this process) that follows the worker's
index topic into its Qdrant Edge shard. Latency is measured from handing an event to the
producer to the first search that reflects it; "a search" is a query with the item's own
vector on the index the engine searches (rank-independent: the bench model need not rank an item
first for its title). New items carry photo bytes no encoder has seen (encoding included).
Then sustained throughput (a burst of patches, then of new items with photos, timed until the
last is visible), and a rollout under closed-loop load.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from mrse.catalog.events import CatalogEvent, ItemContent
from mrse.catalog.service import CatalogFollow
from mrse.catalog.worker import CATALOG
from mrse.data import load_dataset
from mrse.experiments.assignment import Arm, Experiment
from mrse.index.base import SearchFilter
from mrse.index.build import IndexConfig, build_index
from mrse.kafka_client import client_options
from mrse.serving.app import ServeConfig, build_engine
from mrse.streaming.broker import EmbeddedBroker

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[3]


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000, q)), 1) if xs else float("nan")


def _start_worker(work: Path, bootstrap: str, run: Path, data: Path, index: IndexConfig,
                  url: str, cache_dir: Path | None) -> subprocess.Popen:  # fmt: skip
    config = {
        "worker": {"bootstrap": bootstrap, "group_id": "bench", "max_batch": 2000,
                   "session_timeout_ms": 2000},
        "models": [{"version": "bench", "run": str(run.resolve())}],
        "index": {"backend": "edge", "root": str(index.root)},
        "state": str(work / "state.sqlite"),
        "photo_roots": [str(work / "photos"), str(data.resolve())],
        "experiments_url": url, "data": str(data.resolve()), "watch_s": 0.5,
    }  # fmt: skip
    if cache_dir is not None:
        config["cache_dir"] = str(cache_dir)
    (work / "catalog.yaml").write_text(yaml.safe_dump(config))
    log = (work / "catalog-worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, str(REPO / "servers" / "catalog_worker.py"), "--config",
         str(work / "catalog.yaml")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def run_catalog_benchmark(
    data: Path, run: Path, work: Path, patches: int = 200, new_items: int = 20,
    burst_patches: int = 20_000, burst_new: int = 100, cache_dir: Path | None = None,
) -> dict:  # fmt: skip
    from kafka import KafkaProducer

    dataset = load_dataset(data)
    items = dataset.items.reset_index(drop=True)
    work = work.resolve()
    if work.exists():
        shutil.rmtree(work)  # a fresh index, item state and experiments table every run
    photos = work / "photos"
    photos.mkdir(parents=True)
    index = IndexConfig(root=work / "index")
    url = f"sqlite:///{work / 'experiments.db'}"
    build_index(data, run, index, "bench", cache_dir)
    nonce = np.random.default_rng(int(time.time()))
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        worker = _start_worker(work, broker.bootstrap, run, data, index, url, cache_dir)
        engine = build_engine(
            ServeConfig(
                data=data, models={"bench": run},
                experiments=(Experiment("b", (Arm("a", 1.0, "bench", "mrse_v1", "bench"),)),),
                default_experiment="b", index=index, feature_cache=cache_dir,
                catalog=CatalogFollow(broker.bootstrap), experiments_url=url, watch_s=0.5,
            )
        )  # fmt: skip
        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0, **client_options()
        )
        version = [int(time.time() * 1000)]
        shard = engine.bundles["bench"].index
        every = SearchFilter(in_stock=(True, False))

        def send(event_kind: str, item_id: str, content=None, **attrs) -> None:
            version[0] += 1
            e = CatalogEvent(f"b{version[0]}", item_id, version[0], time.time(), event_kind,  # type: ignore[arg-type]
                             content, attrs)  # fmt: skip
            producer.send(CATALOG, key=item_id.encode(), value=e.to_json())

        def seen(item: str) -> dict:
            """The payload a search returns for ``item`` ({} while it is not there)."""
            vec = shard.vectors([item]).get(item)
            if vec is None:
                return {}
            return next((h.payload for h in shard.search(vec, 5, every) if h.item_id == item), {})

        def wait(check, timeout: float = 120.0) -> None:
            t0 = time.perf_counter()
            while not check():
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(f"a catalog change was not visible in {timeout:.0f} s")
                if worker.poll() is not None:
                    raise RuntimeError(f"the catalog worker exited; see {work}/catalog-worker.log")
                time.sleep(0.002)

        def new_item(n: int, tag: str) -> ItemContent:
            row = items.iloc[int(nonce.integers(len(items)))]
            photo = ""
            if row["image"]:
                img = Image.open(row["image"]).convert("RGB").rotate(float(nonce.uniform(1, 30)))
                buf = io.BytesIO()
                img.save(buf, format="JPEG")
                path = photos / f"{tag}-{n}.jpg"
                path.write_bytes(buf.getvalue())
                photo = str(path)
            title = f"{row['title']} {tag} {nonce.integers(1 << 30)}"
            return ItemContent(title, row["description"], row["brand"], row["category"], photo)

        try:
            send("patch", items["item_id"].iloc[0], price=1.0)  # the worker is up and joined
            producer.flush()
            wait(lambda: seen(items["item_id"].iloc[0]).get("price") == 1.0, 300)
            patch_s = []
            for n in range(patches):
                item = items["item_id"].iloc[int(nonce.integers(len(items)))]
                price = round(float(nonce.uniform(1, 100)), 2)
                stock = {} if n % 2 else {"in_stock": bool(n % 4)}
                t = time.perf_counter()
                send("patch", item, price=price, **stock)
                producer.flush()
                wait(lambda i=item, p=price: seen(i).get("price") == p)
                patch_s.append(time.perf_counter() - t)
            new_s = []
            for n in range(new_items):
                content, item = new_item(n, "new"), f"bench-new-{n}"
                t = time.perf_counter()
                send("upsert", item, content, price=10.0, in_stock=True)
                producer.flush()
                wait(lambda i=item: bool(seen(i)))
                new_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            for n in range(burst_patches):
                last = items["item_id"].iloc[n % len(items)]
                send("patch", last, price=float(n))
            producer.flush()
            wait(lambda: seen(last).get("price") == float(burst_patches - 1), 600)
            patches_per_s = burst_patches / (time.perf_counter() - t)
            contents = [new_item(n, "bulk") for n in range(burst_new)]
            t = time.perf_counter()
            for n, c in enumerate(contents):
                send("upsert", f"bench-bulk-{n}", c, price=5.0, in_stock=True)
            producer.flush()
            wait(lambda: bool(seen(f"bench-bulk-{burst_new - 1}")), 900)
            new_per_s = burst_new / (time.perf_counter() - t)
            rollout = _rollout_under_load(engine, dataset, run, url)
        finally:
            producer.close()
            worker.terminate()
            worker.wait(60)
            engine.close()
    return {
        "data": str(data),
        "items": len(items),
        "patches_timed": patches,
        "patch_visible_p50_ms": _pct(patch_s, 50),
        "patch_visible_p99_ms": _pct(patch_s, 99),
        "new_items_timed": new_items,
        "new_item_searchable_p50_ms": _pct(new_s, 50),
        "new_item_searchable_p99_ms": _pct(new_s, 99),
        "burst_patches": burst_patches,
        "patches_per_s": round(patches_per_s, 1),
        "burst_new_items": burst_new,
        "new_items_per_s": round(new_per_s, 2),
        **rollout,
    }


def _rollout_under_load(engine, dataset, run: Path, url: str, clients: int = 2) -> dict:
    """Closed-loop load (``clients`` threads, engine.search) while a second model version is
    registered, its index written by the catalog worker, and the arm pointed at it (the old
    version then retired): failed requests, and p99 while it happens against steady p99."""
    from mrse.experiments.store import ExperimentStore
    from mrse.jobs.rollout import register_version, set_arm
    from mrse.serving.validation import ValidRequest

    queries = list(dataset.queries["query"])
    stop = threading.Event()
    lat: list[tuple[float, float]] = []  # (end time, seconds)
    failed: list[str] = []

    def client(c: int) -> None:
        n = c
        while not stop.is_set():
            req = ValidRequest(queries[n % len(queries)], None, 100, SearchFilter(), None,
                               f"r{n}", None)  # fmt: skip
            t = time.perf_counter()
            try:
                engine.search(req)
            except Exception as exc:  # every failure counts
                failed.append(type(exc).__name__)
            lat.append((time.perf_counter(), time.perf_counter() - t))
            n += clients

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    time.sleep(10)
    switch_start = time.perf_counter()
    store = ExperimentStore(url)
    register_version(store, "bench-v2", run, timeout_s=900)
    index_written = time.perf_counter()
    set_arm(store, "b", "a", version="bench-v2")
    while "bench" in engine.bundles:  # until v2 serves and the old version is retired
        time.sleep(0.1)
    switched = time.perf_counter()
    time.sleep(engine.watcher.retire_grace_s + 1)
    switch_end = time.perf_counter()
    time.sleep(5)
    stop.set()
    for t in threads:
        t.join(30)
    store.close()
    steady = [s for end, s in lat if end < switch_start]
    during = [s for end, s in lat if switch_start <= end <= switch_end]
    return {
        "rollout_failed_requests": len(failed),
        "rollout_requests": len(during),
        "rollout_seconds": round(switch_end - switch_start, 1),
        "rollout_p99_ms": _pct(during, 99),
        "steady_p99_ms": _pct(steady, 99),
        "rollout_p99_over_steady": round(_pct(during, 99) / _pct(steady, 99), 2),
        # p99 per phase: the worker writing the new index (its own process), the server
        # loading it, the old version draining and closing
        "phase_p99_ms": {
            name: _pct([s for end, s in lat if a <= end < b], 99)
            for name, a, b in (
                ("index_written", switch_start, index_written),
                ("server_loads", index_written, switched),
                ("retire", switched, switch_end),
            )
        },  # fmt: skip
    }
