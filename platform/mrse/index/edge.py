"""Qdrant Edge backend: the Qdrant engine in-process, persisted in a directory."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from mrse.index.base import (
    STOCK_KEY,
    EdgeOptions,
    Hit,
    Request,
    SearchFilter,
    point_id,
    prepare_points,
    search_settled,
)

logger = logging.getLogger(__name__)


def _edge_filter(f: SearchFilter | None) -> qe.Filter | None:
    f = SearchFilter() if f is None else f  # None: the default filter (in stock only)
    if f.empty:
        return None
    must, must_not = [], []
    if f.stock is True:  # "absent" counts as in stock: exclude "out" rather than require "in"
        must_not.append(qe.FieldCondition(key=STOCK_KEY, match=qe.MatchValue("out")))
    elif f.stock is False:
        must.append(qe.FieldCondition(key=STOCK_KEY, match=qe.MatchValue("out")))
    if f.categories:
        must.append(qe.FieldCondition(key="category", match=qe.MatchAny(list(f.categories))))
    if f.brands:
        must.append(qe.FieldCondition(key="brand", match=qe.MatchAny(list(f.brands))))
    if f.price_min is not None or f.price_max is not None:
        must.append(
            qe.FieldCondition(key="price", range=qe.RangeFloat(gte=f.price_min, lte=f.price_max))
        )
    return qe.Filter(must=must or None, must_not=must_not or None)


def _edge_config(o: EdgeOptions, dim: int) -> qe.EdgeConfig:
    quant = None
    if o.quantization == "int8":
        quant = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(
            size=dim,
            distance=qe.Distance.Cosine,
            on_disk=o.vectors_on_disk or None,
            quantization_config=quant,
        ),
        # thresholds in KB of vectors: above 1 MB (2,000 items at 128 floats) a segment
        # gets an HNSW graph on optimize(); below, exact search is as fast
        hnsw_config=qe.HnswIndexConfig(
            m=o.hnsw_m, ef_construct=o.ef_construct, full_scan_threshold=1_000
        ),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1_000),
    )


def _search_params(
    o: EdgeOptions, limit: int, query_filter: SearchFilter | None, exact: bool
) -> qe.SearchParams:
    quant = None
    if o.quantization != "none":
        quant = qe.QuantizationSearchParams(rescore=True, oversampling=o.oversampling)
    return qe.SearchParams(hnsw_ef=o.ef_for(query_filter, limit), exact=exact, quantization=quant)


class EdgeIndex:
    """An on-disk Qdrant Edge shard. Opens an existing one at ``path`` or creates it."""

    def __init__(self, path: str | Path, dim: int, options: EdgeOptions | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        self.options = options or EdgeOptions()
        config = _edge_config(self.options, dim)
        if self.path.exists() and any(self.path.iterdir()):
            self._shard = qe.EdgeShard.load(str(self.path), config)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self.path), config)
            for key, schema in (
                ("category", qe.PayloadSchemaType.Keyword),
                ("brand", qe.PayloadSchemaType.Keyword),
                ("price", qe.PayloadSchemaType.Float),
                (STOCK_KEY, qe.PayloadSchemaType.Keyword),
            ):
                self._shard.update(qe.UpdateOperation.create_field_index(key, schema))

    def upsert(
        self, item_ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]
    ) -> None:
        points = [
            qe.Point(pid, vec, payload)
            for pid, vec, payload in prepare_points(item_ids, vectors, payloads, self.dim)
        ]
        for s in range(0, len(points), 1000):
            self._shard.update(qe.UpdateOperation.upsert_points(points[s : s + 1000]))

    def delete(self, item_ids: Sequence[str]) -> None:
        if item_ids:
            self._shard.update(qe.UpdateOperation.delete_points([point_id(i) for i in item_ids]))

    def _existing(self, item_ids: Sequence[str], with_vector: bool) -> list:
        if not item_ids:
            return []
        return self._shard.retrieve([point_id(i) for i in item_ids], True, with_vector)

    def patch_payloads(self, updates: Mapping[str, dict]) -> None:
        """One read and one write for the whole batch (per-item payload updates cost a call
        each): the existing points are read with their vectors and upserted merged."""
        found = self._existing(list(updates), with_vector=True)
        points = [
            qe.Point(r.id, r.vector, {**r.payload, **updates[r.payload["item_id"]]}) for r in found
        ]
        if points:
            self._shard.update(qe.UpdateOperation.upsert_points(points))

    def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {
            r.payload["item_id"]: np.asarray(r.vector, dtype=np.float32)
            for r in self._existing(item_ids, with_vector=True)
        }

    def optimize(self) -> None:
        """Build the HNSW graph now (blocking) instead of on the first large search."""
        self._shard.optimize()

    def _request(
        self, query: np.ndarray, limit: int, query_filter: SearchFilter | None, exact: bool
    ) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(np.asarray(query, dtype=np.float32).tolist()),
            filter=_edge_filter(query_filter),
            with_payload=True,
            params=_search_params(self.options, limit, query_filter, exact),
        )

    def _fetch(self, requests: list[Request], exact: bool) -> list[list[Hit]]:
        """The engine's best ``n`` for each ``(query, n, filter)``, one batched call."""
        reqs = [self._request(q, n, f, exact) for q, n, f in requests]
        return [
            [Hit(p.payload["item_id"], float(p.score), p.payload) for p in points]
            for points in self._shard.query_batch(qe.QueryBatchRequest(reqs))
        ]

    def search(
        self,
        query: np.ndarray,
        limit: int,
        query_filter: SearchFilter | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        (hits,) = self.search_many(np.asarray(query)[None], [limit], [query_filter], exact)
        return hits

    def search_many(
        self,
        queries: np.ndarray,
        limits: Sequence[int],
        filters: Sequence[SearchFilter | None],
        exact: bool = False,
    ) -> list[list[Hit]]:
        requests = list(zip(queries, limits, filters, strict=True))
        return search_settled(lambda r: self._fetch(r, exact), requests)

    def indexed_vectors(self) -> int:
        """Vectors under an HNSW graph (0 until ``optimize`` on a catalog above the threshold)."""
        return int(self._shard.info().indexed_vectors_count)

    def count(self) -> int:
        return int(self._shard.count(qe.CountRequest(exact=True)))

    def close(self) -> None:
        """Flush and close; closing twice is harmless."""
        if self._shard is None:
            return
        self._shard.flush()
        self._shard.close()
        self._shard = None
