"""Cut a small, self-consistent sample out of a dataset (for the demo and test fixtures).

The sample keeps real rows only: a subset of test queries, the items they judge relevant, the
history items of their users, and random other items as distractors; events, qrels and users
restricted to what was kept; photos copied. Queries left with no relevant item are dropped.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mrse.data.dataset import load_dataset
from mrse.data.history import HistoryIndex

logger = logging.getLogger(__name__)

MAX_MATCHING_PER_QUERY = 3
MAX_HISTORY_PER_QUERY = 4


@dataclass(frozen=True)
class SampleConfig:
    source: Path
    out: Path
    queries: int = 40
    max_items: int = 300
    seed: int = 0


def make_sample(config: SampleConfig) -> Path:
    """Write the sample to ``config.out`` and return it. Raises ``ValueError`` on a bad config."""
    if config.queries < 1 or config.max_items < 10:
        raise ValueError("a sample needs at least 1 query and 10 items")
    ds = load_dataset(config.source)
    rng = np.random.default_rng(config.seed)
    raw_items = pd.read_parquet(config.source / "items.parquet")
    raw_events = pd.read_parquet(config.source / "events.parquet")
    budget = config.max_items
    chosen: list[str] = []
    keep: dict[str, None] = {}  # ordered set of item ids
    qrels = ds.qrels_by_query
    history = HistoryIndex(ds.events)
    for qi in rng.permutation(len(ds.queries)):
        if len(chosen) >= config.queries:
            break
        q = ds.queries.iloc[qi]
        rels = qrels.get(q["qid"], {})
        top = max(rels.values(), default=0)
        best = [i for i, r in rels.items() if r == top and r > 0]
        if not best:
            continue
        rng.shuffle(best)
        # The most recent history before the query: what a personalised model leans on most.
        past = history.before(q["user_id"], q["ts"]).item_ids[::-1]
        recent = list(dict.fromkeys(past))[:MAX_HISTORY_PER_QUERY]
        others = [i for i in rels if i not in best]
        rng.shuffle(others)
        need = list(
            dict.fromkeys(best[:MAX_MATCHING_PER_QUERY] + recent + others[:MAX_MATCHING_PER_QUERY])
        )
        new = [i for i in need if i not in keep]
        if len(keep) + len(new) > budget * 0.7:
            continue
        chosen.append(q["qid"])
        keep.update(dict.fromkeys(new))
    rest = [i for i in ds.items["item_id"] if i not in keep]
    fill = rng.choice(len(rest), size=max(0, min(len(rest), budget - len(keep))), replace=False)
    keep.update(dict.fromkeys(rest[i] for i in sorted(fill)))

    out = config.out
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    items = raw_items[raw_items["item_id"].isin(keep)].reset_index(drop=True)
    for rel in items["image"]:
        if rel and (config.source / rel).is_file():
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(config.source / rel, dst)
    items.to_parquet(out / "items.parquet", index=False)
    events = raw_events[raw_events["item_id"].isin(keep)]
    events.reset_index(drop=True).to_parquet(out / "events.parquet", index=False)
    raw_qrels = pd.read_parquet(config.source / "qrels.parquet")
    qrels_out = raw_qrels[raw_qrels["qid"].isin(chosen) & raw_qrels["item_id"].isin(keep)]
    qrels_out.reset_index(drop=True).to_parquet(out / "qrels.parquet", index=False)
    raw_queries = pd.read_parquet(config.source / "queries.parquet")
    raw_queries[raw_queries["qid"].isin(set(qrels_out["qid"]))].reset_index(drop=True).to_parquet(
        out / "queries.parquet", index=False
    )
    if (config.source / "users.parquet").exists():
        users = pd.read_parquet(config.source / "users.parquet")
        users = users[users["user_id"].isin(set(events["user_id"].dropna()))]
        users.reset_index(drop=True).to_parquet(out / "users.parquet", index=False)
    sample = load_dataset(out)
    logger.info(
        "sample of %s: %d items, %d events, %d queries in %s",
        config.source,
        len(sample.items),
        len(sample.events),
        len(sample.queries),
        out,
    )
    return out
