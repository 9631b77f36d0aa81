"""The index protocol every backend implements, and the shared filter and id conventions."""

from __future__ import annotations

import base64
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

import numpy as np

from mrse.features.lexical import QueryTerm, variants
from mrse.features.photo import SKETCH_DIM
from mrse.index.hybrid import (
    HybridOptions,
    Slot,
    admitted,
    candidate,
    fuse,
    gain_floor,
    idf,
    query_slots,
)

# Qdrant point ids are integers or UUIDs; item ids are arbitrary strings. A name-based UUID is
# stable across processes and backends; the item id itself travels in the payload.
_NAMESPACE = uuid.UUID("6f1c3e0a-6c1b-4d0e-9a43-2b8f6f0a9d11")
FILTER_FIELDS = ("category", "brand", "price", "in_stock")
# The named sparse vector of every point: its lexical terms (mrse.features.lexical; a title's
# weigh 2, the others 1), weighed by IDF in the engine (mrse.index.hybrid).
LEXICAL = "lex"

# The named dense vector of every point with a photo: its photo sketch (mrse.features.photo),
# the photo channel's own candidates for shop by photo. It is derived, on every write, from the
# payload's ``PHOTO_KEY`` blob (float16, base64), which is how the sketch travels through the
# catalog pipeline and what the re-ranking of the towers' candidates reads.
PHOTO = "photo"
PHOTO_KEY = "_p"


def sketch_of(payload: Mapping) -> np.ndarray | None:
    """The (SKETCH_DIM,) float32 photo sketch a payload carries, or None."""
    blob = payload.get(PHOTO_KEY)
    if not blob:
        return None
    sketch = np.frombuffer(base64.b64decode(blob), dtype="<f2").astype(np.float32)
    return sketch if sketch.shape == (SKETCH_DIM,) else None


# Stock is a keyword payload ``stock``: "in" / "out" (Qdrant Edge 0.4's bool match conditions
# match nothing, measured; keywords work on every backend). Absent: in stock.
STOCK_KEY = "stock"


def stock_payload(in_stock: bool) -> dict[str, str]:
    return {STOCK_KEY: "in" if in_stock else "out"}


def is_in_stock(payload: dict) -> bool:
    return payload.get(STOCK_KEY) != "out"


@functools.lru_cache(maxsize=1 << 16)
def point_id(item_id: str) -> str:
    """``item_id``'s point id (kept for the most recent 65,536 ids: a feed's or a filter's
    hundred ids cost 2 ms of hashing per request otherwise)."""
    return str(uuid.uuid5(_NAMESPACE, item_id))


