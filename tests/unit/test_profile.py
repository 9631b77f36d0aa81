from __future__ import annotations

import math

import numpy as np
import pytest

from mrse.features.profile import (
    ProfileConfig,
    ProfileEvent,
    empty_profile,
    modality_preference,
    profile_from_events,
    profile_vectors,
    update_profile,
)

DAY = 86_400.0


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _events(rng, n=12):
    return [
        ProfileEvent(
            item_id=f"i{i}",
            ts=1.6e9 + i * DAY,
            category=f"c{i % 3}",
            text=_unit(rng.normal(size=4)) if i % 4 else None,
            image=_unit(rng.normal(size=6)) if i % 5 else None,
        )
        for i in range(n)
    ]


def test_recency_weighted_mean_matches_closed_form():
    cfg = ProfileConfig(half_life_days=10)
    e1 = ProfileEvent("a", 0.0, "x", _unit([1, 0]), None)
    e2 = ProfileEvent("b", 10 * DAY, "x", _unit([0, 1]), None)
    state = profile_from_events([e1, e2], cfg, 2, 3)
    # one half-life later the old event weighs 0.5
    np.testing.assert_allclose(state.text_sum, [0.5, 1.0])
    assert state.text_weight == pytest.approx(1.5)
    vec = profile_vectors(state)
    np.testing.assert_allclose(vec.text, [1 / 3, 2 / 3], rtol=1e-6)
    assert not vec.image.any() and vec.has_history


def test_order_independent_up_to_rounding():
    rng = np.random.default_rng(0)
    events = _events(rng)
    cfg = ProfileConfig(half_life_days=30, recent_items=5)
    a = profile_from_events(events, cfg, 4, 6)
    shuffled = [events[i] for i in rng.permutation(len(events))]
    b = profile_from_events(shuffled, cfg, 4, 6)
    np.testing.assert_allclose(a.text_sum, b.text_sum, rtol=1e-9)
    np.testing.assert_allclose(a.image_sum, b.image_sum, rtol=1e-9)
    assert a.recent_items == b.recent_items == tuple(f"i{i}" for i in range(7, 12))
    assert a.ref_ts == b.ref_ts and a.count == b.count == 12


def test_update_is_pure():
    rng = np.random.default_rng(1)
    e = _events(rng, 2)
    s0 = update_profile(empty_profile(4, 6), e[0], ProfileConfig())
    before = s0.text_sum.copy()
    update_profile(s0, e[1], ProfileConfig())
    np.testing.assert_array_equal(s0.text_sum, before)
    assert s0.count == 1


def test_cold_start_is_well_defined():
    vec = profile_vectors(empty_profile(4, 6))
    assert not vec.has_history
    assert vec.text.shape == (4,) and not vec.text.any() and not vec.image.any()
    np.testing.assert_allclose(vec.modality, [0.0, 0.0, 0.5, 0.0])


def test_modality_preference_follows_coherence():
    cfg = ProfileConfig()
    rng = np.random.default_rng(2)
    same_photo = _unit(rng.normal(size=6))
    # photos all alike, texts all different: the photos explain this shopper's choices
    events = [
        ProfileEvent(f"i{i}", float(i), "c", _unit(rng.normal(size=4)), same_photo)
        for i in range(20)
    ]
    coh_t, coh_i, share = modality_preference(profile_from_events(events, cfg, 4, 6))
    assert coh_i == pytest.approx(1.0) and coh_t < 0.6 and share > 0.6
    assert profile_vectors(profile_from_events(events, cfg, 4, 6)).modality[3] == pytest.approx(
        math.log1p(20)
    )


def test_config_validation():
    with pytest.raises(ValueError):
        ProfileConfig(half_life_days=0)
    with pytest.raises(ValueError):
        ProfileConfig(recent_items=0)
