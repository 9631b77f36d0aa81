"""Query-side model inputs: query text features plus the user's point-in-time profile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torchrec import KeyedJaggedTensor

from mrse.features.catalog import CatalogFeatures, FeatureStats, centre_unit, gather_jagged, jagged
from mrse.features.inputs import FeatureShape, QueryInputs
from mrse.features.ngrams import hashed_id, ngram_ids
from mrse.features.profile import (
    ProfileConfig,
    ProfileEvent,
    ProfileState,
    profile_vectors,
    update_profile,
)

# What a feed request (no query: the home feed, ``Recommend``) types. The query tower learns
# feeds from it (``mrse.training.examples.next_item_examples``): it has no n-grams, so the
# profile is never hidden from it in training.
FEED_QUERY = ""


def to_seconds(ts: pd.Timestamp | np.datetime64) -> float:
    """Unix seconds of a timestamp."""
    return float(pd.Timestamp(ts).value) / 1e9


def profile_event(catalog: CatalogFeatures, row: int, ts: float) -> ProfileEvent:
    """The profile event for an interaction with catalog row ``row`` at ``ts`` (seconds)."""
    return ProfileEvent(
        item_id=str(catalog.item_ids[row]),
        ts=ts,
        category=str(catalog.categories[row]),
        text=catalog.text[row].numpy().astype(np.float64) if catalog.has_text[row] else None,
        image=catalog.image[row].numpy().astype(np.float64) if catalog.has_image[row] else None,
    )


def snapshot_profiles(
    events: pd.DataFrame,
    catalog: CatalogFeatures,
    requests: Sequence[tuple[str | None, np.datetime64 | None]],
    config: ProfileConfig,
) -> list[ProfileState]:
    """Each (user_id, ts) request's profile from the user's events strictly before ``ts``.

    Anonymous or untimed requests get the cold-start profile; events without user or time are
    never folded in (see ``mrse.data.history``). One pass per user: O(events + requests).
    """
    out: list[ProfileState] = [catalog.cold_profile()] * len(requests)
    by_user: dict[str, list[int]] = {}
    for i, (user, ts) in enumerate(requests):
        if user is not None and ts is not None and not pd.isna(ts):
            by_user.setdefault(user, []).append(i)
    if not by_user:
        return out
    known = events[events["user_id"].isin(by_user.keys()) & events["ts"].notna()]
    known = known[known["item_id"].isin(catalog.index.keys())]
    known = known.sort_values(["user_id", "ts"], kind="stable")
    grouped = {u: g for u, g in known.groupby("user_id", sort=False)}
    for user, req_idx in by_user.items():
        req_idx = sorted(req_idx, key=lambda i: requests[i][1])
        g = grouped.get(user)
        rows = [] if g is None else [catalog.index[i] for i in g["item_id"]]
        times = [] if g is None else g["ts"].to_numpy()
        state = catalog.cold_profile()
        j = 0
        for i in req_idx:
            cut = np.datetime64(requests[i][1], "ns")
            while j < len(rows) and times[j] < cut:
                state = update_profile(
                    state, profile_event(catalog, rows[j], to_seconds(times[j])), config
                )
                j += 1
            out[i] = state
    return out


@dataclass
class QueryFeatures:
    """Row-aligned query features (Q rows).

    Attributes:
        text: (Q, 384) centred unit MiniLM query vectors.
        ngram_values / ngram_offsets: hashed query n-grams, ragged.
        profile_text: (Q, 384); profile_image: (Q, 1280); modality: (Q, 4); has_history (Q,).
        recent: (Q, K) catalog rows of the newest history items (-1 padding).
        category_values / category_offsets: hashed categories of those items, ragged.
    """

    text: torch.Tensor
    ngram_values: np.ndarray
    ngram_offsets: np.ndarray
    profile_text: torch.Tensor
    profile_image: torch.Tensor
    modality: torch.Tensor
    has_history: torch.Tensor
    recent: torch.Tensor
    category_values: np.ndarray
    category_offsets: np.ndarray

    def __len__(self) -> int:
        return self.text.shape[0]

    def inputs(self, rows: np.ndarray | torch.Tensor) -> QueryInputs:
        rows = np.asarray(rows, dtype=np.int64)
        ng, ng_len = gather_jagged(self.ngram_values, self.ngram_offsets, rows)
        cat, cat_len = gather_jagged(self.category_values, self.category_offsets, rows)
        sparse = KeyedJaggedTensor.from_lengths_sync(
            keys=["query_ngrams", "profile_categories"],
            values=torch.from_numpy(np.concatenate([ng, cat])),
            lengths=torch.from_numpy(np.concatenate([ng_len, cat_len])),
        )
        t = torch.from_numpy(rows)
        return QueryInputs(
            text=self.text[t],
            sparse=sparse,
            profile_text=self.profile_text[t],
            profile_image=self.profile_image[t],
            modality=self.modality[t],
            has_history=self.has_history[t],
            recent=self.recent[t],
        )


def build_query_features(
    texts: Sequence[str],
    text_vectors: np.ndarray,
    profiles: Sequence[ProfileState],
    item_rows: Mapping[str, int],
    stats: FeatureStats,
    config: FeatureShape,
) -> QueryFeatures:
    """Assemble query features. ``text_vectors`` (Q, Dt) are raw query text vectors;
    ``item_rows`` maps the item ids a profile's recent items may name to rows of the item
    embeddings the query tower will be given (unknown ids are left out)."""
    k = config.recent_items
    values, offsets = jagged([ngram_ids(t, config.ngram_buckets) for t in texts])
    vecs = [profile_vectors(p) for p in profiles]
    recent = np.full((len(texts), k), -1, dtype=np.int64)
    cats = []
    for i, p in enumerate(profiles):
        rows = [item_rows[x] for x in p.recent_items[-k:] if x in item_rows]
        recent[i, : len(rows)] = rows
        cats.append(
            [c for c in (hashed_id(x, config.category_buckets) for x in p.recent_categories) if c]
        )
    cat_values, cat_offsets = jagged(cats)
    q = len(texts)
    return QueryFeatures(
        text=torch.from_numpy(centre_unit(text_vectors, stats.text_mean)),
        ngram_values=values,
        ngram_offsets=offsets,
        profile_text=torch.from_numpy(
            np.stack([v.text for v in vecs])
            if q
            else np.zeros((0, stats.text_mean.shape[0]), np.float32)
        ),
        profile_image=torch.from_numpy(
            np.stack([v.image for v in vecs])
            if q
            else np.zeros((0, stats.image_mean.shape[0]), np.float32)
        ),
        modality=torch.from_numpy(
            np.stack([v.modality for v in vecs]) if q else np.zeros((0, 4), np.float32)
        ),
        has_history=torch.tensor([v.has_history for v in vecs], dtype=torch.bool),
        recent=torch.from_numpy(recent),
        category_values=cat_values,
        category_offsets=cat_offsets,
    )