@dataclass(frozen=True)
class EdgeOptions:
    """How an Edge shard stores and searches its vectors (``hnsw_ef`` also applies to a Qdrant
    server's collection); chosen by measurement, docs/scale.md.

    ``quantization="int8"``: scalar-quantized copies in RAM searched first, then the best
    ``oversampling`` x limit rescored with the original vectors; ``vectors_on_disk``: the
    original vectors are read from disk (page cache) instead of held in RAM.
    """

    hnsw_m: int = 16
    ef_construct: int = 100
    # search-time candidates (at least the limit): 200 keeps recall@100 >= 0.99 without a
    # filter at 25k-1M items (docs/scale.md)
    hnsw_ef: int = 200
    # ... when the request filters on category, brand or price: the walk passes over the items
    # the filter leaves out, and needs more candidates. With the product-identity model, 1M
    # items and a 10% category filter, recall@100 is 0.922 at 200 and 0.966 at 400
    hnsw_ef_filtered: int = 400
    quantization: Literal["none", "int8"] = "none"
    oversampling: float = 2.0
    vectors_on_disk: bool = False

    def __post_init__(self) -> None:
        if self.quantization not in ("none", "int8"):
            raise ValueError("quantization must be 'none' or 'int8'")
        if self.hnsw_m < 2 or self.ef_construct < 4 or min(self.hnsw_ef, self.hnsw_ef_filtered) < 1:
            raise ValueError(
                "hnsw_m must be >= 2, ef_construct >= 4, hnsw_ef and hnsw_ef_filtered >= 1"
            )
        if self.oversampling < 1.0:
            raise ValueError("oversampling must be >= 1")

    def ef_for(self, query_filter: SearchFilter | None, limit: int, ef: int | None = None) -> int:
        """Search-time candidates for one request: ``hnsw_ef_filtered`` when it filters on
        category, brand or price, else ``hnsw_ef`` (or the caller's ``ef``, scaled the same
        way for a filter); at least ``limit``."""
        selective = query_filter is not None and query_filter.selective
        if ef is not None:
            return max(ef * self.hnsw_ef_filtered // self.hnsw_ef if selective else ef, limit)
        return max(self.hnsw_ef_filtered if selective else self.hnsw_ef, limit)


@dataclass(frozen=True)
class SearchFilter:
    """Conjunction of payload conditions; an empty filter matches everything.

    ``in_stock``: the stock states wanted; by default only items in stock (an item whose
    payload has no ``in_stock`` is in stock); ``(True, False)`` for every item."""

    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    in_stock: tuple[bool, ...] = (True,)

    def __post_init__(self) -> None:
        if not self.in_stock or not set(self.in_stock) <= {True, False}:
            raise ValueError("in_stock must name true, false or both")
        for name in ("price_min", "price_max"):
            v = getattr(self, name)
            if v is not None and (not np.isfinite(v) or v < 0):
                raise ValueError(f"{name} must be a finite, non-negative number")
        if (
            self.price_min is not None
            and self.price_max is not None
            and self.price_min > self.price_max
        ):
            raise ValueError("price_min must not exceed price_max")

    @property
    def stock(self) -> bool | None:
        """The one stock state wanted, or None for both."""
        return None if set(self.in_stock) == {True, False} else self.in_stock[0]

    @property
    def selective(self) -> bool:
        """Whether it filters on category, brand or price (the default stock filter leaves
        almost every item in)."""
        return bool(self.categories or self.brands) or not (
            self.price_min is None and self.price_max is None
        )

    @property
    def empty(self) -> bool:
        return not self.selective and self.stock is None

    def matches(self, payload: dict) -> bool:
        """Reference semantics (used by tests and exact fallbacks)."""
        if self.categories and payload.get("category") not in self.categories:
            return False
        if self.brands and payload.get("brand") not in self.brands:
            return False
        if self.stock is not None and is_in_stock(payload) != self.stock:
            return False
        price = payload.get("price")
        if self.price_min is not None and (price is None or price < self.price_min):
            return False
        return not (self.price_max is not None and (price is None or price > self.price_max))


def prepare_points(
    item_ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict], dim: int
) -> list[tuple[str, list[float], dict]]:
    """Validated (point id, vector, payload with ``item_id``) triples for any backend."""
    if vectors.shape != (len(item_ids), dim):
        raise ValueError(f"vectors must be ({len(item_ids)}, {dim}), got {vectors.shape}")
    if len(payloads) != len(item_ids):
        raise ValueError(f"{len(payloads)} payloads for {len(item_ids)} items")
    return [
        (point_id(i), v.astype(np.float32).tolist(), {**p, "item_id": i})
        for i, v, p in zip(item_ids, vectors, payloads, strict=True)
    ]


def point_vectors(
    dense: list[float],
    terms: Mapping[int, float],
    payload: Mapping,
    lexical: bool,
    photo: bool,
    sparse: Callable[..., object],
) -> list[float] | dict:
    """A point's vectors as either backend writes them: the towers' (the unnamed ""), the
    lexical terms when the index has the ``lexical`` channel (``sparse(indices=, values=)``:
    the backend's sparse vector) and the photo sketch when it has the ``photo`` channel and
    ``payload`` carries one; the dense vector alone when there is nothing else."""
    sketch = sketch_of(payload) if photo else None
    if not lexical and sketch is None:
        return dense
    out: dict = {"": dense}
    if lexical:
        ids = sorted(terms)
        out[LEXICAL] = sparse(indices=ids, values=[float(terms[i]) for i in ids])
    if sketch is not None:
        out[PHOTO] = sketch.tolist()
    return out


@dataclass(frozen=True)
class Hit:
    """One result. ``terms``: the item's lexical terms (term id -> weight), when the search
    asked for them; ``lexical``: what the lexical channel added to the score; ``found_by``: the
    channel that brought it (``mrse.index.hybrid.FOUND_BY``; shop by photo: "dense", "photo",
    "both")."""

    item_id: str
    score: float
    payload: dict = field(default_factory=dict)
    terms: dict[int, float] | None = None
    lexical: float = 0.0
    found_by: str = "dense"


def hit_sketches(hits: Sequence[Hit]) -> np.ndarray:
    """(n, SKETCH_DIM) float32: the hits' photo sketches, from their payloads' ``PHOTO_KEY``
    (zero rows where none). Reading the ``PHOTO`` vector back instead costs the engine half as
    much, and the conversion to Python more than that saves (measured)."""
    out = np.zeros((len(hits), SKETCH_DIM), np.float32)
    for i, h in enumerate(hits):
        sketch = sketch_of(h.payload)
        if sketch is not None:
            out[i] = sketch
    return out


