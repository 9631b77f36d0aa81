"""A trained run as a retriever: encode the dataset's catalog, then exact search per query."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from mrse.data.dataset import Dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_query_texts, lazy_query_encoder
from mrse.features.catalog import hide_modality
from mrse.features.queries import snapshot_profiles
from mrse.models.inference import encode_catalog, encode_queries, explain_rows
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
        hide_items: Collection[str] | None = None,
    ) -> None:
        """``query_encoder``: ``minilm`` (as trained) or ``minilm-int8`` (as served);
        ``hide``: ``photo`` or ``text`` to evaluate as if no item (or only the ``hide_items``)
        had that modality, in the catalog and the shoppers' histories alike
        (``mrse.features.catalog.hide_modality``)."""
        self.run = run
        self.name = run.name if hide is None else f"{run.name} ({hide} hidden)"
        self.dataset = dataset
        self.cache = cache
        self.catalog = run.featurizer.catalog(dataset, cache)
        if hide is not None:
            rows = None
            if hide_items is not None:
                index = self.catalog.index
                rows = np.array([index[i] for i in hide_items if i in index], dtype=np.int64)
            self.catalog = hide_modality(self.catalog, hide, rows)
        self.items = encode_catalog(run.model, self.catalog)  # (N, D)
        # loaded once, only on a cache miss
        self._encode_query, self._query_model_id = lazy_query_encoder(query_encoder)

    def search(self, queries: Sequence[QueryContext], k: int) -> list[Ranking]:
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
        scores = out.embedding @ self.items.T  # (Q, N)
        k = min(k, scores.shape[1])
        top_scores, top_rows = scores.topk(k, dim=1)
        rankings = []
        for qi in range(len(queries)):
            rows = top_rows[qi].numpy()
            parts = explain_rows(self.run.model, self.catalog, out, qi, rows[:EXPLAIN_TOP])
            expl = None
            if parts is not None:
                n = len(rows[:EXPLAIN_TOP])
                expl = [{key: round(float(v[j]), 5) for key, v in parts.items()} for j in range(n)]
            rankings.append(
                Ranking(
                    item_ids=self.catalog.item_ids[rows],
                    scores=top_scores[qi].numpy().astype(np.float32),
                    explanations=expl,
                )
            )
        return rankings
