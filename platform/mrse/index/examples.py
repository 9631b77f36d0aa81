"""Queries made of example items (more like this), as pure functions.

``average_vector`` is Qdrant's default strategy for its recommend API: the mean of the positive
examples' vectors, moved away from the mean of the negatives' by as much again,

    q = mean(positive) + (mean(positive) - mean(negative))     (q = mean(positive) without any)

and then one ordinary (filtered, ANN) search. Qdrant's other strategy, ``best_score``, scores
every candidate against each example separately and walks the graph once per request with
that score; the average is one ordinary search, so a more-like-this answer costs what a text
search costs, on both index backends, with the same filters.

A home feed is the other way round: a shopper's recent items are separate interests (a dress
and a pair of sneakers average to neither), so the feed takes ``best_score`` over them, each
weighted by its age (``interest_weights``), one ANN search per interest merged by
``merge_best`` (PinnerSage's multi-interest retrieval, in Qdrant's terms).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrse.index.base import Hit


def average_vector(positive: np.ndarray, negative: np.ndarray | None = None) -> np.ndarray:
    """The query vector of ``positive`` (P, D) and ``negative`` (M, D) examples, unit length
    (the ranking is that of the unnormalised vector; unit length keeps scores cosines).

    Returns:
        (D,) float32.
    """
    if len(positive) == 0:
        raise ValueError("average_vector needs at least one positive example")
    mean = positive.astype(np.float32).mean(axis=0)
    if negative is not None and len(negative):
        mean = mean + (mean - negative.astype(np.float32).mean(axis=0))
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


# A feed's interests: the shopper's newest distinct items, one search each
# (docs/benchmarks.md, "Recommendations")
FEED_INTERESTS = 8


def feed_interests(
    items: Sequence[str], ts: Sequence[float], n: int = FEED_INTERESTS
) -> list[tuple[str, float]]:
    """The newest ``n`` distinct of a shopper's recent ``items`` (oldest first, with their
    times ``ts``) as (item, time), newest first."""
    out: dict[str, float] = {}
    for item, t in zip(reversed(items), reversed(ts), strict=True):
        if item not in out:
            out[item] = t
            if len(out) == n:
                break
    return list(out.items())


def interest_depth(k: int, interests: int) -> int:
    """How many results each interest's search asks for when a feed wants ``k``: twice its
    share of them, at least 20 and at most ``k``. An item below that depth in every interest's
    list is not found (the merge is approximate there; exact with depth ``k``)."""
    return min(k, max(20, -(-2 * k // max(interests, 1))))


def interest_weights(ts: Sequence[float], now: float, half_life_days: float) -> np.ndarray:
    """How much each of a shopper's interests (a recent item seen at ``ts`` (H,), Unix
    seconds) counts at ``now``: ``0.5 ** (age / half_life)``, an age below 0 (clock skew)
    counted as 0. Returns (H,) float32."""
    if half_life_days <= 0:
        raise ValueError("half_life_days must be > 0")
    ages_days = np.maximum(now - np.asarray(ts, np.float64), 0.0) / 86400.0
    return (0.5 ** (ages_days / half_life_days)).astype(np.float32)


def best_score(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Qdrant's ``best_score`` over weighted examples, for many interests at once: each
    candidate's score is its best ``weight * similarity`` over the interests.

    Args:
        scores: (H, N) similarity of each candidate to each interest (-inf: not a candidate
            of that interest); weights: (H,) each interest's weight (>= 0).
    Returns:
        (N,) float32.
    """
    if scores.shape[0] != len(weights):
        raise ValueError(f"{scores.shape[0]} rows of scores for {len(weights)} weights")
    if not len(weights):
        return np.full(scores.shape[1], -np.inf, np.float32)
    weighted = np.where(np.isfinite(scores), scores * weights[:, None], -np.inf)
    return weighted.max(axis=0).astype(np.float32)


def merge_best(
    lists: Sequence[Sequence[Hit]], weights: Sequence[float]
) -> list[tuple[Hit, float, int]]:
    """The hits of several searches (one per interest) as one list by ``best_score``: each item
    once, at its best ``weight * score`` over the searches that found it (an item below a
    search's cut-off scores less than everything that search returned, so with deep enough
    searches the best is among those that found it).

    Returns:
        (hit, weighted score, index of the search that gave it), best first, ties by item id.
    """
    if len(lists) != len(weights):
        raise ValueError(f"{len(lists)} result lists for {len(weights)} weights")
    best: dict[str, tuple[Hit, float, int]] = {}
    for n, (hits, w) in enumerate(zip(lists, weights, strict=True)):
        for h in hits:
            score = float(w) * h.score
            if h.item_id not in best or score > best[h.item_id][1]:
                best[h.item_id] = (h, score, n)
    return sorted(best.values(), key=lambda x: (-x[1], x[0].item_id))
