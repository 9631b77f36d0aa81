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
