"""Recommendations with no query (a home feed), measured on any dataset in the layout.

A case is a judged test query that has a shopper and a time: its items of the top grade (on
``hm`` the item the shopper bought) are the targets, the shopper's events strictly before the
time are the history, and the query's text is never read. Every model ranks the whole catalog
for the shopper at that time.

What the models may learn from (``fit_events``) is the event log less every event of a case's
shopper at or after that shopper's earliest case: nothing a shopper did from the moment of the
case on is visible to any model (on ``hm`` the log holds no such event: the targets were cut
from it). Other shoppers' later events stay, as in the usual leave-last-out protocol; the
popularity peers count only events before each case's time.

Metrics (``RECOMMEND_METRICS``): ``map@12`` (the H&M competition's MAP@12), ``hr@12`` (a
target in the first 12), ``recall@100``; each also per history slice (cold, 1-4, 5+ events).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrse.data.dataset import Dataset
from mrse.data.history import HistoryIndex
from mrse.metrics.ranking import HISTORY_SLICES, average_precision_at_k, history_slice

RECOMMEND_METRICS = ("map@12", "hr@12", "recall@100")


@dataclass(frozen=True)
class RecommendCase:
    """One feed request: a shopper at a time, the items they went on to buy, their history."""

    query_id: str
    user_id: str
    ts: np.datetime64
    targets: frozenset[str]
    history: int  # events of the shopper strictly before ``ts``


def recommend_cases(dataset: Dataset) -> list[RecommendCase]:
    """Every judged test query with a shopper and a time whose top-grade items are in the
    catalog, oldest first (ties by query id)."""
    queries = dataset.queries
    queries = queries[queries["user_id"].notna() & queries["ts"].notna()]
    known = set(dataset.items["item_id"])
    qrels = dataset.qrels[(dataset.qrels["relevance"] > 0) & dataset.qrels["item_id"].isin(known)]
    top = qrels[qrels["relevance"] == qrels.groupby("qid")["relevance"].transform("max")]
    targets = top.groupby("qid")["item_id"].agg(lambda s: frozenset(map(str, s)))
    history = HistoryIndex(dataset.events)
    out = []
    for qid, user, ts in zip(queries["qid"], queries["user_id"], queries["ts"], strict=True):
        if qid not in targets.index:
            continue
        t = np.datetime64(pd.Timestamp(ts), "ns")
        before = len(history.before(str(user), t))
        out.append(RecommendCase(str(qid), str(user), t, targets[qid], before))
    return sorted(out, key=lambda c: (c.ts, c.query_id))


def fit_events(events: pd.DataFrame, cases: Sequence[RecommendCase]) -> pd.DataFrame:
    """``events`` with a shopper and a time, less each case shopper's events at or after
    their earliest case (the module docstring says why)."""
    known = events[events["user_id"].notna() & events["ts"].notna()]
    first: dict[str, np.datetime64] = {}
    for c in cases:
        first[c.user_id] = min(first.get(c.user_id, c.ts), c.ts)
    cut = known["user_id"].map(first)
    keep = cut.isna() | (known["ts"].to_numpy(dtype="datetime64[ns]") < cut.to_numpy(
        dtype="datetime64[ns]", na_value=np.datetime64("NaT")))  # fmt: skip
    return known[keep.to_numpy()].reset_index(drop=True)


def evaluate_recommend(
    cases: Sequence[RecommendCase], rankings: Sequence[Sequence[str]]
) -> dict[str, object]:
    """Mean ``RECOMMEND_METRICS`` of ``rankings`` (one list of item ids per case, best first,
    at least 100 long where the catalog allows), overall and per history slice."""
    if not cases:
        raise ValueError("no recommendation cases: no judged test query has a shopper and a time")
    if len(rankings) != len(cases):
        raise ValueError(f"{len(rankings)} rankings for {len(cases)} cases")
    per = np.array(
        [_case_metrics(list(r), c.targets) for c, r in zip(cases, rankings, strict=True)]
    )
    slices: dict[str, dict[str, float]] = {}
    names = np.array([history_slice(c.history) for c in cases])
    for s in HISTORY_SLICES:
        members = per[names == s]
        slices[s] = {"cases": float(len(members))}
        if len(members):
            slices[s].update(
                {m: float(v) for m, v in zip(RECOMMEND_METRICS, members.mean(0), strict=True)}
            )
    overall = {m: float(v) for m, v in zip(RECOMMEND_METRICS, per.mean(0), strict=True)}
    return {"metrics": overall, "slices": slices}


def _case_metrics(ranked: list[str], targets: frozenset[str]) -> tuple[float, float, float]:
    hits = sum(1 for i in ranked[:100] if i in targets)
    return (
        average_precision_at_k(ranked, targets, 12),
        float(any(i in targets for i in ranked[:12])),
        hits / len(targets),
    )


def format_recommend(results: dict[str, dict]) -> str:
    """``evaluate_recommend`` results by model name as a markdown table, best ``map@12`` first,
    with each model's ratio to the best of the others."""
    rows = sorted(results.items(), key=lambda kv: -kv[1]["metrics"]["map@12"])
    head = ["model", *RECOMMEND_METRICS, *(f"map@12 {s}" for s in HISTORY_SLICES)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows:
        slices = [r["slices"][s].get("map@12") for s in HISTORY_SLICES]
        cells = [f"{r['metrics'][m]:.4f}" for m in RECOMMEND_METRICS]
        cells += ["-" if v is None else f"{v:.4f}" for v in slices]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
