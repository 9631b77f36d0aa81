"""The ablation's personalisation and robustness sections, from its trained runs and results.

- history slices: nDCG@10, MRR@10 and HR@10 of the top grade (on ``hm`` the bought item) for
  shoppers with no history, 1-4 and 5+ events;
- modality preference (datasets with shopper histories): each shopper's history in photo vs
  text space against the share of MRSE's score from text, photos and profile (a plot), and the
  metrics of the most photo-driven and most text-driven quarters per model;
- robustness: every item's photo, every item's text, the text of only the judged items hidden
  at evaluation time, and a random mix;
- every query: names, fragments, misspellings, brand + type and descriptions generated from the
  catalog (``mrse.evaluation.query_mix``) beside the test queries, for the baselines, the text
  tower, MRSE with and without its generated training queries, and MRSE with the lexical
  channel as served (``retrieval: hybrid``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrse.data.dataset import Dataset
from mrse.encoders.cache import FeatureCache
from mrse.evaluation.harness import EvalResult, evaluate
from mrse.evaluation.modality import (
    SCORE_PARTS,
    quarter_metrics,
    score_shares,
    shopper_modality,
)
from mrse.evaluation.query_mix import MixResult, evaluate_mix, format_mix
from mrse.evaluation.report import format_slices
from mrse.jobs.plots import plot_modality
from mrse.metrics.ranking import HISTORY_SLICES, SLICE_METRICS
from mrse.retrieval.baselines import build_baseline
from mrse.retrieval.hybrid import HybridRetriever
from mrse.retrieval.model import ModelRetriever
from mrse.training.checkpoint import load_run

logger = logging.getLogger(__name__)


def complete_run(path: Path) -> bool:
    """Whether ``path`` holds a finished training (``run.json`` with its training summary)."""
    info = path / "run.json"
    return info.exists() and "training" in json.loads(info.read_text())


# The models the modality and robustness tables compare (when the ablation trained them).
COMPARED = ("mrse", "no-profile", "text-tower", "no-image")
# under missing modalities, also MRSE as it was before it was trained for them
ROBUSTNESS_COMPARED = ("mrse", "no-robustness", "no-profile", "text-tower", "no-image")


def run_dir(runs_dir: Path, dataset: str, variant: str) -> Path:
    """Where the ablation keeps (dataset, variant)'s run."""
    return runs_dir / f"{dataset}-{variant}"


