"""Model configuration: the only constructor input of the towers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Fusion = Literal["lmoe", "concat"]
ProfileFusion = Literal["gate", "late"]


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and switches of the two towers.

    ``use_image`` / ``use_profile`` turn a modality off everywhere (the ablations and the
    text-tower baseline); ``fusion="concat"`` replaces the gated experts with concat + MLP.
    """

    dim: int = 128
    hidden: int = 256
    text_dim: int = 384
    image_dim: int = 1280
    sparse_dim: int = 64
    ngram_buckets: int = 1 << 17
    category_buckets: int = 1 << 12
    brand_buckets: int = 1 << 12
    recent_items: int = 20
    use_image: bool = True
    use_profile: bool = True
    # False: the query tower never sees the MiniLM query vector (n-grams and profile only), so
    # serving needs no text encoder at all
    use_query_text: bool = True
    fusion: Fusion = "lmoe"
    dropout: float = 0.1
    # Training only: hide the profile from this fraction of queries, so the query tower cannot
    # lean on the user at the expense of what they typed (0 = off).
    profile_dropout: float = 0.5
    # How the profile enters the query vector (lmoe fusion). "late": after the query's own
    # mixture q of what was typed, as w_user * p with p = the shopper's recent items attended by
    # q (score = q . item + w_user * p . item, one dot product); "gate": the profile expert as a
    # third expert of the query's softmax gate (runs saved before "late" existed).
    profile_fusion: ProfileFusion = "late"
    # Training only: hide the photo of this share of the items that also have text, so the
    # towers do not lean on photos alone (a catalog whose photos are missing still retrieves).
    photo_dropout: float = 0.1
    # Training only: hide the text (MiniLM vector and n-grams) of this share of the items that
    # also have a photo, so an item with a photo alone is placed where it would be with its
    # text (half of a real catalog has no text). One draw per item with photo_dropout: an
    # item never loses both. (docs/model.md, "Every modality": 0.3 cost myntra 1%.)
    text_dropout: float = 0.15
    # The last identity_dim of the dim dimensions hold a fixed pseudo-random vector of the
    # item's product (the variants of one product share it; mrse.features.identity), so the
    # late profile can recognise the very product a shopper bought before; the learnt experts
    # live in the other dim - identity_dim, where what was typed cannot see it. None: dim / 4;
    # 0: none. Used only with the late profile (nothing else could read it): see identity_size.
    identity_dim: int | None = None

    def __post_init__(self) -> None:
        if self.dim < 8 or self.hidden < 8:
            raise ValueError("dim and hidden must be >= 8")
        if self.fusion not in ("lmoe", "concat"):
            raise ValueError(f"fusion must be 'lmoe' or 'concat', got {self.fusion!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.profile_fusion not in ("gate", "late"):
            raise ValueError(
                f"profile_fusion must be 'gate' or 'late', got {self.profile_fusion!r}"
            )
        if not 0.0 <= self.photo_dropout < 1.0 or not 0.0 <= self.text_dropout < 1.0:
            raise ValueError("photo_dropout and text_dropout must be in [0, 1)")
        if self.photo_dropout + self.text_dropout >= 1.0:
            raise ValueError("photo_dropout + text_dropout must be < 1 (an item keeps one)")
        if self.identity_dim is not None and not 0 <= self.identity_dim <= self.dim // 2:
            raise ValueError(f"identity_dim must be in [0, dim / 2 = {self.dim // 2}]")
        if not 0.0 <= self.profile_dropout < 1.0:
            raise ValueError("profile_dropout must be in [0, 1)")

    @property
    def late_profile(self) -> bool:
        """Whether the profile enters by late fusion (a profile, gated experts, ``late``)."""
        return self.use_profile and self.fusion == "lmoe" and self.profile_fusion == "late"

    @property
    def identity_size(self) -> int:
        """The dimensions of the product identity; 0 without one (it pays only through the
        late profile, so a model without one leaves it out)."""
        if not self.late_profile:
            return 0
        return self.dim // 4 if self.identity_dim is None else self.identity_dim

    @property
    def uses_identity(self) -> bool:
        """Whether the vectors carry a product identity (``identity_size`` > 0)."""
        return self.identity_size > 0

    @property
    def main_dim(self) -> int:
        """The dimensions the learnt experts use: ``dim`` less the identity's."""
        return self.dim - self.identity_size

    def to_dict(self) -> dict:
        return asdict(self)
