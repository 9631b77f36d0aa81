"""An experiment's report at the level of its units: per-arm metrics with intervals from the
units, a sample-ratio-mismatch check, CUPED, always-valid intervals, interleaving preference,
and the decision in one line.

Exposures are joined with clicks as ``ctr_by_arm`` joins them (the same user clicks a shown item
within the window), then summed per unit (the id the request was assigned by): its exposures,
the exposures it clicked, its clicks, and its clicks before the experiment (CUPED's covariate:
the unit's behaviour in the ``pre_days`` before its first exposure). Every interval and p-value
is computed from those per-unit sums (``mrse.experiments.stats``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from mrse.experiments.interleave import INTERLEAVED
from mrse.experiments.report import Exposure
from mrse.experiments.stats import (
    Sequential,
    always_valid,
    cuped,
    fixed_horizon,
    preference,
    ratio_estimate,
    srm_p_value,
)

SRM_ALPHA = 0.001  # a split this unlikely under the configured weights is broken


@dataclass
class Units:
    """Per-unit sums of one arm (arrays aligned by unit)."""

    ids: list[str] = field(default_factory=list)
    first: list[float] = field(default_factory=list)  # the unit's first exposure time
    exposures: list[int] = field(default_factory=list)
    clicked: list[int] = field(default_factory=list)  # exposures followed by a click
    clicks: list[int] = field(default_factory=list)
    pre_clicks: list[int] = field(default_factory=list)  # before its first exposure
    credit: list[int] = field(default_factory=list)  # interleaving: treatment - control clicks


def _clicked(e: Exposure, clicks: list[tuple[str, float]], window_s: float, skew_s: float):
    """Which of ``e``'s items the user clicked in the window (one flag per shown item)."""
    hits = {item for item, ts in clicks if e.ts - skew_s <= ts <= e.ts + window_s}
    return [i in hits for i in e.item_ids]


def _team_credit(team: str, treatment_team: str) -> int:
    """A click's credit: +1 on the treatment's item, -1 on the control's, 0 on a shared one."""
    if not team:
        return 0
    return 1 if team == treatment_team else -1


def unit_sums(
    exposures: Iterable[Exposure],
    clicks: Iterable[tuple[str, str, float]],
    experiment: str,
    window_s: float = 3600.0,
    skew_s: float = 1.0,
    pre_days: float = 28.0,
    treatment_team: str = "",
) -> tuple[dict[str, Units], dict[str, int]]:
    """Per arm, the per-unit sums of ``experiment``'s exposures (QA overrides left out), and
    counts of what was left out or stood in (``qa``, ``no_user``: exposures with no user id to
    join clicks on, ``fallback``: requests assigned by another id than the unit's).
    Interleaved exposures: a click credits +1 on ``treatment_team``'s items, -1 on the other
    team's, nothing on an item both arms put there (team ``""``)."""
    by_user: dict[str, list[tuple[str, float]]] = {}
    for user, item, ts in clicks:
        by_user.setdefault(user, []).append((item, ts))
    for v in by_user.values():
        v.sort(key=lambda x: x[1])
    per: dict[tuple[str, str], dict] = {}
    notes = {"qa": 0, "no_user": 0, "fallback": 0}
    for e in exposures:
        if e.experiment != experiment:
            continue
        if e.qa:
            notes["qa"] += 1
            continue
        notes["fallback"] += bool(e.unit_fallback)
        unit = e.unit_id or e.user_id or e.request_id
        u = per.setdefault((e.arm, unit), {"first": e.ts, "users": set(), "n": 0, "clicked": 0,
                                           "clicks": 0, "credit": 0})  # fmt: skip
        u["first"] = min(u["first"], e.ts)
        u["n"] += 1
        if not e.user_id:
            notes["no_user"] += 1
            continue
        u["users"].add(e.user_id)
        flags = _clicked(e, by_user.get(e.user_id, []), window_s, skew_s)
        u["clicked"] += any(flags)
        u["clicks"] += sum(flags)
        if e.teams:
            u["credit"] += sum(_team_credit(t, treatment_team)
                               for t, c in zip(e.teams, flags, strict=True) if c)  # fmt: skip
    out: dict[str, Units] = {}
    for (arm, unit), u in sorted(per.items()):
        a = out.setdefault(arm, Units())
        pre = 0
        for user in u["users"]:
            times = [ts for _, ts in by_user.get(user, [])]
            pre += bisect.bisect_left(times, u["first"] - skew_s) - bisect.bisect_left(
                times, u["first"] - pre_days * 86400
            )
        a.ids.append(unit)
        a.first.append(u["first"])
        a.exposures.append(u["n"])
        a.clicked.append(u["clicked"])
        a.clicks.append(u["clicks"])
        a.pre_clicks.append(pre)
        a.credit.append(u["credit"])
    return out, notes


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    units: int
    exposures: int
    ctr: float  # clicked exposures / exposures (ratio of sums over the arm's units)
    ctr_low: float  # 95%, delta method over units
    ctr_high: float
    ctr_per_unit: float  # the mean of the units' own click-through
    clicks_per_unit: float


