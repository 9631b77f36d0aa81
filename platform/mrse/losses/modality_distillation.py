"""Modality distillation: an item seen through one modality is placed where the whole item is.

An image-only item (half of a real catalog) or an item whose photo is missing competes with
items that have everything. If its embedding drifts from where the same item would be with all
its inputs, its scores are on another scale and it is out-ranked whatever it shows. For items
that have text and a photo, each partial view (photo alone, text alone) is pulled towards a
teacher, detached (the full view of the same item, or for the text alone the mean full view of
its product's variants: a text cannot tell the colour its variants differ by), and away from
the other items' teachers in the batch (InfoNCE), so scores stay comparable across modalities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def compute_loss_from_embeddings(
    pairs: list[tuple[torch.Tensor, torch.Tensor]], temperature: float = 0.05
) -> torch.Tensor:
    """Mean InfoNCE of each partial view against its teachers.

    Args:
        pairs: (student (N, D), teacher (N, D)) unit vectors, row i of both for item i; the
            teachers are detached here.
        temperature: softmax temperature.

    Returns:
        Scalar loss; 0 when no pair has two items or more.
    """
    losses = []
    for student, teacher in pairs:
        if teacher.shape[0] < 2:
            continue
        t = teacher.detach()
        target = torch.arange(t.shape[0], device=t.device)
        losses.append(F.cross_entropy(student @ t.T / temperature, target))  # (N, N) logits
    if not losses:
        return sum((s.sum() for s, _ in pairs), torch.zeros(())) * 0.0
    return torch.stack(losses).mean()


class ModalityDistillationLoss(nn.Module):
    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        return compute_loss_from_embeddings(pairs, self.temperature)

    def get_config_dict(self) -> dict:
        return {"temperature": self.temperature}
