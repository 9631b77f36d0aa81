"""Training examples from the event log, and the validation split carved from them.

An example is an event that has a query: (query text, user, time) -> the item interacted with.
The validation split never touches the test queries: for logs with users and times it holds
out each sampled user's latest search (the same shape as the test protocol); for anonymous
logs it holds out whole query strings (so validation queries are unseen words, as in test).

A shop's log has more kinds of query than a benchmark's: names, fragments and misspellings of
names, brand + type, descriptions. ``shop_examples`` generates them from the training fifths
of the catalog's titles (``mrse.data.shop_queries``; the evaluation's fifth is never a
training query) and they are added to the training side only; validation stays the log's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrse.data.dataset import Dataset
from mrse.data.shop_queries import generate_queries
from mrse.features.queries import FEED_QUERY

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Examples:
    """E training examples.

    Attributes:
        texts: (E,) query strings; user_ids: (E,) or None; ts: (E,) datetime64 or NaT.
        item_rows: (E,) catalog rows of the positive items.
        generated: (E,) True for the examples generated from item text (after the log's).
        relevant: generated query text -> every catalog row relevant to it (none of them is
            a negative for it).
    """

    texts: np.ndarray
    user_ids: np.ndarray
    ts: np.ndarray
    item_rows: np.ndarray
    generated: np.ndarray | None = None
    relevant: dict[str, set[int]] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def with_generated(
        self,
        texts: np.ndarray,
        user_ids: np.ndarray,
        ts: np.ndarray,
        item_rows: np.ndarray,
        relevant: dict[str, set[int]] | None = None,
    ) -> Examples:
        """These examples followed by generated ones (training only; ``relevant`` merged)."""
        base = self.generated if self.generated is not None else np.zeros(len(self), bool)
        return Examples(
            texts=np.concatenate([self.texts, texts]),
            user_ids=np.concatenate([self.user_ids, user_ids]),
            ts=np.concatenate([self.ts, ts.astype("datetime64[ns]")]),
            item_rows=np.concatenate([self.item_rows, item_rows.astype(np.int64)]),
            generated=np.concatenate([base, np.ones(len(texts), bool)]),
            relevant={**(self.relevant or {}), **relevant} if relevant else self.relevant,
        )

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


def next_item_examples(dataset: Dataset, examples: Examples, ratio: float, seed: int) -> Examples:
    """``examples`` followed by the log's purchases that carry no query, as feed examples: no
    text, the shopper and the time (their profile before it) -> the item bought. ``ratio``: the
    share of them drawn (seeded; 0: ``examples`` as they are). Training only, like the
    generated queries: validation stays the log's searches."""
    ev = dataset.events
    index = dataset.item_index
    bare = ev["query"].isna() | (ev["query"].fillna("").str.strip() == "")
    ev = ev[bare & ev["user_id"].notna() & ev["ts"].notna() & ev["item_id"].isin(index.keys())]
    n = int(round(min(ratio, 1.0) * len(ev)))
    if n <= 0:
        return examples
    pick = np.sort(np.random.default_rng(seed).choice(len(ev), size=n, replace=False))
    logger.info("feed examples: %d of the %d purchases without a query", n, len(ev))
    ev = ev.iloc[pick]
    return examples.with_generated(
        texts=np.full(n, FEED_QUERY, dtype=object),
        user_ids=ev["user_id"].to_numpy(dtype=object),
        ts=ev["ts"].to_numpy(dtype="datetime64[ns]"),
        item_rows=np.array([index[i] for i in ev["item_id"]], np.int64),
    )


def shop_examples(
    dataset: Dataset, examples: Examples, ratio: float, classes: tuple[str, ...], seed: int
) -> Examples:
    """``examples`` followed by ``ratio`` x as many queries generated from the training split
    of ``dataset``'s item text (``mrse.data.shop_queries``), each with one of its relevant items
    as the positive; anonymous and untimed (no profile). ``ratio`` 0: ``examples`` as they are."""
    n = int(round(ratio * len(examples)))
    if n <= 0:
        return examples
    pool = generate_queries(dataset.items, per_class=None, seed=seed, split="train",
                            classes=classes)  # fmt: skip
    if not len(pool):
        logger.warning("%s: no query can be generated from the item text", dataset.root)
        return examples
    rng = np.random.default_rng(seed)
    index = dataset.item_index
    rows_of = pool.qrels.groupby("qid")["item_id"].agg(list)
    qids = pool.queries["qid"].to_numpy()
    texts = pool.queries["query"].to_numpy(dtype=object)
    pick = rng.choice(len(qids), size=n, replace=n > len(qids))
    item_rows = np.array([index[rng.choice(rows_of[qids[i]])] for i in pick], dtype=np.int64)
    relevant: dict[str, set[int]] = {}
    for i in pick:
        relevant.setdefault(texts[i], set()).update(index[x] for x in rows_of[qids[i]])
    logger.info(
        "training queries: %d from the log and %d generated from item text (%s)",
        len(examples), n, ", ".join(f"{c} {k}" for c, k in
                                    pool.queries["cls"].iloc[pick].value_counts().items()),
    )  # fmt: skip
    return examples.with_generated(
        texts=texts[pick],
        user_ids=np.full(n, None, dtype=object),
        ts=np.full(n, np.datetime64("NaT"), "datetime64[ns]"),
        item_rows=item_rows,
        relevant=relevant,
    )


def split_examples(
    examples: Examples, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices). Generated examples (``shop_examples``) are all
    training ones: validation is carved from the log's examples only, as before."""
    if examples.generated is not None and examples.generated.any():
        log = np.flatnonzero(~examples.generated)
        sub = Examples(examples.texts[log], examples.user_ids[log], examples.ts[log],
                       examples.item_rows[log])  # fmt: skip
        train, val = split_examples(sub, val_fraction, seed)
        return np.concatenate([log[train], np.flatnonzero(examples.generated)]), log[val]
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
