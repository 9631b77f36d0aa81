"""Human-facing outputs of an evaluation: a text table, a JSON file, a bar chart."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from mrse.evaluation.harness import EvalResult
from mrse.metrics.ranking import METRIC_NAMES

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


def write_json(result: EvalResult, path: str | Path, per_query: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        json.dump(result.to_json(per_query=per_query), f, indent=2)
    logger.info("wrote %s", path)
