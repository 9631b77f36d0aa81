"""Every figure the platform draws (evaluation results, the ablation, the serving benchmark),
drawn the same way: matplotlib's file backend, 120 dpi, the folder made, the figure closed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mrse.evaluation.report import METRIC_NAMES, EvalResult

logger = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    logger.info("wrote %s", path)


def plot_results(results: Sequence[EvalResult], path: str | Path) -> None:
    """Grouped bar chart: metrics on x, one bar per (dataset, model)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(results), 1)
    x = np.arange(len(METRIC_NAMES))
    for i, r in enumerate(results):
        vals = [r.metrics[m] for m in METRIC_NAMES]
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=f"{r.dataset} / {r.model}")
    ax.set_xticks(x, METRIC_NAMES)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.set_title("Retrieval quality on the test queries")
    ax.legend(fontsize=8, ncols=2)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_ablation(
    rows: list[dict], path: Path, metrics: tuple[str, ...] = ("ndcg@10", "recall@100")
) -> None:
    """One panel per dataset: each model's metrics as horizontal bars, text tower marked."""
    plt = _pyplot()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(
        1,
        len(datasets),
        figsize=(6 * len(datasets), 0.5 * len(rows) / max(len(datasets), 1) + 2),
        squeeze=False,
    )
    colors = ("#1f77b4", "#ff7f0e", "#2ca02c")
    for ax, ds in zip(axes[0], datasets, strict=True):
        sub = [r for r in rows if r["dataset"] == ds]
        y = np.arange(len(sub))
        h = 0.8 / len(metrics)
        for j, m in enumerate(metrics):
            vals = [r["metrics"][m] for r in sub]
            ax.barh(y + j * h - 0.4 + h / 2, vals, h, label=m, color=colors[j % len(colors)])
            for yi, v in zip(y, vals, strict=True):
                ax.text(v + 0.01, yi + j * h - 0.4 + h / 2, f"{v:.3f}", va="center", fontsize=7)
        ax.set_yticks(y, [r["model"] for r in sub])
        ax.invert_yaxis()
        ax.set_xlim(0, 1.35)  # room on the right for the legend
        ax.set_title(ds)
        ax.grid(axis="x", alpha=0.3)
        base = next((r["metrics"][metrics[0]] for r in sub if r["model"] == "text-tower"), None)
        if base is not None:
            ax.axvline(base, color="grey", ls="--", lw=1, label=f"text-tower {metrics[0]}")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Ablation on the test queries")
    _save(fig, path)


