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
