"""Per-arm click-through from exposure and click logs, with Wilson confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Exposure:
    """A served search: who saw which items, in which arm (the exposure topic's payload)."""

    request_id: str
    experiment: str
    arm: str
    user_id: str
    item_ids: tuple[str, ...]
    ts: float  # Unix seconds
    qa: bool = False  # served under a QA arm override: not part of the experiment's sample
    session_id: str = ""
    unit: str = "user"  # what the experiment randomises
    unit_id: str = ""  # the id the request was assigned by ("" before units: the user id)
    unit_fallback: str = ""  # the id used when the request lacked the unit's own ("": none)
    teams: tuple[str, ...] = ()  # interleaving: the arm that contributed each shown item


@dataclass(frozen=True)
class ArmReport:
    arm: str
    exposures: int
    clicked: int
    ctr: float
    ci_low: float
    ci_high: float


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at small counts and near 0/1)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def ctr_by_arm(
    exposures: Iterable[Exposure],
    clicks: Iterable[tuple[str, str, float]],
    experiment: str,
    window_s: float = 3600.0,
    skew_s: float = 1.0,
) -> list[ArmReport]:
    """Share of exposures followed by a click on one of the shown items.

    ``clicks``: (user_id, item_id, ts). A click counts for an exposure if the same user clicks
    a shown item within ``window_s`` after it, or up to ``skew_s`` before it: the click's time
    comes from another clock (the client's) and is stored to the millisecond, so a click sent
    right after the response can carry a time just before the server's exposure time.
    Exposures served under a QA override, and anonymous ones (no user id to join clicks on),
    are not part of the sample.
    """
    by_user: dict[str, list[tuple[str, float]]] = {}
    for user, item, ts in clicks:
        by_user.setdefault(user, []).append((item, ts))
    counts: dict[str, list[int]] = {}
    for e in exposures:
        if e.experiment != experiment or e.qa or not e.user_id:
            continue
        shown = set(e.item_ids)
        hit = any(
            item in shown and e.ts - skew_s <= ts <= e.ts + window_s
            for item, ts in by_user.get(e.user_id, ())
        )
        c = counts.setdefault(e.arm, [0, 0])
        c[0] += 1
        c[1] += int(hit)
    out = []
    for arm in sorted(counts):
        n, k = counts[arm]
        lo, hi = wilson_interval(k, n)
        out.append(ArmReport(arm, n, k, k / n if n else 0.0, lo, hi))
    return out


def format_ab_table(experiment: str, reports: list[ArmReport]) -> str:
    """A plain-text table of per-arm click-through with 95% Wilson intervals."""
    lines = [
        f"experiment {experiment}",
        f"{'arm':<16} {'exposures':>9} {'clicked':>7} {'CTR':>7}  95% CI",
    ]
    for r in reports:
        lines.append(
            f"{r.arm:<16} {r.exposures:>9} {r.clicked:>7} {r.ctr:>7.2%}  "
            f"[{r.ci_low:.2%}, {r.ci_high:.2%}]"
        )
    if not reports:
        lines.append("(no exposures for this experiment)")
    return "\n".join(lines)
