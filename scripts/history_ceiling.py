"""How much can a shopper's history add on top of a model's ranking, at most?

    .venv/bin/python scripts/history_ceiling.py --data ../shared/benchmarks/hm \
        --run runs/hm-no-profile --out results/history-ceiling.json

Re-scores the run's ranking of every test query as ``score + lambda * signal`` for signals a
profile could carry (the query's history strictly before its time) and a few lambdas, and
reports nDCG@10, Recall@100 and the bought item's MRR@10 / HR@10 for the best lambda of each,
and how many items each query judges and how often the bought item is a repurchase.
The lambda is chosen **on the test queries**: the numbers are a ceiling for that signal, not a
method. Signals: the photo of the nearest / the mean of the last 20 purchases (centred unit
EfficientNet vectors), co-purchases (items bought by shoppers who bought the same items), the
same product as an earlier purchase (the very item, or a variant: ``mrse.features.identity``),
a price near the mean (log) price of the last 20 purchases, the shopper's age band among an
item's buyers before the query (and the same over the item's 20 nearest photos), and the
catalog's sales in the 30 / 90 days before the query (not personal: for scale). Then every
personal signal at once, their weights found by coordinate ascent on nDCG@10 and on HR@10
(again on the test queries).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mrse.data.dataset import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_query_texts
from mrse.evaluation.harness import build_query_contexts
from mrse.evaluation.repeats import BOUGHT_BEFORE, bought_before_groups
from mrse.features.queries import snapshot_profiles
from mrse.logs import setup_logging
from mrse.metrics.ranking import query_metrics, top_grade_items
from mrse.models.inference import encode_queries
from mrse.retrieval.model import ModelRetriever
from mrse.training.checkpoint import load_run

logger = logging.getLogger("history_ceiling")
LAMBDAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
METRICS = ("ndcg@10", "recall@100", "mrr@10", "hr@10")


AGE_BANDS = np.array([25.0, 35.0, 50.0])  # <25, 25-34, 35-49, 50+


def age_bands(ages: np.ndarray) -> np.ndarray:
    """(n,) band index of each age in ``AGE_BANDS``; -1 where the age is unknown (NaN)."""
    bands = np.searchsorted(AGE_BANDS, ages, side="right")
    return np.where(np.isnan(ages), -1, bands)


def nearest(vectors: np.ndarray, k: int) -> np.ndarray:
    """(N, k + 1) rows of each unit vector's ``k`` nearest by cosine, itself included."""
    v = torch.from_numpy(vectors).float()
    chunks = [
        torch.topk(v[i : i + 2048] @ v.T, k + 1, dim=1).indices for i in range(0, len(v), 2048)
    ]
    return torch.cat(chunks).numpy()


