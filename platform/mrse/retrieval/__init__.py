"""Retrievers: the baselines (BM25, zero-shot dense) and the protocol every model implements."""

from mrse.retrieval.base import QueryContext, Ranking, Retriever

__all__ = ["QueryContext", "Ranking", "Retriever"]
