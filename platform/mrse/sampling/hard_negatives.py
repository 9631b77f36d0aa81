"""Hard negatives mined by exact search over the current item embeddings.

The trainer refreshes the index (all item embeddings) every few hundred examples; for each
training query the miner returns the highest-scoring items that are not known positives of
that query text (other shoppers' clicks for the same words are relevant, not negative).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def mine_hard_negatives(
    query: torch.Tensor,
    items: torch.Tensor,
    exclude: Sequence[set[int] | frozenset[int]],
    k: int,
    pool: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-scoring non-excluded items per query.

    Args:
        query: (B, D) query vectors; items: (N, D) item index.
        exclude: B sets of catalog rows that must not be negatives (the positive, other known
            positives of the same query text, ...).
        k: negatives per query; pool: how many top items to scan (>= k).

    Returns:
        rows (B, k) long (-1 padding) and valid (B, k) bool.
    """
    pool = min(max(pool, k), items.shape[0])
    with torch.no_grad():
        top = (query @ items.T).topk(pool, dim=1).indices.tolist()  # (B, pool)
    rows = torch.full((query.shape[0], k), -1, dtype=torch.long)
    for b, cand in enumerate(top):
        picked = [r for r in cand if r not in exclude[b]][:k]
        rows[b, : len(picked)] = torch.tensor(picked, dtype=torch.long)
    return rows, rows >= 0
