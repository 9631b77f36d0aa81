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


def test_feature_services_are_readable_with_feasts_own_api(store):
    """A user of Feast (not of mrse) opens the store's directory and reads each model's
    FeatureService by the entity key it needs: mrse_v1 by user_id alone, text_tower_v1 none."""
    from feast import FeatureStore

    rng = np.random.default_rng(1)
    ev = [ProfileEvent("i1", 1.6e9, "c", rng.normal(size=384), rng.normal(size=1280))]
    state = profile_from_events(ev, ProfileConfig(), 384, 1280)
    store.write({"u-feast": StoredProfile(state, ["e9"])})
    fs = FeatureStore(repo_path=str(store.config.data_dir))
    service = fs.get_feature_service("mrse_v1")
    got = fs.get_online_features(features=service, entity_rows=[{"user_id": "u-feast"}]).to_dict()
    assert got["history_length"] == [1] and got["recent_items"] == [["i1"]]
    assert "applied_event_ids" not in got  # the worker's idempotency window is no model input
    np.testing.assert_allclose(np.frombuffer(got["text_sum"][0], "<f8"), state.text_sum)
    assert fs.get_feature_service("text_tower_v1").feature_view_projections == []
    views = {v.name for v in fs.list_feature_views()}
    assert views == {"user_profile_fresh"}  # nothing advertised that has no online rows


def test_feast_cli_writes_nothing_into_the_feature_repo(tmp_path):
    """`feast -c feature_repo apply` (as documented) keeps its stores in the ignored
    `.mrse-features/` beside the repo; `feast -c DIR` reads a store mrse wrote."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    checkout = tmp_path / "checkout"
    shutil.copytree(repo / "feature_repo", checkout / "feature_repo")
    before = sorted(p.relative_to(checkout) for p in (checkout / "feature_repo").rglob("*"))
    feast = str(Path(sys.executable).parent / "feast")
    env_cwd = {"cwd": tmp_path, "capture_output": True, "text": True, "timeout": 300}
    done = subprocess.run([feast, "-c", str(checkout / "feature_repo"), "apply"], **env_cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    listed = subprocess.run(
        [feast, "-c", str(checkout / "feature_repo"), "feature-services", "list"], **env_cwd
    )
    assert "mrse_v1" in listed.stdout and "text_tower_v1" in listed.stdout
    after = sorted(p.relative_to(checkout) for p in (checkout / "feature_repo").rglob("*"))
    assert after == before
    assert (checkout / ".mrse-features" / "registry.db").exists()
    for written in (".mrse-features/registry.db", "feature_repo/data/online_store.db"):
        assert subprocess.run(["git", "check-ignore", "-q", written], cwd=repo).returncode == 0


def test_every_form_of_the_profile_schema_agrees(store):
    """Feast's registered view, the offline file, the model's FeatureService and the row
    codec all follow the one declaration."""
    import pyarrow.parquet as pq

    from mrse.features.profile_schema import (
        MODEL_FIELDS,
        PROFILE_COLUMNS,
        PROFILE_FIELDS,
        VIEW,
        arrow_schema,
        from_row,
        to_row,
    )

    registered = store.store.get_feature_view(VIEW)
    assert tuple(f.name for f in registered.features) == PROFILE_FIELDS
    kinds = {c.name: c.kind for c in PROFILE_COLUMNS}
    for f in registered.features:
        want = {"vector": "Bytes", "float": "Float64", "int": "Int64",
                "strings": "Array(String)", "floats": "Array(Float64)"}[kinds[f.name]]  # fmt: skip
        assert str(f.dtype) == want, f.name
    offline = pq.read_schema(store.config.data_dir / "data" / "user_profiles.parquet")
    assert offline.names == arrow_schema().names == ["user_id", "event_timestamp", *PROFILE_FIELDS]
    service = store.store.get_feature_service("mrse_v1")
    (projection,) = service.feature_view_projections
    assert tuple(f.name for f in projection.features) == MODEL_FIELDS
    assert set(PROFILE_FIELDS) - set(MODEL_FIELDS) == {"applied_event_ids"}
    rng = np.random.default_rng(2)
    ev = [ProfileEvent("i1", 1.6e9, "c", rng.normal(size=384), rng.normal(size=1280))]
    state = profile_from_events(ev, ProfileConfig(), 384, 1280)
    row = to_row(state, ["e1"])
    assert tuple(row) == PROFILE_FIELDS
    back, ids = from_row(row)
    np.testing.assert_array_equal(back.text_sum, state.text_sum)
    assert back.recent_items == state.recent_items and back.count == state.count
    assert ids == ["e1"]
