"""Qdrant Edge backend: the Qdrant engine in-process, persisted in a directory."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import qdrant_edge as qe

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

logger = logging.getLogger(__name__)

NAMES_MAX = 1 << 17  # point id -> item id names an open shard keeps (about 26 MB at most)


def _edge_filter(
    f: SearchFilter | None, ids: tuple[str, ...] | None = None, stock_default: bool = True
) -> qe.Filter | None:
    """The engine's filter for ``f`` (None: the default, in stock; with ``stock_default``
    False: nothing), restricted to the items ``ids`` when given."""
    must, must_not = [], []
    if ids is not None:
        must.append(qe.HasIdCondition({point_id(i) for i in ids}))
    if f is None and not stock_default:
        return qe.Filter(must=must) if must else None
    f = SearchFilter() if f is None else f  # None: the default filter (in stock only)
    if f.empty:
        return qe.Filter(must=must) if must else None
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


def _edge_config(
    o: EdgeOptions, dim: int, lexical: bool = True, photo: bool = True
) -> qe.EdgeConfig:
    """The shard's configuration: the towers' vector (""), and the lexical channel and the
    photo channel (``PHOTO``: float16, as the sketches travel) unless left out (a shard
    written before they existed)."""
    quant = None
    if o.quantization == "int8":
        quant = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
    dense = qe.EdgeVectorParams(
        size=dim,
        distance=qe.Distance.Cosine,
        on_disk=o.vectors_on_disk or None,
        quantization_config=quant,
    )
    vectors: qe.EdgeVectorParams | dict[str, qe.EdgeVectorParams] = dense
    if photo:
        sketch = qe.EdgeVectorParams(size=SKETCH_DIM, distance=qe.Distance.Cosine,
                                     datatype=qe.VectorStorageDatatype.Float16)  # fmt: skip
        vectors = {"": dense, PHOTO: sketch}
    return qe.EdgeConfig(
        vectors=vectors,
        # thresholds in KB of vectors: above 1 MB (2,000 items at 128 floats) a segment
        # gets an HNSW graph on optimize(); below, exact search is as fast
        hnsw_config=qe.HnswIndexConfig(
            m=o.hnsw_m, ef_construct=o.ef_construct, full_scan_threshold=1_000
        ),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1_000),
        sparse_vectors={LEXICAL: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
        if lexical
        else None,
    )


def _search_params(
    o: EdgeOptions,
    limit: int,
    query_filter: SearchFilter | None,
    exact: bool,
    ef: int | None = None,
) -> qe.SearchParams:
    quant = None
    if o.quantization != "none":
        quant = qe.QuantizationSearchParams(rescore=True, oversampling=o.oversampling)
    return qe.SearchParams(hnsw_ef=o.ef_for(query_filter, limit, ef), exact=exact,
                           quantization=quant)  # fmt: skip


class EdgeIndex(FetchingIndex):
    """An on-disk Qdrant Edge shard. Opens an existing one at ``path`` or creates it (with the
    lexical and photo channels; a shard written before they existed opens without them:
    ``has_lexical``, ``has_photo``)."""

    def __init__(self, path: str | Path, dim: int, options: EdgeOptions | None = None) -> None:
        self.path = Path(path)
        self.dim = dim
        self.options = options or EdgeOptions()
        self._names: dict[int, str] = {}  # point id -> item id, for searches without payload
        self.has_lexical = self.has_photo = True
        if self.path.exists() and any(self.path.iterdir()):
            self._shard = self._load()
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._shard = qe.EdgeShard.create(str(self.path), _edge_config(self.options, dim))
            for key, schema in (
                ("category", qe.PayloadSchemaType.Keyword),
                ("brand", qe.PayloadSchemaType.Keyword),
                ("price", qe.PayloadSchemaType.Float),
                (STOCK_KEY, qe.PayloadSchemaType.Keyword),
            ):
                self._shard.update(qe.UpdateOperation.create_field_index(key, schema))

    def _load(self) -> qe.EdgeShard:
        """The shard at ``path``, with the channels it was written with (newest first)."""
        error: Exception | None = None
        for lexical, photo in ((True, True), (True, False), (False, False)):
            config = _edge_config(self.options, self.dim, lexical=lexical, photo=photo)
            try:
                shard = qe.EdgeShard.load(str(self.path), config)
            except Exception as exc:
                if "incompatible" not in str(exc).lower():
                    raise
                error = exc
                continue
            self.has_lexical, self.has_photo = lexical, photo
            missing = [n for n, has in (("lexical", lexical), ("photo", photo)) if not has]
            if missing:
                logger.warning(
                    "index %s has no %s channel (written before it existed): served without; "
                    "rebuild it with `mrse index` for hybrid search and shop by photo's own "
                    "candidates", self.path, " or ".join(missing),
                )  # fmt: skip
            return shard
        raise error  # type: ignore[misc]

    def upsert(
        self,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict],
        terms: Sequence[Mapping[int, float]] | None = None,
    ) -> None:
        terms = terms if terms is not None else [{}] * len(item_ids)
        points = [
            qe.Point(pid, self._vector(vec, t, payload), payload)
            for (pid, vec, payload), t in zip(
                prepare_points(item_ids, vectors, payloads, self.dim), terms, strict=True
            )
        ]
        for s in range(0, len(points), 1000):
            self._shard.update(qe.UpdateOperation.upsert_points(points[s : s + 1000]))

    def _vector(self, dense: list[float], terms: Mapping[int, float], payload: dict):
        return point_vectors(dense, terms, payload, self.has_lexical, self.has_photo,
                             qe.SparseVector)  # fmt: skip

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
        points = [  # the vectors as read: the dense one and the channels' (lexical, photo)
            qe.Point(r.id, r.vector, {**r.payload, **updates[r.payload["item_id"]]}) for r in found
        ]
        if points:
            self._shard.update(qe.UpdateOperation.upsert_points(points))

    def flush(self) -> None:
        """Write everything applied so far to the shard's files."""
        self._shard.flush()

    def optimize(self) -> None:
        """Build the HNSW graph now (blocking) instead of on the first large search."""
        self._shard.optimize()

    def _request(self, f: Fetch) -> qe.QueryRequest:
        if f.vector is not None:
            vector = np.asarray(f.vector, dtype=np.float32).tolist()
            query = qe.Query.Nearest(vector, using=f.using) if f.using else qe.Query.Nearest(vector)
            params = _search_params(self.options, f.limit, f.filter, f.exact, f.ef)
        else:
            terms = sorted(set(f.terms or ()))
            sparse = qe.SparseVector(indices=terms, values=[1.0] * len(terms))
            query, params = qe.Query.Nearest(sparse, using=LEXICAL), None
        if f.payload is True or f.payload is False:  # False: ids only (named by ``_item_ids``)
            with_payload = f.payload
        else:
            with_payload = qe.PayloadSelector.Include(["item_id", *f.payload])
        return qe.QueryRequest(
            limit=f.limit,
            query=query,
            filter=_edge_filter(f.filter, f.ids, f.stock_default),
            with_payload=with_payload,
            with_vector=[LEXICAL] if f.with_terms and self.has_lexical else False,
            params=params,
        )

    def _fetch(self, requests: list[Fetch]) -> list[list[Hit]]:
        """The engine's answer to each request, one batched call. A request for ids only
        (``payload`` False) reads no payload: its points are named from ``_item_ids``."""
        if not requests:
            return []
        batch = qe.QueryBatchRequest([self._request(f) for f in requests])
        answers = self._shard.query_batch(batch)
        keys = [[p.id.int for p in points] if f.payload is False else []
                for f, points in zip(requests, answers, strict=True)]  # fmt: skip
        names = self._item_ids([k for ks in keys for k in ks])
        out = []
        for f, points, ks in zip(requests, answers, keys, strict=True):
            if f.payload is False:  # a point deleted since the search has no name: left out
                named = zip(points, (names[k] for k in ks), strict=True)
                out.append([point_hit(p, f.with_terms, n) for p, n in named if n is not None])
            else:
                out.append([point_hit(p, f.with_terms) for p in points])
        return out

    def warm(self) -> None:
        """Read the item ids of the shard's points (``NAMES_MAX`` at most; about 10 us a
        point), so the first searches for ids only read no payload either."""
        names, offset = self._names, None
        while len(names) < NAMES_MAX:
            page, offset = self._shard.scroll(qe.ScrollRequest(
                offset=offset, limit=min(4096, NAMES_MAX - len(names)),
                with_payload=qe.PayloadSelector.Include(["item_id"]),
            ))  # fmt: skip
            for r in page:
                names[r.id.int] = r.payload["item_id"]
            if offset is None:
                break

    def _item_ids(self, keys: Sequence[int]) -> dict[int, str | None]:
        """Point id (its 128-bit int) -> item id for ``keys`` (None for a point that no longer
        exists). Reading a payload costs the engine about 10 us per point even for the item id
        alone, so names are kept once read: a point's id is a fixed function of its item's id
        (``point_id``), so a kept name never goes stale. At most ``NAMES_MAX`` are kept; past
        that they are dropped and read again as searches meet them."""
        names = self._names
        out = {k: names.get(k) for k in keys}
        missing = [uuid.UUID(int=k) for k, name in out.items() if name is None]
        if missing:
            if len(names) + len(missing) > NAMES_MAX:
                names.clear()
            for r in self._shard.retrieve(missing, qe.PayloadSelector.Include(["item_id"]), False):
                names[r.id.int] = out[r.id.int] = r.payload["item_id"]
        return out

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
