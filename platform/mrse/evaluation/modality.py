"""Who is driven by photos, who by words, and what happens when a modality is missing.

Two reports beside the ranking metrics (``mrse ablation`` writes both to docs/benchmarks.md):

- modality preference: each test shopper's history measured in photo space and in text space
  (``mrse.features.profile.modality_preference``), against how much of MRSE's score came from
  the text, the photos and the profile, and the metrics of the most photo-driven and most
  text-driven quarter of shoppers under several models;
- robustness: recall of the relevant items that have text vs those that are image-only (what a
  text-only system can never reach), and whole evaluations with every item's photo or text
  hidden (``ModelRetriever(hide=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mrse.data.dataset import Dataset
from mrse.evaluation.harness import build_query_contexts
from mrse.features.catalog import CatalogFeatures
from mrse.features.profile import ProfileConfig, modality_preference
from mrse.features.queries import snapshot_profiles
from mrse.metrics.ranking import recall_at_k
from mrse.retrieval.base import Retriever

QUARTER_METRICS = ("ndcg@10", "mrr@10", "hr@10")
SCORE_PARTS = ("text", "image", "profile")


def shopper_modality(
    dataset: Dataset, catalog: CatalogFeatures, config: ProfileConfig
) -> pd.DataFrame:
    """Per test query with a shopper history: qid, events, text_coherence, image_coherence,
    image_share (image / (text + image) coherence: above 0.5, the shopper's items agree more in
    photo space than in text space). ``catalog``: centred unit vectors, as the model reads them.
    """
    contexts = build_query_contexts(dataset)
    profiles = snapshot_profiles(
        dataset.events, catalog, [(c.user_id, c.ts) for c in contexts], config
    )
    rows = []
    for ctx, state in zip(contexts, profiles, strict=True):
        if state.count == 0:
            continue
        coh_t, coh_i, share = modality_preference(state)
        rows.append(
            {
                "qid": ctx.qid,
                "events": state.count,
                "text_coherence": coh_t,
                "image_coherence": coh_i,
                "image_share": share,
            }
        )
    return pd.DataFrame(
        rows, columns=["qid", "events", "text_coherence", "image_coherence", "image_share"]
    )


def score_shares(explanations: Mapping[str, Sequence[Mapping[str, float]]]) -> pd.DataFrame:
    """Per query: the share of its top results' scores that came from the text, the photos and
    the profile (``mrse.models.two_tower.explain``; the parts sum to the score), summed over the
    explained results. Columns qid, text, image, profile."""
    rows = []
    for qid, results in explanations.items():
        total = sum(float(r["score"]) for r in results)
        if not results or abs(total) < 1e-9:
            continue
        parts = {p: sum(float(r[p]) for r in results) / total for p in SCORE_PARTS}
        rows.append({"qid": qid, **parts})
    return pd.DataFrame(rows, columns=["qid", *SCORE_PARTS])


def quarter_metrics(
    modality: pd.DataFrame, per_query: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> list[dict]:
    """Metrics of the most photo-driven quarter (highest image_share) and the most text-driven
    quarter (lowest) of the shoppers in ``modality``, per model of ``per_query`` (model -> qid
    -> metrics). Rows: quarter, model, queries, mean image_share, and ``QUARTER_METRICS``."""
    if modality.empty:
        return []
    ranked = modality.sort_values("image_share", kind="stable")
    n = max(1, len(ranked) // 4)
    quarters = {"most text-driven": ranked.head(n), "most photo-driven": ranked.tail(n)}
    out = []
    for quarter, members in quarters.items():
        for model, metrics in per_query.items():
            qids = [q for q in members["qid"] if q in metrics]
            row = {
                "quarter": quarter,
                "model": model,
                "queries": len(qids),
                "image_share": float(members["image_share"].mean()),
            }
            for m in QUARTER_METRICS:
                row[m] = float(np.mean([metrics[q][m] for q in qids])) if qids else float("nan")
            out.append(row)
    return out


def recall_by_item_modality(
    dataset: Dataset, retriever: Retriever, has_text: Mapping[str, bool], k: int = 100
) -> dict[str, float]:
    """Recall@``k`` of the relevant items that have text and, separately, of the image-only
    ones (macro average over the queries that have such items), with each side's query count.
    """
    judged = dataset.qrels_by_query
    contexts = [c for c in build_query_contexts(dataset) if judged.get(c.qid)]
    sides: dict[str, list[float]] = {"with text": [], "image-only": []}
    for s in range(0, len(contexts), 64):
        chunk = contexts[s : s + 64]
        for ctx, ranking in zip(chunk, retriever.search(chunk, k), strict=True):
            ranked = list(ranking.item_ids)
            rels = judged[ctx.qid]
            for side, want in (("with text", True), ("image-only", False)):
                part = {i: r for i, r in rels.items() if r > 0 and has_text.get(i, False) == want}
                if part:
                    sides[side].append(recall_at_k(ranked, part, k))
    out: dict[str, float] = {}
    for side, values in sides.items():
        out[f"{side} queries"] = float(len(values))
        out[f"{side} recall@{k}"] = float(np.mean(values)) if values else float("nan")
    return out
