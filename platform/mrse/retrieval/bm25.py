"""BM25 over title + description (the ``bm25s`` library, English stop words, Snowball stemmer)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import bm25s
import numpy as np
import Stemmer

from mrse.retrieval.base import QueryContext, Ranking, top_k

logger = logging.getLogger(__name__)


class BM25Retriever:
    """Lexical baseline. Items without text get no score (they cannot match any word)."""

    name = "bm25"

    def __init__(self, item_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.item_ids = np.asarray(item_ids, dtype=object)
        self._stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(
            list(texts), stopwords="en", stemmer=self._stemmer, show_progress=False
        )
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every item for ``query``: (N,)."""
        tokens = bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, show_progress=False)
        vocab_ids = tokens.ids[0]
        if not vocab_ids:
            return np.zeros(len(self.item_ids), dtype=np.float32)
        inverse = {i: w for w, i in tokens.vocab.items()}
        words = [inverse[i] for i in vocab_ids]
        return self._bm25.get_scores(words).astype(np.float32)

    def search(self, queries: Sequence[QueryContext], k: int) -> list[Ranking]:
        out = []
        for q in queries:
            out.extend(top_k(self.scores(q.query)[None, :], self.item_ids, k))
        return out
