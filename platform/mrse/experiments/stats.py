"""The statistics of experiments that decide, as pure functions of per-unit numbers.

The unit of analysis is the unit of randomisation (a shopper, a session): one shopper's
exposures are correlated, so an interval computed per exposure is too narrow. Each unit
contributes a pair (clicks, exposures); click-through is the ratio of their sums, and its
variance comes from the delta method over units. Reading a report every day must not inflate
false positives: the intervals and p-values here are always valid (a normal-mixture sequential
probability ratio test and its confidence sequence, Robbins 1970, Johari et al. 2017, Howard et
al. 2021), so a team may stop the first time one excludes zero. CUPED (Deng et al. 2013) takes
out the part of each unit's metric that its pre-experiment behaviour predicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio metric over units (sum of numerators / sum of denominators) and the variance of
    that ratio by the delta method."""

    value: float
    variance: float
    units: int


def ratio_estimate(num: np.ndarray, den: np.ndarray) -> RatioEstimate:
    """num, den (n,) per-unit sums (clicks, exposures) -> their ratio and its delta-method
    variance: Var(mean(num)/mean(den)) ~ (s_nn - 2 r s_nd + r^2 s_dd) / (n mean(den)^2)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    n = len(num)
    if n == 0 or den.sum() == 0:
        return RatioEstimate(0.0, math.inf, n)
    r = num.sum() / den.sum()
    if n < 2:
        return RatioEstimate(float(r), math.inf, n)
    cov = np.cov(num, den)  # (2, 2), ddof 1
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * den.mean() ** 2)
    return RatioEstimate(float(r), float(max(var, 0.0)), n)


def cuped(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """CUPED-adjusted per-unit metric ``y - theta (x - mean x)`` with ``theta = cov(y, x) /
    var(x)`` (``x``: the same units' pre-experiment metric), and the share of variance it
    removes (``corr(x, y)^2``)."""
    y, x = np.asarray(y, float), np.asarray(x, float)
    if len(y) < 2 or np.var(x) == 0:
        return y.copy(), 0.0
    theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
    adjusted = y - theta * (x - x.mean())
    reduction = 1.0 - np.var(adjusted, ddof=1) / np.var(y, ddof=1) if np.var(y) > 0 else 0.0
    return adjusted, float(reduction)


def srm_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Sample-ratio mismatch: the chi-square goodness-of-fit p-value of the units seen per arm
    against the configured weights (a broken split shows as a tiny p-value)."""
    counts = np.asarray(counts, float)
    total = counts.sum()
    if total == 0 or len(counts) < 2:
        return 1.0
    expected = total * np.asarray(weights, float) / float(np.sum(weights))
    return float(sps.chisquare(counts, expected).pvalue)


@dataclass(frozen=True)
class Sequential:
    """An always-valid test of a difference: its estimate, a confidence sequence (valid at
    every look, so a team may read it daily) and the always-valid p-value."""

    estimate: float
    low: float
    high: float
    p_value: float


def always_valid(estimate: float, variance: float, tau2: float, alpha: float = 0.05) -> Sequential:
    """Normal-mixture SPRT for a difference with estimate ``estimate`` and (known) variance
    ``variance`` (it shrinks as units accrue), against 0, with a N(0, ``tau2``) mixture over the
    true difference (``tau2``: the squared size of effect worth finding).

    Likelihood ratio ``L = sqrt(v / (v + t)) exp(estimate^2 t / (2 v (v + t)))``; p = min(1,
    1 / L); the confidence sequence is ``estimate +- sqrt(v (v + t) / t * (log((v + t) / v) +
    2 log(1 / alpha)))``."""
    if not math.isfinite(variance) or variance <= 0:
        return Sequential(estimate, -math.inf, math.inf, 1.0)
    v, t = variance, tau2
    log_l = 0.5 * math.log(v / (v + t)) + estimate * estimate * t / (2 * v * (v + t))
    p = 1.0 if log_l <= 0 else min(1.0, math.exp(-log_l))
    half = math.sqrt(v * (v + t) / t * (math.log((v + t) / v) + 2 * math.log(1 / alpha)))
    return Sequential(estimate, estimate - half, estimate + half, p)


def fixed_horizon(estimate: float, variance: float, alpha: float = 0.05) -> Sequential:
    """The textbook z-interval and two-sided p-value (valid at one pre-planned look only)."""
    if not math.isfinite(variance) or variance <= 0:
        return Sequential(estimate, -math.inf, math.inf, 1.0)
    se = math.sqrt(variance)
    z = sps.norm.ppf(1 - alpha / 2)
    p = 2 * sps.norm.sf(abs(estimate) / se)
    return Sequential(estimate, estimate - z * se, estimate + z * se, float(p))


@dataclass(frozen=True)
class Preference:
    """Interleaving: per unit, which arm's results got more clicks."""

    wins: int  # units preferring the treatment
    losses: int  # units preferring the control
    ties: int
    delta: Sequential  # the mean per-unit preference (+1 / 0 / -1), always valid


def preference(per_unit: np.ndarray, tau2: float, alpha: float = 0.05) -> Preference:
    """``per_unit`` (n,) clicks on the treatment's items minus clicks on the control's, per
    unit -> wins, losses, ties and an always-valid test of the mean sign (a unit counts once,
    however many searches it made)."""
    sign = np.sign(np.asarray(per_unit, float))
    n = len(sign)
    var = float(np.var(sign, ddof=1) / n) if n > 1 else math.inf
    return Preference(
        int((sign > 0).sum()), int((sign < 0).sum()), int((sign == 0).sum()),
        always_valid(float(sign.mean()) if n else 0.0, var, tau2, alpha),
    )  # fmt: skip
