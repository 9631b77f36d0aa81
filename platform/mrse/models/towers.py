"""Item and query towers built from lightweight mixture-of-experts (LMoE) modules.

Every expert maps one kind of input to a unit vector in the shared space; a per-example gate
mixes them. A missing modality (an image-only item, a user with no history) masks its experts
out of the gate inside the module, so call sites never special-case it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor
from torchrec.modules.embedding_configs import PoolingType

from mrse.features.identity import identity_vectors
from mrse.models.config import ModelConfig

# "identity" (last) only in models with a product identity (ModelConfig.uses_identity)
ITEM_EXPERTS = ("text", "ngram", "image", "category", "identity")
QUERY_EXPERTS = ("text", "ngram", "profile")
ITEM_SPARSE_KEYS = ("item_ngrams", "item_category", "item_brand")
QUERY_SPARSE_KEYS = ("query_ngrams", "profile_categories")


def pad_to(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(..., d) -> (..., dim), zeros in the last ``dim - d`` (the identity's dimensions)."""
    return F.pad(x, (0, dim - x.shape[-1])) if x.shape[-1] < dim else x


def mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    """Two-layer perceptron: (.., d_in) -> (.., d_out)."""
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
    )


def bag_collection(
    tables: list[tuple[str, int, str]], dim: int, device: torch.device | None
) -> EmbeddingBagCollection:
    """Mean-pooled TorchRec tables, one feature each: ``(table, rows, feature)``."""
    return EmbeddingBagCollection(
        tables=[
            EmbeddingBagConfig(
                name=name,
                embedding_dim=dim,
                num_embeddings=rows,
                feature_names=[feature],
                pooling=PoolingType.MEAN,
            )
            for name, rows, feature in tables
        ],
        device=device,
    )


