"""`mrse bench-catalog`: how fast catalog changes reach search, on the embedded default.

One process holds what `make demo` runs: the embedded broker, the catalog worker (thread) and a
search engine following the worker's index topic. Measured from handing an event to the
producer to the first search that reflects it: price/stock patches and new items with a photo
(new photo bytes: encoding included), one at a time; then sustained throughput: a burst of
patches and of new items, timed until the engine's index has applied the last one.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mrse.catalog.events import CatalogEvent, ItemContent
from mrse.catalog.service import CatalogFollow, CatalogServiceConfig, build_catalog_worker
from mrse.catalog.worker import CATALOG, CatalogWorkerSettings
from mrse.data import load_dataset
from mrse.experiments.assignment import Arm, Experiment
from mrse.index.base import SearchFilter
from mrse.index.build import IndexConfig, build_index
from mrse.serving.app import ServeConfig, build_engine
from mrse.serving.validation import ValidRequest
from mrse.streaming.broker import EmbeddedBroker

logger = logging.getLogger(__name__)


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000, q)), 1)


def run_catalog_benchmark(
    data: Path, run: Path, work: Path, patches: int = 200, new_items: int = 20,
    burst_patches: int = 20_000, burst_new: int = 100, cache_dir: Path | None = None,
) -> dict:  # fmt: skip
    from kafka import KafkaProducer

    dataset = load_dataset(data)
    items = dataset.items.reset_index(drop=True)
    index = IndexConfig(root=work / "index")
    build_index(data, run, index, "bench", cache_dir)
    photos = work / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=work / "broker.log") as broker:
        worker = build_catalog_worker(
            CatalogServiceConfig(
                worker=CatalogWorkerSettings(broker.bootstrap, group_id="bench",
                                             session_timeout_ms=2000, max_batch=2000),
                models={"bench": run}, index=index, state=work / "state.sqlite",
                photo_roots=(photos, data), cache_dir=cache_dir,
            )
        )  # fmt: skip
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        assert worker.ready.wait(60), "the catalog worker did not start"
        engine = build_engine(
            ServeConfig(
                data=data, models={"bench": run},
                experiments=(Experiment("b", (Arm("a", 1.0, "bench", "mrse_v1", "bench"),)),),
                default_experiment="b", index=index, torch_threads=0, feature_cache=cache_dir,
                catalog=CatalogFollow(broker.bootstrap),
            )
        )  # fmt: skip
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
        version = [int(time.time() * 1000)]

        def send(event_kind: str, item_id: str, content=None, **attrs) -> None:
            version[0] += 1
            e = CatalogEvent(f"b{version[0]}", item_id, version[0], time.time(), event_kind,  # type: ignore[arg-type]
                             content, attrs)  # fmt: skip
            producer.send(CATALOG, key=item_id.encode(), value=e.to_json())

        def top(q: str, k: int = 1000) -> dict:
            req = ValidRequest(q, None, k, SearchFilter(in_stock=(True, False)), None, "b", None)
            return {r.item_id: r.payload for r in engine.search(req).results}

        def wait(check, timeout: float = 60.0) -> float:
            t0 = time.perf_counter()
            while not check():
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError("a catalog change was not visible in 60 s")
                time.sleep(0.002)
            return time.perf_counter() - t0

        def photo_of(i: int, tag: str) -> str:
            src = items["image"].iloc[i % len(items)]
            if not src:
                return ""
            img = Image.open(src).convert("RGB").rotate(3 + i % 40)
            path = photos / f"{tag}-{i}.jpg"
            buf = io.BytesIO()
            img.save(buf, format="JPEG")
            path.write_bytes(buf.getvalue())
            return str(path)

        try:
            rng = np.random.default_rng(0)
            patch_s = []
            for n in range(patches):
                i = int(rng.integers(len(items)))
                item, title = items["item_id"].iloc[i], items["title"].iloc[i] or "item"
                price = round(float(rng.uniform(1, 100)), 2)
                stock = {} if n % 2 else {"in_stock": bool(n % 4)}
                t = time.perf_counter()
                send("patch", item, price=price, **stock)
                producer.flush()
                wait(lambda i=item, q=title, p=price: top(q).get(i, {}).get("price") == p)
                patch_s.append(time.perf_counter() - t)
            new_s = []
            for n in range(new_items):
                i = int(rng.integers(len(items)))
                row = items.iloc[i]
                title = f"{row['title']} limited edition {n}"
                content = ItemContent(title, row["description"], row["brand"], row["category"],
                                      photo_of(n, "new"))  # fmt: skip
                item = f"bench-new-{n}"
                t = time.perf_counter()
                send("upsert", item, content, price=10.0, in_stock=True)
                producer.flush()
                wait(lambda i=item, q=title: i in top(q))
                new_s.append(time.perf_counter() - t)
            # sustained: a burst of patches, then of new items, until the engine has them all
            follower = engine.follower
            assert follower is not None
            base = follower.applied
            t = time.perf_counter()
            for n in range(burst_patches):
                send("patch", items["item_id"].iloc[n % len(items)], price=float(n % 1000))
            producer.flush()
            wait(lambda: worker.stats.consumed >= patches + new_items + burst_patches, 600)
            wait(lambda: follower.applied > base and not _lagging(follower), 600)
            patches_per_s = burst_patches / (time.perf_counter() - t)
            contents = []
            for n in range(burst_new):
                row = items.iloc[n % len(items)]
                photo = photo_of(n, "bulk")
                title = f"{row['title']} bulk {n}"
                contents.append(
                    ItemContent(title, row["description"], row["brand"], row["category"], photo)
                )
            t = time.perf_counter()
            for n, c in enumerate(contents):
                send("upsert", f"bench-bulk-{n}", c, price=5.0, in_stock=True)
            producer.flush()
            last = f"bench-bulk-{burst_new - 1}"
            wait(lambda: worker.stats.encoded >= new_items + burst_new, 900)
            wait(lambda: bool(engine.bundles["bench"].index.vectors([last])), 60)
            new_per_s = burst_new / (time.perf_counter() - t)
        finally:
            producer.close()
            stop.set()
            thread.join(60)
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
        "patches_per_s": round(patches_per_s, 1),
        "new_items_per_s": round(new_per_s, 2),
        "rollout_failed_requests": None,  # not measured: no in-server rollout yet (issue 10 #4)
        "rollout_p99_ms": None,
    }


def _lagging(follower) -> bool:
    """True while the follower has applied a batch in the last 0.5 s (still draining)."""
    return time.time() - follower.last_applied < 0.5
