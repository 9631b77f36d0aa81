"""Training examples from the event log, and the validation split carved from them.

An example is an event that has a query: (query text, user, time) -> the item interacted with.
The validation split never touches the test queries: for logs with users and times it holds
out each sampled user's latest search (the same shape as the test protocol); for anonymous
logs it holds out whole query strings (so validation queries are unseen words, as in test).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrse.data.dataset import Dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    """E training examples.

    Attributes:
        texts: (E,) query strings; user_ids: (E,) or None; ts: (E,) datetime64 or NaT.
        item_rows: (E,) catalog rows of the positive items.
    """

    texts: np.ndarray
    user_ids: np.ndarray
    ts: np.ndarray
    item_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def requests(self) -> list[tuple[str | None, np.datetime64 | None]]:
        return [(u, None if pd.isna(t) else t) for u, t in zip(self.user_ids, self.ts, strict=True)]


def build_examples(dataset: Dataset) -> Examples:
    """Every event with a non-empty query whose item is in the catalog."""
    ev = dataset.events
    ev = ev[ev["query"].notna() & (ev["query"].fillna("").str.strip() != "")]
    if ev.empty:
        raise ValueError(
            f"{dataset.root}/events.parquet has no event with a query: nothing to train on"
        )
    index = dataset.item_index
    return Examples(
        texts=ev["query"].to_numpy(dtype=object),
        user_ids=ev["user_id"].to_numpy(dtype=object),
        ts=ev["ts"].to_numpy(dtype="datetime64[ns]"),
        item_rows=np.array([index[i] for i in ev["item_id"]], dtype=np.int64),
    )


def split_examples(
    examples: Examples, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices)."""
    rng = np.random.default_rng(seed)
    n = len(examples)
    personal = np.array([u is not None for u in examples.user_ids]) & ~pd.isna(examples.ts)
    val: list[int] = []
    if personal.mean() > 0.5:
        df = pd.DataFrame({"u": examples.user_ids, "ts": examples.ts, "i": np.arange(n)})[personal]
        last = df.sort_values(["u", "ts"], kind="stable").groupby("u").tail(1)
        counts = df.groupby("u").size()
        last = last[last["u"].map(counts) >= 2]
        # Hold out whole same-time baskets until the validation share is reached.
        basket = df.groupby(["u", "ts"]).size()
        keys: set[tuple] = set()
        count = 0
        for j in rng.permutation(len(last)):
            if count >= val_fraction * n:
                break
            key = (last["u"].iloc[j], last["ts"].iloc[j])
            keys.add(key)
            count += int(basket[key])
        val = [i for u, t, i in df.itertuples(index=False) if (u, t) in keys]
    else:
        texts = np.unique(examples.texts)
        rng.shuffle(texts)
        held: set[str] = set()
        count = 0
        by_text = pd.Series(examples.texts).value_counts()
        for t in texts:
            if count >= val_fraction * n:
                break
            held.add(t)
            count += int(by_text[t])
        val = [i for i, t in enumerate(examples.texts) if t in held]
    val_idx = np.array(sorted(val), dtype=np.int64)
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    logger.info(
        "split %d examples: %d train, %d validation (%s)",
        n,
        int(train_mask.sum()),
        len(val_idx),
        "latest search of sampled users" if personal.mean() > 0.5 else "held-out query strings",
    )
    return np.flatnonzero(train_mask), val_idx


def validation_qrels(
    examples: Examples, val_idx: np.ndarray
) -> tuple[list[int], list[dict[int, int]]]:
    """Group validation examples into queries: (representative example, {item row: 1})."""
    groups: dict[tuple, list[int]] = {}
    for i in val_idx:
        u, t = examples.user_ids[i], examples.ts[i]
        key = (
            (examples.texts[i], u, None if pd.isna(t) else t)
            if u is not None
            else (examples.texts[i],)
        )
        groups.setdefault(key, []).append(int(i))
    reps = [members[0] for members in groups.values()]
    rels = [{int(examples.item_rows[i]): 1 for i in members} for members in groups.values()]
    return reps, rels
