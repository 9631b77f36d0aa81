"""Train and evaluate the text-only baseline, MRSE and its ablations; write the table and plot.

One command (``mrse ablation`` / ``make ablation``) produces the ablation section of
``docs/benchmarks.md`` (between ``<!-- ablation:start -->`` and ``<!-- ablation:end -->``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import date
from multiprocessing import get_context
from pathlib import Path

from mrse.data import load_dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_items
from mrse.evaluation.harness import EvalResult, evaluate
from mrse.evaluation.report import format_table, write_json
from mrse.jobs.ablation_reports import (
    complete_run,
    mix_section,
    modality_section,
    robustness_section,
    run_dir,
    slices_section,
)
from mrse.jobs.plots import plot_ablation
from mrse.logs import setup_logging
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
    jobs: int = 1  # trainings run side by side (each stops by epochs, so load cannot change it)
    train: bool = True  # False: evaluate the complete runs there are, train nothing


def train_all(cfg: AblationConfig) -> None:
    """Train every (dataset, variant) that needs it, ``cfg.jobs`` at a time (each in its own
    process when jobs > 1; the features are encoded once, before, so the processes only read
    the cache)."""
    todo = [
        (data, variant)
        for data in cfg.datasets
        for variant in cfg.variants
        if cfg.retrain or not complete_run(run_dir(cfg.runs_dir, Path(data).name, variant))
    ]
    if not todo:
        return
    args = [
        (
            load_config(v, cfg.config),
            d,
            run_dir(cfg.runs_dir, Path(d).name, v),
            v,
            False,
            cfg.cache_dir,
        )
        for d, v in todo
    ]
    if cfg.jobs <= 1:
        for a in args:
            train(*a)
        return
    for data in cfg.datasets:  # encode once, here, instead of in every process at once
        with FeatureCache.open_default(cfg.cache_dir) as cache:
            encode_items(load_dataset(data), cache)
    pool_args = {"initializer": setup_logging, "initargs": (False,)}
    with ProcessPoolExecutor(cfg.jobs, mp_context=get_context("spawn"), **pool_args) as pool:
        for f in as_completed([pool.submit(train, *a) for a in args]):
            f.result()  # a failed training fails the ablation


def run_ablation(cfg: AblationConfig) -> list[dict]:
    """Every (dataset, model) row: metrics, plus training time for trained models. Without
    ``cfg.train``, variants without a complete run are left out (and the section says so)."""
    if cfg.train:
        train_all(cfg)
    missing: list[str] = []
    rows: list[dict] = []
    results: list[EvalResult] = []
    datasets = []
    sections: list[str] = []
    img_dir = (cfg.doc.parent / "img") if cfg.doc else cfg.out
    for data in cfg.datasets:
        dataset = load_dataset(data)
        datasets.append(dataset)
        by_model: dict[str, EvalResult] = {}
        with FeatureCache.open_default(cfg.cache_dir) as cache:
            for name in cfg.baselines:
                r = evaluate(dataset, build_baseline(name, dataset, cache))
                write_json(r, cfg.out / f"{dataset.name}-{name}.json")
                results.append(r)
                rows.append({**r.to_json(), "train_seconds": None, "examples_per_s": None})
        for variant in cfg.variants:
            if not complete_run(run_dir(cfg.runs_dir, dataset.name, variant)):
                logger.warning("%s %s: no complete run, left out", dataset.name, variant)
                missing.append(f"{dataset.name} {variant}")
                continue
            run = load_run(run_dir(cfg.runs_dir, dataset.name, variant))
            with FeatureCache.open_default(cfg.cache_dir) as cache:
                r = evaluate(dataset, ModelRetriever(run, dataset, cache))
            write_json(r, cfg.out / f"{dataset.name}-{variant}.json")
            results.append(r)
            by_model[variant] = r
            training = run.info.get("training", {})
            rows.append(
                {
                    **r.to_json(),
                    "train_seconds": training.get("seconds"),
                    "examples_per_s": training.get("examples_per_s"),
                    "best_epoch": training.get("best_epoch"),
                }
            )
        with FeatureCache.open_default(cfg.cache_dir) as cache:
            sections.append(
                modality_section(
                    dataset, by_model, cfg.runs_dir, cache,
                    img_dir / f"modality-{dataset.name}.png",
                    cfg.doc.parent if cfg.doc else None,
                )
            )  # fmt: skip
    with FeatureCache.open_default(cfg.cache_dir) as cache:
        sections.append(robustness_section(datasets, cfg.runs_dir, cache))
        sections.append(mix_section(datasets, cfg.runs_dir, cache))
    sections.insert(0, slices_section(results))
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    plot_path = img_dir / "ablation.png"
    plot_ablation(rows, plot_path)
    print(format_table(results))
    if cfg.doc is not None:
        body = markdown(rows, plot_path.relative_to(cfg.doc.parent))
        if missing:
            body += ("\n\nNot trained in this run, so left out here: " + ", ".join(missing)
                     + " (`make ablation` trains them).")  # fmt: skip
        write_doc_section(cfg.doc, "\n\n".join([body, *(s for s in sections if s)]))
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
