"""Experiments that decide: units, interleaving and the statistics, on plain numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mrse.experiments.analysis import experiment_report
from mrse.experiments.assignment import Arm, Experiment, assign_arm, unit_of
from mrse.experiments.interleave import INTERLEAVED, SHARED, credit, team_draft
from mrse.experiments.report import Exposure
from mrse.experiments.stats import (
    always_valid,
    cuped,
    fixed_horizon,
    preference,
    ratio_estimate,
    srm_p_value,
)

ARMS = (Arm("control", 1, "v1", "s", "v1"), Arm("treatment", 1, "v2", "s", "v2"))


def test_units_fall_back_by_a_documented_order_and_a_guest_keeps_one_arm_per_session():
    by_user = Experiment("e", ARMS)
    by_session = Experiment("e", ARMS, unit="session")
    assert unit_of(by_user, "u1", "s1", "r1") == ("u1", "user")
    assert unit_of(by_user, None, "s1", "r1") == ("s1", "session")  # a guest: the session
    assert unit_of(by_user, None, None, "r1") == ("r1", "request")
    assert unit_of(by_session, "u1", "s1", "r1") == ("s1", "session")
    assert unit_of(by_session, "u1", None, "r1") == ("u1", "user")
    assert unit_of(Experiment("e", ARMS, unit="request"), "u1", "s1", "r1") == ("r1", "request")
    seen = {assign_arm(unit_of(by_user, None, "guest-session", f"req-{i}")[0], by_user).name
            for i in range(50)}  # fmt: skip
    assert len(seen) == 1  # fifty requests of one guest session: one arm
    with pytest.raises(ValueError, match="unit must be"):
        Experiment("e", ARMS, unit="device")
    with pytest.raises(ValueError, match="exactly two arms"):
        Experiment("e", ARMS[:1], kind="interleave")


def test_team_draft_takes_turns_keeps_each_rankings_order_and_is_fixed_by_the_seed():
    a = [f"a{i}" for i in range(10)]
    b = ["b0", "b1", "a5", "b3", "b4", "b5", "b6", "a0", "b8", "b9"]  # never both next
    items, teams = team_draft(a, b, 10, "request-1")
    assert len(items) == len(set(items)) == 10
    assert abs(teams.count(0) - teams.count(1)) <= 1  # turns: neither team gets ahead by 2
    for team, ranking in ((0, a), (1, b)):
        picked = [i for i, t in zip(items, teams, strict=True) if t == team]
        assert picked == sorted(picked, key=ranking.index)  # each in its own order
    assert team_draft(a, b, 10, "request-1") == (items, teams)
    assert {tuple(team_draft(a, b, 10, f"r{i}")[1][:2]) for i in range(40)} == {(0, 1), (1, 0)}
    assert credit([0, 1, 1, 0], [True, True, True, False]) == 1


def test_team_draft_credits_neither_arm_where_both_rankings_put_the_same_item_next():
    same = [f"x{i}" for i in range(8)]
    assert team_draft(same, same, 5, "r") == (same[:5], [SHARED] * 5)  # an A/A gives no credit
    assert credit([SHARED, SHARED, 0, 1], [True, True, True, False]) == -1
    # a common first item is shared; after it the teams take turns again
    a, b = ["x", "a1", "a2", "a3"], ["x", "b1", "b2", "b3"]
    items, teams = team_draft(a, b, 5, "r")
    assert items[0] == "x" and teams[0] == SHARED and sorted(teams[1:3]) == [0, 1]
    # agreement later on, after each arm's own picks: the item both want next is shared
    a, b = ["a1", "y", "a2"], ["b1", "y", "b2"]
    items, teams = team_draft(a, b, 5, "r")
    assert items[2] == "y" and teams[2] == SHARED and teams.count(SHARED) == 1


def test_team_draft_is_fair_to_a_shopper_who_clicks_by_position_alone():
    """Over the coin flips, a click model that ignores the items (examination by rank only)
    credits both arms equally, for rankings that agree in places and differ in others."""
    rng = np.random.default_rng(0)
    pool = [f"i{j}" for j in range(30)]
    for _ in range(20):
        a = list(rng.choice(pool, 10, replace=False))
        b = list(rng.choice(pool, 10, replace=False))
        b[: int(rng.integers(0, 3))] = a[: len(b[: int(rng.integers(0, 3))])]
        expected = 0.0
        for seed in range(400):
            _, teams = team_draft(a, b, 10, f"s{seed}")
            examine = 1 / np.arange(1, len(teams) + 1) ** 0.7
            expected += sum(e * ((t == 1) - (t == 0)) for t, e in zip(teams, examine, strict=True))
        assert abs(expected / 400) < 0.08  # 0 in expectation; +-1 per position would be 1


def test_ratio_cuped_srm_and_the_intervals_on_known_numbers():
    rng = np.random.default_rng(0)
    den = rng.integers(1, 5, 4000).astype(float)
    num = rng.binomial(den.astype(int), 0.3).astype(float)
    est = ratio_estimate(num, den)
    assert est.value == pytest.approx(num.sum() / den.sum())
    # the delta method matches the bootstrap's spread of the ratio over units
    boot = [num[i].sum() / den[i].sum() for i in rng.integers(0, 4000, (300, 4000))]
    assert math.sqrt(est.variance) == pytest.approx(np.std(boot), rel=0.15)
    x = rng.normal(size=5000)
    y = 2 * x + rng.normal(size=5000)  # x explains 80% of y's variance
    adjusted, reduction = cuped(y, x)
    assert reduction == pytest.approx(0.8, abs=0.02) and adjusted.mean() == pytest.approx(y.mean())
    assert srm_p_value([5000, 5000], [1, 1]) == pytest.approx(1.0)
    assert srm_p_value([4500, 5500], [1, 1]) < 1e-20
    assert srm_p_value([4500, 5500], [45, 55]) == pytest.approx(1.0)
    fixed, seq = fixed_horizon(0.1, 0.0025), always_valid(0.1, 0.0025, tau2=0.01)
    assert fixed.low == pytest.approx(0.1 - 1.96 * 0.05, abs=1e-3)
    assert seq.low < fixed.low and seq.high > fixed.high  # valid at every look: wider
    assert always_valid(0.0, 0.0025, 0.01).p_value == 1.0
    assert always_valid(0.5, 0.0025, 0.01).p_value < 1e-6


def test_always_valid_intervals_keep_false_positives_under_five_percent_when_peeked_at():
    """A/A with a look after every 50 units: the fixed-horizon z-test declares a difference
    far more often than 5%, the always-valid one does not."""
    rng = np.random.default_rng(1)
    fixed_fp = seq_fp = 0
    for _ in range(200):
        a, b = rng.normal(size=2000), rng.normal(size=2000)
        fixed_hit = seq_hit = False
        for n in range(50, 2001, 50):
            d, v = b[:n].mean() - a[:n].mean(), a[:n].var(ddof=1) / n + b[:n].var(ddof=1) / n
            fixed_hit |= fixed_horizon(d, v).p_value < 0.05
            seq_hit |= always_valid(d, v, tau2=0.01).p_value < 0.05
        fixed_fp += fixed_hit
        seq_fp += seq_hit
    assert seq_fp / 200 <= 0.05 < fixed_fp / 200


def test_preference_counts_units_once_whatever_their_searches():
    p = preference(np.array([3, 1, -1, 0, 0, 2]), tau2=0.01)
    assert (p.wins, p.losses, p.ties) == (3, 1, 2)
    assert p.delta.estimate == pytest.approx((3 - 1) / 6)


def _exposures(n, p_control, p_treatment, rng, ratio=(1, 1)):
    exposures, clicks = [], []
    experiment = Experiment("x", (Arm("control", ratio[0], "v", "s", "v"),
                                  Arm("treatment", ratio[1], "v", "s", "v")))  # fmt: skip
    for u in range(n):
        user = f"u{u}"
        arm = assign_arm(user, experiment).name
        p = p_control if arm == "control" else p_treatment
        for s in range(2):
            ts = 1e9 + u * 100 + s
            items = (f"i{u}-{s}-a", f"i{u}-{s}-b")
            exposures.append(Exposure(f"r{u}{s}", "x", arm, user, items, ts, unit_id=user))
            if rng.random() < p:
                clicks.append((user, items[0], ts + 1))
    return exposures, clicks


def test_the_report_decides_in_one_line_and_flags_a_broken_split():
    rng = np.random.default_rng(2)
    exposures, clicks = _exposures(4000, 0.2, 0.4, rng)
    r = experiment_report(exposures, clicks, "x", control="control")
    assert r["decision"].startswith("treatment wins on ctr per unit") and "safe to stop" in r[
        "decision"]  # fmt: skip
    assert {a["arm"]: a["units"] for a in r["arms"]}.keys() == {"control", "treatment"}
    same, same_clicks = _exposures(3000, 0.3, 0.3, rng)
    assert "keep running" in experiment_report(same, same_clicks, "x")["decision"]
    skewed, skewed_clicks = _exposures(6000, 0.3, 0.3, rng, ratio=(45, 55))
    broken = experiment_report(skewed, skewed_clicks, "x", weights={"control": 1,
                                                                    "treatment": 1})  # fmt: skip
    assert broken["decision"].startswith("STOP: sample ratio mismatch")
    qa = Exposure("q", "x", "control", "u1", ("a",), 1e9, qa=True)
    assert experiment_report([qa], [], "x")["qa"] == 1


def test_an_interleaved_report_credits_the_team_that_contributed_the_clicked_item():
    exposures, clicks = [], []
    for u in range(300):
        user = f"u{u}"
        items = (f"{u}-a", f"{u}-b", f"{u}-c")
        teams = ("control", "treatment", "control") if u % 2 else ("treatment", "control",
                                                                    "treatment")  # fmt: skip
        exposures.append(Exposure(f"r{u}", "il", INTERLEAVED, user, items, 1e9, unit_id=user,
                                  teams=teams))  # fmt: skip
        clicked = next(i for i, t in zip(items, teams, strict=True) if t == "treatment")
        if u % 5:  # four shoppers in five click a treatment item
            clicks.append((user, clicked, 1e9 + 1))
    r = experiment_report(exposures, clicks, "il")
    i = r["interleaving"]
    assert (i["wins"], i["losses"], i["ties"]) == (240, 0, 60) and i["treatment"] == "treatment"
    assert r["decision"].startswith("treatment preferred by shoppers")
    # the control named by the caller, whatever the names' order
    flipped = experiment_report(exposures, clicks, "il", control="treatment")["interleaving"]
    assert flipped["control"] == "treatment" and (flipped["wins"], flipped["losses"]) == (0, 240)


def test_a_click_on_an_item_both_arms_put_there_credits_neither():
    exposures, clicks = [], []
    for u in range(200):
        user = f"u{u}"
        items, teams = (f"{u}-s", f"{u}-a", f"{u}-b"), ("", "control", "treatment")
        exposures.append(Exposure(f"r{u}", "il", INTERLEAVED, user, items, 1e9, unit_id=user,
                                  teams=teams))  # fmt: skip
        clicks.append((user, items[0], 1e9 + 1))  # every shopper clicks the shared item
    i = experiment_report(exposures, clicks, "il")["interleaving"]
    assert (i["wins"], i["losses"], i["ties"]) == (0, 0, 200)
    assert (i["control"], i["treatment"]) == ("control", "treatment")
