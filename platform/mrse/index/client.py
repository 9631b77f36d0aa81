"""qdrant-client backend: a Qdrant server or cluster in production, local mode in tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

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


def _client_filter(f: SearchFilter | None) -> models.Filter | None:
    f = SearchFilter() if f is None else f  # None: the default filter (in stock only)
    if f.empty:
        return None
    must: list = []
    must_not: list = []
    out_of_stock = models.FieldCondition(key=STOCK_KEY, match=models.MatchValue(value="out"))
    if f.stock is True:  # "absent" counts as in stock
        must_not.append(out_of_stock)
    elif f.stock is False:
        must.append(out_of_stock)
    if f.categories:
        must.append(
            models.FieldCondition(key="category", match=models.MatchAny(any=list(f.categories)))
        )
    if f.brands:
        must.append(models.FieldCondition(key="brand", match=models.MatchAny(any=list(f.brands))))
    if f.price_min is not None or f.price_max is not None:
        must.append(
            models.FieldCondition(key="price", range=models.Range(gte=f.price_min, lte=f.price_max))
        )
    return models.Filter(must=must or None, must_not=must_not or None)


class ClientIndex:
    """One collection (one model version) behind ``QdrantClient``."""

    def __init__(
        self,
        client: QdrantClient,
        collection_name: str,
        dim: int,
        options: EdgeOptions | None = None,
    ) -> None:
        self.client = client
        self.collection_name = collection_name
        self.dim = dim
        self.options = options or EdgeOptions()  # its search-time hnsw_ef settings
        if not client.collection_exists(collection_name):
            client.create_collection(
                collection_name,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )
            for key, schema in (
                ("category", models.PayloadSchemaType.KEYWORD),
                ("brand", models.PayloadSchemaType.KEYWORD),
                ("price", models.PayloadSchemaType.FLOAT),
                (STOCK_KEY, models.PayloadSchemaType.KEYWORD),
            ):
                client.create_payload_index(collection_name, key, field_schema=schema)

    def upsert(
        self, item_ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict]
    ) -> None:
        points = [
            models.PointStruct(id=pid, vector=vec, payload=payload)
            for pid, vec, payload in prepare_points(item_ids, vectors, payloads, self.dim)
        ]
        for s in range(0, len(points), 1000):
            self.client.upsert(self.collection_name, points=points[s : s + 1000], wait=True)

    def delete(self, item_ids: Sequence[str]) -> None:
        if item_ids:
            selector = models.PointIdsList(points=[point_id(i) for i in item_ids])
            self.client.delete(self.collection_name, points_selector=selector, wait=True)

    def _existing(self, item_ids: Sequence[str], with_vector: bool) -> list:
        if not item_ids:
            return []
        return self.client.retrieve(
            self.collection_name,
            [point_id(i) for i in item_ids],
            with_payload=True,
            with_vectors=with_vector,
        )

    def patch_payloads(self, updates: Mapping[str, dict]) -> None:
        ops = [
            models.SetPayloadOperation(
                set_payload=models.SetPayload(payload=updates[r.payload["item_id"]], points=[r.id])
            )
            for r in self._existing(list(updates), with_vector=False)
        ]
        if ops:  # one request for the batch, not one per item
            self.client.batch_update_points(self.collection_name, ops, wait=True)

    def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {
            r.payload["item_id"]: np.asarray(r.vector, dtype=np.float32)
            for r in self._existing(item_ids, with_vector=True)
        }

    def _request(
        self, query: np.ndarray, limit: int, query_filter: SearchFilter | None, exact: bool
    ) -> models.QueryRequest:
        return models.QueryRequest(
            query=np.asarray(query, dtype=np.float32).tolist(),
            filter=_client_filter(query_filter),
            limit=limit,
            with_payload=True,
            params=models.SearchParams(
                hnsw_ef=self.options.ef_for(query_filter, limit), exact=exact
            ),
        )

    def _fetch(self, requests: list[Request], exact: bool) -> list[list[Hit]]:
        """The engine's best ``n`` for each ``(query, n, filter)``, one batched call."""
        reqs = [self._request(q, n, f, exact) for q, n, f in requests]
        res = self.client.query_batch_points(self.collection_name, requests=reqs)
        return [
            [Hit(p.payload["item_id"], float(p.score), dict(p.payload)) for p in r.points]
            for r in res
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

    def count(self) -> int:
        return int(self.client.count(self.collection_name, exact=True).count)

    def close(self) -> None:
        self.client.close()
