"""A trained run fused with the lexical channel, offline: what hybrid serving returns.

The dense scores are the run's (``ModelRetriever``, exact over the catalog); the lexical
channel is computed here exactly from the items' terms (``mrse.features.lexical``) with the
IDF Qdrant's modifier gives (``mrse.index.hybrid.idf``, over the items that have terms) and
the same slots for misspelt words (``query_slots``); the candidates and the fusion are the
index's own (``admitted``, ``fuse``): the dense channel's best ``k`` and the lexical channel's
best ``candidates``. So ``mrse eval --retrieval hybrid``
measures the served behaviour on any dataset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from mrse.features.lexical import TITLE_WEIGHT, lexical_query, variants
from mrse.index.hybrid import (
    Candidate,
    HybridOptions,
    admitted,
    fuse,
    gain_floor,
    idf,
    lexical_terms_for,
    query_slots,
)
from mrse.index.points import lexical_terms
from mrse.retrieval.base import QueryContext, Ranking
from mrse.retrieval.model import EXPLAIN_TOP, ModelRetriever


class HybridRetriever:
    def __init__(self, dense: ModelRetriever, options: HybridOptions | None = None) -> None:
        self.dense = dense
        self.options = options or HybridOptions()
        self.name = f"{dense.name}+lexical"
        terms = lexical_terms(dense.dataset.items)  # the catalog's rows are the dataset's
        postings: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for row, ts in enumerate(terms):
            for t, w in ts.items():
                postings[t].append((row, w))
        self.postings = {
            t: (np.array([r for r, _ in p]), np.array([w for _, w in p]))
            for t, p in postings.items()
        }
        self.n_docs = sum(1 for ts in terms if ts)
        self.title_terms = np.array([sum(w >= TITLE_WEIGHT for w in ts.values()) for ts in terms])
        self.item_ids = np.asarray(dense.catalog.item_ids, dtype=object)
        self.id_order = np.argsort(np.argsort(self.item_ids.astype(str)))  # ties: by item id

    def lexical(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For one query, over every item: (N,) coverage, (N,) the share of its title the query
        is, when its title satisfies every slot (``Candidate.title``), and (N,) the engine's
        lexical score, as the index computes them
        (``mrse.index.base.search_hybrid``); zeros for a query the lexical channel leaves to the
        towers (``lexical_terms_for``)."""
        n = len(self.item_ids)
        cov, titled, engine = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n)
        query = lexical_terms_for(lexical_query(text), self.dense.run.taught, self.options)
        if not query:
            return cov, np.zeros(n), engine
        probed = {q.term for q in query} | {v for q in query if q.term not in self.postings
                                            for v in variants(q.word)}  # fmt: skip
        known = {t: idf(self.n_docs, len(self.postings[t][0])) for t in probed
                 if t in self.postings}  # fmt: skip
        slots = query_slots(query, known, idf(n, 0))
        for slot in slots:
            held = [self.postings[t] for t in slot.terms if t in self.postings]
            rows = np.unique(np.concatenate([r for r, _ in held])) if held else np.zeros(0, int)
            cov[rows] += slot.weight
            top = [r[w >= TITLE_WEIGHT] for r, w in held]
            titled[np.unique(np.concatenate(top)) if top else np.zeros(0, int)] += 1
            for t in slot.terms:
                if t in self.postings:
                    r, w = self.postings[t]
                    engine[r] += known[t] * w
        wanted = {t for s in slots for t in s.terms}
        in_title = np.zeros(n)  # the query's terms in each item's title
        for t in wanted & self.postings.keys():
            r, w = self.postings[t]
            in_title[r[w >= TITLE_WEIGHT]] += 1
        share = np.where(titled == len(slots), in_title / np.maximum(self.title_terms, 1), 0.0)
        total = sum(s.weight for s in slots)
        return (cov / total if total > 0 else cov), share, engine

    def search(self, queries: Sequence[QueryContext], k: int) -> list[Ranking]:
        out, scores = self.dense.scores(queries)
        scores = scores.numpy().astype(np.float64)
        opts = self.options
        rankings = []
        for qi, q in enumerate(queries):
            s = scores[qi]
            cov, title, engine = self.lexical(q.query)
            ids = self.item_ids
            dense = [Candidate(ids[r], s[r], cov[r], title[r], engine[r])
                     for r in np.lexsort((self.id_order, -s))[:k]]  # fmt: skip
            order = np.lexsort((self.id_order, -engine))[: opts.candidates]
            lexical = [Candidate(ids[r], s[r], cov[r], title[r], engine[r])
                       for r in order if engine[r] > 0]  # fmt: skip
            floor = gain_floor(lexical[-1] if len(lexical) >= opts.candidates else None, opts)
            fused = fuse(dense, admitted(lexical, floor, opts), k, opts, floor)
            rows = np.array([self.dense.catalog.index[f.item_id] for f in fused], dtype=np.int64)
            expl = self.dense.explain(out, qi, rows[:EXPLAIN_TOP])
            if expl is not None:
                expl = [
                    {**e, "lexical": round(f.lexical, 5), "found_by": f.found_by}
                    for e, f in zip(expl, fused, strict=False)
                ]
            rankings.append(
                Ranking(
                    item_ids=np.array([f.item_id for f in fused], dtype=object),
                    scores=np.array([f.score for f in fused], dtype=np.float32),
                    explanations=expl,
                )
            )
        return rankings
