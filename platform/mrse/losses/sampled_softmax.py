"""In-batch sampled softmax with mixed negatives and log-Q correction (Yi et al. 2019; Yang et
al. 2020, "Mixed Negative Sampling").

Negatives for query i: the other positives of the batch (sampled in proportion to item
popularity) plus M items drawn uniformly from the catalog. Each logit is corrected by the log of
its sampling probability, so popular items are not over-penalised just for appearing often.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def compute_loss_from_embeddings(
    query: torch.Tensor,
    item: torch.Tensor,
    item_log_q: torch.Tensor,
    item_ids: torch.Tensor,
    extra: torch.Tensor | None = None,
    extra_log_q: torch.Tensor | None = None,
    extra_ids: torch.Tensor | None = None,
    temperature: float = 0.05,
) -> torch.Tensor:
    """Mean cross-entropy of each query against its positive among all sampled candidates.

    Args:
        query: (B, D) unit query vectors.
        item: (B, D) unit positive item vectors (row i is query i's positive).
        item_log_q: (B,) log sampling probability of each in-batch item.
        item_ids: (B,) catalog rows of the positives: a candidate equal to query i's positive
            (a duplicate in the batch or in the random draw) is masked, never a negative.
        extra: (M, D) random catalog items, with ``extra_log_q`` (M,) and ``extra_ids`` (M,).
        temperature: softmax temperature.

    Returns:
        Scalar loss.
    """
    logits = query @ item.T / temperature - item_log_q[None, :]  # (B, B)
    same = item_ids[:, None] == item_ids[None, :]  # (B, B)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    if extra is not None and extra.shape[0] > 0:
        ex = query @ extra.T / temperature - extra_log_q[None, :]  # (B, M)
        ex = ex.masked_fill(item_ids[:, None] == extra_ids[None, :], float("-inf"))
        logits = torch.cat([logits, ex], dim=1)  # (B, B + M)
    target = torch.arange(query.shape[0], device=query.device)
    return F.cross_entropy(logits, target)


class SampledSoftmaxLoss(nn.Module):
    """Module wrapper holding the temperature."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(
        self, query, item, item_log_q, item_ids, extra=None, extra_log_q=None, extra_ids=None
    ):
        return compute_loss_from_embeddings(
            query, item, item_log_q, item_ids, extra, extra_log_q, extra_ids, self.temperature
        )

    def get_config_dict(self) -> dict:
        return {"temperature": self.temperature}