@dataclass
class TowerOutput:
    """A tower's output and what it is made of.

    Attributes:
        embedding: (N, D) unit vectors.
        experts: (N, E, D) unit expert vectors (zeros where masked).
        available: (N, E) bool, which experts had an input.
        gates: (N, E) mixture weights (0 where masked), None for concat fusion.
        norm: (N,) length of the mixture before normalisation, None for concat fusion.
    """

    embedding: torch.Tensor
    experts: torch.Tensor | None = None
    available: torch.Tensor | None = None
    gates: torch.Tensor | None = None
    norm: torch.Tensor | None = None

    def rows(self, idx: np.ndarray | torch.Tensor) -> TowerOutput:
        """The outputs of rows ``idx`` (n,)."""
        idx = torch.as_tensor(idx, dtype=torch.long)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.index_select(0, idx)

        return TowerOutput(
            pick(self.embedding),
            pick(self.experts),
            pick(self.available),
            pick(self.gates),
            pick(self.norm),
        )

    @staticmethod
    def cat(parts: list[TowerOutput]) -> TowerOutput:
        """Rows of ``parts`` stacked in order."""

        def join(ts: list[torch.Tensor | None]) -> torch.Tensor | None:
            return None if ts[0] is None else torch.cat(ts)  # type: ignore[arg-type]

        return TowerOutput(
            join([p.embedding for p in parts]),
            join([p.experts for p in parts]),
            join([p.available for p in parts]),
            join([p.gates for p in parts]),
            join([p.norm for p in parts]),
        )

    def repeat_row(self, i: int, n: int) -> TowerOutput:
        """Row ``i`` repeated ``n`` times (to pair one query with ``n`` items in ``explain``)."""

        def rep(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[i : i + 1].expand(n, *t.shape[1:])

        return TowerOutput(
            rep(self.embedding),
            rep(self.experts),
            rep(self.available),
            rep(self.gates),
            rep(self.norm),
        )


class GatedMixture(nn.Module):
    """LMoE combiner: softmax gate over the available experts, conditioned on ``gate_input``."""

    def __init__(self, gate_in: int, n_experts: int) -> None:
        super().__init__()
        self.gate = nn.Linear(gate_in, n_experts)

    def forward(
        self, experts: torch.Tensor, available: torch.Tensor, gate_input: torch.Tensor
    ) -> TowerOutput:
        """experts (N, E, D) unit, available (N, E) bool, gate_input (N, G) -> (N, D)."""
        logits = self.gate(gate_input)  # (N, E)
        logits = logits.masked_fill(~available, float("-inf"))
        # A row with nothing available (no text, no photo, no ids) gets a zero vector.
        none = ~available.any(dim=1, keepdim=True)  # (N, 1)
        gates = torch.softmax(logits.masked_fill(none, 0.0), dim=1) * (~none)  # (N, E)
        mixed = (gates.unsqueeze(-1) * experts).sum(dim=1)  # (N, D)
        norm = mixed.norm(dim=1).clamp_min(1e-6)  # (N,)
        return TowerOutput(mixed / norm.unsqueeze(1), experts, available, gates, norm)


class ItemTower(nn.Module):
    """Items -> (N, D). Experts: MiniLM text, hashed n-grams, EfficientNet photo, category+brand
    in the first ``main_dim`` dimensions; with a product identity (``ModelConfig.uses_identity``)
    the item's fixed identity vector fills the last ``identity_size``, at a learnt share ``s``:
    ``[sqrt(1 - s^2) * mixture, s * identity]``, unit."""

    def __init__(self, config: ModelConfig, device: torch.device | None = None) -> None:
        super().__init__()
        c = config
        self.config = c
        self.ebc = bag_collection(
            [
                ("item_ngram", c.ngram_buckets, "item_ngrams"),
                ("category", c.category_buckets, "item_category"),
                ("brand", c.brand_buckets, "item_brand"),
            ],
            c.sparse_dim,
            device,
        )
        d = c.main_dim
        self.text = mlp(c.text_dim, c.hidden, d, c.dropout)
        self.ngram = mlp(c.sparse_dim, c.hidden, d, c.dropout)
        self.image = mlp(c.image_dim, c.hidden, d, c.dropout) if c.use_image else None
        self.category = mlp(2 * c.sparse_dim, c.hidden, d, c.dropout)
        n = 4  # learnt experts
        if c.fusion == "lmoe":
            self.mixture = GatedMixture(n * d + n, n)
        else:
            self.concat = mlp(n * d, c.hidden, d, c.dropout)
        if c.uses_identity:  # s = sigmoid(logit), 0.4 at the start
            self.identity_logit = nn.Parameter(torch.tensor(-0.405))

    def hidden_modalities(
        self, has_text: torch.Tensor, has_image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training only: which items' text and photo to hide this pass, (N,) bool each.

        One draw per item: with probability ``text_dropout`` an item that has both loses its
        text (an image-only item, as half of a real catalog is), with ``photo_dropout`` its
        photo (a photo service down, an item before its shoot), never both."""
        c = self.config
        none = torch.zeros_like(has_text)
        if not self.training or (c.text_dropout <= 0 and c.photo_dropout <= 0):
            return none, none
        both = has_text & has_image
        u = torch.rand(has_text.shape, device=has_text.device)
        hide_text = both & (u < c.text_dropout)
        hide_photo = both & (u >= c.text_dropout) & (u < c.text_dropout + c.photo_dropout)
        return hide_text, hide_photo

    def experts(
        self,
        text: torch.Tensor,
        has_text: torch.Tensor,
        image: torch.Tensor,
        has_image: torch.Tensor,
        sparse: KeyedJaggedTensor,
        hide: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit expert vectors (N, 4, main_dim) and their availability (N, 4). ``hide``: (text,
        photo) (N,) bool, items to encode as if they had no text (MiniLM vector and n-grams;
        category and brand stay) or no photo; None: ``hidden_modalities``."""
        if hide is None:
            hide = self.hidden_modalities(has_text, has_image)
        hide_text, hide_photo = hide
        pooled = self.ebc(sparse).to_dict()
        ngram_bag = pooled["item_ngrams"]  # (N, S)
        ids = torch.cat([pooled["item_category"], pooled["item_brand"]], dim=1)  # (N, 2S)
        has_ids = ids.abs().sum(dim=1) > 0
        zeros = text.new_zeros(text.shape[0], self.config.main_dim)
        if self.image is not None:
            img = F.normalize(self.image(image), dim=-1)
            has_img = has_image & ~hide_photo
        else:
            img, has_img = zeros, torch.zeros_like(has_image)
        experts = torch.stack(
            [
                F.normalize(self.text(text), dim=-1),
                F.normalize(self.ngram(ngram_bag), dim=-1),
                img,
                F.normalize(self.category(ids), dim=-1),
            ],
            dim=1,
        )  # (N, 4, main_dim)
        has_ngrams = (ngram_bag.abs().sum(dim=1) > 0) & ~hide_text
        available = torch.stack([has_text & ~hide_text, has_ngrams, has_img, has_ids], dim=1)
        return experts * available.unsqueeze(-1), available

    def forward(
        self,
        text: torch.Tensor,
        has_text: torch.Tensor,
        image: torch.Tensor,
        has_image: torch.Tensor,
        sparse: KeyedJaggedTensor,
        identity: torch.Tensor,
        hide: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> TowerOutput:
        """text (N, 384), has_text (N,), image (N, 1280), has_image (N,), sparse (stride N),
        identity (N,) int64 product-key hashes (read only with a product identity); ``hide``:
        see ``experts``."""
        experts, available = self.experts(text, has_text, image, has_image, sparse, hide)
        if self.config.fusion == "concat":
            emb = F.normalize(self.concat(experts.flatten(1)), dim=-1)
            return TowerOutput(emb, experts, available)
        gate_in = torch.cat([experts.flatten(1), available.float()], dim=1)
        own = self.mixture(experts, available, gate_in)
        if not self.config.uses_identity:
            return own
        return self._add_identity(own, identity)

    def _add_identity(self, own: TowerOutput, identity: torch.Tensor) -> TowerOutput:
        """``[c * own, s * u]`` with u (N, k) the identity vectors, s the learnt share and
        c = sqrt(1 - s^2); the identity is a fifth expert whose gate is ``s * norm`` (so
        ``explain`` splits the score the same way as for the learnt experts)."""
        assert own.experts is not None and own.gates is not None and own.norm is not None
        c = self.config
        hashes = identity.detach().cpu().numpy().view(np.uint64)
        u = torch.from_numpy(identity_vectors(hashes, c.identity_size)).to(own.embedding)
        share = torch.sigmoid(self.identity_logit)
        rest = torch.sqrt(1.0 - share**2)
        u_full = F.pad(u, (c.main_dim, 0))  # (N, D): the identity in the last k dimensions
        experts = torch.cat([pad_to(own.experts, c.dim), u_full.unsqueeze(1)], dim=1)
        available = torch.cat([own.available, torch.ones_like(own.available[:, :1])], dim=1)
        gates = torch.cat([rest * own.gates, share * own.norm.unsqueeze(1)], dim=1)
        embedding = torch.cat([rest * own.embedding, share * u], dim=1)  # (N, D) unit
        return TowerOutput(embedding, experts, available, gates, own.norm)


def text_and_image_views(out: TowerOutput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the consistency loss, from an item tower output: text view (N, D) (text + n-gram
    experts), image view (N, D) (photo expert), and (N,) True where the item has both."""
    assert out.experts is not None and out.available is not None
    text_view = F.normalize(out.experts[:, 0] + out.experts[:, 1], dim=-1)
    both = out.available[:, 0] & out.available[:, 2]
    return text_view, out.experts[:, 2], both


def typed_intent(out: TowerOutput) -> torch.Tensor:
    """What the shopper typed, without who they are: the query tower's text and n-gram experts
    as mixed in ``out`` (the profile's share left out), (B, D) unit. Concat fusion has no
    separable profile share: its embedding is returned."""
    if out.gates is None or out.experts is None:
        return out.embedding
    own = (out.gates[:, :2].unsqueeze(-1) * out.experts[:, :2]).sum(dim=1)  # (B, D)
    return F.normalize(own, dim=-1)


class QueryTower(nn.Module):
    """Query + user -> (N, D). Experts: MiniLM query text, query n-grams, the user's profile.

    The profile starts from the item-tower embeddings of the user's recent items, attended by
    the query-only vector. ``profile_fusion="late"`` (default): that attended vector is the
    profile, added after the gate's mixture of the typed experts with a learned per-user weight
    (``_add_profile``); the pooled history vectors and recent categories are not read. With a
    product identity, the recent items' identity parts, attended the same way, are added in the
    identity dimensions, weighted by a second per-user factor: "I bought this product before".
    ``"gate"``: a profile expert also embeds the pooled history text and photos with the item
    tower's own experts (so "like what I bought" is measured in the item space) and the recent
    categories, and is a third expert of the gate. The gate sees the query and the user's
    modality preference.
    """

    def __init__(self, config: ModelConfig, device: torch.device | None = None) -> None:
        super().__init__()
        c = config
        self.config = c
        self.ebc = bag_collection(
            [
                ("query_ngram", c.ngram_buckets, "query_ngrams"),
                ("profile_category", c.category_buckets, "profile_categories"),
            ],
            c.sparse_dim,
            device,
        )
        self.text = mlp(c.text_dim, c.hidden, c.main_dim, c.dropout)
        self.ngram = mlp(c.sparse_dim, c.hidden, c.main_dim, c.dropout)
        self.base_gate = nn.Linear(c.text_dim, 2)
        n = len(QUERY_EXPERTS)
        self.late = c.late_profile
        if c.use_profile:
            self.attention_scale = nn.Parameter(torch.tensor(10.0))
        if c.use_profile and not self.late:
            self.profile_categories = nn.Linear(c.sparse_dim, c.dim)
            self.profile = mlp(4 * c.dim + 4, c.hidden, c.dim, c.dropout)
        if self.late:  # the gate mixes the query's own experts; the profile is added after
            self.mixture = GatedMixture(c.text_dim + 4 + 1, n - 1)
            self.profile_weight = nn.Linear(4 + 2, 1)
            nn.init.zeros_(self.profile_weight.weight)
            nn.init.constant_(self.profile_weight.bias, -1.0)  # softplus(-1) = 0.31
            if c.uses_identity:
                self.identity_weight = nn.Linear(4 + 2, 1)
                nn.init.zeros_(self.identity_weight.weight)
                nn.init.constant_(self.identity_weight.bias, 1.0)  # softplus(1) = 1.31
        elif c.fusion == "lmoe":
            self.mixture = GatedMixture(c.text_dim + 4 + 1, n)
        else:
            self.concat = mlp(n * c.dim + 4, c.hidden, c.dim, c.dropout)

    def forward(
        self,
        text: torch.Tensor,
        sparse: KeyedJaggedTensor,
        profile_text: torch.Tensor,
        profile_image: torch.Tensor,
        modality: torch.Tensor,
        has_history: torch.Tensor,
        recent: torch.Tensor,
        recent_mask: torch.Tensor,
        item_tower: ItemTower,
    ) -> TowerOutput:
        """Encode queries.

        Args:
            text: (B, 384) MiniLM query vectors.
            sparse: KJT with ``query_ngrams`` and ``profile_categories`` (stride B).
            profile_text: (B, 384) pooled history text; profile_image: (B, 1280) pooled photos.
            modality: (B, 4) modality preference features; has_history: (B,) bool.
            recent: (B, K, D) item-tower embeddings of the user's recent items.
            recent_mask: (B, K) bool, True where ``recent`` holds an item.
            item_tower: the item tower, whose text/photo experts embed the pooled history.
        """
        c = self.config
        if not c.use_profile:  # the text-only tower must not see anything about the user
            modality = torch.zeros_like(modality)
        if not c.use_query_text:  # the n-gram path: no MiniLM vector of the query anywhere
            text = torch.zeros_like(text)
        pooled = self.ebc(sparse).to_dict()
        q_text = pad_to(F.normalize(self.text(text), dim=-1), c.dim)  # (B, D)
        q_ngram = pad_to(F.normalize(self.ngram(pooled["query_ngrams"]), dim=-1), c.dim)
        has_ngrams = pooled["query_ngrams"].abs().sum(dim=1) > 0
        if c.use_profile:
            w = torch.softmax(self.base_gate(text), dim=1)  # (B, 2)
            base = F.normalize(w[:, :1] * q_text + w[:, 1:] * q_ngram, dim=-1)  # (B, D)
            sims = torch.einsum("bd,bkd->bk", base, recent)  # (B, K)
            any_recent = recent_mask.any(dim=1, keepdim=True)
            # how close the nearest recent item is to what was typed (0 without history)
            closest = sims.masked_fill(~recent_mask, -1.0).max(dim=1).values * any_recent[:, 0]
            att = (sims * self.attention_scale).masked_fill(~recent_mask, float("-inf"))
            att = torch.softmax(att.masked_fill(~any_recent, 0.0), dim=1) * any_recent
            attended = torch.einsum("bk,bkd->bd", att, recent)  # (B, D)
            if self.late:  # "the things I bought that look like what I typed", in item space
                # (B, D): unit in the learnt dimensions, the attended identity parts after
                profile = torch.cat(
                    [F.normalize(attended[:, : c.main_dim], dim=-1), attended[:, c.main_dim :]], 1
                )
            else:
                profile = self._profile_expert(
                    attended, profile_text, profile_image, modality, pooled, item_tower
                )
            has_profile = has_history
            if self.training and c.profile_dropout > 0:
                keep = torch.rand(has_history.shape, device=has_history.device) >= c.profile_dropout
                # nothing typed (a feed request): the profile is all there is, never hidden
                has_profile = has_profile & (keep | ~has_ngrams)
        else:
            profile = torch.zeros_like(q_text)
            has_profile = torch.zeros_like(has_history)
            closest = torch.zeros_like(q_text[:, 0])
        experts = torch.stack([q_text, q_ngram, profile], dim=1)  # (B, 3, D)
        available = torch.stack(
            [torch.ones_like(has_ngrams), has_ngrams, has_profile], dim=1
        )  # (B, 3)
        experts = experts * available.unsqueeze(-1)
        if c.fusion == "concat":
            emb = F.normalize(self.concat(torch.cat([experts.flatten(1), modality], 1)), dim=-1)
            return TowerOutput(emb, experts, available)
        gate_in = torch.cat([text, modality, has_profile.float().unsqueeze(1)], dim=1)
        if self.late:
            return self._add_profile(experts, available, gate_in, modality, has_profile, closest)
        return self.mixture(experts, available, gate_in)

    def _profile_expert(
        self,
        attended: torch.Tensor,
        profile_text: torch.Tensor,
        profile_image: torch.Tensor,
        modality: torch.Tensor,
        pooled: dict[str, torch.Tensor],
        item_tower: ItemTower,
    ) -> torch.Tensor:
        """The gated fusion's profile expert (B, D): the pooled history text and photos through
        the item tower's experts, the attended recent items (B, D), the recent categories and
        the modality preference (B, 4), projected to one unit vector."""
        p_text = F.normalize(item_tower.text(profile_text), dim=-1)
        if item_tower.image is not None:
            p_image = F.normalize(item_tower.image(profile_image), dim=-1)
        else:
            p_image = torch.zeros_like(p_text)
        p_cat = self.profile_categories(pooled["profile_categories"])  # (B, D)
        p_in = torch.cat([p_text, p_image, attended, p_cat, modality], dim=1)
        return F.normalize(self.profile(p_in), dim=-1)

    def _add_profile(
        self,
        experts: torch.Tensor,
        available: torch.Tensor,
        gate_in: torch.Tensor,
        modality: torch.Tensor,
        has_profile: torch.Tensor,
        closest: torch.Tensor,
    ) -> TowerOutput:
        """Late fusion: the query's own mixture q (unit) plus w_user * profile, normalised.

        experts (B, 3, D) with the profile last, available (B, 3), modality (B, 4),
        has_profile (B,), closest (B,): similarity of the recent item nearest to what was typed
        (w may grow when the shopper bought something like it before). With a product identity
        the profile's identity dimensions are weighted by w * w_id, w_id a second per-user
        factor from the same inputs. The returned gates (B, 3) are the effective weights of the
        experts in the unnormalised sum (so ``explain`` splits scores the same way for both
        fusions).
        """
        c = self.config
        own = self.mixture(experts[:, :2], available[:, :2], gate_in)
        assert own.gates is not None and own.norm is not None
        w_in = torch.cat([modality, has_profile.float().unsqueeze(1), closest.unsqueeze(1)], 1)
        weight = F.softplus(self.profile_weight(w_in)) * has_profile.unsqueeze(1)  # (B, 1)
        profile = weight * experts[:, 2]  # (B, D)
        if c.uses_identity:
            w_id = F.softplus(self.identity_weight(w_in)) * has_profile.unsqueeze(1)  # (B, 1)
            profile = torch.cat([profile[:, : c.main_dim], w_id * profile[:, c.main_dim :]], 1)
        mixed = own.embedding + profile  # (B, D)
        norm = mixed.norm(dim=1).clamp_min(1e-6)
        size = profile.norm(dim=1, keepdim=True)  # (B, 1): the profile's gate
        experts = torch.stack([experts[:, 0], experts[:, 1], profile / size.clamp_min(1e-6)], dim=1)
        gates = torch.cat([own.gates / own.norm.unsqueeze(1), size], dim=1)
        return TowerOutput(mixed / norm.unsqueeze(1), experts, available, gates, norm)
