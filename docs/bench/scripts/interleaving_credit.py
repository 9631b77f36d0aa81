"""How much interleaving's credit rule and per-unit statistic matter on the simulator's arms
(docs/benchmarks.md, "Shared picks, interleaving's own false positives, and what bounds the
ratio").

    .venv/bin/python docs/bench/scripts/interleaving_credit.py ../shared/benchmarks/hm \
        runs/hm-text-tower runs/hm-mrse [--units 20000] [--repetitions 100]

Both arms' top 10 for every judged test query come from the real server (``mrse ab simulate``'s
serving half); the lists are then merged offline in several ways, each with 4 request ids per
query as the simulator does, and the simulator's click model draws ``--units`` shoppers for
each. Printed per variant: the per-unit effect size (mean / sd) of the preference sign and of
the raw credit, the share of shared positions, a random clicker's mean preference (clicks by
position alone: 0 for a fair merge), and the median units until the always-valid test prefers
the treatment over ``--repetitions`` experiments. Variants: plain team draft (an item both
arms want next goes to the arm the coin lets pick first), team draft with shared picks (what
the server does), and team draft lists credited by which arm ranks the clicked item higher.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
from pathlib import Path

import numpy as np

from mrse.data import load_dataset
from mrse.experiments.interleave import SHARED, team_draft
from mrse.experiments.stats import preference
from mrse.jobs.ab_simulate import (
    EXAMINE_POWER,
    Served,
    SimulateConfig,
    _serve,
    interleaved_credit,
)

K, LISTS = 10, 4


def plain_team_draft(a: list[str], b: list[str], k: int, seed: str) -> tuple[list[str], list[int]]:
    """Team draft without shared picks (the server's merge before 2026-12-07)."""
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    lists, cursor, items, teams, taken = (a, b), [0, 0], [], [], set()
    while len(items) < k:
        added = False
        for team in (0, 1) if rng.random() < 0.5 else (1, 0):
            ranking = lists[team]
            while cursor[team] < len(ranking) and ranking[cursor[team]] in taken:
                cursor[team] += 1
            if len(items) < k and cursor[team] < len(ranking):
                items.append(ranking[cursor[team]])
                teams.append(team)
                taken.add(ranking[cursor[team]])
                added = True
        if not added:
            break
    return items, teams


def by_rank(a: list[str], b: list[str], items: list[str]) -> list[int]:
    """Each shown item credited to the arm that ranks it higher (absent: rank k + 1)."""
    ra, rb = {x: i for i, x in enumerate(a)}, {x: i for i, x in enumerate(b)}
    out = []
    for x in items:
        da, db = ra.get(x, K), rb.get(x, K)
        out.append(SHARED if da == db else (0 if da < db else 1))
    return out


def merged(served: Served, judged: dict, merge, rank_credit: bool = False) -> Served:
    q = len(served.rankings)
    mixed = np.zeros((q, LISTS, K), np.int64)
    teams = np.full((q, LISTS, K), -2, np.int64)
    for i, (qid, a, b) in enumerate(served.rankings):
        rel = judged[qid]
        for li in range(LISTS):
            items, t = merge(a[:K], b[:K], K, f"{qid}:il:{li}")
            if rank_credit:
                t = by_rank(a[:K], b[:K], items)
            mixed[i, li, : len(items)] = [rel.get(x, 0) for x in items]
            teams[i, li, : len(items)] = t
    return Served(served.grades, mixed, teams, [], [], served.rankings)


def random_clicker(served: Served, rng: np.random.Generator, n: int) -> float:
    """Mean preference sign when clicks depend on the position alone (attractiveness 0.1)."""
    examine = 0.1 / np.arange(1, K + 1) ** EXAMINE_POWER
    credit = interleaved_credit(served, rng, n, lambda g: np.broadcast_to(examine, g.shape))
    return float(np.sign(credit).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("control")
    ap.add_argument("treatment")
    ap.add_argument("--units", type=int, default=20_000)
    ap.add_argument("--repetitions", type=int, default=100)
    args = ap.parse_args()
    cfg = SimulateConfig(data=Path(args.data), control=Path(args.control),
                         treatment=Path(args.treatment), out=Path("unused.json"))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        served, _ = _serve(cfg, Path(tmp))
    judged = load_dataset(Path(args.data)).qrels_by_query
    variants = {
        "team draft": merged(served, judged, plain_team_draft),
        "team draft, shared picks (served)": merged(served, judged, team_draft),
        "team draft lists, credit by rank": merged(served, judged, team_draft, rank_credit=True),
    }
    print(
        "| variant | shared positions | effect/unit, sign | effect/unit, raw credit "
        "| random clicker's mean sign | median units to detect |"
    )
    print("|---|---|---|---|---|---|")
    for name, v in variants.items():
        rng = np.random.default_rng(0)
        credit = interleaved_credit(v, rng, args.units)
        sign = np.sign(credit)
        needed = []
        for _ in range(args.repetitions):
            c = interleaved_credit(v, rng, 3_000)
            found = next((n for n in range(10, 3_001, 10)
                          if preference(c[:n], tau2=0.01).delta.low > 0), 3_000)  # fmt: skip
            needed.append(found)
        print(
            f"| {name} | {float((v.teams == SHARED).mean()):.3f} "
            f"| {sign.mean() / sign.std():.3f} | {credit.mean() / credit.std():.3f} "
            f"| {random_clicker(v, rng, args.units):+.4f} | {np.median(needed):.0f} |"
        )


if __name__ == "__main__":
    main()