def dense_part(vector) -> list[float]:
    """The dense part of a point's vector as either backend reads it back (a dict with the
    lexical terms, or the vector alone)."""
    return vector[""] if isinstance(vector, dict) else vector


def point_hit(p, with_terms: bool, item_id: str | None = None) -> Hit:
    """A scored point of either backend (``score``, ``payload``, ``vector``) as a ``Hit``, with
    its lexical terms when ``with_terms`` (empty when it has none). ``item_id``: the point's
    item when it was read without its payload (the hit's payload is then the id alone)."""
    terms = None
    if with_terms:
        sparse = p.vector.get(LEXICAL) if isinstance(p.vector, dict) else None
        terms = dict(zip(sparse.indices, sparse.values, strict=True)) if sparse is not None else {}
    if item_id is not None:
        return Hit(item_id, float(p.score), {"item_id": item_id}, terms)
    return Hit(p.payload["item_id"], float(p.score), dict(p.payload), terms)


@dataclass(frozen=True)
class Fetch:
    """One request to a backend's engine: the best ``limit`` items by the dense ``vector`` or
    by the lexical ``terms`` (exactly one of them), among those ``filter`` keeps (None: the
    default, in stock) and, when given, among ``ids`` only; ``exact`` skips the graph;
    ``with_terms``: return each hit's lexical terms; ``payload``: its payload."""

    limit: int
    vector: np.ndarray | None = None
    terms: tuple[int, ...] | None = None
    filter: SearchFilter | None = None
    ids: tuple[str, ...] | None = None
    exact: bool = False
    with_terms: bool = False
    payload: bool | tuple[str, ...] = True  # False / a tuple: the item id (and those keys) only
    stock_default: bool = True  # False: no filter at all when ``filter`` is None (IDF probes)
    ef: int | None = None  # search-time candidates, when not the index's default
    using: str = ""  # the dense vector searched: the towers' ("") or the photo channel's (PHOTO)


# Equal scores are real (variants of one product under a text-only model share a vector), and
# a vector engine returns them in an order of its own that changes between processes and with
# the order the catalog was written in. Every backend asks for one result more than wanted and
# orders ties by item id, so one search gives one list; when that extra result ties with the
# last wanted one, the run of ties may reach further, and the window is fetched again, 4x
# wider, up to TIE_WINDOW_MAX results (a longer run of ties is cut in the engine's order).
TIE_MARGIN = 1
TIE_WINDOW_MAX = 4096


def settled(hits: Sequence[Hit], limit: int) -> list[Hit]:
    """The best ``limit`` of ``hits``, best first, equal scores in item id order."""
    return sorted(hits, key=lambda h: (-h.score, h.item_id))[:limit]


def tie_at_cut(hits: Sequence[Hit], limit: int, asked: int) -> bool:
    """Whether a window of ``asked`` results may have cut short a run of equal scores that
    reaches the best ``limit``: it came back full and its worst score equals the
    ``limit``-th best."""
    if len(hits) < asked or len(hits) <= limit:
        return False
    scores = sorted((h.score for h in hits), reverse=True)
    return scores[-1] >= scores[limit - 1]


Request = tuple[np.ndarray, int, SearchFilter | None]  # (query (dim,), limit, filter)
Fetcher = Callable[[list[Fetch]], list[list[Hit]]]


def search_settled(
    fetch: Fetcher,
    requests: Sequence[Request],
    exact: bool = False,
    with_terms: bool = False,
    payload: bool | tuple[str, ...] = True,
    ef: int | None = None,
    using: str = "",
) -> list[list[Hit]]:
    """Each request's ``settled`` top ``limit`` through ``fetch`` (the backend's engine, one
    batched call, ties in any order): one call asking ``limit + TIE_MARGIN`` for every
    request, then one more for a request whose run of ties reaches past its window, 4x wider
    each time. ``payload`` False: hits carry their item id only (cheaper to read); a tuple
    of keys: the item id and those. ``using``: the dense vector searched."""
    if not requests:
        return []
    first = [Fetch(k + TIE_MARGIN, q, filter=f, exact=exact, with_terms=with_terms,
                   payload=payload, ef=ef, using=using) for q, k, f in requests]  # fmt: skip
    out = []
    for (_, k, _), request, hits in zip(requests, first, fetch(first), strict=True):
        asked = request.limit
        while k > 0 and tie_at_cut(hits, k, asked) and asked < TIE_WINDOW_MAX:
            asked = min(asked * 4, TIE_WINDOW_MAX)
            (hits,) = fetch([replace(request, limit=asked)])
        out.append(settled(hits, k) if k > 0 else [])
    return out


