"""The stream worker against real Apache Kafka: completeness, crashes, broker restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
from mrse.streaming.producer import ReplayConfig, dataset_events, replay
from mrse.streaming.updater import ProfileUpdater
from mrse.streaming.worker import StreamWorker, WorkerConfig

from ..conftest import BENCHMARKS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _dataset_dir(sample_hm: Path) -> Path:
    """All of hm where the benchmarks are present (CI), else the bundled sample."""
    full = BENCHMARKS / "hm"
    return full if (full / "events.parquet").exists() else sample_hm


@pytest.fixture(scope="module")
def hm(sample_hm):
    data = _dataset_dir(sample_hm)
    ds = load_dataset(data)
    with FeatureCache.open_default() as cache:
        feats, _ = encode_items(ds, cache)
    catalog = build_catalog_features(ds, feats, FeatureStats.fit(feats), ModelConfig())
    return data, ds, catalog


def _assert_matches_offline(store: ProfileStore, events, catalog) -> None:
    cfg = ProfileConfig()
    by_user: dict[str, list] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(
            profile_event(catalog, catalog.index[e.item_id], e.ts)
        )
    online = store.read(by_user)
    for user, evs in by_user.items():
        want = profile_from_events(evs, cfg, 384, 1280)
        got = online[user]
        assert got is not None, user
        assert got.state.count == want.count, user  # nothing lost, nothing counted twice
        np.testing.assert_allclose(got.state.text_sum, want.text_sum, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(got.state.image_sum, want.image_sum, rtol=1e-6, atol=1e-9)
        assert got.state.recent_items == want.recent_items


def test_replaying_all_events_equals_offline_profiles(kafka, hm, tmp_path):
    data, ds, catalog = hm
    events = dataset_events(ds)
    topic = "clicks-complete"
    replay(events, ReplayConfig(bootstrap=kafka.bootstrap, topic=topic))
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    for junk in (
        b"{",
        b'{"event_id": "z"}',
        json.dumps(
            {
                "event_id": "a",
                "user_id": "u",
                "item_id": events[0].item_id,
                "type": "click",
                "ts_ms": 1,
            }
        ).encode(),
    ):
        producer.send(topic, value=junk)
    producer.flush()
    producer.close()
    store = ProfileStore(FeatureStoreConfig(data_dir=tmp_path / "feast"))
    store.apply()
    worker = StreamWorker(
        WorkerConfig(
            bootstrap=kafka.bootstrap,
            topic=topic,
            dead_letter_topic=f"{topic}.dlq",
            group_id="complete",
            session_timeout_ms=2000,
        ),
        ProfileUpdater(store, catalog, ProfileConfig()),
    )
    stats = worker.run(stop=threading.Event(), idle_exit_s=5.0)
    assert stats.applied == len(events) and stats.duplicates == 0
    assert dict(stats.dead_lettered) == {"bad_json": 1, "missing_field": 1, "bad_timestamp": 1}
    _assert_matches_offline(store, events, catalog)


def _start_worker(data: Path, kafka, feature_dir: Path, topic: str, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, str(REPO / "servers" / "stream_worker.py"),
        "--data", str(data), "--bootstrap", kafka.bootstrap, "--topic", topic,
        "--group-id", "crashy", "--max-batch", "200", "--feature-dir", str(feature_dir),
        "--idle-exit", "8",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ}
    )


def test_sigkill_worker_and_restart_broker_lose_and_double_nothing(kafka, hm, tmp_path):
    data, ds, catalog = hm
    events = dataset_events(ds)
    topic = "clicks-crash"
    half = len(events) // 2
    replay(events[:half], ReplayConfig(bootstrap=kafka.bootstrap, topic=topic))
    feature_dir = tmp_path / "feast"
    log = tmp_path / "worker.log"
    store = ProfileStore(FeatureStoreConfig(data_dir=feature_dir))
    store.apply()
    worker = _start_worker(data, kafka, feature_dir, topic, log)
    # let it apply part of the stream, then kill it without any chance to clean up
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        applied = sum(
            p.state.count for p in store.read({e.user_id for e in events[:half]}).values() if p
        )
        if applied > 0:
            break
        time.sleep(0.5)
    assert applied > 0, log.read_text()[-3000:]
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    kafka.restart_broker()  # persisted log and committed offsets survive
    replay(events[half:], ReplayConfig(bootstrap=kafka.bootstrap, topic=topic))
    worker = _start_worker(data, kafka, feature_dir, topic, log)
    assert worker.wait(timeout=600) == 0, log.read_text()[-3000:]
    _assert_matches_offline(ProfileStore(FeatureStoreConfig(data_dir=feature_dir)), events, catalog)
