"""What the towers read: the features layer's output and the models layer's input.

``FeatureShape`` is the part of a model's configuration that decides how features are built
(hash buckets, history length, which modalities): ``mrse.models.config.ModelConfig`` satisfies
it, so features are built to a model's shape without this layer importing the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torchrec import KeyedJaggedTensor


class FeatureShape(Protocol):
    @property
    def ngram_buckets(self) -> int: ...
    @property
    def category_buckets(self) -> int: ...
    @property
    def brand_buckets(self) -> int: ...
    @property
    def recent_items(self) -> int: ...
    @property
    def use_image(self) -> bool: ...
    @property
    def use_profile(self) -> bool: ...


@dataclass
class ItemInputs:
    """Item features for N items (see ``mrse.features.catalog``)."""

    text: torch.Tensor  # (N, 384)
    has_text: torch.Tensor  # (N,) bool
    image: torch.Tensor  # (N, 1280)
    has_image: torch.Tensor  # (N,) bool
    sparse: KeyedJaggedTensor  # item_ngrams, item_category, item_brand; stride N
    identity: torch.Tensor  # (N,) int64: the product keys' uint64 hashes, bit for bit


@dataclass
class QueryInputs:
    """Query and profile features for B queries; ``recent`` indexes items (-1 = none)."""

    text: torch.Tensor  # (B, 384)
    sparse: KeyedJaggedTensor  # query_ngrams, profile_categories; stride B
    profile_text: torch.Tensor  # (B, 384)
    profile_image: torch.Tensor  # (B, 1280)
    modality: torch.Tensor  # (B, 4)
    has_history: torch.Tensor  # (B,) bool
    recent: torch.Tensor  # (B, K) long catalog rows, -1 padding