@dataclass(frozen=True)
class Comparison:
    """The treatment against the control on one metric: the difference and its relative lift,
    the fixed-horizon and the always-valid (sequential) tests."""

    metric: str
    control: float
    treatment: float
    fixed: Sequential
    sequential: Sequential

    @property
    def lift(self) -> float:
        return self.fixed.estimate / self.control if self.control else math.inf


def _arm_summary(arm: str, u: Units) -> ArmSummary:
    est = ratio_estimate(np.array(u.clicked), np.array(u.exposures))
    half = 1.96 * math.sqrt(est.variance) if math.isfinite(est.variance) else math.inf
    per_unit = np.array(u.clicked) / np.maximum(np.array(u.exposures), 1)
    return ArmSummary(arm, len(u.ids), int(sum(u.exposures)), est.value,
                      max(0.0, est.value - half), min(1.0, est.value + half),
                      float(per_unit.mean()) if len(per_unit) else 0.0,
                      float(np.mean(u.clicks)) if u.clicks else 0.0)  # fmt: skip


def _tau2(baseline: float, relative: float) -> float:
    """The mixture's variance: the squared effect worth finding, ``relative`` x the baseline."""
    return max((relative * baseline) ** 2, 1e-8)


def compare(
    control: Units, treatment: Units, relative_effect: float = 0.1
) -> tuple[list[Comparison], float]:
    """Click-through (ratio of sums, delta method) and click-through per unit (CUPED-adjusted
    by the units' pre-experiment clicks), treatment minus control; and CUPED's variance
    reduction on click-through per unit."""
    a = ratio_estimate(np.array(control.clicked), np.array(control.exposures))
    b = ratio_estimate(np.array(treatment.clicked), np.array(treatment.exposures))
    out = [Comparison("ctr", a.value, b.value,
                      fixed_horizon(b.value - a.value, a.variance + b.variance),
                      always_valid(b.value - a.value, a.variance + b.variance,
                                   _tau2(a.value, relative_effect)))]  # fmt: skip
    ya = np.array(control.clicked) / np.maximum(np.array(control.exposures), 1)
    yb = np.array(treatment.clicked) / np.maximum(np.array(treatment.exposures), 1)
    x = np.concatenate([control.pre_clicks, treatment.pre_clicks]).astype(float)
    adjusted, reduction = cuped(np.concatenate([ya, yb]), x)
    aa, bb = adjusted[: len(ya)], adjusted[len(ya) :]
    if len(aa) > 1 and len(bb) > 1:
        diff = float(bb.mean() - aa.mean())
        var = float(np.var(aa, ddof=1) / len(aa) + np.var(bb, ddof=1) / len(bb))
        out.append(Comparison("ctr_per_unit_cuped", float(ya.mean()), float(yb.mean()),
                              fixed_horizon(diff, var),
                              always_valid(diff, var, _tau2(float(ya.mean()),
                                                            relative_effect))))  # fmt: skip
    return out, reduction