def probe_idf(fetch: Fetcher, terms: Sequence[int]) -> dict[int, float]:
    """The IDF of each of ``terms`` that some item has, from the index itself: an item's
    score for a one-term query (weight 1) is that term's IDF times the item's weight of it
    (Qdrant's modifier)."""
    terms = sorted(set(terms))
    calls = [Fetch(1, terms=(t,), payload=False, stock_default=False, with_terms=True)
             for t in terms]  # fmt: skip
    return {
        t: hits[0].score / (hits[0].terms or {}).get(t, 1.0)
        for t, hits in zip(terms, fetch(calls), strict=True)
        if hits
    }


def lexical_slots(
    fetch: Fetcher, n_items: int, queries: Sequence[Sequence[QueryTerm]]
) -> tuple[list[list[Slot]], dict[int, float]]:
    """Each query's slots (``mrse.index.hybrid.query_slots``) and the IDF of the terms items
    have: one batched probe of every query term, then, if some term is in no item, one of its
    spelling variants."""
    known = probe_idf(fetch, [q.term for query in queries for q in query])
    missing = {q.word for query in queries for q in query if q.term not in known}
    if missing:
        known.update(probe_idf(fetch, [v for w in sorted(missing) for v in variants(w)]))
    return [query_slots(query, known, idf(n_items, 0)) for query in queries], known


def search_hybrid(
    fetch: Fetcher,
    count: Callable[[], int],
    requests: Sequence[Request],
    lexical: Sequence[Sequence[QueryTerm]],
    options: HybridOptions,
    exact: bool = False,
) -> list[list[Hit]]:
    """Dense and lexical channels fused (``mrse.index.hybrid``) for each request with terms in
    ``lexical`` (aligned with ``requests``; a request without terms is answered by the dense
    channel alone). Batched engine calls: the dense candidates (tie-settled, with their
    terms); the IDF probes (and, for words in no item, their spelling variants'); the lexical
    candidates; the dense scores of the lexical candidates the dense list lacks."""
    dense = search_settled(fetch, requests, exact, with_terms=True)
    out = [[replace(h, terms=None) for h in hs] for hs in dense]
    todo = [i for i, q in enumerate(lexical) if q and requests[i][1] > 0]
    if not todo:
        return out
    slots, known = lexical_slots(fetch, count(), [lexical[i] for i in todo])
    calls = [
        Fetch(options.candidates, terms=tuple(sorted({t for s in sl for t in s.terms})),
              filter=requests[i][2], payload=False, with_terms=True)
        for i, sl in zip(todo, slots, strict=True)
    ]  # fmt: skip
    entries, floors = [], []  # per request: admitted lexical candidates the dense list lacks
    for i, sl, hits in zip(todo, slots, fetch(calls), strict=True):
        cands = [candidate(h.item_id, 0.0, h.terms or {}, sl, known) for h in hits]
        full = len(hits) >= options.candidates
        floors.append(gain_floor(cands[-1] if full else None, options))
        have = {h.item_id for h in dense[i]}
        entries.append({c.item_id: c for c in admitted(cands, floors[-1], options)
                        if c.item_id not in have})  # fmt: skip
    extra_calls = [
        (i, Fetch(len(e), requests[i][0], filter=requests[i][2], ids=tuple(sorted(e)), exact=True))
        for i, e in zip(todo, entries, strict=True)
        if e
    ]
    extra = dict(zip((i for i, _ in extra_calls), fetch([c for _, c in extra_calls]), strict=True))
    for i, sl, e, floor in zip(todo, slots, entries, floors, strict=True):
        hits = {h.item_id: h for h in [*dense[i], *extra.get(i, [])]}
        cands = [candidate(h.item_id, h.score, h.terms or {}, sl, known) for h in dense[i]]
        more = [replace(e[h.item_id], dense=h.score) for h in extra.get(i, []) if h.item_id in e]
        out[i] = [
            replace(hits[f.item_id], score=f.score, terms=None, lexical=f.lexical,
                    found_by=f.found_by)
            for f in fuse(cands, more, requests[i][1], options, floor)
        ]  # fmt: skip
    return out


