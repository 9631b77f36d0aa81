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
    photo_dropout: float = 0.0

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
        if not 0.0 <= self.photo_dropout < 1.0:
            raise ValueError("photo_dropout must be in [0, 1)")
        if not 0.0 <= self.profile_dropout < 1.0:
            raise ValueError("profile_dropout must be in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)
