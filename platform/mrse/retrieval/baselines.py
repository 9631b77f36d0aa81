"""Construct the baseline retrievers for a dataset."""

from __future__ import annotations

from typing import Literal

from mrse.data.dataset import Dataset
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import encode_texts, lazy_text_encoder
from mrse.retrieval.base import Retriever
from mrse.retrieval.bm25 import BM25Retriever
from mrse.retrieval.dense import DenseRetriever

BaselineName = Literal["bm25", "dense"]
BASELINES: tuple[BaselineName, ...] = ("bm25", "dense")


def build_baseline(name: str, dataset: Dataset, cache: FeatureCache) -> Retriever:
    """A baseline over ``dataset``'s catalog. ``dense`` reads/fills ``cache`` with item vectors."""
    if name == "bm25":
        return BM25Retriever(dataset.items["item_id"], dataset.item_texts)
    if name == "dense":
        encode = lazy_text_encoder()  # queries always need it; items only on a cold cache
        vectors, _ = encode_texts(dataset.item_texts, encode, cache, desc=dataset.name)
        has_text = vectors.any(axis=1)
        return DenseRetriever(dataset.items["item_id"], vectors, has_text, encode)
    raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
