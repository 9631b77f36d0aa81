"""Every kind of query a shopper types, measured per class on any catalog in the layout.

The classes are ``mrse.data.shop_queries``' (names, fragments, misspellings, brand + type,
descriptions), generated from the held-out fifth of the catalog's titles, plus the dataset's
own test queries (``test``). One retriever answers them all, so BM25, the frozen encoder, the
text tower and MRSE are compared class by class in one run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from mrse.data.dataset import Dataset
from mrse.data.shop_queries import QUERY_CLASSES, generate_queries
from mrse.evaluation.harness import EvalResult, evaluate
from mrse.metrics.ranking import METRIC_NAMES
from mrse.retrieval.base import Retriever

logger = logging.getLogger(__name__)

TEST_CLASS = "test"
MIX_CLASSES = (*QUERY_CLASSES, TEST_CLASS)


@dataclass
class MixResult:
    """One retriever's metrics per query class (classes the catalog cannot make are absent)."""

    dataset: str
    model: str
    classes: dict[str, EvalResult]

    def to_json(self) -> dict:
        """The harness's shape: ``metrics`` (the test queries' when the dataset has them, else
        the mean over the generated classes) plus ``classes``: {class: {queries, metrics}}."""
        generated = [r for c, r in self.classes.items() if c != TEST_CLASS]
        main = self.classes.get(TEST_CLASS)
        metrics = (
            main.metrics
            if main is not None
            else {m: sum(r.metrics[m] for r in generated) / len(generated) for m in METRIC_NAMES}
        )
        return {
            "dataset": self.dataset,
            "model": self.model,
            "task": "mix",
            "metrics": metrics,
            "classes": {
                c: {"queries": r.queries, "metrics": r.metrics, "seconds": round(r.seconds, 3)}
                for c, r in self.classes.items()
            },
        }


def evaluate_mix(
    dataset: Dataset, retriever: Retriever, per_class: int = 400, seed: int = 0
) -> MixResult:
    """``retriever`` on up to ``per_class`` generated queries of every class the catalog can
    make, and on the dataset's own judged test queries."""
    mix = generate_queries(dataset.items, per_class=per_class, seed=seed, split="eval")
    out: dict[str, EvalResult] = {}
    for cls in QUERY_CLASSES:
        part = mix.of_class(cls)
        if not len(part):
            logger.info("%s: no %s queries can be made from this catalog", dataset.name, cls)
            continue
        shop = replace(dataset, queries=part.queries.drop(columns="cls"), qrels=part.qrels)
        out[cls] = evaluate(shop, retriever)
    if not dataset.qrels.empty:
        out[TEST_CLASS] = evaluate(dataset, retriever)
    return MixResult(dataset.name, retriever.name, out)


def format_mix(results: list[MixResult], metrics: tuple[str, ...] = ("hr@10", "ndcg@10")) -> str:
    """Markdown: one row per (dataset, class), one column per (model, metric)."""
    models = list(dict.fromkeys(r.model for r in results))
    head = ["dataset", "class", "queries"] + [f"{m} {k}" for m in models for k in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = {(r.dataset, r.model): r for r in results}
    for ds in dict.fromkeys(r.dataset for r in results):
        for cls in MIX_CLASSES:
            present = [by[(ds, m)].classes.get(cls) for m in models if (ds, m) in by]
            first = next((p for p in present if p is not None), None)
            if first is None:
                continue
            cells = [ds, cls, str(first.queries)]
            for m in models:
                r = by.get((ds, m))
                c = r.classes.get(cls) if r is not None else None
                cells += [f"{c.metrics[k]:.3f}" if c is not None else "-" for k in metrics]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
