"""What settling equal scores by item id costs an Edge index search.

    .venv/bin/python scripts/index_tie_cost.py

25,000 random unit vectors (128 dimensions) with catalog-like payloads under an HNSW graph;
256 queries in batches of 16 at k = 10 and k = 100, through ``EdgeIndex.search_many`` (which
asks for ``k + 1`` hits and orders ties by item id) and through its bare batched fetch of
``k`` hits (``EdgeIndex._fetch``: what ``search_many`` did before), alternated, five rounds;
prints the median milliseconds per batch and the ratio.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from mrse.index.base import Fetch
from mrse.index.edge import EdgeIndex

N, DIM, QUERIES, BATCH, ROUNDS = 25_000, 128, 256, 16, 5


def main() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(N, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = [f"{i:010d}" for i in range(N)]
    payloads = [
        {"category": f"c{i % 20}", "brand": "b", "price": float(i % 100), "title": "t" * 80}
        for i in range(N)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        index = EdgeIndex(f"{tmp}/edge", DIM)
        index.upsert(ids, vecs, payloads)
        index.optimize()
        queries = vecs[rng.integers(0, N, QUERIES)]
        queries = queries + 0.3 * rng.normal(size=queries.shape).astype(np.float32)

        def bare(qs: np.ndarray, k: int) -> None:
            index._fetch([Fetch(k, q) for q in qs])

        def settled(qs: np.ndarray, k: int) -> None:
            index.search_many(qs, [k] * len(qs), [None] * len(qs))

        for k in (10, 100):
            times: dict[str, list[float]] = {"bare": [], "settled": []}
            for _ in range(ROUNDS):
                for name, fn in (("bare", bare), ("settled", settled)):
                    t = time.perf_counter()
                    for s in range(0, QUERIES, BATCH):
                        fn(queries[s : s + BATCH], k)
                    times[name].append((time.perf_counter() - t) / (QUERIES / BATCH) * 1000)
            b, s = np.median(times["bare"]), np.median(times["settled"])
            print(f"k={k}: ms per batch of {BATCH}: bare {b:.2f}, settled {s:.2f}, x{s / b:.3f}")
        index.close()


if __name__ == "__main__":
    main()
