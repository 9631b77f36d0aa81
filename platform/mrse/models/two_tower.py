"""The MRSE model: item tower + query tower, scores and per-expert explanations."""

from __future__ import annotations

import torch
from torch import nn

from mrse.features.inputs import ItemInputs, QueryInputs
from mrse.models.config import ModelConfig
from mrse.models.towers import ITEM_EXPERTS, QUERY_EXPERTS, ItemTower, QueryTower, TowerOutput


class MRSEModel(nn.Module):
    """Two towers in one space. Returns embeddings; the loss lives in ``mrse.losses``.

    Example:
        >>> model = MRSEModel(ModelConfig(dim=64))
        >>> items = model.encode_items(item_inputs)            # (N, 64)
        >>> queries = model.encode_queries(query_inputs, items.embedding)  # (B, 64)
        >>> scores = queries.embedding @ items.embedding.T     # (B, N)
    """

    def __init__(self, config: ModelConfig, device: torch.device | None = None) -> None:
        super().__init__()
        self.config = config
        self.item_tower = ItemTower(config, device)
        self.query_tower = QueryTower(config, device)

    def encode_items(
        self, items: ItemInputs, hide: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> TowerOutput:
        """Items -> (N, D); ``hide``: (text, photo) (N,) bool masks of modalities to leave out
        (None: none at inference, ``ModelConfig``'s dropout in training)."""
        return self.item_tower(
            items.text, items.has_text, items.image, items.has_image, items.sparse,
            items.identity, hide,
        )  # fmt: skip

    def encode_queries(
        self, queries: QueryInputs, recent_item_embeddings: torch.Tensor
    ) -> TowerOutput:
        """Queries -> (B, D); ``queries.recent`` indexes ``recent_item_embeddings`` (M, D)."""
        mask = queries.recent >= 0  # (B, K)
        idx = queries.recent.clamp_min(0)
        if recent_item_embeddings.shape[0] == 0:
            recent = recent_item_embeddings.new_zeros(*idx.shape, self.config.dim)
            mask = torch.zeros_like(mask)
        else:
            recent = recent_item_embeddings[idx] * mask.unsqueeze(-1)  # (B, K, D)
        return self.query_tower(
            queries.text,
            queries.sparse,
            queries.profile_text,
            queries.profile_image,
            queries.modality,
            queries.has_history,
            recent,
            mask,
            self.item_tower,
        )


def explain(query: TowerOutput, items: TowerOutput) -> dict[str, torch.Tensor] | None:
    """Split each (query, item) score into expert contributions that sum to the score.

    Args:
        query: B query outputs; items: the B items paired with them (row i with row i).

    Returns:
        ``{"q:<expert>|i:<expert>": (B,)}`` for every expert pair, plus per-modality sums
        ``text``, ``image``, ``profile`` (B,) each; None for concat fusion (no experts).
        Modality: ``profile`` is everything the query-side profile expert contributes,
        ``image`` the item photo expert against the query's own text experts, ``text`` the rest.
        A model with a product identity has a fifth item expert, ``identity`` (its pairs with
        the typed experts are 0: other dimensions; with the profile it is part of ``profile``).
    """
    if query.gates is None or items.gates is None:
        return None
    qg = query.gates.unsqueeze(-1) * query.experts  # (B, Eq, D)
    ig = items.gates.unsqueeze(-1) * items.experts  # (B, Ei, D)
    pair = torch.einsum("bqd,bid->bqi", qg, ig)  # (B, Eq, Ei)
    pair = pair / (query.norm * items.norm)[:, None, None]
    out = {
        f"q:{qe}|i:{ie}": pair[:, a, b]
        for a, qe in enumerate(QUERY_EXPERTS)
        for b, ie in enumerate(ITEM_EXPERTS[: ig.shape[1]])
    }
    p = QUERY_EXPERTS.index("profile")
    img = ITEM_EXPERTS.index("image")
    profile = pair[:, p, :].sum(dim=1)
    image = pair[:, :, img].sum(dim=1) - pair[:, p, img]
    out["profile"] = profile
    out["image"] = image
    out["text"] = pair.sum(dim=(1, 2)) - profile - image
    return out


def explain_items(query: torch.Tensor, items: TowerOutput) -> dict[str, torch.Tensor]:
    """Split each score of an example-made query (more like this: a vector in the item space,
    no query experts) by the item's own experts; the parts sum to the score.

    Args:
        query: (B, D) query vectors; items: the B items paired with them (row i with row i).

    Returns:
        ``image`` (the item photo expert's share) and ``text`` (the rest: text, n-grams,
        category and brand, and the product identity), (B,) each.
    """
    assert items.gates is not None, "the item tower has no experts to split by"
    ig = items.gates.unsqueeze(-1) * items.experts  # (B, Ei, D)
    parts = torch.einsum("bd,bid->bi", query, ig) / items.norm[:, None]  # (B, Ei)
    image = parts[:, ITEM_EXPERTS.index("image")]
    return {"text": parts.sum(dim=1) - image, "image": image}