class FetchingIndex:
    """``search`` and ``search_many`` for a backend that implements ``_fetch``: dense search
    with equal scores settled (``search_settled``), or hybrid (``search_hybrid``) when the
    request carries lexical terms and the index holds the lexical channel."""

    has_lexical: bool = False
    has_photo: bool = False
    dim: int

    def _fetch(self, requests: list[Fetch]) -> list[list[Hit]]:
        raise NotImplementedError

    def _existing(self, item_ids: Sequence[str], with_vector: bool) -> list:
        """The stored points of ``item_ids`` that exist (``payload``, ``vector`` when asked)."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def warm(self) -> None:
        """Nothing to bring in (a backend that keeps something besides the engine says)."""

    def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {
            r.payload["item_id"]: np.asarray(dense_part(r.vector), dtype=np.float32)
            for r in self._existing(item_ids, with_vector=True)
        }

    def payloads(self, item_ids: Sequence[str]) -> dict[str, dict]:
        return {r.payload["item_id"]: dict(r.payload)
                for r in self._existing(item_ids, with_vector=False)}  # fmt: skip

    def search(
        self,
        query: np.ndarray,
        limit: int,
        query_filter: SearchFilter | None = None,
        exact: bool = False,
        terms: Sequence[QueryTerm] | None = None,
        hybrid: HybridOptions | None = None,
    ) -> list[Hit]:
        lexical = None if terms is None else [tuple(terms)]
        (hits,) = self.search_many(
            np.asarray(query)[None], [limit], [query_filter], exact, lexical, hybrid
        )
        return hits

    def among(self, item_ids: Sequence[str], query_filter: SearchFilter | None = None) -> list[Hit]:
        """The items of ``item_ids`` that exist and ``query_filter`` keeps (None: in stock), in
        the order of ``item_ids``, with their payloads (scores mean nothing)."""
        if not item_ids:
            return []
        probe = np.full(self.dim, 1.0 / np.sqrt(self.dim), np.float32)  # any unit vector
        (hits,) = self._fetch(
            [Fetch(len(item_ids), probe, filter=query_filter, ids=tuple(item_ids), exact=True)]
        )
        by_id = {h.item_id: h for h in hits}
        return [by_id[i] for i in item_ids if i in by_id]

    def search_photos(
        self,
        sketches: np.ndarray,
        limits: Sequence[int],
        filters: Sequence[SearchFilter | None],
    ) -> list[list[Hit]]:
        requests = list(zip(sketches, limits, filters, strict=True))
        if not self.has_photo:
            return [[] for _ in requests]
        return search_settled(self._fetch, requests, payload=False, using=PHOTO)

    def photo_candidates(
        self,
        queries: np.ndarray,
        sketches: np.ndarray,
        limits: Sequence[int],
        own: int,
        filters: Sequence[SearchFilter | None],
    ) -> list[list[Hit]]:
        towers = search_settled(self._fetch, list(zip(queries, limits, filters, strict=True)),
                                payload=(PHOTO_KEY,))  # fmt: skip
        near = self.search_photos(sketches, [own] * len(queries), filters)
        calls = []  # the towers' exact score of the channel's candidates the towers lack
        for n, (q, f, ths, nhs) in enumerate(zip(queries, filters, towers, near, strict=True)):
            have = {h.item_id for h in ths}
            ids = tuple(h.item_id for h in nhs if h.item_id not in have)
            if ids:
                calls.append((n, Fetch(len(ids), q, filter=f, ids=ids, exact=True,
                                       payload=(PHOTO_KEY,))))  # fmt: skip
        extra = dict(zip((n for n, _ in calls), self._fetch([c for _, c in calls]), strict=True))
        out = []
        for n, (ths, nhs) in enumerate(zip(towers, near, strict=True)):
            both = {h.item_id for h in nhs}  # the towers' hits are "dense" already
            out.append([*(replace(h, found_by="both") if h.item_id in both else h for h in ths),
                        *(replace(h, found_by="photo") for h in extra.get(n, []))])  # fmt: skip
        return out

    def search_many(
        self,
        queries: np.ndarray,
        limits: Sequence[int],
        filters: Sequence[SearchFilter | None],
        exact: bool = False,
        lexical: Sequence[Sequence[QueryTerm]] | None = None,
        hybrid: HybridOptions | None = None,
        payload: bool | tuple[str, ...] = True,
        ef: int | None = None,
    ) -> list[list[Hit]]:
        requests = list(zip(queries, limits, filters, strict=True))
        if lexical is None or hybrid is None or not self.has_lexical:
            return search_settled(self._fetch, requests, exact, payload=payload, ef=ef)
        if len(lexical) != len(requests):
            raise ValueError(f"{len(lexical)} lexical queries for {len(requests)} requests")
        return search_hybrid(self._fetch, self.count, requests, lexical, hybrid, exact)


class VectorIndex(Protocol):
    """Cosine-similarity index of item vectors with filterable payload and, where
    ``has_lexical``, each item's lexical terms (``mrse.features.lexical``); where
    ``has_photo``, the photo sketch of each item with one (``PHOTO``, from its payload's
    ``PHOTO_KEY``)."""

    dim: int
    has_lexical: bool
    has_photo: bool

    def upsert(
        self,
        item_ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict],
        terms: Sequence[Mapping[int, float]] | None = None,
    ) -> None:
        """Insert or replace items; ``vectors`` is (N, dim); ``terms``: each item's lexical
        term ids and weights (``mrse.features.lexical.item_terms``; None: none)."""
        ...

    def delete(self, item_ids: Sequence[str]) -> None: ...

    def patch_payloads(self, updates: Mapping[str, dict]) -> None:
        """Merge ``updates[item_id]``'s keys into each existing item's payload (ids not in the
        index are left alone); vectors and other keys do not change."""
        ...

    def vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored (dim,) vectors of the items that exist, by item id."""
        ...

    def payloads(self, item_ids: Sequence[str]) -> dict[str, dict]:
        """The stored payloads of the items that exist, by item id: a read by id, no filter
        (for the items a filtered search has just chosen; ``among`` applies a filter)."""
        ...

    def among(self, item_ids: Sequence[str], query_filter: SearchFilter | None = None) -> list[Hit]:
        """The items of ``item_ids`` that exist and ``query_filter`` keeps, in that order."""
        ...

    def search(
        self,
        query: np.ndarray,
        limit: int,
        query_filter: SearchFilter | None = None,
        exact: bool = False,
        terms: Sequence[QueryTerm] | None = None,
        hybrid: HybridOptions | None = None,
    ) -> list[Hit]:
        """Top ``limit`` items for one (dim,) query, best first, equal scores in item id order
        (``search_settled``); fused with the lexical channel for ``terms`` when ``hybrid``."""
        ...

    def search_many(
        self,
        queries: np.ndarray,
        limits: Sequence[int],
        filters: Sequence[SearchFilter | None],
        exact: bool = False,
        lexical: Sequence[Sequence[QueryTerm]] | None = None,
        hybrid: HybridOptions | None = None,
        payload: bool | tuple[str, ...] = True,
        ef: int | None = None,
    ) -> list[list[Hit]]:
        """One search per row of ``queries`` (B, dim), planned together; results in order;
        ``lexical``: each request's query terms (``mrse.features.lexical.lexical_query``;
        fused when ``hybrid`` is given); ``payload`` False: dense hits with their item id only,
        a tuple of keys: and those (a caller that keeps few of many hits reads the payloads of
        those with ``among``); ``ef``: the HNSW candidates of each dense search, when not the
        index's own (``EdgeOptions.ef_for``)."""
        ...

    def search_photos(
        self,
        sketches: np.ndarray,
        limits: Sequence[int],
        filters: Sequence[SearchFilter | None],
    ) -> list[list[Hit]]:
        """The photo channel's own nearest: for each row of ``sketches`` (B, SKETCH_DIM), the
        ``limits[b]`` items whose photo sketch is nearest (score: the sketches' cosine), among
        those ``filters[b]`` keeps, ids only; nothing for an index without the channel."""
        ...

    def photo_candidates(
        self,
        queries: np.ndarray,
        sketches: np.ndarray,
        limits: Sequence[int],
        own: int,
        filters: Sequence[SearchFilter | None],
    ) -> list[list[Hit]]:
        """Shop by photo's candidates, ids and sketches (``PHOTO_KEY``) only: for each photo,
        the towers' best ``limits[b]`` for ``queries[b]`` (B, dim), then those of the photo
        channel's nearest ``own`` to ``sketches[b]`` (B, SKETCH_DIM) the towers' lack, scored
        exactly by the towers' vector; ``found_by`` "dense", "both" or "photo"."""
        ...

    def count(self) -> int: ...

    def warm(self) -> None:
        """Bring into memory what searches read besides the engine's own structures (before
        traffic; may take a moment)."""
        ...

    def close(self) -> None: ...
