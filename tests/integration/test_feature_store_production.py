"""The production feature-store configuration: Redis online store, PostgreSQL SQL registry."""

from __future__ import annotations

import numpy as np
import pytest

from mrse.features.profile import ProfileConfig, ProfileEvent, profile_from_events
from mrse.features.store import FeatureStoreConfig, ProfileStore, StoredProfile

pytestmark = pytest.mark.integration


def test_profiles_round_trip_through_redis_with_a_sql_registry(tmp_path, redis_server, postgres):
    cfg = FeatureStoreConfig(
        data_dir=tmp_path / "feast",
        online="redis",
        redis=redis_server.address,
        registry_url=postgres.url,
    )
    store = ProfileStore(cfg)
    store.apply()
    rng = np.random.default_rng(3)
    events = [
        ProfileEvent(f"i{i}", 1.6e9 + i, "c", rng.normal(size=384), rng.normal(size=1280))
        for i in range(4)
    ]
    state = profile_from_events(events, ProfileConfig(), 384, 1280)
    store.write({"u1": StoredProfile(state, ["a", "b"])})
    # a second client (e.g. the server) sees the registry in PostgreSQL and the row in Redis
    other = ProfileStore(cfg)
    got = other.read(["u1", "u2"])
    assert got["u2"] is None
    np.testing.assert_allclose(got["u1"].state.image_sum, state.image_sum, rtol=1e-12)
    assert got["u1"].applied_event_ids == ["a", "b"]
    names = {fv.name for fv in other.store.list_feature_views()}
    assert "user_profile_fresh" in names


def test_experiment_store_on_postgresql(postgres):
    from mrse.experiments.assignment import Arm, Experiment
    from mrse.experiments.store import ExperimentStore

    url = postgres.url.replace("/feast?", "/postgres?")
    exp = Experiment(
        "pg-exp", (Arm("a", 1.0, "m1", "mrse_v1", "i1"), Arm("b", 2.0, "m2", "mrse_v1", "i2"))
    )
    store = ExperimentStore(url)
    store.put(exp)
    assert ExperimentStore(url).get("pg-exp") == exp
    store.close()
