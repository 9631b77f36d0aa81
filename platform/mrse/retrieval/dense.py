"""Zero-shot dense retrieval: MiniLM query vs MiniLM title + description, exact inner product."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from mrse.retrieval.base import QueryContext, Ranking, top_k

# An item without text has no text vector; it ranks below every item that has one.
NO_TEXT_SCORE = -2.0


class DenseRetriever:
    """Exact cosine search over precomputed item text vectors.

    Args:
        item_ids: (N,) ids.
        item_vectors: (N, D) unit vectors.
        has_text: (N,) False for items with no text.
        encode_queries: texts -> (Q, D) unit vectors.
    """

    name = "dense"

    def __init__(
        self,
        item_ids: Sequence[str],
        item_vectors: np.ndarray,
        has_text: np.ndarray,
        encode_queries: Callable[[list[str]], np.ndarray],
        batch_size: int = 256,
    ) -> None:
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.item_vectors = item_vectors.astype(np.float32)
        self.has_text = has_text
        self.encode_queries = encode_queries
        self.batch_size = batch_size

    def search(self, queries: Sequence[QueryContext], k: int) -> list[Ranking]:
        out: list[Ranking] = []
        for s in range(0, len(queries), self.batch_size):
            chunk = queries[s : s + self.batch_size]
            q = self.encode_queries([c.query for c in chunk])  # (Q, D)
            scores = q @ self.item_vectors.T  # (Q, N)
            scores[:, ~self.has_text] = NO_TEXT_SCORE
            out.extend(top_k(scores, self.item_ids, k))
        return out
