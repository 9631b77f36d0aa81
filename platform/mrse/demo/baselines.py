"""Demo step 1: encode each catalog (text and photos, cached) and score the two baselines."""

from __future__ import annotations

import logging
from pathlib import Path

from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_items
from mrse.evaluation.harness import EvalResult, evaluate
from mrse.evaluation.report import write_json
from mrse.jobs.plots import plot_results
from mrse.retrieval.baselines import BASELINES, build_baseline

logger = logging.getLogger(__name__)


def evaluate_baselines(
    data: tuple[Path, ...], out: Path, cache_dir: Path | None
) -> tuple[list[EvalResult], list[dict]]:
    """(one EvalResult per dataset x baseline, one summary per dataset); writes JSON + a plot."""
    results: list[EvalResult] = []
    datasets: list[dict] = []
    with FeatureCache.open_default(cache_dir) as cache:
        for root in data:
            dataset = load_dataset(root)
            _, stats = encode_items(dataset, cache)
            for name in BASELINES:
                result = evaluate(dataset, build_baseline(name, dataset, cache))
                write_json(result, out / f"{dataset.name}-{name}.json")
                results.append(result)
            datasets.append(
                {
                    "dataset": dataset.name,
                    "items": len(dataset.items),
                    "data_report": dataset.report.summary(),
                    "encoding": {
                        k: {
                            "encoded": s.encoded,
                            "cached": s.cached,
                            "per_second": round(s.per_second, 1),
                        }
                        for k, s in stats.items()
                    },
                }
            )
    plot_results(results, out / "baselines.png")
    return results, datasets