def _cell(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def slices_section(results: Sequence[EvalResult]) -> str:
    """The per-history-slice table for datasets where some test query has a history."""
    personal = [r for r in results if r.has_histories]
    if not personal:
        return ""
    first_of_dataset = {r.dataset: r for r in reversed(personal)}.values()
    empty = [
        f"{r.dataset}: {name}"
        for r in first_of_dataset
        for name in HISTORY_SLICES
        if not r.slices.get(name, {}).get("queries")
    ]
    note = f"No test query in slice(s) {', '.join(empty)}." if empty else ""
    return "\n".join(
        [
            "#### By shopper history (MRR@10 and HR@10 of the bought item)",
            "",
            note,
            "",
            format_slices(personal, skip_empty=True),
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
    if "mrse" not in results or not results["mrse"].has_histories:
        return ""
    run = load_run(run_dir(runs_dir, dataset.name, "mrse"))
    modality = shopper_modality(dataset, run.featurizer.catalog(dataset, cache))
    if modality.empty:
        return ""
    joined = modality.merge(score_shares(results["mrse"].explanations), on="qid", how="inner")
    plot_modality(joined, plot)
    compared = {m: results[m].per_query for m in COMPARED[:3] if m in results}
    head = ["shoppers", "mean photo preference", "model", "queries", *SLICE_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in quarter_metrics(modality, compared):
        cells = [r["quarter"], f"{r['photo_preference']:+.3f}", r["model"], str(r["queries"])]
        cells += [_cell(r[m]) for m in SLICE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    corr = {
        p: float(np.corrcoef(joined["photo_preference"], joined[p])[0, 1])
        if len(joined) > 2
        else float("nan")
        for p in SCORE_PARTS
    }
    mean = joined[list(SCORE_PARTS)].mean()
    img = plot.relative_to(doc_dir) if doc_dir else plot
    return "\n".join(
        [
            f"#### Modality preference ({dataset.name})",
            "",
            "Photo preference of a shopper = mean pairwise cosine of the photos of the items they"
            " bought before the query minus that of the same items' texts (items with both;"
            " shoppers with at least two such items): above 0, their choices agree more in"
            " photo space. Quarters by photo preference; MRR@10 and HR@10 of the bought item.",
            "",
            f"{len(joined)} shoppers. MRSE's top-10 scores come on average {mean['text']:.0%}"
            f" from text, {mean['image']:.0%} from photos and {mean['profile']:.0%} from the"
            f" profile; correlation of the photo preference with those shares: text"
            f" {corr['text']:+.2f}, photos {corr['image']:+.2f}, profile {corr['profile']:+.2f}.",
            "",
            *lines,
            "",
            f"![modality preference]({img})",
        ]
    )


# (label, `mrse eval --hide` value) of the missing-modality evaluations
HIDDEN = (
    ("every photo", "photo"),
    ("every text", "text"),
    ("text of the judged items", "judged-text"),
    ("random mix", "random"),
)


def robustness_section(datasets: Sequence[Dataset], runs_dir: Path, cache: FeatureCache) -> str:
    """Evaluations with every item's photo hidden, every item's text hidden, the text of only
    the judged (relevant) items hidden (they become image-only items among items that keep
    theirs) and a random mix, for the ``COMPARED`` models the ablation trained."""
    rows = []
    for dataset in datasets:
        for model in ROBUSTNESS_COMPARED:
            path = run_dir(runs_dir, dataset.name, model)
            if not complete_run(path):
                continue
            run = load_run(path)
            for label, hide in HIDDEN:
                retriever = ModelRetriever(run, dataset, cache, hide=hide)
                r = evaluate(dataset, retriever)
                rows.append((dataset.name, model, label, r.metrics))
                logger.info("%s %s, %s hidden: nDCG@10 %.4f", dataset.name, model, label,
                            r.metrics["ndcg@10"])  # fmt: skip
    lines = [
        "#### Missing modalities",
        "",
        "Hidden at evaluation time, in the catalog and in the shoppers' histories: every item's"
        " photo; every item's text (MiniLM vector and title n-grams; category and brand ids"
        " stay); the text of the judged items only (the items to find become image-only among"
        " items that keep their text, as half of `hm`'s catalog is); a random mix, a catalog"
        " in flux (seeded: text gone from half of all items, photos from a tenth)."
        " `mrse eval --run RUN --hide photo|text|judged-text|random` measures one.",
        "",
        "| dataset | model | hidden | nDCG@10 | Recall@100 | HR@10 |",
        "|---|---|---|---|---|---|",
    ]
    for name, model, label, m in rows:
        lines.append(
            f"| {name} | {model} | {label} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} "
            f"| {m['hr@10']:.4f} |"
        )
    return "\n".join(lines)


# the rows of the every-query table: baselines, then trained runs (dense), then MRSE as served
MIX_MODELS = ("bm25", "dense", "text-tower", "no-shop-queries", "mrse", "mrse+lexical")


def mix_section(datasets: Sequence[Dataset], runs_dir: Path, cache: FeatureCache) -> str:
    """HR@10 (and nDCG@10) per query class (``mrse.evaluation.query_mix``) of every model in
    ``MIX_MODELS`` the ablation trained, and the baselines."""
    results: list[MixResult] = []
    for dataset in datasets:
        for name in MIX_MODELS:
            if name in ("bm25", "dense"):
                retriever = build_baseline(name, dataset, cache)
            else:
                path = run_dir(runs_dir, dataset.name, name.replace("+lexical", ""))
                if not complete_run(path):
                    continue
                retriever = ModelRetriever(load_run(path), dataset, cache)
                if name.endswith("+lexical"):
                    retriever = HybridRetriever(retriever)
            r = evaluate_mix(dataset, retriever)
            results.append(MixResult(r.dataset, name, r.classes))
            hr = {c: round(x.metrics["hr@10"], 3) for c, x in r.classes.items()}
            logger.info("%s %s: HR@10 %s", dataset.name, name, hr)
    return "\n".join([
        "#### Every query: names, fragments, misspellings, brand + type, descriptions",
        "",
        "Up to 400 queries per class generated from the held-out fifth of each catalog's titles "
        "(`mrse eval --task mix`; `test`: the dataset's own test queries). HR@10: a relevant "
        "item (an item with that title, the fragment, the description; brand + type: that "
        "brand's items of that type) in the top 10. `mrse+lexical`: MRSE fused with the lexical "
        "channel as a hybrid arm serves it (`mrse eval --retrieval hybrid`).",
        "",
        format_mix(results, metrics=("hr@10",)),
        "",
        format_mix(results, metrics=("ndcg@10",)),
    ])  # fmt: skip
