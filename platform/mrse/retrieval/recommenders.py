"""The recommenders shops already use, as peers of MRSE's feed (``mrse eval --task recommend``).

Each ranks the whole catalog for a shopper at a time from the interactions it may learn from
(``mrse.evaluation.recommend.fit_events``). The library ones run as their authors document them,
with their default hyper-parameters:

- ``popularity``: purchases before the moment; ``recent-popularity``: the same, time-decayed
  (``mrse.features.popularity``);
- ``repurchase``: the shopper's own items, latest first, then recent popularity;
- ``item-knn``: ``implicit``'s item-item cosine recommender (co-purchase), K=20;
- ``als``, ``bpr``: ``implicit``'s matrix factorisations;
- ``vbpr``: ``cornac``'s visual BPR with the items' photo features (EfficientNet-Lite0).

A shopper with no history gets recent popularity from every peer (and from MRSE: its feed
answers ``personalized=false`` there), and a list a peer leaves short (item-knn, repurchase,
vbpr's items never bought) is filled with recent popularity.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from mrse.features.popularity import (
    RECENT_HALF_LIFE_DAYS,
    decayed_counts,
    top_rows,
    unix_seconds,
)
from mrse.features.queries import to_seconds

logger = logging.getLogger(__name__)

RECOMMEND_PEERS = ("popularity", "recent-popularity", "repurchase", "item-knn", "als", "bpr",
                   "vbpr")  # fmt: skip


@dataclass(frozen=True)
class Interactions:
    """The interactions a recommender may learn from, as rows of a catalog.

    Attributes:
        item_ids: (N,) the catalog; users: shopper id -> row.
        user_rows, item_rows: (E,); ts: (E,) Unix seconds.
    """

    item_ids: np.ndarray
    users: dict[str, int]
    user_rows: np.ndarray
    item_rows: np.ndarray
    ts: np.ndarray

    @staticmethod
    def build(events: pd.DataFrame, item_ids: Sequence[str]) -> Interactions:
        """From events with ``user_id``, ``item_id``, ``ts``; items outside the catalog dropped."""
        ids = np.asarray(item_ids, dtype=object)
        index = {i: n for n, i in enumerate(ids)}
        ev = events[events["item_id"].isin(index.keys())]
        users = {u: n for n, u in enumerate(sorted(ev["user_id"].astype(str).unique()))}
        return Interactions(
            item_ids=ids,
            users=users,
            user_rows=ev["user_id"].astype(str).map(users).to_numpy(np.int64),
            item_rows=ev["item_id"].map(index).to_numpy(np.int64),
            ts=unix_seconds(ev["ts"]),
        )

    def matrix(self) -> csr_matrix:
        """(U, N) purchase counts."""
        data = np.ones(len(self.user_rows), np.float32)
        shape = (len(self.users), len(self.item_ids))
        return csr_matrix((data, (self.user_rows, self.item_rows)), shape=shape).tocsr()

    def history(self, user: str, at: float) -> np.ndarray:
        """Item rows of ``user``'s interactions before ``at``, latest first."""
        u = self.users.get(user)
        if u is None:
            return np.zeros(0, np.int64)
        mine = (self.user_rows == u) & (self.ts < at)
        order = np.argsort(-self.ts[mine], kind="stable")
        return self.item_rows[mine][order]


def fill(first: Sequence[int], fallback: np.ndarray, k: int) -> np.ndarray:
    """``first`` (item rows, best first, duplicates dropped), then ``fallback``'s rows not in it,
    ``k`` in all."""
    seen: dict[int, None] = dict.fromkeys(int(r) for r in first)
    for r in fallback:
        if len(seen) >= k:
            break
        seen.setdefault(int(r), None)
    return np.fromiter(seen, np.int64)[:k]


def recent_popular(inter: Interactions, at: float, k: int) -> np.ndarray:
    """The ``k`` rows of the highest time-decayed popularity before ``at``."""
    scores = decayed_counts(inter.item_rows, inter.ts, at, len(inter.item_ids))
    return top_rows(scores, k)


