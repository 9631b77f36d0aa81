"""Evaluations split by whether the shopper had bought the target product before.

    .venv/bin/python scripts/bought_before.py --data ../shared/benchmarks/hm \
        --group no-profile results/ablation/hm-no-profile.json results/p13/hm-noprof-s1.json \
        --group mrse results/ablation/hm-mrse.json ...

Each test query falls in one group (``mrse.evaluation.repeats``): its top-grade item (hm: the
bought item) is the very item the shopper bought before, another variant of a product they
bought before (same title and description: ``mrse.features.identity``), or neither. Prints
nDCG@10, MRR@10 and HR@10 of each ``--group`` of ``mrse eval`` JSON files (their mean: e.g.
one model's seeds) per query group.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from mrse.data.dataset import load_dataset
from mrse.evaluation.repeats import BOUGHT_BEFORE, bought_before_groups
from mrse.metrics.ranking import SLICE_METRICS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--group", nargs="+", action="append", required=True, metavar="NAME FILE")
    args = p.parse_args()
    group = bought_before_groups(load_dataset(args.data))
    sizes = {g: sum(v == g for v in group.values()) for g in BOUGHT_BEFORE}
    print("| model | runs | " + " | ".join(f"{g} ({sizes[g]})" for g in BOUGHT_BEFORE) + " |")
    print("|---|---|" + "---|" * len(BOUGHT_BEFORE))
    for name, *files in args.group:
        per = [json.load(open(f))["per_query"] for f in files]
        cells = []
        for g in BOUGHT_BEFORE:
            qids = [q for q, v in group.items() if v == g]
            m = {k: np.mean([np.mean([r[q][k] for q in qids]) for r in per]) for k in SLICE_METRICS}
            cells.append(" / ".join(f"{m[k]:.3f}" for k in SLICE_METRICS))
        print(f"| {name} | {len(files)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