def decision(
    control: str, treatment: str, primary: Comparison | None, srm_p: float, units: int
) -> str:
    """The report in one line: a broken split first, then a winner when the always-valid
    interval excludes zero, else keep running."""
    if srm_p < SRM_ALPHA:
        return (f"STOP: sample ratio mismatch (p = {srm_p:.2g}): the split is broken, no "
                "result of this experiment can be trusted; fix the assignment")  # fmt: skip
    if primary is None:
        return f"not enough units yet ({units}); keep running"
    s, base = primary.sequential, primary.control or 1.0
    interval = f"{s.estimate / base:+.1%} [{s.low / base:+.1%}, {s.high / base:+.1%}]"
    name = primary.metric.replace("_cuped", "").replace("_", " ")
    if s.low > 0:
        return f"{treatment} wins on {name}, {interval} (always valid), safe to stop"
    if s.high < 0:
        return f"{control} wins on {name}, {interval} (always valid), safe to stop"
    return (f"no winner yet on {name} after {units} units: {interval} (always valid) holds "
            "zero; keep running")  # fmt: skip


def interleaved_teams(names: list[str], control: str | None) -> tuple[str, str]:
    """(control, treatment) among an interleaved experiment's team ``names`` (sorted): the
    given ``control`` when it is one of them, else the first in name order."""
    if not names:
        return "", ""
    first = control if control in names else names[0]
    others = [n for n in names if n != first]
    return first, others[0] if others else ""


def experiment_report(
    exposures: list[Exposure],
    clicks: list[tuple[str, str, float]],
    experiment: str,
    weights: Mapping[str, float] | None = None,
    control: str | None = None,
    window_s: float = 3600.0,
    relative_effect: float = 0.1,
) -> dict:
    """The unit-level report of ``experiment`` (``weights``: the configured split, for the
    SRM check; default equal; ``control``: the arm others are compared with, default the first
    in name order). Interleaved exposures are reported as a preference per unit."""
    team_names = sorted({t for e in exposures if e.experiment == experiment for t in e.teams if t})
    teams = interleaved_teams(team_names, control)
    arms, notes = unit_sums(exposures, clicks, experiment, window_s, treatment_team=teams[1])
    out: dict = {"experiment": experiment, "window_s": window_s, **notes,
                 "arms": [asdict(_arm_summary(a, u)) for a, u in arms.items()]}  # fmt: skip
    if INTERLEAVED in arms:
        u = arms[INTERLEAVED]
        pref = preference(np.array(u.credit), tau2=0.01)
        s = pref.delta
        out["interleaving"] = {
            "control": teams[0], "treatment": teams[1],
            "units": len(u.ids), "wins": pref.wins, "losses": pref.losses, "ties": pref.ties,
            "preference": s.estimate, "low": s.low, "high": s.high, "p_value": s.p_value,
        }  # fmt: skip
        verdict = ("no preference yet; keep running" if s.low <= 0 <= s.high else
                   f"{teams[-1] if s.low > 0 else teams[0]} preferred by shoppers "
                   f"(wins {pref.wins}, losses {pref.losses}, ties {pref.ties}; "
                   f"mean preference {s.estimate:+.3f} [{s.low:+.3f}, {s.high:+.3f}], always "
                   "valid), safe to stop")  # fmt: skip
        out["decision"] = verdict
        return out
    names = sorted(arms)
    w = weights or {a: 1.0 for a in names}
    counts = [len(arms[a].ids) if a in arms else 0 for a in w]
    out["srm_p_value"] = srm_p_value(counts, list(w.values()))
    base = control if control in arms else (names[0] if names else None)
    comparisons = []
    for arm in names:
        if arm == base:
            continue
        cmp, reduction = compare(arms[base], arms[arm], relative_effect)
        out["cuped_variance_reduction"] = reduction
        comparisons.append({"treatment": arm, "control": base,
                            "metrics": [{**asdict(c), "lift": c.lift} for c in cmp]})  # fmt: skip
    out["comparisons"] = comparisons
    first = comparisons[0] if comparisons else None
    primary = None
    if first is not None:
        c = first["metrics"][-1]
        primary = Comparison(c["metric"], c["control"], c["treatment"],
                             Sequential(**c["fixed"]), Sequential(**c["sequential"]))  # fmt: skip
    treatment = first["treatment"] if first else ""
    out["decision"] = decision(base or "", treatment, primary, out["srm_p_value"],
                               sum(counts))  # fmt: skip
    return out
