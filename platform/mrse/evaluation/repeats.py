"""Test queries grouped by whether the shopper had bought the target product before.

A profile pays most where the shopper buys again what they bought before: the very item, or
another variant of its product (``mrse.features.identity``: the variants share their title and
description). ``scripts/bought_before.py`` reports metrics per group; ``history_ceiling.py``
prints the groups' shares.
"""

from __future__ import annotations

from mrse.data.dataset import Dataset
from mrse.data.products import product_key
from mrse.evaluation.harness import build_query_contexts
from mrse.metrics.ranking import top_grade_items

BOUGHT_BEFORE = ("the very item", "another variant", "no product bought before")


def bought_before_groups(dataset: Dataset) -> dict[str, str]:
    """qid -> one of ``BOUGHT_BEFORE``: the query's top-grade item (hm: the bought item) is an
    item of the shopper's history before the query, another variant of a product in it, or
    neither."""
    items = dataset.items
    key = {
        i: product_key(i, t, d)
        for i, t, d in zip(items["item_id"], items["title"], items["description"], strict=True)
    }
    judged = dataset.qrels_by_query
    groups: dict[str, str] = {}
    for c in build_query_contexts(dataset):
        targets = top_grade_items(judged.get(c.qid, {}))
        before = set(c.history.item_ids)
        if targets & before:
            groups[c.qid] = BOUGHT_BEFORE[0]
        elif {key[i] for i in targets if i in key} & {key[i] for i in before if i in key}:
            groups[c.qid] = BOUGHT_BEFORE[1]
        else:
            groups[c.qid] = BOUGHT_BEFORE[2]
    return groups
