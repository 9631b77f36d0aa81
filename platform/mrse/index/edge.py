"""Qdrant Edge backend: the Qdrant engine in-process, persisted in a directory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from mrse.index.base import Hit, SearchFilter, point_id, prepare_points

logger = logging.getLogger(__name__)


def _edge_filter(f: SearchFilter | None) -> qe.Filter | None:
    if f is None or f.empty:
        return None
    must = []
    if f.categories:
        must.append(qe.FieldCondition(key="category", match=qe.MatchAny(list(f.categories))))
    if f.brands:
        must.append(qe.FieldCondition(key="brand", match=qe.MatchAny(list(f.brands))))
    if f.price_min is not None or f.price_max is not None:
        must.append(
            qe.FieldCondition(key="price", range=qe.RangeFloat(gte=f.price_min, lte=f.price_max))
        )
    return qe.Filter(must=must)


class EdgeIndex:
    """An on-disk Qdrant Edge shard. Opens an existing one at ``path`` or creates it."""

    def __init__(
        self, path: str | Path, dim: int, hnsw_m: int = 16, ef_construct: int = 100, ef: int = 64
    ) -> None:
        self.path = Path(path)
        self.dim = dim
        self.ef = ef
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(
                m=hnsw_m, ef_construct=ef_construct, full_scan_threshold=10_000
            ),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=20_000),
        )
        if self.path.exists() and any(self.path.iterdir()):
            self._shard = qe.EdgeShard.load(str(self.path), config)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self.path), config)
            for key, schema in (
                ("category", qe.PayloadSchemaType.Keyword),
                ("brand", qe.PayloadSchemaType.Keyword),
                ("price", qe.PayloadSchemaType.Float),
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

    def optimize(self) -> None:
        """Build the HNSW graph now (blocking) instead of on the first large search."""
        self._shard.optimize()

    def search(
        self,
        query: np.ndarray,
        limit: int,
        query_filter: SearchFilter | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        req = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(np.asarray(query, dtype=np.float32).tolist()),
            filter=_edge_filter(query_filter),
            with_payload=True,
            params=qe.SearchParams(hnsw_ef=max(self.ef, limit), exact=exact),
        )
        return [
            Hit(p.payload["item_id"], float(p.score), dict(p.payload))
            for p in self._shard.query(req)
        ]

    def count(self) -> int:
        return int(self._shard.count(qe.CountRequest(exact=True)))

    def close(self) -> None:
        """Flush and close; closing twice is harmless."""
        if self._shard is None:
            return
        self._shard.flush()
        self._shard.close()
        self._shard = None
