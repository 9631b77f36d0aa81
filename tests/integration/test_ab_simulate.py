"""`mrse ab simulate`'s serving half on the bundled sample: both arms and the interleaved lists
come from the real gRPC server, whose results name the team behind each item (empty where both
arms put it there), and every measurement lands in the result."""

from __future__ import annotations

import pytest

from mrse.jobs.ab_simulate import SimulateConfig, run_simulation

pytestmark = pytest.mark.integration


def test_the_simulator_serves_both_arms_and_measures_each_design(sample_hm, small_run, tmp_path):
    # one model on both arms: the control searches dense, the treatment hybrid, so their
    # rankings agree in places (shared positions) and differ in others
    cfg = SimulateConfig(data=sample_hm, control=small_run, treatment=small_run,
                         out=tmp_path / "sim.json", repetitions=10, aa_units=300,
                         peek_every=50, max_units=300, srm_units=10_000,
                         work_dir=tmp_path / "work")  # fmt: skip
    r = run_simulation(cfg)
    assert r["queries"] > 0
    assert 0 < r["interleaved_shared_share"] < 1
    for key in ("aa_false_positive_rate", "aa_false_positive_rate_exposure_wilson",
                "aa_false_positive_rate_interleaving"):  # fmt: skip
        assert 0 <= r[key] <= 1, key
    assert r["srm_p_value_45_55"] < 1e-3
    assert 0 < r["units_to_detect_interleaving"] <= cfg.max_units
    assert set(r["effect_size_per_unit"]) == {"ab", "interleaving", "implied_ratio"}
    ms = r["serving_ms"]
    assert 0 < ms["plain_p50"] <= ms["plain_p99"] and 0 < ms["interleaved_p50"]
    assert r["example_report_decision"]
