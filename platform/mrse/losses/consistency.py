"""Cross-modal consistency: an item's text view and image view should agree (InfoNCE).

Pulling each item's two views together while pushing apart other items' views aligns the
photo expert with the text space, which is what lets a text query reach image-only items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def compute_loss_from_embeddings(
    text_view: torch.Tensor,
    image_view: torch.Tensor,
    both: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Symmetric InfoNCE between the views of the items that have both.

    Args:
        text_view: (N, D) unit vectors; image_view: (N, D) unit vectors.
        both: (N,) bool, True where the item has text and a photo.
        temperature: softmax temperature.

    Returns:
        Scalar loss; 0 when fewer than two items have both views.
    """
    t, v = text_view[both], image_view[both]  # (n, D)
    if t.shape[0] < 2:
        return text_view.sum() * 0.0
    logits = t @ v.T / temperature  # (n, n)
    target = torch.arange(t.shape[0], device=t.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class ConsistencyLoss(nn.Module):
    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, text_view, image_view, both):
        return compute_loss_from_embeddings(text_view, image_view, both, self.temperature)

    def get_config_dict(self) -> dict:
        return {"temperature": self.temperature}
