"""The evaluation loop: build point-in-time query contexts, retrieve, score against qrels."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from mrse.data.dataset import Dataset
from mrse.data.history import HistoryIndex
from mrse.metrics.ranking import mean_metrics, query_metrics, slice_metrics
from mrse.retrieval.base import QueryContext, Retriever

logger = logging.getLogger(__name__)

RETRIEVE_K = 500


class EvaluationError(ValueError):
    """The dataset cannot be evaluated (no queries, no judgements)."""


@dataclass
class EvalResult:
    """Metrics of one model on one dataset. ``to_json()`` is the CLI's output contract."""

    dataset: str
    model: str
    queries: int
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    history_events: dict[str, int] = field(default_factory=dict)  # qid -> events before it
    explanations: dict[str, list[dict]] = field(default_factory=dict)
    skipped_queries: int = 0
    seconds: float = 0.0

    @property
    def slices(self) -> dict[str, dict[str, float]]:
        """Per history slice (no history / 1-4 / 5+ events): query count, nDCG@10, MRR@10 and
        HR@10 (``mrse.metrics.ranking.slice_metrics``)."""
        return slice_metrics(self.per_query, self.history_events)

    @property
    def has_histories(self) -> bool:
        """Whether some test query sees a shopper history (a dataset with shoppers)."""
        return any(n > 0 for n in self.history_events.values())

    def to_json(self, per_query: bool = False) -> dict:
        out = {
            "dataset": self.dataset,
            "model": self.model,
            "queries": self.queries,
            "metrics": self.metrics,
            "slices": self.slices,
            "skipped_queries": self.skipped_queries,
            "seconds": round(self.seconds, 3),
        }
        if per_query:
            out["per_query"] = self.per_query
            out["history_events"] = self.history_events
        if per_query and self.explanations:
            out["explanations"] = self.explanations
        return out


def build_query_contexts(dataset: Dataset) -> list[QueryContext]:
    """One context per test query, each with the user's history strictly before its ``ts``."""
    history = HistoryIndex(dataset.events)
    contexts = []
    for qid, query, user_id, ts in dataset.queries[["qid", "query", "user_id", "ts"]].itertuples(
        index=False
    ):
        ts = None if pd.isna(ts) else ts.to_datetime64()
        contexts.append(
            QueryContext(
                qid=qid, query=query, user_id=user_id, ts=ts, history=history.before(user_id, ts)
            )
        )
    return contexts


def evaluate(
    dataset: Dataset, retriever: Retriever, k: int = RETRIEVE_K, batch_size: int = 64
) -> EvalResult:
    """Retrieve the top ``k`` for every judged query of ``dataset`` and average the metrics.

    Queries with no relevant item in qrels cannot be scored; they are counted in
    ``skipped_queries``, not silently averaged in as zeros.
    """
    judged = dataset.qrels_by_query
    contexts = [
        c
        for c in build_query_contexts(dataset)
        if any(r > 0 for r in judged.get(c.qid, {}).values())
    ]
    skipped = len(dataset.queries) - len(contexts)
    if not contexts:
        raise EvaluationError(
            f"{dataset.root}: no query has a relevant item in qrels.parquet; nothing to evaluate"
        )
    if skipped:
        logger.warning(
            "%s: %d query(ies) have no relevant item and are skipped", dataset.name, skipped
        )
    start = time.perf_counter()
    per_query: dict[str, dict[str, float]] = {}
    explanations: dict[str, list[dict]] = {}
    with tqdm(
        total=len(contexts), desc=f"eval {retriever.name} on {dataset.name}", unit="q"
    ) as bar:
        for s in range(0, len(contexts), batch_size):
            chunk = contexts[s : s + batch_size]
            for ctx, ranking in zip(chunk, retriever.search(chunk, k), strict=True):
                per_query[ctx.qid] = query_metrics(list(ranking.item_ids), judged[ctx.qid])
                if ranking.explanations:
                    explanations[ctx.qid] = [
                        {"item_id": str(i), "score": round(float(s), 5), **e}
                        for i, s, e in zip(
                            ranking.item_ids, ranking.scores, ranking.explanations, strict=False
                        )
                    ]
            bar.update(len(chunk))
    history_events = {c.qid: len(c.history.item_ids) for c in contexts}
    return EvalResult(
        dataset=dataset.name,
        model=retriever.name,
        queries=len(contexts),
        metrics=mean_metrics(list(per_query.values())),
        per_query=per_query,
        history_events=history_events,
        explanations=explanations,
        skipped_queries=skipped,
        seconds=time.perf_counter() - start,
    )
