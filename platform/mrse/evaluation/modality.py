"""Who is driven by photos, who by words, and what happens when a modality is missing.

Two reports beside the ranking metrics (``mrse ablation`` writes both to docs/benchmarks.md):

- modality preference: how much each test shopper's purchases agree in photo space and in text
  space (``shopper_modality``), against how much of MRSE's score came from
  the text, the photos and the profile, and the metrics of the most photo-driven and most
  text-driven quarter of shoppers under several models;
- robustness (``mrse.jobs.ablation_reports``): whole evaluations with a modality hidden
  (``ModelRetriever(hide=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mrse.data.dataset import Dataset
from mrse.evaluation.harness import build_query_contexts
from mrse.features.catalog import CatalogFeatures
from mrse.metrics.ranking import SLICE_METRICS

SCORE_PARTS = ("text", "image", "profile")


def mean_pairwise_cosine(vectors: np.ndarray) -> float:
    """Mean cosine over the distinct pairs of (n, D) unit rows, n >= 2."""
    n = len(vectors)
    total = vectors.sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


def shopper_modality(dataset: Dataset, catalog: CatalogFeatures) -> pd.DataFrame:
    """Per test query whose shopper bought at least two items with both a text and a photo
    before it: qid, events (all history events), items (those with both), photo_agreement and
    text_agreement (mean pairwise cosine of those items' centred unit photo / text vectors:
    how alike the purchases look / read), and photo_preference = photo - text agreement
    (above 0: the shopper's choices agree more in photo space than in text space). The same
    items on both sides, so the measure does not favour the modality with more items."""
    index = catalog.index
    both = (catalog.has_text & catalog.has_image).numpy()
    text, image = catalog.text.numpy(), catalog.image.numpy()
    rows = []
    for ctx in build_query_contexts(dataset):
        items = [index[i] for i in ctx.history.item_ids if i in index]
        usable = sorted({r for r in items if both[r]})
        if len(usable) < 2:
            continue
        photo_agreement = mean_pairwise_cosine(image[usable])
        text_agreement = mean_pairwise_cosine(text[usable])
        rows.append(
            {
                "qid": ctx.qid,
                "events": len(ctx.history.item_ids),
                "items": len(usable),
                "photo_agreement": photo_agreement,
                "text_agreement": text_agreement,
                "photo_preference": photo_agreement - text_agreement,
            }
        )
    columns = ["qid", "events", "items", "photo_agreement", "text_agreement", "photo_preference"]
    return pd.DataFrame(rows, columns=columns)


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
    """Metrics of the most photo-driven quarter (highest photo_preference) and the most
    text-driven quarter (lowest) of the shoppers in ``modality``, per model of ``per_query``
    (model -> qid -> metrics). Rows: quarter, model, queries, mean photo_preference, and
    ``SLICE_METRICS``."""
    if modality.empty:
        return []
    ranked = modality.sort_values("photo_preference", kind="stable")
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
                "photo_preference": float(members["photo_preference"].mean()),
            }
            for m in SLICE_METRICS:
                row[m] = float(np.mean([metrics[q][m] for q in qids])) if qids else float("nan")
            out.append(row)
    return out
