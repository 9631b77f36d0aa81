"""Hard negatives: the highest-scoring items that are not known positives of the query.

Two sources of candidates, chosen by ``loss.mining``:

- ``index``: exact search over every item's embedding, re-encoded every ``refresh_every``
  steps. Cost per step grows with the catalog: (B x N) scores plus a whole-catalog pass of the
  item tower per refresh.
- ``memory``: a cross-batch memory (Wang et al., "Cross-Batch Memory for Embedding Learning",
  CVPR 2020) of the item embeddings the last few batches computed anyway (positives, uniform
  and hard negatives). Cost per step: (B x M) scores, constant in the catalog size, and the
  embeddings are at most a few steps old instead of up to ``refresh_every`` steps.

Either way, other shoppers' clicks for the same query words are relevant, not negative: they
are excluded.
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
    rows_of: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-scoring non-excluded items per query.

    Args:
        query: (B, D) query vectors; items: (N, D) candidate embeddings.
        exclude: B sets of catalog rows that must not be negatives (the positive, other known
            positives of the same query text, ...).
        k: negatives per query; pool: how many top candidates to scan (>= k).
        rows_of: (N,) long, the catalog row of each candidate (default: candidate i is row i).
            A row met twice in the pool is picked once.

    Returns:
        rows (B, k) long catalog rows (-1 padding) and valid (B, k) bool.
    """
    rows = torch.full((query.shape[0], k), -1, dtype=torch.long)
    if items.shape[0] == 0:
        return rows, rows >= 0
    pool = min(max(pool, k), items.shape[0])
    with torch.no_grad():
        top = (query @ items.T).topk(pool, dim=1).indices  # (B, pool)
    if rows_of is not None:
        top = rows_of[top]
    for b, cand in enumerate(top.tolist()):
        picked = [r for r in dict.fromkeys(cand) if r not in exclude[b]][:k]
        rows[b, : len(picked)] = torch.tensor(picked, dtype=torch.long)
    return rows, rows >= 0


class ItemMemory:
    """A first-in-first-out memory of the ``size`` newest item embeddings and their rows.

    ``push`` writes a batch's (detached) embeddings over the oldest slots; ``embeddings`` and
    ``rows`` are the filled part. A row pushed again simply gets a newer slot; the older copy
    ages out (``mine_hard_negatives`` picks a row once however often it appears).
    """

    def __init__(self, size: int, dim: int) -> None:
        if size < 1:
            raise ValueError("memory size must be >= 1")
        self._emb = torch.zeros(size, dim)
        self._rows = torch.full((size,), -1, dtype=torch.long)
        self._next = 0
        self._filled = 0

    def __len__(self) -> int:
        return self._filled

    def push(self, rows: torch.Tensor, embeddings: torch.Tensor) -> None:
        """rows (n,) long, embeddings (n, D); only the last ``size`` are kept if n > size."""
        size = self._emb.shape[0]
        rows, embeddings = rows[-size:], embeddings.detach()[-size:]
        slots = (self._next + torch.arange(len(rows))) % size
        self._emb[slots] = embeddings.to(self._emb.dtype)
        self._rows[slots] = rows
        self._next = int((self._next + len(rows)) % size)
        self._filled = min(size, self._filled + len(rows))

    @property
    def embeddings(self) -> torch.Tensor:
        """(M, D), M = ``len(self)``."""
        return self._emb[: self._filled]

    @property
    def rows(self) -> torch.Tensor:
        """(M,) catalog rows of ``embeddings``."""
        return self._rows[: self._filled]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a resumed run needs to continue with the same memory."""
        pos = torch.tensor([self._next, self._filled])
        return {"embeddings": self._emb.clone(), "rows": self._rows.clone(), "pos": pos}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["embeddings"].shape != self._emb.shape:
            raise ValueError(
                f"saved memory is {tuple(state['embeddings'].shape)}, "
                f"this run's is {tuple(self._emb.shape)}"
            )
        self._emb.copy_(state["embeddings"])
        self._rows.copy_(state["rows"])
        self._next, self._filled = (int(x) for x in state["pos"])