def plot_serve_benchmark(result: dict, path: Path) -> None:
    """Latency (p50, p99) against throughput, one line pair per design in the sweep."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, rows) in enumerate(result["concurrency"].items()):
        color = f"C{i}"
        qps = [r["qps"] for r in rows]
        ax.plot(qps, [r["p50_ms"] for r in rows], "o--", color=color, label=f"{name}: p50")
        ax.plot(qps, [r["p99_ms"] for r in rows], "s-", color=color, label=f"{name}: p99")
        for r in rows:
            ax.annotate(str(r["clients"]), (r["qps"], r["p99_ms"]), textcoords="offset points",
                        xytext=(3, 4), fontsize=7, color=color)  # fmt: skip
    ax.axhline(50, color="grey", ls=":", lw=1)
    ax.axvline(200, color="grey", ls=":", lw=1)
    ax.set_xlabel("throughput (queries/s); numbers: concurrent clients")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"{result['dataset']} ({result['items']:,} items), k={result['k']}, 2 cores")
    ax.legend(fontsize=7)
    _save(fig, path)


# (panel title, [(series label, how to read it from a run)]) of each cost against catalog size
SCALE_PANELS = (
    ("index build (s)", [("", lambda r: r.get("index_build_s"))]),
    ("index on disk (MB)", [("", lambda r: r.get("index_disk_mb"))]),
    ("server start-up (s)", [("one process", lambda r: r.get("server_start_s")),
                             ("two", lambda r: r.get("two_process_start_s"))]),
    ("server memory (MB)", [("resident", lambda r: r.get("server_rss_mb")),
                            ("own (index excluded)", lambda r: r.get("server_rss_excl_index_mb"))]),
    ("one client (ms)", [("p99 steady", lambda r: r.get("p99_ms")),
                         ("p99 first pass", lambda r: r.get("p99_ms_cold")),
                         ("p50 steady", lambda r: r.get("p50_ms"))]),
    ("QPS at p99 < 50 ms, 2 processes", [("", lambda r: r.get("qps_at_p99_50ms"))]),
    ("training examples/s", [
        ("memory mining", lambda r: r.get("train", {}).get("memory", {}).get("examples_per_s")),
        ("index mining", lambda r: r.get("train", {}).get("index", {}).get("examples_per_s"))]),
    ("training peak memory (MB)", [("", lambda r: r.get("train_peak_rss_mb"))]),
)  # fmt: skip


def plot_scale(result: dict, path: str | Path) -> None:
    """Each cost of ``mrse bench-scale`` against the catalog size, log-log, one panel each;
    every panel spans at least a factor of 10, so a flat cost looks flat."""
    plt = _pyplot()
    runs = result["runs"]
    sizes = sorted(int(n) for n in runs)
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5))
    for ax, (title, series) in zip(axes.flat, SCALE_PANELS, strict=True):
        ys_all = []
        for label, read in series:
            pts = [(n, read(runs[str(n)])) for n in sizes]
            pts = [(x, y) for x, y in pts if y]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            ys_all += ys
            ax.plot(xs, ys, "o-", label=label or None)
            for x, y in pts:
                ax.annotate(f"{y:,.4g}", (x, y), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        if ys_all:
            lo, hi = min(ys_all), max(ys_all)
            mid = (lo * hi) ** 0.5
            span = max(hi / lo, 10.0) ** 0.5 * 1.6
            ax.set_ylim(mid / span, mid * span)
        if len(series) > 1:
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("catalog items")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"mrse bench-scale (synthetic catalogs: cost, not quality), {result.get('machine', '')}, "
        f"{result.get('date', '')}"
    )
    fig.tight_layout()
    _save(fig, path)


def plot_modality(joined, path: str | Path) -> None:
    """Shoppers' photo preference (x) against the share of MRSE's top-10 scores from the photos
    and from the profile (y), one dot per shopper, with the quarter boundaries and a least-squares
    line per share. ``joined``: a frame with columns photo_preference, image, profile."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(joined):
        x = joined["photo_preference"].to_numpy()
        for col, label in (("image", "photo share of score"), ("profile", "profile share")):
            y = joined[col].to_numpy()
            dots = ax.scatter(x, y, s=8, alpha=0.45, label=label)
            if len(x) > 2 and np.ptp(x) > 0:
                slope, icept = np.polyfit(x, y, 1)
                xs = np.array([x.min(), x.max()])
                ax.plot(xs, slope * xs + icept, color=dots.get_facecolor()[0][:3], linewidth=1.5)
        for q in np.quantile(x, [0.25, 0.75]):
            ax.axvline(q, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("shopper's photo preference (photo minus text agreement of their purchases)")
    ax.set_ylabel("share of MRSE's top-10 scores")
    ax.set_title("Per-shopper modality preference (dashed: quarter boundaries)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_recommend(result: dict, path: str | Path) -> None:
    """``mrse eval --task recommend``: one group per metric, one bar per model, MRSE marked."""
    plt = _pyplot()
    models = sorted(result["models"], key=lambda m: -result["models"][m]["metrics"]["map@12"])
    metrics = list(next(iter(result["models"].values()))["metrics"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 4))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        values = [result["models"][m]["metrics"][metric] for m in models]
        colours = ["#1a8f3a" if "mrse" in m else "#7f8c8d" for m in models]
        ax.barh(range(len(models)), values, color=colours)
        ax.set_yticks(range(len(models)), models)
        ax.invert_yaxis()
        ax.set_title(metric)
    fig.suptitle(f"home feed on {result['dataset']} ({result['cases']} shoppers at their time)")
    _save(fig, path)