def peer_rankings(
    name: str,
    inter: Interactions,
    requests: Sequence[tuple[str, np.datetime64]],
    k: int = 100,
    photo_features: np.ndarray | None = None,
    half_life_days: float = RECENT_HALF_LIFE_DAYS,
) -> list[list[str]]:
    """Peer ``name``'s top ``k`` item ids for every (shopper, time) request.

    ``photo_features``: (N, F) rows of ``inter.item_ids`` (``vbpr`` only; zeros for an item
    without a photo)."""
    if name not in RECOMMEND_PEERS:
        raise ValueError(f"unknown peer {name!r}; choose one of {', '.join(RECOMMEND_PEERS)}")
    n = len(inter.item_ids)
    at = [to_seconds(ts) for _, ts in requests]
    fallback = [
        top_rows(decayed_counts(inter.item_rows, inter.ts, t, n, half_life_days), k) for t in at
    ]
    if name == "popularity":
        rows = [top_rows(decayed_counts(inter.item_rows, inter.ts, t, n, None), k) for t in at]
    elif name == "recent-popularity":
        rows = fallback
    elif name == "repurchase":
        mine = [inter.history(u, t) for (u, _), t in zip(requests, at, strict=True)]
        rows = [fill(m, fb, k) for m, fb in zip(mine, fallback, strict=True)]
    else:
        own = _model_rows(name, inter, [u for u, _ in requests], k, photo_features)
        rows = [fill(o, fb, k) for o, fb in zip(own, fallback, strict=True)]
    return [list(inter.item_ids[r]) for r in rows]


def _model_rows(
    name: str,
    inter: Interactions,
    users: Sequence[str],
    k: int,
    photo_features: np.ndarray | None,
) -> list[np.ndarray]:
    """A learnt peer's rows per shopper of ``users`` (empty for a shopper it never saw)."""
    if name == "vbpr":
        return _vbpr_rows(inter, users, k, photo_features)
    from implicit.als import AlternatingLeastSquares
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.nearest_neighbours import CosineRecommender
    from threadpoolctl import threadpool_limits

    make = {
        "item-knn": lambda: CosineRecommender(),
        "als": lambda: AlternatingLeastSquares(random_state=0),
        "bpr": lambda: BayesianPersonalizedRanking(random_state=0),
    }[name]
    matrix = inter.matrix()
    known = sorted({u for u in users if u in inter.users})
    uids = np.array([inter.users[u] for u in known], np.int64)
    found: dict[str, np.ndarray] = {}
    with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, BLAS on one
        model = make()
        model.fit(matrix, show_progress=False)
        if len(uids):
            ids, _ = model.recommend(uids, matrix[uids], N=k, filter_already_liked_items=False)
            found = {u: r[r >= 0] for u, r in zip(known, np.atleast_2d(ids), strict=True)}
    return [found.get(u, np.zeros(0, np.int64)) for u in users]


def _vbpr_rows(
    inter: Interactions,
    users: Sequence[str],
    k: int,
    photo_features: np.ndarray | None,
) -> list[np.ndarray]:
    """cornac's VBPR with the photo features, the settings of cornac's own VBPR example."""
    import cornac
    from cornac.data import ImageModality

    if photo_features is None:
        raise ValueError("vbpr needs the items' photo features")
    names = np.array(list(inter.users), dtype=object)
    triples = list(zip(names[inter.user_rows], inter.item_ids[inter.item_rows],
                       np.ones(len(inter.item_rows)), strict=True))  # fmt: skip
    train = cornac.data.Dataset.from_uir(triples, seed=0)
    image = ImageModality(features=photo_features.astype(np.float32), ids=list(inter.item_ids),
                          normalized=True)  # fmt: skip
    image.build(id_map=train.iid_map)
    train.add_modalities(item_image=image)
    model = cornac.models.VBPR(k=10, k2=20, n_epochs=50, batch_size=100, learning_rate=0.005,
                               lambda_w=1, lambda_b=0.01, lambda_e=0.0, seed=0,
                               verbose=False)  # fmt: skip
    model.fit(train)
    row_of = {i: n for n, i in enumerate(inter.item_ids)}
    known_rows = np.array([row_of[i] for i in train.item_ids], np.int64)  # cornac's order
    out = []
    for user in users:
        u = train.uid_map.get(user)
        found = np.zeros(0, np.int64) if u is None else known_rows[top_rows(model.score(u), k)]
        out.append(found)
    return out
