"""Human-facing outputs of an evaluation: a text table, a JSON file, a bar chart."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from mrse.evaluation.harness import EvalResult
from mrse.metrics.ranking import HISTORY_SLICES, METRIC_NAMES, SLICE_METRICS

logger = logging.getLogger(__name__)


def format_table(results: Sequence[EvalResult]) -> str:
    """A fixed-width table: one row per (dataset, model), one column per metric."""
    head = ["dataset", "model", "queries", *METRIC_NAMES]
    rows = [
        [r.dataset, r.model, str(r.queries), *(f"{r.metrics[m]:.4f}" for m in METRIC_NAMES)]
        for r in results
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_markdown(results: Sequence[EvalResult]) -> str:
    """The same table as Markdown, for docs/benchmarks.md."""
    head = ["dataset", "model", "queries", *METRIC_NAMES]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.dataset, r.model, str(r.queries), *(f"{r.metrics[m]:.4f}" for m in METRIC_NAMES)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def format_slices(results: Sequence[EvalResult], skip_empty: bool = False) -> str:
    """Markdown table of the per-history-slice metrics: one row per (dataset, model, slice);
    ``skip_empty``: leave out slices without queries.

    MRR@10 and HR@10 are of the query's highest grade: on ``hm`` the item the shopper bought.
    """
    head = ["dataset", "model", "history", "queries", "nDCG@10", "MRR@10 (top grade)"]
    head.append("HR@10 (top grade)")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        for name in HISTORY_SLICES:
            s = r.slices.get(name, {})
            n = int(s.get("queries", 0))
            if skip_empty and not n:
                continue
            cells = [r.dataset, r.model, name, str(n)]
            cells += [f"{s[m]:.4f}" if n else "-" for m in SLICE_METRICS]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def write_json(result: EvalResult, path: str | Path, per_query: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        json.dump(result.to_json(per_query=per_query), f, indent=2)
    logger.info("wrote %s", path)
