"""The hybrid loss of MRSE: sampled softmax + hard-negative triplet + text/photo consistency,
composed from the one-concept modules beside it. A weight of 0 switches a term off."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mrse.losses.consistency import ConsistencyLoss
from mrse.losses.modality_distillation import ModalityDistillationLoss
from mrse.losses.sampled_softmax import SampledSoftmaxLoss
from mrse.losses.triplet import HardNegativeTripletLoss


@dataclass
class LossBatch:
    """Everything the loss reads for one batch: embeddings and sampling corrections.

    Attributes:
        query: (B, D) query embeddings.
        positive: (B, D) embeddings of each query's positive item.
        positive_log_q: (B,) log sampling probabilities of the positives (in-batch negatives).
        positive_ids: (B,) their item rows (a row equal to a query's positive is no negative).
        random: (M, D) embeddings of uniformly sampled items; random_log_q, random_ids: (M,).
        hard: (B, K, D) mined hard negatives, zero where ``hard_valid`` (B, K) is False; None
            when the triplet term is off.
        views: (text view (U, D), photo view (U, D), both (U,) bool: items with text and a
            photo) of the batch's items; None when the model reads no photos.
        distill: (partial view (n, D), its teacher (n, D)) pairs of items with text and a
            photo; None when modality distillation is off.
        single_modality: per single-modality catalog (photos gone, text gone): the
            positives (B, D) and the random negatives (M, D) seen that way; the sampled
            softmax is computed again on each.
    """

    query: torch.Tensor
    positive: torch.Tensor
    positive_log_q: torch.Tensor
    positive_ids: torch.Tensor
    random: torch.Tensor
    random_log_q: torch.Tensor
    random_ids: torch.Tensor
    hard: torch.Tensor | None = None
    hard_valid: torch.Tensor | None = None
    views: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    distill: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    single_modality: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class HybridLoss(nn.Module):
    def __init__(
        self,
        softmax_weight: float = 1.0,
        temperature: float = 0.05,
        triplet_weight: float = 0.5,
        margin: float = 0.1,
        consistency_weight: float = 0.1,
        consistency_temperature: float = 0.1,
        distill_weight: float = 0.0,
        distill_temperature: float = 0.05,
        single_modality_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.weights = {
            "softmax": softmax_weight,
            "triplet": triplet_weight,
            "consistency": consistency_weight,
            "distill": distill_weight,
            "single_modality": single_modality_weight,
        }
        self.softmax = SampledSoftmaxLoss(temperature)
        self.triplet = HardNegativeTripletLoss(margin)
        self.consistency = ConsistencyLoss(consistency_temperature)
        self.distill = ModalityDistillationLoss(distill_temperature)

    def forward(self, b: LossBatch) -> torch.Tensor:
        """The weighted sum of the terms that are on (a scalar)."""
        w = self.weights
        loss = b.query.new_zeros(())
        if w["softmax"] > 0:
            loss = loss + w["softmax"] * self.softmax(
                b.query, b.positive, b.positive_log_q, b.positive_ids,
                b.random, b.random_log_q, b.random_ids,
            )  # fmt: skip
        if w["triplet"] > 0 and b.hard is not None:
            loss = loss + w["triplet"] * self.triplet(b.query, b.positive, b.hard, b.hard_valid)
        if w["consistency"] > 0 and b.views is not None:
            loss = loss + w["consistency"] * self.consistency(*b.views)
        if w["distill"] > 0 and b.distill is not None:
            loss = loss + w["distill"] * self.distill(b.distill)
        if w["single_modality"] > 0:
            for positive, random in b.single_modality:
                loss = loss + w["single_modality"] * self.softmax(
                    b.query, positive, b.positive_log_q, b.positive_ids,
                    random, b.random_log_q, b.random_ids,
                )  # fmt: skip
        return loss

    def get_config_dict(self) -> dict:
        return {
            **{f"{k}_weight": v for k, v in self.weights.items()},
            **self.softmax.get_config_dict(),
            **self.triplet.get_config_dict(),
            "consistency_temperature": self.consistency.temperature,
            "distill_temperature": self.distill.temperature,
        }