def joint(
    evaluate: Callable[[dict[str, float]], dict[str, float]],
    names: list[str],
    metric: str,
    rounds: int = 2,
) -> tuple[dict[str, float], dict[str, float]]:
    """Weights for every signal in ``names`` at once, by coordinate ascent on ``metric`` over
    ``(0,) + LAMBDAS`` per signal (``rounds`` passes); returns them and their metrics."""
    weights = dict.fromkeys(names, 0.0)
    best = evaluate(weights)
    for _ in range(rounds):
        for name in names:
            for lam in (0.0, *LAMBDAS):
                trial = {**weights, name: lam}
                if (got := evaluate(trial))[metric] > best[metric]:
                    weights, best = trial, got
    return weights, best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    setup_logging(False)
    ds, run = load_dataset(args.data), load_run(args.run)
    contexts = build_query_contexts(ds)
    with FeatureCache.open_default(None) as cache:
        r = ModelRetriever(run, ds, cache)
        texts = [c.query for c in contexts]
        profiles = snapshot_profiles(
            ds.events, r.catalog, [(c.user_id, c.ts) for c in contexts], run.config.profile
        )
        qf = run.featurizer.queries(
            texts, encode_query_texts(texts, cache), profiles, r.catalog.index
        )
    (out,) = encode_queries(run.model, qf, r.items, batch_size=len(texts))
    scores = (out.embedding @ r.items.T).numpy()  # (Q, N)
    photo = r.catalog.image.numpy()  # (N, 1280) centred unit
    index, ids, judged = r.catalog.index, r.catalog.item_ids, ds.qrels_by_query
    ev = ds.events[ds.events["item_id"].isin(index.keys())]
    rows = ev["item_id"].map(index).to_numpy()
    times = ev["ts"].to_numpy(dtype="datetime64[ns]")
    bought_by: dict[str, np.ndarray] = {
        u: g["item_id"].map(index).to_numpy() for u, g in ev.groupby("user_id")
    }

    def co_purchases(history: list[int]) -> np.ndarray:
        mine = set(history)
        s = np.zeros(len(ids))
        for items in bought_by.values():
            overlap = sum(1 for i in items if i in mine)
            if overlap:
                np.add.at(s, items, overlap)
        return np.log1p(s)

    def sales_before(ts: np.datetime64, days: int) -> np.ndarray:
        t = np.datetime64(pd.Timestamp(ts), "ns")
        window = (times < t) & (times >= t - np.timedelta64(days, "D"))
        return np.log1p(np.bincount(rows[window], minlength=len(ids)))

    products = r.catalog.identity  # (N,) product-key hashes

    def same_product(history: list[int]) -> np.ndarray:
        return np.isin(products, products[history]).astype(np.float64)

    by_id = ds.items.set_index("item_id")["price"]
    log_price = np.log(by_id.reindex(ids).fillna(by_id.median()).to_numpy() + 1e-4)  # (N,)

    ages = ds.users.set_index("user_id")["age"] if ds.users is not None else pd.Series()
    ev_band = age_bands(ev["user_id"].map(ages).to_numpy(dtype=float))  # (E,) -1: unknown
    neighbours = nearest(photo, 20)  # (N, 21)

    def age_lift(c) -> np.ndarray | float:
        """(N,) log of how much more often each item's buyers before the query fall in the
        shopper's age band than all buyers before it do; an item with few sales is pulled
        towards 0 (no lift), so an unsold item is neutral, not penalised."""
        (band,) = age_bands(np.array([ages.get(c.user_id, np.nan)], dtype=float))
        if band < 0:
            return 0.0
        before = (times < np.datetime64(pd.Timestamp(c.ts), "ns")) & (ev_band >= 0)
        n = np.bincount(rows[before], minlength=len(ids))
        n_band = np.bincount(rows[before & (ev_band == band)], minlength=len(ids))
        share = max(float(np.mean(ev_band[before] == band)), 1e-6)
        return np.log((n_band + 2 * share) / (n + 2)) - np.log(share)

    signals: dict[str, Callable[[object, list[int]], np.ndarray | float]] = {
        "photo of the nearest recent purchase": lambda c, h: (photo @ photo[h[-20:]].T).max(1),
        "photo of the mean recent purchase": lambda c, h: photo @ photo[h[-20:]].mean(0),
        "co-purchases": lambda c, h: co_purchases(h),
        "same product as an earlier purchase": lambda c, h: same_product(h),
        "price near the mean recent purchase": lambda c, h: (
            -np.abs(log_price - log_price[h[-20:]].mean())
        ),
        "the shopper's age band among the item's buyers": lambda c, h: age_lift(c),
        "the same, over the item's 20 nearest photos": lambda c, h: (
            lift[neighbours].mean(1) if isinstance(lift := age_lift(c), np.ndarray) else 0.0
        ),
        "sales in the 30 days before (not personal)": lambda c, h: sales_before(c.ts, 30),
        "sales in the 90 days before (not personal)": lambda c, h: sales_before(c.ts, 90),
    }
    cached = {
        name: [
            fn(c, h) if (h := [index[i] for i in c.history.item_ids if i in index]) else 0.0
            for c in contexts
        ]
        for name, fn in signals.items()
    }

    def evaluate(weights: dict[str, float], oracle: bool = False) -> dict[str, float]:
        """Mean metrics of the run's top 100 re-scored as ``score + sum of lambda * signal``
        over ``weights`` (signal name -> lambda). ``oracle``:
        the query's top-grade items moved to the front, the rest in order (the most any
        re-ranking by the shopper can reach: a shopper's history says nothing about which other
        items have the typed colour and type)."""
        per = []
        for qi, c in enumerate(contexts):
            s = scores[qi] + sum(lam * cached[name][qi] for name, lam in weights.items())
            top = np.argpartition(-s, 100)[:100]
            ranked = list(ids[top[np.argsort(-s[top])]])
            if oracle:
                best = top_grade_items(judged[c.qid])
                ranked = (sorted(best) + [i for i in ranked if i not in best])[:100]
            per.append(query_metrics(ranked, judged[c.qid]))
        return {m: float(np.mean([q[m] for q in per])) for m in METRICS}

    base, oracle = evaluate({}), evaluate({}, oracle=True)
    groups = list(bought_before_groups(ds).values())  # one per test query
    facts = {
        "median judged items per query": float(np.median([len(judged[c.qid]) for c in contexts])),
        "share of queries whose top-grade item is in the history (repurchase)": float(
            np.mean([g == BOUGHT_BEFORE[0] for g in groups])
        ),
        "share of queries whose top-grade item is a product bought before (any variant)": float(
            np.mean([g in BOUGHT_BEFORE[:2] for g in groups])
        ),
    }
    logger.info("%s", facts)
    result = {
        "run": args.run,
        "base": base,
        "oracle": oracle,
        "facts": facts,
        "signals": {},
        "joint": {},
    }
    for name in signals:
        grid = {lam: evaluate({name: lam}) for lam in LAMBDAS}
        best = max(grid, key=lambda lam: grid[lam]["mrr@10"])
        result["signals"][name] = {"best_lambda": best, **grid[best]}
        logger.info("%s: lambda %.2f %s", name, best, grid[best])
    personal = [name for name in signals if "(not personal)" not in name]
    for metric in ("ndcg@10", "hr@10"):
        weights, best = joint(evaluate, personal, metric)
        result["joint"][metric] = {"weights": weights, **best}
        logger.info("every personal signal, tuned for %s: %s %s", metric, weights, best)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name, value in facts.items():
        print(f"{name}: {value:.3g}")
    print("| signal added | lambda | nDCG@10 | Recall@100 | bought MRR@10 | bought HR@10 |")
    print("|---|---|---|---|---|---|")
    for label, v in (("the run alone", base), ("oracle: the bought item moved to rank 1", oracle)):
        print(f"| ({label}) | - | " + " | ".join(f"{v[m]:.4f}" for m in METRICS) + " |")
    for name, v in result["signals"].items():
        cells = " | ".join(f"{v[m]:.4f}" for m in METRICS)
        print(f"| {name} | {v['best_lambda']} | {cells} |")
    for metric, v in result["joint"].items():
        cells = " | ".join(f"{v[m]:.4f}" for m in METRICS)
        print(f"| every personal signal at once, tuned for {metric} | (JSON) | {cells} |")


if __name__ == "__main__":
    main()
