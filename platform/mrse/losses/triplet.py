"""Hard-negative triplet loss: the positive must beat each mined hard negative by a margin."""

from __future__ import annotations

import torch
from torch import nn


def compute_loss_from_embeddings(
    query: torch.Tensor,
    item: torch.Tensor,
    hard_negatives: torch.Tensor,
    valid: torch.Tensor | None = None,
    margin: float = 0.1,
) -> torch.Tensor:
    """Mean hinge ``max(0, margin - s(q, pos) + s(q, neg))`` over valid hard negatives.

    Args:
        query: (B, D) unit vectors; item: (B, D) unit positives.
        hard_negatives: (B, K, D) unit vectors of mined negatives.
        valid: (B, K) bool, False for padding (fewer than K negatives found).
        margin: required cosine gap.

    Returns:
        Scalar loss (0 when no negative is valid).
    """
    pos = (query * item).sum(-1, keepdim=True)  # (B, 1)
    neg = torch.einsum("bd,bkd->bk", query, hard_negatives)  # (B, K)
    hinge = torch.relu(margin - pos + neg)  # (B, K)
    if valid is None:
        return hinge.mean()
    n = valid.sum()
    return (hinge * valid).sum() / n.clamp_min(1)


class HardNegativeTripletLoss(nn.Module):
    def __init__(self, margin: float = 0.1) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, query, item, hard_negatives, valid=None):
        return compute_loss_from_embeddings(query, item, hard_negatives, valid, self.margin)

    def get_config_dict(self) -> dict:
        return {"margin": self.margin}
