"""Synthetic catalogs of any size grown from a real one, for measuring cost (never quality).

Item ``j`` of an N-item catalog is a noisy copy of real item ``j mod B`` (B real items),
replica ``r = j div B``: the real item's frozen-encoder text and photo vectors plus Gaussian
noise (per dimension, ``noise`` x that dimension's spread across the real catalog), its real
category and brand, its title's real words in a shuffled order plus one more real title word,
and its price jittered. Replica 0 keeps the real ids and vectors unchanged, so the real event
log, profiles and queries still name real items. Shoppers and events grow with N the same way:
replica ``r`` of a real shopper interacts with replica ``r`` of the same items at the same
times, for the same queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mrse.encoders.features import ItemFeatures
from mrse.features.catalog import CatalogFeatures, FeatureStats, catalog_features, centre_unit
from mrse.features.inputs import FeatureShape

REPLICA_SEP = "~"  # replica r > 0 of item or user x is "x~r"


def replica_id(base_id: str, replica: int) -> str:
    return base_id if replica == 0 else f"{base_id}{REPLICA_SEP}{replica}"


@dataclass(frozen=True)
class SyntheticCatalog:
    """An N-item synthetic catalog.

    Attributes:
        items: (N rows) item_id, title, brand, category, price, base (row of the real item).
        features: the model inputs (centred unit vectors, as ``build_catalog_features`` makes).
    """

    items: pd.DataFrame
    features: CatalogFeatures


def synthetic_items(base: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """The N synthetic items' attributes from the real items ``base`` (item_id, title,
    description, brand, category, price); column ``base`` is each one's real row."""
    rng = np.random.default_rng(seed)
    b = len(base)
    rows = np.arange(n) % b
    replica = np.arange(n) // b
    words = [str(t).split() for t in base["title"]]
    vocab = np.array(sorted({w for ws in words for w in ws}) or ["item"], dtype=object)
    extra = vocab[rng.integers(len(vocab), size=n)]
    titles = []
    for j, (r, rep) in enumerate(zip(rows, replica, strict=True)):
        ws = words[r]
        if rep == 0 or not ws:
            titles.append(" ".join(ws))
        else:
            titles.append(" ".join([*(ws[i] for i in rng.permutation(len(ws))), extra[j]]))
    price = base["price"].to_numpy(dtype=float)[rows]
    jitter = np.where(replica == 0, 1.0, rng.uniform(0.8, 1.2, size=n))
    ids = base["item_id"].to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "item_id": [replica_id(ids[r], int(rep)) for r, rep in zip(rows, replica, strict=True)],
            "title": titles,
            "description": base["description"].to_numpy(dtype=object)[rows],
            "brand": base["brand"].to_numpy(dtype=object)[rows],
            "category": base["category"].to_numpy(dtype=object)[rows],
            "price": np.round(price * jitter, 2),
            "base": rows,
        }
    )


def _noisy(
    base: np.ndarray, present: np.ndarray, rows: np.ndarray, replica: np.ndarray,
    noise: float, mean: np.ndarray, rng: np.random.Generator,
) -> np.ndarray:  # fmt: skip
    """(n, D) centred unit vectors: real rows ``rows`` of ``base`` plus noise for replicas > 0,
    filled block by block so the peak is one (n, D) float32 array."""
    spread = base[present].std(0).astype(np.float32) if present.any() else np.ones(base.shape[1])
    out = np.empty((len(rows), base.shape[1]), dtype=np.float32)
    for s in range(0, len(rows), 65_536):
        r, rep = rows[s : s + 65_536], replica[s : s + 65_536]
        block = base[r].astype(np.float32)
        copies = rep > 0
        block[copies] += (
            rng.standard_normal((int(copies.sum()), base.shape[1]), dtype=np.float32)
            * spread
            * noise
        )
        out[s : s + 65_536] = block
    return centre_unit(out, mean, present[rows], inplace=True)


def synthetic_catalog(
    base_items: pd.DataFrame,
    base_features: ItemFeatures,
    stats: FeatureStats,
    shape: FeatureShape,
    n: int,
    noise: float = 0.3,
    seed: int = 0,
) -> SyntheticCatalog:
    """An N-item catalog grown from the real ``base_items`` and their raw encoder features,
    as model inputs centred with ``stats`` (a run's)."""
    items = synthetic_items(base_items, n, seed)
    rng = np.random.default_rng(seed + 1)
    rows = items["base"].to_numpy()
    replica = np.arange(n) // len(base_items)
    text = _noisy(
        base_features.text, base_features.has_text, rows, replica, noise, stats.text_mean, rng
    )
    image = _noisy(
        base_features.image, base_features.has_image, rows, replica, noise, stats.image_mean, rng
    )
    features = catalog_features(
        items, text, base_features.has_text[rows].copy(), image,
        base_features.has_image[rows].copy(), shape,
    )  # fmt: skip
    return SyntheticCatalog(items, features)


def synthetic_events(base_events: pd.DataFrame, n_items: int, n_base_items: int) -> pd.DataFrame:
    """The real event log replicated with the catalog: replica r of each real shopper and
    item, for every replica the N-item catalog holds whole (at least the real log itself)."""
    replicas = max(1, n_items // n_base_items)
    parts = []
    for r in range(replicas):
        part = base_events.copy()
        if r:
            part["user_id"] = [
                None if u is None or pd.isna(u) else replica_id(u, r) for u in part["user_id"]
            ]
            part["item_id"] = [replica_id(i, r) for i in part["item_id"]]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def category_filter(categories: pd.Series, share: float) -> tuple[str, ...]:
    """Categories whose items make up about ``share`` of the catalog (closest from below or
    above, taking the most frequent categories that fit first)."""
    counts = categories.value_counts()
    target, total = share * len(categories), 0
    picked: list[str] = []
    for cat, c in counts.items():
        if total + c <= target * 1.25:
            picked.append(str(cat))
            total += c
        if total >= target * 0.8:
            break
    if not picked:  # every category is too big: the smallest one above the target
        picked = [str(counts[counts >= target].index[-1])]
    return tuple(picked)
