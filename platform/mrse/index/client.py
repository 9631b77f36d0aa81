"""qdrant-client backend: a Qdrant server or cluster in production, local mode in tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

from mrse.features.photo import SKETCH_DIM
from mrse.index.base import (
    LEXICAL,
    PHOTO,
    STOCK_KEY,
    EdgeOptions,
    Fetch,
    FetchingIndex,
    Hit,
    SearchFilter,
    point_hit,
    point_id,
    point_vectors,
    prepare_points,
)


def _client_filter(
    f: SearchFilter | None, ids: tuple[str, ...] | None = None, stock_default: bool = True
) -> models.Filter | None:
    """The engine's filter for ``f`` (None: the default, in stock; with ``stock_default``
    False: nothing), restricted to the items ``ids`` when given."""
    must: list = []
    must_not: list = []
    if ids is not None:
        must.append(models.HasIdCondition(has_id=sorted(point_id(i) for i in ids)))
    if f is None and not stock_default:
        return models.Filter(must=must) if must else None
    f = SearchFilter() if f is None else f  # None: the default filter (in stock only)
    if f.empty:
        return models.Filter(must=must) if must else None
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


class ClientIndex(FetchingIndex):
    """One collection (one model version) behind ``QdrantClient``; created with the lexical and
    photo channels (a collection made before they existed is served without them:
    ``has_lexical``, ``has_photo``)."""

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
                vectors_config={  # "": the default vector's name
                    "": models.VectorParams(size=dim, distance=models.Distance.COSINE),
                    PHOTO: models.VectorParams(
                        size=SKETCH_DIM,
                        distance=models.Distance.COSINE,
                        datatype=models.Datatype.FLOAT16,
                    ),
                },  # fmt: skip
                sparse_vectors_config={
                    LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
            )
            for key, schema in (
                ("category", models.PayloadSchemaType.KEYWORD),
                ("brand", models.PayloadSchemaType.KEYWORD),
                ("price", models.PayloadSchemaType.FLOAT),
                (STOCK_KEY, models.PayloadSchemaType.KEYWORD),
            ):
                client.create_payload_index(collection_name, key, field_schema=schema)
        self._channels: tuple[bool, bool] | None = None

    def _has(self) -> tuple[bool, bool]:
        """Whether the collection holds the lexical and the photo channel (asked once, when
        first needed)."""
        if self._channels is None:
            params = self.client.get_collection(self.collection_name).config.params
            vectors = params.vectors if isinstance(params.vectors, dict) else {}
            self._channels = (LEXICAL in (params.sparse_vectors or {}), PHOTO in vectors)
        return self._channels

    @property
    def has_lexical(self) -> bool:  # type: ignore[override]
        return self._has()[0]

    @property
    def has_photo(self) -> bool:  # type: ignore[override]
        return self._has()[1]

    def upsert(
        self,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict],
        terms: Sequence[Mapping[int, float]] | None = None,
    ) -> None:
        terms = terms if terms is not None else [{}] * len(item_ids)
        points = [
            models.PointStruct(id=pid, vector=self._vector(vec, t, payload), payload=payload)
            for (pid, vec, payload), t in zip(
                prepare_points(item_ids, vectors, payloads, self.dim), terms, strict=True
            )
        ]
        for s in range(0, len(points), 1000):
            self.client.upsert(self.collection_name, points=points[s : s + 1000], wait=True)

    def _vector(self, dense: list[float], terms: Mapping[int, float], payload: dict):
        return point_vectors(dense, terms, payload, self.has_lexical, self.has_photo,
                             models.SparseVector)  # fmt: skip

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

    def _request(self, f: Fetch) -> models.QueryRequest:
        if f.vector is not None:
            query = np.asarray(f.vector, dtype=np.float32).tolist()
            using = f.using or None
            params = models.SearchParams(
                hnsw_ef=self.options.ef_for(f.filter, f.limit, f.ef), exact=f.exact
            )
        else:
            terms = sorted(set(f.terms or ()))
            query = models.SparseVector(indices=terms, values=[1.0] * len(terms))
            using, params = LEXICAL, None
        return models.QueryRequest(
            query=query,
            using=using,
            filter=_client_filter(f.filter, f.ids, f.stock_default),
            limit=f.limit,
            with_payload=True if f.payload is True else ["item_id", *(f.payload or ())],
            with_vector=[LEXICAL] if f.with_terms and self.has_lexical else False,
            params=params,
        )

    def _fetch(self, requests: list[Fetch]) -> list[list[Hit]]:
        """The engine's answer to each request, one batched call."""
        if not requests:
            return []
        reqs = [self._request(f) for f in requests]
        res = self.client.query_batch_points(self.collection_name, requests=reqs)
        return [
            [point_hit(p, f.with_terms) for p in r.points]
            for f, r in zip(requests, res, strict=True)
        ]

    def count(self) -> int:
        return int(self.client.count(self.collection_name, exact=True).count)

    def close(self) -> None:
        self.client.close()
