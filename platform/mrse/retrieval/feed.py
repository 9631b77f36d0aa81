"""A trained run's home feed, measured as the server answers ``Recommend``.

``interests`` (served): each of the shopper's newest ``FEED_INTERESTS`` distinct items is an
interest, weighted by its age, and the catalog is ranked by its best weighted similarity to one
of them in the item tower's space (``mrse.index.examples``; exact here, one ANN search per
interest in the server). ``vector``: the query tower's one vector for the profile with nothing
typed (what ``feed_examples`` trains; measured, not served: docs/model.md says why).

A shopper with no history gets recent popularity, as the server's feed does
(``personalized=false``); here popularity as of the request's time, from the interactions the
evaluation allows (``mrse.retrieval.recommenders``), so no model sees the future.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrse.data.dataset import Dataset
from mrse.data.history import EMPTY_HISTORY
from mrse.encoders.cache import FeatureCache
from mrse.features.popularity import top_rows
from mrse.features.queries import FEED_QUERY, snapshot_profiles, to_seconds
from mrse.index.examples import (
    FEED_INTERESTS,
    best_score,
    feed_interests,
    interest_depth,
    interest_weights,
)
from mrse.retrieval.base import QueryContext
from mrse.retrieval.model import ModelRetriever
from mrse.retrieval.recommenders import Interactions, recent_popular
from mrse.training.checkpoint import Run

FEED_MODES = ("interests", "vector")


class FeedRetriever:
    """``run``'s feed for (shopper, time) requests over ``dataset``'s catalog."""

    def __init__(
        self,
        run: Run,
        dataset: Dataset,
        cache: FeatureCache,
        hide: str | None = None,
        mode: str = "interests",
        interests: int = FEED_INTERESTS,
    ) -> None:
        self.retriever = ModelRetriever(run, dataset, cache, hide=hide)
        self.name = (
            self.retriever.name if mode == "interests" else f"{self.retriever.name} ({mode})"
        )
        if mode not in FEED_MODES:
            raise ValueError(f"unknown feed {mode!r}; choose one of {', '.join(FEED_MODES)}")
        self.mode = mode
        self.interests = interests

    def rank(
        self,
        inter: Interactions,
        requests: Sequence[tuple[str, np.datetime64]],
        k: int = 100,
        batch_size: int = 256,
    ) -> list[list[str]]:
        """The best ``k`` item ids of ``inter``'s catalog for each request, best first."""
        ids = self.retriever.catalog.item_ids
        row_of = {i: n for n, i in enumerate(inter.item_ids)}
        to_inter = np.array([row_of[i] for i in ids], np.int64)
        out: list[list[str]] = []
        for s in range(0, len(requests), batch_size):
            part = requests[s : s + batch_size]
            queries = [QueryContext(f"feed-{s + n}", FEED_QUERY, u, ts, EMPTY_HISTORY)
                       for n, (u, ts) in enumerate(part)]  # fmt: skip
            if self.mode == "vector":
                rows = self.retriever.scores(queries)[1].numpy()  # (B, N)
            else:
                profiles = snapshot_profiles(self.retriever.dataset.events,
                                             self.retriever.catalog, part,
                                             self.retriever.run.config.profile)  # fmt: skip
            for n, (user, ts) in enumerate(part):
                at = to_seconds(ts)
                row = rows[n] if self.mode == "vector" else self._interests(profiles[n], at, k)
                if not len(inter.history(user, at)) or row is None:
                    out.append(list(inter.item_ids[recent_popular(inter, at, k)]))
                    continue
                out.append(list(inter.item_ids[to_inter[top_rows(row, k)]]))
        return out

    def _interests(self, profile, at: float, k: int) -> np.ndarray | None:
        """(N,) the catalog's best weighted similarity to one of the shopper's interests (None
        when none of their recent items is in the catalog)."""
        index = self.retriever.catalog.index
        picked = feed_interests(profile.recent_items, profile.recent_ts, self.interests)
        recent = [(index[i], t) for i, t in picked if i in index]
        if not recent:
            return None
        items = self.retriever.items.numpy()
        rows = np.array([r for r, _ in recent], np.int64)
        sims = items[rows] @ items.T  # (H, N)
        # each interest's list as deep as the server's search asks (interest_depth)
        depth = interest_depth(k, len(rows))
        if depth < sims.shape[1]:
            cut = np.partition(sims, -depth, axis=1)[:, -depth][:, None]
            sims = np.where(sims >= cut, sims, -np.inf)
        weights = interest_weights([t for _, t in recent], at,
                                   self.retriever.run.config.profile.half_life_days)  # fmt: skip
        return best_score(sims, weights)
