"""Query text -> MiniLM vector for serving: the encoder choice and the cache of frequent queries.

``make bench`` compares the designs: fp32 MiniLM in PyTorch, int8 MiniLM on ONNX Runtime, and
either behind an LRU cache warmed with the event log's most frequent queries.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping

import numpy as np

logger = logging.getLogger(__name__)

QUERY_ENCODERS = ("minilm", "minilm-int8")


def normalise_query(query: str) -> str:
    """The cache key (and what is encoded): lower case, single spaces."""
    return " ".join(query.lower().split())


class QueryVectors:
    """Query vectors behind an LRU cache of ``size`` queries (0: no cache); thread-safe."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], size: int = 50_000) -> None:
        self.encode = encode
        self.size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __call__(self, query: str) -> np.ndarray:
        """(dim,) vector of one query."""
        return self.many([query])[0]

    def many(self, queries: list[str]) -> np.ndarray:
        """(N, dim) vectors of ``queries``: cache hits looked up, misses encoded in one batch."""
        keys = [normalise_query(q) for q in queries]
        found: dict[str, np.ndarray] = {}
        if self.size:
            with self._lock:
                for key in keys:
                    vec = self._cache.get(key)
                    if vec is not None:
                        self._cache.move_to_end(key)
                        found[key] = vec
                self.hits += sum(k in found for k in keys)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            vecs = self.encode(missing)
            with self._lock:
                self.misses += sum(k not in found for k in keys)
                for key, vec in zip(missing, vecs, strict=True):
                    found[key] = vec
                    if self.size:
                        self._put(key, vec)
        return np.stack([found[k] for k in keys])

    def _put(self, key: str, vec: np.ndarray) -> None:
        self._cache[key] = vec
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)

    def warm(self, queries: list[str], batch_size: int = 256) -> int:
        """Encode ``queries`` (most frequent last, so they are evicted last) into the cache."""
        if not self.size:
            return 0
        keys = list(dict.fromkeys(normalise_query(q) for q in queries))[-self.size :]
        for s in range(0, len(keys), batch_size):
            chunk = keys[s : s + batch_size]
            vecs = self.encode(chunk)
            with self._lock:
                for key, vec in zip(chunk, vecs, strict=True):
                    self._put(key, vec)
        return len(keys)


def query_encoder(name: str, threads: int = 1) -> Callable[[list[str]], np.ndarray]:
    """The ``encode(texts) -> (N, 384)`` function of encoder ``name`` (one of QUERY_ENCODERS)."""
    if name == "minilm":
        from mrse.encoders.text import TextEncoder

        return TextEncoder().encode
    if name == "minilm-int8":
        from mrse.encoders.query_onnx import OnnxQueryEncoder

        return OnnxQueryEncoder(threads=threads).encode
    raise ValueError(f"unknown query encoder {name!r}; choose one of {', '.join(QUERY_ENCODERS)}")


def frequent_queries(log: Mapping[str, int], n: int) -> list[str]:
    """The ``n`` most frequent queries of an event log (query -> count, as
    ``load_query_log`` reads it), normalised, least frequent first."""
    counts: Counter[str] = Counter()
    for query, count in log.items():
        key = normalise_query(query)
        if key:
            counts[key] += count
    return [q for q, _ in counts.most_common(n)][::-1] if n > 0 else []


def build_query_vectors(
    encoder: str, cache_size: int, warm_from: Mapping[str, int] | None = None, warm: int = 0
) -> QueryVectors:
    """The query encoder behind its cache, warmed with the most frequent of ``warm_from``."""
    vectors = QueryVectors(query_encoder(encoder), cache_size)
    if warm_from is not None and warm and cache_size:
        n = vectors.warm(frequent_queries(warm_from, min(warm, cache_size)))
        logger.info("query cache warmed with the %d most frequent queries", n)
    return vectors
