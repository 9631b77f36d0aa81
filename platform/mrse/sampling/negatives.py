"""Sampling probabilities for the log-Q correction and uniform catalog negatives."""

from __future__ import annotations

import numpy as np
import torch


def popularity_log_q(
    positive_rows: np.ndarray, n_items: int, smoothing: float = 1.0
) -> torch.Tensor:
    """log P(item is a training positive), add-``smoothing``: (N,).

    In-batch negatives are other examples' positives, so they are drawn in proportion to this.
    """
    counts = np.bincount(positive_rows, minlength=n_items).astype(np.float64) + smoothing
    return torch.from_numpy(np.log(counts / counts.sum())).float()


def uniform_negatives(
    n_items: int, m: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` uniform catalog rows (M,) and their log-Q (M,) = -log N."""
    rows = torch.randint(0, n_items, (m,), generator=generator)
    return rows, torch.full((m,), -float(np.log(n_items)))
