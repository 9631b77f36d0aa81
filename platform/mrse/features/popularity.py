"""Item popularity at a moment: what a feed shows a shopper it knows nothing about.

Pure functions over interaction arrays, shared by the recommendation peers, the evaluation's
cold-start answer and the popularity file a training run writes for the server.
"""

from __future__ import annotations

import numpy as np

# Time-decayed purchase counts with this half-life: on hm the best of 7, 14, 30, 60 and 120
# days for the recent-popularity peer (docs/benchmarks.md, "Recommendations").
RECENT_HALF_LIFE_DAYS = 14.0
DAY = 86400.0


def unix_seconds(ts) -> np.ndarray:
    """A column of times (anything ``pandas.to_datetime`` reads) as (E,) Unix seconds."""
    import pandas as pd

    return pd.to_datetime(ts).to_numpy("datetime64[ns]").astype(np.int64) / 1e9


def decayed_counts(
    item_rows: np.ndarray,
    ts: np.ndarray,
    at: float,
    n_items: int,
    half_life_days: float | None = RECENT_HALF_LIFE_DAYS,
) -> np.ndarray:
    """Each item's interactions strictly before ``at``, each weighted by
    ``0.5 ** (age / half_life)`` (None: plain counts).

    Args:
        item_rows: (E,) item rows; ts: (E,) Unix seconds; at: Unix seconds.
    Returns:
        (n_items,) float64 scores.
    """
    before = ts < at
    rows, age = item_rows[before], (at - ts[before]) / DAY
    weights = np.ones(len(rows)) if half_life_days is None else 0.5 ** (age / half_life_days)
    return np.bincount(rows, weights=weights, minlength=n_items).astype(np.float64)


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` best ``scores`` (N,), best first, ties in row order."""
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


POPULAR_SIZE = 1000  # the items a run keeps for the feed of a shopper with no history


def popular_items(events, k: int = POPULAR_SIZE) -> dict[str, float]:
    """The ``k`` items of ``events`` (``item_id``, ``ts``) with the highest time-decayed count
    just after the newest event, best first: item id -> score. Events without a time are left
    out (nothing without a time: an empty dict)."""

    timed = events[events["ts"].notna()]
    if timed.empty:
        return {}
    ids, rows = np.unique(timed["item_id"].astype(str).to_numpy(), return_inverse=True)
    ts = unix_seconds(timed["ts"])
    scores = decayed_counts(rows, ts, float(ts.max()) + 1.0, len(ids))
    return {str(ids[r]): round(float(scores[r]), 6) for r in top_rows(scores, k)}
