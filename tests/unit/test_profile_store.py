"""Profiles round-trip through Feast's embedded SQLite online store."""

from __future__ import annotations

import numpy as np
import pytest

from mrse.features.profile import ProfileConfig, ProfileEvent, profile_from_events
from mrse.features.store import FeatureStoreConfig, ProfileStore, StoredProfile


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = ProfileStore(FeatureStoreConfig(data_dir=tmp_path_factory.mktemp("feast")))
    s.apply()
    return s


def test_profile_round_trip_and_unknown_user(store):
    rng = np.random.default_rng(0)
    events = [
        ProfileEvent(
            f"i{i}",
            1.6e9 + i * 3600,
            f"c{i % 2}",
            rng.normal(size=384),
            None if i % 3 else rng.normal(size=1280),
        )
        for i in range(7)
    ]
    state = profile_from_events(events, ProfileConfig(recent_items=5), 384, 1280)
    store.write({"u1": StoredProfile(state, ["e1", "e2"])})
    got = store.read(["u1", "nobody"])
    assert got["nobody"] is None
    back = got["u1"].state
    np.testing.assert_allclose(back.text_sum, state.text_sum, rtol=1e-12)
    np.testing.assert_allclose(back.image_sum, state.image_sum, rtol=1e-12)
    assert back.text_weight == pytest.approx(state.text_weight)
    assert back.recent_items == state.recent_items and back.recent_ts == state.recent_ts
    assert back.count == 7 and back.ref_ts == state.ref_ts
    assert got["u1"].applied_event_ids == ["e1", "e2"]


def test_write_overwrites(store):
    state = profile_from_events(
        [ProfileEvent("a", 1.6e9, "c", None, None)], ProfileConfig(), 384, 1280
    )
    store.write({"u2": StoredProfile(state, ["x"])})
    state2 = profile_from_events(
        [ProfileEvent("a", 1.6e9, "c", None, None), ProfileEvent("b", 1.7e9, "c", None, None)],
        ProfileConfig(),
        384,
        1280,
    )
    store.write({"u2": StoredProfile(state2, ["x", "y"])})
    assert store.read(["u2"])["u2"].state.count == 2


def test_updater_is_idempotent_and_its_cache_agrees_with_the_store(store, sample_hm):
    from mrse.data import load_dataset
    from mrse.encoders.cache import FeatureCache
    from mrse.encoders.features import encode_items
    from mrse.features.catalog import FeatureStats, build_catalog_features
    from mrse.models.config import ModelConfig
    from mrse.streaming.events import Event
    from mrse.streaming.updater import ProfileUpdater

    ds = load_dataset(sample_hm)
    with FeatureCache.open_default() as cache:
        feats, _ = encode_items(ds, cache)
    catalog = build_catalog_features(ds, feats, FeatureStats.fit(feats), ModelConfig())
    items = list(catalog.index)[:3]
    ev = [Event(f"e{i}", "cache-user", items[i % 3], "click", 1.6e9 + i) for i in range(5)]
    updater = ProfileUpdater(store, catalog, ProfileConfig(), window=3)
    r = updater.apply(ev + ev[:2])  # duplicates inside one batch
    assert (r.applied, r.duplicates) == (5, 2)
    r = updater.apply(ev[3:])  # redelivered (within the window): from the cache
    assert (r.applied, r.duplicates) == (0, 2)
    updater.clear_cache()  # after a rebalance: the store answers, with the same result
    r = updater.apply(ev[4:] + [Event("e9", "cache-user", items[0], "purchase", 1.7e9)])
    assert (r.applied, r.duplicates) == (1, 1)
    stored = store.read(["cache-user"])["cache-user"]
    assert stored.state.count == 6 and stored.applied_event_ids == ["e3", "e4", "e9"]
