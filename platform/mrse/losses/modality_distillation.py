"""Modality distillation: an item seen through one modality is placed where the whole item is.

An image-only item (half of a real catalog) or an item whose photo is missing competes with
items that have everything. If its embedding drifts from where the same item would be with all
its inputs, its scores are on another scale and it is out-ranked whatever it shows. For items
that have text and a photo, each partial view (photo alone, text alone) is pulled towards the
full view of the same item (detached: the full view is the teacher) and away from the full
views of the other items in the batch (InfoNCE), so scores stay comparable across modalities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def compute_loss_from_embeddings(
    students: list[torch.Tensor], teacher: torch.Tensor, temperature: float = 0.05
) -> torch.Tensor:
    """Mean InfoNCE of each partial view against the full views.

    Args:
        students: partial views, each (N, D) unit vectors, row i an embedding of item i.
        teacher: (N, D) unit full-view embeddings of the same items (detached here).
        temperature: softmax temperature.

    Returns:
        Scalar loss; 0 when fewer than two items are given.
    """
    if teacher.shape[0] < 2 or not students:
        return teacher.sum() * 0.0
    t = teacher.detach()
    target = torch.arange(t.shape[0], device=t.device)
    losses = [F.cross_entropy(s @ t.T / temperature, target) for s in students]  # (N, N) each
    return torch.stack(losses).mean()


class ModalityDistillationLoss(nn.Module):
    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, students: list[torch.Tensor], teacher: torch.Tensor) -> torch.Tensor:
        return compute_loss_from_embeddings(students, teacher, self.temperature)

    def get_config_dict(self) -> dict:
        return {"temperature": self.temperature}
