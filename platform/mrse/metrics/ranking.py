"""Ranking metrics as pure functions of one ranked list and its graded relevance judgements.

Conventions: ``ranked`` is the retrieved item ids, best first; ``rels`` maps item id to a
graded relevance (missing = 0). Gains are exponential (``2**rel - 1``), the usual choice for
graded judgements, so a bought item (grade 2) counts three times a merely matching one (grade 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

METRIC_NAMES = ("ndcg@10", "recall@10", "recall@100", "recall@500", "mrr@10", "hr@10")


def dcg_at_k(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` gains, rank 1 undiscounted."""
    return float(sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k])))


def ndcg_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Normalised DCG with exponential gain; 0.0 when nothing is relevant."""
    ideal = sorted((2.0**r - 1.0 for r in rels.values() if r > 0), reverse=True)
    idcg = dcg_at_k(ideal, k)
    if idcg == 0.0:
        return 0.0
    gains = [2.0 ** rels.get(item, 0) - 1.0 for item in ranked[:k]]
    return dcg_at_k(gains, k) / idcg


def recall_at_k(
    ranked: Sequence[str], rels: Mapping[str, int], k: int, min_grade: int = 1
) -> float:
    """Fraction of items with relevance >= ``min_grade`` found in the top ``k``."""
    relevant = {item for item, r in rels.items() if r >= min_grade}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def first_hit_rank(ranked: Sequence[str], rels: Mapping[str, int], min_grade: int) -> int | None:
    """1-based rank of the first item with relevance >= ``min_grade``, or None."""
    for i, item in enumerate(ranked):
        if rels.get(item, 0) >= min_grade:
            return i + 1
    return None


def mrr_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int, min_grade: int) -> float:
    """Reciprocal rank of the first item of grade >= ``min_grade`` within the top ``k``."""
    rank = first_hit_rank(ranked[:k], rels, min_grade)
    return 0.0 if rank is None else 1.0 / rank


def hit_rate_at_k(ranked: Sequence[str], rels: Mapping[str, int], k: int, min_grade: int) -> float:
    """1.0 if an item of grade >= ``min_grade`` is in the top ``k``, else 0.0."""
    return 0.0 if first_hit_rank(ranked[:k], rels, min_grade) is None else 1.0


def top_grade_items(rels: Mapping[str, int]) -> set[str]:
    """The items of the highest relevance grade (>= 1) of one query's judgements: what MRR@10
    and HR@10 look for (on ``hm``, the item the shopper bought); empty without any."""
    top = max(rels.values(), default=0)
    return {item for item, r in rels.items() if r == top} if top >= 1 else set()


def query_metrics(ranked: Sequence[str], rels: Mapping[str, int]) -> dict[str, float]:
    """All reported metrics for one query.

    MRR@10 and HR@10 look for the query's highest relevance grade (for ``hm``: the item the
    shopper actually bought), recall for any relevant item (grade >= 1).
    """
    top = max(rels.values(), default=0)
    return {
        "ndcg@10": ndcg_at_k(ranked, rels, 10),
        "recall@10": recall_at_k(ranked, rels, 10),
        "recall@100": recall_at_k(ranked, rels, 100),
        "recall@500": recall_at_k(ranked, rels, 500),
        "mrr@10": mrr_at_k(ranked, rels, 10, min_grade=max(top, 1)),
        "hr@10": hit_rate_at_k(ranked, rels, 10, min_grade=max(top, 1)),
    }


def mean_metrics(per_query: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Macro average over queries."""
    if not per_query:
        return {name: 0.0 for name in METRIC_NAMES}
    return {name: float(np.mean([m[name] for m in per_query])) for name in METRIC_NAMES}


# Shoppers sliced by how much history the query sees (events strictly before its time).
HISTORY_SLICES = ("no history", "1-4 events", "5+ events")
# What every report on a group of queries (history slices, modality quarters, queries whose
# product was bought before) gives: nDCG@10 and the top grade's MRR@10 and HR@10.
SLICE_METRICS = ("ndcg@10", "mrr@10", "hr@10")


def history_slice(events: int) -> str:
    """The slice of a query whose shopper had ``events`` events before it."""
    if events < 0:
        raise ValueError(f"events must be >= 0, got {events}")
    return HISTORY_SLICES[0] if events == 0 else HISTORY_SLICES[1 if events < 5 else 2]


def slice_metrics(
    per_query: Mapping[str, Mapping[str, float]], history_events: Mapping[str, int]
) -> dict[str, dict[str, float]]:
    """Per history slice: ``queries`` (count) and the mean of ``SLICE_METRICS`` over its queries.

    MRR@10 and HR@10 are those of ``query_metrics``: the query's highest grade (on ``hm`` the
    bought item). Every slice is reported, an empty one with ``queries`` 0 and no means.
    """
    groups: dict[str, list[Mapping[str, float]]] = {s: [] for s in HISTORY_SLICES}
    for qid, metrics in per_query.items():
        groups[history_slice(history_events[qid])].append(metrics)
    out: dict[str, dict[str, float]] = {}
    for name, members in groups.items():
        out[name] = {"queries": float(len(members))}
        if members:
            out[name].update({m: float(np.mean([q[m] for q in members])) for m in SLICE_METRICS})
    return out


def average_precision_at_k(
    ranked: Sequence[str], targets: set[str] | Mapping[str, int], k: int
) -> float:
    """The H&M competition's AP@k: the mean over the first ``k`` positions of precision at each
    position that holds a target, divided by ``min(k, number of targets)``; 0.0 without targets.
    With one target at rank r <= k it is 1 / r."""
    wanted = {t for t in targets if not isinstance(targets, Mapping) or targets[t] > 0}
    if not wanted:
        return 0.0
    hits, total = 0, 0.0
    for i, item in enumerate(ranked[:k]):
        if item in wanted:
            hits += 1
            total += hits / (i + 1)
    return total / min(k, len(wanted))
