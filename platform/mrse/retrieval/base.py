"""What a retriever is: queries with their point-in-time context in, ranked item ids out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mrse.data.history import UserHistory


@dataclass(frozen=True)
class QueryContext:
    """One search request as the system sees it at query time.

    ``history`` holds only the user's events strictly before ``ts`` (empty for anonymous
    queries), so no retriever can see the future.
    """

    qid: str
    query: str
    user_id: str | None
    ts: np.datetime64 | None
    history: UserHistory


@dataclass(frozen=True)
class Ranking:
    """Top-k result of one query: ``item_ids`` (k,) best first and their ``scores`` (k,).

    ``explanations``, when the retriever gives them, holds one dict per leading result with
    each modality's and expert pair's additive share of the score.
    """

    item_ids: np.ndarray
    scores: np.ndarray
    explanations: list[dict[str, float]] | None = None


class Retriever(Protocol):
    """Anything that ranks a catalog for a batch of queries."""

    name: str

    def search(self, queries: Sequence[QueryContext], k: int) -> list[Ranking]: ...


def top_k(scores: np.ndarray, item_ids: np.ndarray, k: int) -> list[Ranking]:
    """Exact top-k of a (Q, N) score matrix, best first, ties broken by catalog order."""
    k = min(k, scores.shape[1])
    if k == 0:
        return [Ranking(item_ids[:0], scores[i, :0]) for i in range(scores.shape[0])]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    out = []
    for q in range(scores.shape[0]):
        idx = part[q]
        order = np.lexsort((idx, -scores[q, idx]))
        idx = idx[order]
        out.append(Ranking(item_ids=item_ids[idx], scores=scores[q, idx]))
    return out
