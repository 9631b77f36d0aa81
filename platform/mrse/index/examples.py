"""Queries made of example items (more like this), as pure functions.

``average_vector`` is Qdrant's default strategy for its recommend API: the mean of the positive
examples' vectors, moved away from the mean of the negatives' by as much again,

    q = mean(positive) + (mean(positive) - mean(negative))     (q = mean(positive) without any)

and then one ordinary (filtered, ANN) search. Qdrant's other strategy, ``best_score``, scores
every candidate against each example separately and walks the graph once per request with
that score; the average is one ordinary search, so a more-like-this answer costs what a text
search costs, on both index backends, with the same filters.
"""

from __future__ import annotations

import numpy as np


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
