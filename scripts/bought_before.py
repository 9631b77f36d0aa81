"""Evaluations split by whether the shopper had bought the target product before.

    .venv/bin/python scripts/bought_before.py --data ../shared/benchmarks/hm \
        --group no-profile results/ablation/hm-no-profile.json results/p13/hm-noprof-s1.json \
        --group mrse results/ablation/hm-mrse.json ...

Each test query falls in one group: its top-grade item (hm: the bought item) is the very item
the shopper bought before, another variant of a product they bought before (same title and
description: ``mrse.features.identity``), or neither. Prints nDCG@10, MRR@10 and HR@10 of each
``--group`` of ``mrse eval`` JSON files (their mean: e.g. one model's seeds) per query group.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from mrse.data.dataset import load_dataset
from mrse.evaluation.harness import build_query_contexts
from mrse.features.identity import product_key

GROUPS = ("the very item", "another variant", "no product bought before")
METRICS = ("ndcg@10", "mrr@10", "hr@10")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--group", nargs="+", action="append", required=True, metavar="NAME FILE")
    args = p.parse_args()
    ds = load_dataset(args.data)
    items = ds.items.set_index("item_id")
    key = {
        i: product_key(i, t, d)
        for i, t, d in zip(items.index, items["title"], items["description"], strict=True)
    }
    judged = ds.qrels_by_query
    group: dict[str, str] = {}
    for c in build_query_contexts(ds):
        top = max(judged[c.qid].values())
        targets = {i for i, g in judged[c.qid].items() if g == top}
        before = set(c.history.item_ids)
        if targets & before:
            group[c.qid] = GROUPS[0]
        elif {key[i] for i in targets if i in key} & {key[i] for i in before if i in key}:
            group[c.qid] = GROUPS[1]
        else:
            group[c.qid] = GROUPS[2]
    sizes = {g: sum(v == g for v in group.values()) for g in GROUPS}
    print("| model | runs | " + " | ".join(f"{g} ({sizes[g]})" for g in GROUPS) + " |")
    print("|---|---|" + "---|" * len(GROUPS))
    for name, *files in args.group:
        per = [json.load(open(f))["per_query"] for f in files]
        cells = []
        for g in GROUPS:
            qids = [q for q, v in group.items() if v == g]
            m = {k: np.mean([np.mean([r[q][k] for q in qids]) for r in per]) for k in METRICS}
            cells.append(" / ".join(f"{m[k]:.3f}" for k in METRICS))
        print(f"| {name} | {len(files)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
