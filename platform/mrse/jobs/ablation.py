"""Train and evaluate the text-only baseline, MRSE and its ablations; write the table and plot.

One command (``mrse ablation`` / ``make ablation``) produces the ablation section of
``docs/benchmarks.md`` (between ``<!-- ablation:start -->`` and ``<!-- ablation:end -->``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.evaluation.harness import EvalResult, evaluate
from mrse.evaluation.report import format_table, write_json
from mrse.jobs.plots import plot_ablation
from mrse.retrieval.baselines import build_baseline
from mrse.retrieval.model import ModelRetriever
from mrse.training.checkpoint import load_run
from mrse.training.config import VARIANTS, load_config
from mrse.training.trainer import train

logger = logging.getLogger(__name__)


BASELINES = ("bm25", "dense")
START, END = "<!-- ablation:start -->", "<!-- ablation:end -->"


@dataclass(frozen=True)
class AblationConfig:
    datasets: tuple[Path, ...]
    variants: tuple[str, ...] = VARIANTS
    baselines: tuple[str, ...] = BASELINES
    runs_dir: Path = Path("runs")
    out: Path = Path("results/ablation")
    doc: Path | None = Path("docs/benchmarks.md")
    config: Path | None = None
    retrain: bool = False
    cache_dir: Path | None = None


def run_ablation(cfg: AblationConfig) -> list[dict]:
    """Every (dataset, model) row: metrics, plus training time for trained models."""
    rows: list[dict] = []
    results: list[EvalResult] = []
    for data in cfg.datasets:
        dataset = load_dataset(data)
        with FeatureCache.open_default(cfg.cache_dir) as cache:
            for name in cfg.baselines:
                r = evaluate(dataset, build_baseline(name, dataset, cache))
                write_json(r, cfg.out / f"{dataset.name}-{name}.json")
                results.append(r)
                rows.append({**r.to_json(), "train_seconds": None, "examples_per_s": None})
        for variant in cfg.variants:
            run_dir = cfg.runs_dir / f"{dataset.name}-{variant}"
            done = (run_dir / "run.json").exists() and "training" in json.loads(
                (run_dir / "run.json").read_text()
            )
            if cfg.retrain or not done:
                train(
                    load_config(variant, cfg.config),
                    data,
                    run_dir,
                    name=variant,
                    cache_dir=cfg.cache_dir,
                )
            run = load_run(run_dir)
            with FeatureCache.open_default(cfg.cache_dir) as cache:
                r = evaluate(dataset, ModelRetriever(run, dataset, cache))
            write_json(r, cfg.out / f"{dataset.name}-{variant}.json")
            results.append(r)
            training = run.info.get("training", {})
            rows.append(
                {
                    **r.to_json(),
                    "train_seconds": training.get("seconds"),
                    "examples_per_s": training.get("examples_per_s"),
                    "best_epoch": training.get("best_epoch"),
                }
            )
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    plot_path = (cfg.doc.parent / "img" / "ablation.png") if cfg.doc else cfg.out / "ablation.png"
    plot_ablation(rows, plot_path)
    print(format_table(results))
    if cfg.doc is not None:
        write_doc_section(cfg.doc, markdown(rows, plot_path.relative_to(cfg.doc.parent)))
    return rows


def markdown(rows: list[dict], plot: Path) -> str:
    """The ablation table, with each model's nDCG@10 relative to the text tower's."""
    ref = {r["dataset"]: r["metrics"]["ndcg@10"] for r in rows if r["model"] == "text-tower"}
    cols = ["dataset", "model", "nDCG@10", "x text-tower", "Recall@10", "Recall@100"]
    cols += ["Recall@500", "MRR@10", "HR@10", "train s", "examples/s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        m = r["metrics"]
        base = ref.get(r["dataset"])
        ratio = f"{m['ndcg@10'] / base:.2f}" if base else "-"
        cells = [r["dataset"], r["model"], f"{m['ndcg@10']:.4f}", ratio]
        cells += [
            f"{m[k]:.4f}" for k in ("recall@10", "recall@100", "recall@500", "mrr@10", "hr@10")
        ]
        cells += ["-" if r[k] is None else str(r[k]) for k in ("train_seconds", "examples_per_s")]
        lines.append("| " + " | ".join(cells) + " |")
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    return "\n".join(
        [
            f"Measured {date.today().isoformat()} on {machine} with `make ablation`"
            " (one run: every model trained and evaluated on the test queries of"
            " `../shared/benchmarks`, exact search over the whole catalog).",
            "",
            *lines,
            "",
            f"![ablation]({plot})",
        ]
    )


def write_doc_section(doc: Path, body: str) -> None:
    """Replace the text between the ablation markers of ``doc`` (append the section if absent)."""
    text = doc.read_text() if doc.exists() else ""
    block = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n## Ablation\n\n" + block + "\n"
    doc.write_text(text)
    logger.info("updated %s", doc)
