"""The simulator's measurements on served answers made up here (the real server's answers are
the integration test's): a clearly better arm is found, by interleaving with fewer units, and
two arms that agree everywhere give interleaving nothing to find."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrse.experiments.interleave import SHARED
from mrse.jobs.ab_simulate import Served, SimulateConfig, simulate

CFG = SimulateConfig(data=Path("unused"), control=Path("c"), treatment=Path("t"),
                     out=Path("unused.json"), repetitions=20, aa_units=1_000, peek_every=100,
                     max_units=3_000, srm_units=10_000)  # fmt: skip


def _served(queries: int, better: bool, rng: np.random.Generator, lists: int = 4) -> Served:
    """Per query, a control and a treatment top 10 (the treatment's more often relevant when
    ``better``), and team-draft style merges: each round one item of each arm, in random
    order (or, for identical arms, every position shared)."""
    k = 10
    control = (rng.random((queries, k)) < 0.15).astype(np.int64)
    treatment = (rng.random((queries, k)) < (0.5 if better else 0.15)).astype(np.int64)
    treatment[:, 0] += better  # the bought item on top
    grades = np.stack([control, treatment], 1)
    mixed = np.zeros((queries, lists, k), np.int64)
    teams = np.zeros((queries, lists, k), np.int64)
    for q in range(queries):
        for li in range(lists):
            for r in range(k // 2):
                first = int(rng.random() < 0.5)
                for slot, team in enumerate((first, 1 - first)):
                    teams[q, li, 2 * r + slot] = team if better else SHARED
                    mixed[q, li, 2 * r + slot] = grades[q, team, r]
    return Served(grades, mixed, teams, [1.0], [1.0])


def test_a_better_arm_is_found_and_interleaving_needs_fewer_units():
    r = simulate(_served(60, True, np.random.default_rng(0)), CFG)
    assert r["units_to_detect_interleaving"] < r["units_to_detect_ab"] < CFG.max_units
    assert r["aa_false_positive_rate"] <= 0.15 and r["aa_false_positive_rate_interleaving"] <= 0.15
    assert r["srm_p_value_45_55"] < 1e-3
    sizes = r["effect_size_per_unit"]
    assert sizes["ab"] > 0 and sizes["interleaving"] > 0 and sizes["implied_ratio"] > 1
    assert r["interleaved_shared_share"] == 0.0


def test_arms_that_agree_everywhere_give_interleaving_nothing_to_credit():
    r = simulate(_served(60, False, np.random.default_rng(1)), CFG)
    assert r["interleaved_shared_share"] == 1.0
    assert r["units_to_detect_interleaving"] == CFG.max_units  # never "detected"
    assert r["effect_size_per_unit"]["interleaving"] == 0.0
