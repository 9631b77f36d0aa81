"""Clickstream through the embedded broker (Tansu) into the embedded feature store (SQLite)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_items
from mrse.features.catalog import FeatureStats, build_catalog_features
from mrse.features.profile import ProfileConfig, profile_from_events
from mrse.features.queries import profile_event
from mrse.features.store import FeatureStoreConfig, ProfileStore
from mrse.models.config import ModelConfig
from mrse.streaming.broker import EmbeddedBroker
from mrse.streaming.producer import ReplayConfig, dataset_events, replay
from mrse.streaming.topics import DEAD_LETTER
from mrse.streaming.updater import ProfileUpdater
from mrse.streaming.worker import StreamWorker, WorkerConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def catalog(sample_hm):
    ds = load_dataset(sample_hm)
    with FeatureCache.open_default() as cache:
        feats, _ = encode_items(ds, cache)
    return ds, build_catalog_features(ds, feats, FeatureStats.fit(feats), ModelConfig())


def _offline(events, catalog, cfg):
    by_user: dict[str, list] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(
            profile_event(catalog, catalog.index[e.item_id], e.ts)
        )
    return {u: profile_from_events(evs, cfg, 384, 1280) for u, evs in by_user.items()}


def test_replay_builds_the_offline_profiles_and_is_idempotent(catalog, tmp_path):
    ds, cat = catalog
    cfg = ProfileConfig()
    store = ProfileStore(FeatureStoreConfig(data_dir=tmp_path / "feast"))
    store.apply()
    events = dataset_events(ds)
    with EmbeddedBroker() as broker:
        replay(events, ReplayConfig(bootstrap=broker.bootstrap))
        # duplicates and junk in the same stream
        replay(events[:25], ReplayConfig(bootstrap=broker.bootstrap, encoding="proto"))
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=broker.bootstrap)
        junk = [
            b"{oops",
            json.dumps(
                {
                    "event_id": "x",
                    "user_id": "u",
                    "item_id": "nope",
                    "type": "click",
                    "ts_ms": 1_600_000_000_000,
                }
            ).encode(),
            b"{" + b" " * 20000 + b"}",
        ]
        for j in junk:
            p.send("mrse.clicks", value=j)
        p.flush()
        p.close()
        worker = StreamWorker(
            WorkerConfig(
                bootstrap=broker.bootstrap, group_id="t1", max_batch=200, session_timeout_ms=2000
            ),
            ProfileUpdater(store, cat, cfg),
        )
        stats = worker.run(stop=threading.Event(), idle_exit_s=3.0)
        assert stats.applied == len(events)
        assert stats.duplicates == 25
        assert dict(stats.dead_lettered) == {"bad_json": 1, "unknown_item": 1, "oversized": 1}
        from kafka import KafkaConsumer

        dlq = KafkaConsumer(
            DEAD_LETTER,
            bootstrap_servers=broker.bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=3000,
        )
        reasons = sorted(dict(m.headers)["reason"].decode() for m in dlq)
        dlq.close()
        assert reasons == ["bad_json", "oversized", "unknown_item"]
    offline = _offline(events, cat, cfg)
    online = store.read(offline)
    for user, want in offline.items():
        got = online[user].state
        np.testing.assert_allclose(got.text_sum, want.text_sum, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(got.image_sum, want.image_sum, rtol=1e-6, atol=1e-9)
        assert got.count == want.count and got.recent_items == want.recent_items


def test_a_click_on_an_item_the_catalog_added_later_is_folded_in(catalog, tmp_path):
    """The worker's catalog snapshot lacks the new item; the catalog topic announces it (after
    the worker started), so a click on it reaches the profile. A click on an item nobody
    announced is still dead-lettered as unknown_item."""
    import time

    from kafka import KafkaProducer

    from mrse.catalog.events import CatalogEvent, ItemContent
    from mrse.catalog.listen import CatalogListener
    from mrse.catalog.publish import publish
    from mrse.streaming.events import Event
    from mrse.streaming.topics import CATALOG, CLICKS

    ds, cat = catalog
    store = ProfileStore(FeatureStoreConfig(data_dir=tmp_path / "feast"))
    store.apply()
    old = str(ds.items["item_id"].iloc[0])
    with EmbeddedBroker() as broker:
        listener = CatalogListener(broker.bootstrap)
        worker = StreamWorker(
            WorkerConfig(bootstrap=broker.bootstrap, group_id="t-new", session_timeout_ms=2000),
            ProfileUpdater(store, cat, ProfileConfig()),
            new_items=listener,
        )
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        assert worker.ready.wait(60)
        now = time.time()
        content = ItemContent("Linen shirt", "", "Demo", "Shirt", "")
        publish(broker.bootstrap, CATALOG,
                [CatalogEvent("c-1", "brand-new", 1, now, "upsert", content,
                              {"price": 10.0, "in_stock": True})])  # fmt: skip
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for n, item in enumerate([old, "brand-new", "never-announced"]):
            click = Event(f"e-{n}", "shopper", item, "click", now + n, None)
            producer.send(CLICKS, key=b"shopper", value=click.to_json())
        producer.flush()
        producer.close()
        deadline = time.time() + 30
        while time.time() < deadline and worker.stats.consumed < 3:
            time.sleep(0.05)
        stop.set()
        thread.join(30)
        listener.close()
    assert worker.stats.applied == 2 and dict(worker.stats.dead_lettered) == {"unknown_item": 1}
    state = store.read(["shopper"])["shopper"].state
    assert state.recent_items == (old, "brand-new") and state.recent_categories[-1] == "Shirt"
