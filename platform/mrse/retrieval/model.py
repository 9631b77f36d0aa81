"""A trained run as a retriever: encode the dataset's catalog, then exact search per query."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mrse.data.dataset import Dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_query_texts, lazy_query_encoder
from mrse.features.catalog import hidden_catalog
from mrse.features.queries import snapshot_profiles
from mrse.models.inference import encode_catalog, encode_queries, explain_rows
from mrse.models.towers import TowerOutput
from mrse.retrieval.base import QueryContext, Ranking
from mrse.training.checkpoint import Run

EXPLAIN_TOP = 10


class ModelRetriever:
    """Exact inner-product search with a trained run over any dataset's catalog.

    Items and users never seen in training are fine: everything is computed from their
    features (text, photo, hashed n-grams and ids) and the user's events before the query.
    """

    def __init__(
        self,
        run: Run,
        dataset: Dataset,
        cache: FeatureCache,
        query_encoder: str = "minilm",
        hide: str | None = None,
    ) -> None:
        """``query_encoder``: ``minilm`` (as trained) or ``minilm-int8`` (as served);
        ``hide``: evaluate as if a modality were missing, in the catalog and the shoppers'
        histories alike: ``photo`` / ``text`` from every item, ``judged-text``: the text of
        the items the dataset judges relevant, ``random``: a seeded catalog in flux
        (``mrse.features.catalog.hidden_catalog``)."""
        self.run = run
        self.name = run.name if hide is None else f"{run.name} ({hide} hidden)"
        self.dataset = dataset
        self.cache = cache
        self.catalog = run.featurizer.catalog(dataset, cache)
        if hide is not None:
            judged = dataset.qrels.loc[dataset.qrels["relevance"] > 0, "item_id"]
            self.catalog = hidden_catalog(self.catalog, hide, set(judged))
        self.items = encode_catalog(run.model, self.catalog)  # (N, D)
        # loaded once, only on a cache miss
        self._encode_query, self._query_model_id = lazy_query_encoder(query_encoder)

    def scores(self, queries: Sequence[QueryContext]) -> tuple[TowerOutput, torch.Tensor]:
        """The query tower's output for ``queries`` and their scores against every catalog
        item, (Q, N)."""
        cfg = self.run.config
        texts = [q.query for q in queries]
        requests = [(q.user_id, q.ts) for q in queries]
        profiles = snapshot_profiles(self.dataset.events, self.catalog, requests, cfg.profile)
        qf = self.run.featurizer.queries(
            texts,
            encode_query_texts(texts, self.cache, self._encode_query, self._query_model_id),
            profiles,
            self.catalog.index,
        )
        (out,) = encode_queries(self.run.model, qf, self.items, batch_size=len(texts))
        return out, out.embedding @ self.items.T

    def explain(self, out: TowerOutput, qi: int, rows: np.ndarray) -> list[dict] | None:
        """Each expert's and modality's share of query ``qi``'s scores against catalog
        ``rows`` (n,), or None for a model without gated experts."""
        parts = explain_rows(self.run.model, self.catalog, out, qi, rows)
        if parts is None:
            return None
        return [{key: round(float(v[j]), 5) for key, v in parts.items()} for j in range(len(rows))]

    def search(self, queries: Sequence[QueryContext], k: int) -> list[Ranking]:
        out, scores = self.scores(queries)
        k = min(k, scores.shape[1])
        top_scores, top_rows = scores.topk(k, dim=1)
        rankings = []
        for qi in range(len(queries)):
            rows = top_rows[qi].numpy()
            rankings.append(
                Ranking(
                    item_ids=self.catalog.item_ids[rows],
                    scores=top_scores[qi].numpy().astype(np.float32),
                    explanations=self.explain(out, qi, rows[:EXPLAIN_TOP]),
                )
            )
        return rankings
