"""Qdrant Edge backend: the Qdrant engine in-process, persisted in a directory."""

from __future__ import annotations

import logging
import uuid
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
        self._payloads: dict[uuid.UUID, dict] | None = None
        self.ef = ef
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            # thresholds in KB of vectors: above 1 MB (2,000 items at 128 floats) a segment
            # gets an HNSW graph on optimize(); below, exact search is as fast
            hnsw_config=qe.HnswIndexConfig(
                m=hnsw_m, ef_construct=ef_construct, full_scan_threshold=1_000
            ),
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1_000),
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
        if self._payloads is not None:
            for p in points:
                self._payloads[uuid.UUID(str(p.id))] = dict(p.payload)

    def delete(self, item_ids: Sequence[str]) -> None:
        if item_ids:
            self._shard.update(qe.UpdateOperation.delete_points([point_id(i) for i in item_ids]))
            if self._payloads is not None:
                for i in item_ids:
                    self._payloads.pop(uuid.UUID(point_id(i)), None)

    def _payload_table(self) -> dict[uuid.UUID, dict]:
        """Point id -> payload, read once from the shard: searches then ask the engine for ids
        only (turning each hit's payload into a Python dict costs more than the search)."""
        if self._payloads is None:
            table: dict[uuid.UUID, dict] = {}
            offset = None
            while True:
                points, offset = self._shard.scroll(
                    qe.ScrollRequest(limit=10_000, offset=offset, with_payload=True)
                )
                table.update((uuid.UUID(str(p.id)), dict(p.payload)) for p in points)
                if offset is None:
                    break
            self._payloads = table
        return self._payloads

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
            with_payload=False,
            params=qe.SearchParams(hnsw_ef=max(self.ef, limit), exact=exact),
        )

    def _hits(self, points) -> list[Hit]:
        """Hits with their payloads (shared dicts: read them, do not change them)."""
        table = self._payload_table()
        found = [(table.get(pid := p.id), pid, p.score) for p in points]
        if any(payload is None for payload, _, _ in found):  # written by another process since
            self._payloads = None
            table = self._payload_table()
            found = [(table.get(pid), pid, score) for _, pid, score in found]
        hits = []
        for payload, pid, score in found:
            if payload is None:
                logger.warning("point %s has no payload; left out of the results", pid)
                continue
            hits.append(Hit(payload["item_id"], float(score), payload))
        return hits

    def search(
        self,
        query: np.ndarray,
        limit: int,
        query_filter: SearchFilter | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        return self._hits(self._shard.query(self._request(query, limit, query_filter, exact)))

    def search_many(
        self,
        queries: np.ndarray,
        limits: Sequence[int],
        filters: Sequence[SearchFilter | None],
        exact: bool = False,
    ) -> list[list[Hit]]:
        reqs = [
            self._request(q, k, f, exact) for q, k, f in zip(queries, limits, filters, strict=True)
        ]
        if not reqs:
            return []
        return [self._hits(r) for r in self._shard.query_batch(qe.QueryBatchRequest(reqs))]

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
