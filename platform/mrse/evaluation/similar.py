"""More like this, measured on any dataset in the layout: one item in, the items like it out.

A case is a judged test query with at least two relevant items in the catalog: one of its items
of the top grade is the seed (a seeded draw), and the query's other relevant items, with their
grades, are the targets (on ``hm``: the same colour and product type; on ``myntra``: the same
attributes). The seed itself is never a result. Every model ranks the whole catalog by its
item vectors alone, exactly (no ANN), so the numbers compare representations, not indexes:

- ``text-encoder``: the frozen MiniLM vector of the item's text (centred, unit);
- ``photo-encoder``: the frozen EfficientNet-Lite0 vector of its photo (centred, unit);
- ``both-encoders``: the two concatenated, each unit (so each modality weighs half);
- a trained run: its item tower's vector (``mrse.retrieval.model.ModelRetriever``).

An item without the modality a peer reads has a zero vector there: it scores 0 against every
seed and is found only by chance, which is what that peer would serve.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrse.encoders.features import ItemFeatures
from mrse.features.catalog import FeatureStats, centre_unit
from mrse.metrics.ranking import hit_rate_at_k, ndcg_at_k, recall_at_k

SIMILAR_PEERS = ("text-encoder", "photo-encoder", "both-encoders")
SIMILAR_METRICS = ("ndcg@10", "hr@10", "recall@100")


@dataclass(frozen=True)
class SimilarCase:
    """One more-like-this case: the seed item and the items relevant with it (id -> grade)."""

    query_id: str
    seed: str
    targets: dict[str, int]
    grade: int = 1  # the seed's own grade for the query


def similar_cases(
    qrels: pd.DataFrame, catalog: Sequence[str], seed: int = 0, max_cases: int | None = None
) -> list[SimilarCase]:
    """The cases of ``qrels`` (``qid``, ``item_id``, ``relevance``) whose items are in
    ``catalog``: every query with two or more relevant items; its seed drawn (by ``seed``)
    among its items of the top grade; at most ``max_cases``, drawn the same way."""
    known = set(catalog)
    rng = random.Random(seed)
    out: list[SimilarCase] = []
    judged = qrels[(qrels["relevance"] > 0) & qrels["item_id"].isin(known)]
    for qid, group in sorted(judged.groupby("qid"), key=lambda g: str(g[0])):
        rels = dict(zip(group["item_id"].astype(str), group["relevance"].astype(int), strict=True))
        if len(rels) < 2:
            continue
        top = max(rels.values())
        chosen = rng.choice(sorted(i for i, r in rels.items() if r == top))
        others = {i: r for i, r in rels.items() if i != chosen}
        out.append(SimilarCase(str(qid), chosen, others, top))
    if max_cases is not None and len(out) > max_cases:
        out = sorted(rng.sample(out, max_cases), key=lambda c: c.query_id)
    return out


def peer_vectors(feats: ItemFeatures, peer: str) -> np.ndarray:
    """(N, D) item vectors of a frozen-encoder peer (``SIMILAR_PEERS``), rows of items without
    the peer's modality zero."""
    if peer not in SIMILAR_PEERS:
        raise ValueError(f"unknown peer {peer!r}; choose one of {', '.join(SIMILAR_PEERS)}")
    stats = FeatureStats.fit(feats)
    parts = []
    if peer in ("text-encoder", "both-encoders"):
        parts.append(centre_unit(feats.text, stats.text_mean, feats.has_text))
    if peer in ("photo-encoder", "both-encoders"):
        parts.append(centre_unit(feats.image, stats.image_mean, feats.has_image))
    out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return out / np.sqrt(len(parts))


def rank_similar(
    vectors: np.ndarray, seeds: np.ndarray, k: int, batch_size: int = 256
) -> np.ndarray:
    """Rows of the best ``k`` items by inner product with each seed's vector, best first,
    equal scores in row order, the seed itself left out.

    Args:
        vectors: (N, D) item vectors.
        seeds: (S,) rows of the seeds.
    Returns:
        (S, min(k, N - 1)) rows.
    """
    k = min(k, len(vectors) - 1)
    out = np.empty((len(seeds), k), dtype=np.int64)
    for s in range(0, len(seeds), batch_size):
        rows = seeds[s : s + batch_size]
        scores = vectors[rows] @ vectors.T  # (B, N)
        scores[np.arange(len(rows)), rows] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        for b in range(len(rows)):
            idx = part[b]
            out[s + b] = idx[np.lexsort((idx, -scores[b, idx]))]
    return out


def evaluate_similar(
    cases: Sequence[SimilarCase], item_ids: Sequence[str], vectors: np.ndarray, k: int = 100
) -> dict[str, float]:
    """Mean ``SIMILAR_METRICS`` of ranking by ``vectors`` (N, D), row-aligned with
    ``item_ids``, over ``cases``."""
    if not cases:
        raise ValueError("no more-like-this cases: no judged query has two relevant items")
    ids = np.asarray(item_ids, dtype=object)
    row = {i: n for n, i in enumerate(ids)}
    ranked = rank_similar(vectors, np.array([row[c.seed] for c in cases]), k)
    per = []
    for case, rows in zip(cases, ranked, strict=True):
        got = list(ids[rows])
        per.append((ndcg_at_k(got, case.targets, 10), hit_rate_at_k(got, case.targets, 10, 1),
                    recall_at_k(got, case.targets, 100)))  # fmt: skip
    means = np.mean(np.array(per), axis=0)
    return {name: float(v) for name, v in zip(SIMILAR_METRICS, means, strict=True)}
