"""The ablation's personalisation and robustness sections, from its trained runs and results.

- history slices: nDCG@10, MRR@10 and HR@10 of the top grade (on ``hm`` the bought item) for
  shoppers with no history, 1-4 and 5+ events;
- modality preference (datasets with shopper histories): each shopper's history in photo vs
  text space against the share of MRSE's score from text, photos and profile (a plot), and the
  metrics of the most photo-driven and most text-driven quarters per model;
- robustness: recall@100 of relevant items with text vs image-only ones, and every item's
  photo, then text, hidden at evaluation time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrse.data.dataset import Dataset
from mrse.encoders.cache import FeatureCache
from mrse.evaluation.harness import EvalResult, evaluate
from mrse.evaluation.modality import (
    QUARTER_METRICS,
    quarter_metrics,
    recall_by_item_modality,
    score_shares,
    shopper_modality,
)
from mrse.evaluation.report import format_slices
from mrse.jobs.plots import plot_modality
from mrse.retrieval.model import ModelRetriever
from mrse.training.checkpoint import load_run

logger = logging.getLogger(__name__)

# The models the modality and robustness tables compare (when the ablation trained them).
COMPARED = ("mrse", "no-profile", "text-tower", "no-image")


def _cell(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def slices_section(results: Sequence[EvalResult]) -> str:
    """The per-history-slice table for datasets where some test query has a history."""
    personal = [r for r in results if any(v > 0 for v in r.history_events.values())]
    if not personal:
        return ""
    return "\n".join(
        [
            "#### By shopper history (MRR@10 and HR@10 of the bought item)",
            "",
            format_slices(personal),
        ]
    )


def modality_section(
    dataset: Dataset,
    results: dict[str, EvalResult],
    runs_dir: Path,
    cache: FeatureCache,
    plot: Path,
    doc_dir: Path | None,
) -> str:
    """Shoppers' modality preference vs MRSE's score shares (plot) and the quarters' table.
    ``results``: this dataset's evaluation of each model, by model name (needs ``mrse``)."""
    if "mrse" not in results or not any(v > 0 for v in results["mrse"].history_events.values()):
        return ""
    run = load_run(runs_dir / f"{dataset.name}-mrse")
    modality = shopper_modality(dataset, run.featurizer.catalog(dataset, cache), run.config.profile)
    shares = score_shares(results["mrse"].explanations)
    joined = modality.merge(shares, on="qid", how="inner")
    plot_modality(joined, plot)
    compared = {m: results[m].per_query for m in COMPARED[:3] if m in results}
    rows = quarter_metrics(modality, compared)
    corr = {
        p: float(np.corrcoef(joined["image_share"], joined[p])[0, 1]) if len(joined) > 2 else 0.0
        for p in ("image", "profile")
    }
    head = ["shoppers", "mean image share", "model", "queries"] + [m for m in QUARTER_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["quarter"], f"{r['image_share']:.3f}", r["model"], str(r["queries"])]
        cells += [_cell(r[m]) for m in QUARTER_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    img = plot.relative_to(doc_dir) if doc_dir else plot
    mean = joined[["text", "image", "profile"]].mean() if len(joined) else None
    summary = (
        f"MRSE's top-10 scores on {dataset.name} ({len(joined)} shoppers with history) come "
        f"on average {mean['text']:.0%} from text, {mean['image']:.0%} from photos and "
        f"{mean['profile']:.0%} from the profile; correlation of the shopper's image share with "
        f"the photo share of the score {corr['image']:+.2f}, with the profile share "
        f"{corr['profile']:+.2f}."
        if mean is not None
        else ""
    )
    return "\n".join(
        [
            f"#### Modality preference ({dataset.name})",
            "",
            "Image share of a shopper = photo coherence / (photo + text coherence) of the items"
            " they bought before the query (each coherence: length of the recency-weighted mean"
            " of the items' centred unit vectors; above 0.5 their purchases agree more in photo"
            " space). Quarters by image share; MRR@10 and HR@10 of the bought item.",
            "",
            summary,
            "",
            *lines,
            "",
            f"![modality preference]({img})",
        ]
    )


def robustness_section(datasets: Sequence[Dataset], runs_dir: Path, cache: FeatureCache) -> str:
    """Recall of relevant items with text vs image-only, and evaluations with every item's
    photo, then text, hidden, for the ``COMPARED`` models the ablation trained."""
    split_rows, hidden_rows = [], []
    for dataset in datasets:
        has_text = {
            i: bool(t.strip() or d.strip())
            for i, t, d in dataset.items[["item_id", "title", "description"]].itertuples(
                index=False
            )
        }
        for model in COMPARED:
            run_dir = runs_dir / f"{dataset.name}-{model}"
            if not (run_dir / "run.json").exists():
                continue
            run = load_run(run_dir)
            retriever = ModelRetriever(run, dataset, cache)
            split = recall_by_item_modality(dataset, retriever, has_text)
            if split["image-only queries"] > 0:
                split_rows.append((dataset.name, model, split))
            for hide in ("photo", "text"):
                r = evaluate(dataset, ModelRetriever(run, dataset, cache, hide=hide))
                hidden_rows.append((dataset.name, model, hide, r.metrics))
                logger.info("%s %s, %s hidden: nDCG@10 %.4f", dataset.name, model, hide,
                            r.metrics["ndcg@10"])  # fmt: skip
    lines = ["#### Missing modalities", ""]
    if split_rows:
        lines += [
            "Recall@100 of the relevant items that have text vs those that are image-only"
            " (queries with at least one such relevant item):",
            "",
            "| dataset | model | with text | image-only |",
            "|---|---|---|---|",
        ]
        for name, model, s in split_rows:
            lines.append(
                f"| {name} | {model} | {_cell(s['with text recall@100'])} "
                f"| {_cell(s['image-only recall@100'])} |"
            )
        lines.append("")
    lines += [
        "Every item's photo, then every item's text (MiniLM vector and title n-grams; category"
        " and brand ids stay), hidden at evaluation time, in the catalog and in the shoppers'"
        " histories:",
        "",
        "| dataset | model | hidden | nDCG@10 | Recall@100 | HR@10 |",
        "|---|---|---|---|---|---|",
    ]
    for name, model, hide, m in hidden_rows:
        lines.append(
            f"| {name} | {model} | {hide} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} "
            f"| {m['hr@10']:.4f} |"
        )
    return "\n".join(lines)
