"""Batch inference helpers: whole catalogs and query sets through the towers."""

from __future__ import annotations

import numpy as np
import torch

from mrse.features.catalog import CatalogFeatures
from mrse.features.queries import QueryFeatures
from mrse.models.towers import TowerOutput
from mrse.models.two_tower import MRSEModel, explain


@torch.no_grad()
def encode_catalog_outputs(
    model: MRSEModel,
    catalog: CatalogFeatures,
    batch_size: int = 4096,
    rows: np.ndarray | None = None,
) -> TowerOutput:
    """Every catalog item (or the catalog rows ``rows`` (n,)) through the item tower:
    embeddings (N, D) and, for gated experts, what they are made of (for explanations).
    Model put in eval mode and restored."""
    was_training = model.training
    model.eval()
    rows = np.arange(len(catalog)) if rows is None else np.asarray(rows, dtype=np.int64)
    out = []
    for s in range(0, len(rows), batch_size):
        out.append(model.encode_items(catalog.inputs(rows[s : s + batch_size])))
    model.train(was_training)
    if not out:
        return TowerOutput(torch.zeros(0, model.config.dim))
    return TowerOutput.cat(out)


@torch.no_grad()
def encode_catalog(
    model: MRSEModel, catalog: CatalogFeatures, batch_size: int = 4096
) -> torch.Tensor:
    """Every catalog item -> (N, D) unit vectors (model put in eval mode and restored).
    Only the embeddings are kept (the experts behind them would be 3x more, 1.5 GB at 1M)."""
    was_training = model.training
    model.eval()
    out = torch.empty(len(catalog), model.config.dim)
    for s in range(0, len(catalog), batch_size):
        rows = np.arange(s, min(s + batch_size, len(catalog)))
        out[s : s + len(rows)] = model.encode_items(catalog.inputs(rows)).embedding
    model.train(was_training)
    return out


@torch.no_grad()
def encode_queries(
    model: MRSEModel,
    queries: QueryFeatures,
    item_embeddings: torch.Tensor,
    rows: np.ndarray | None = None,
    batch_size: int = 1024,
) -> list[TowerOutput]:
    """Queries (all, or ``rows``) -> tower outputs in batches.

    Recent history items are looked up in ``item_embeddings`` (N, D).
    """
    was_training = model.training
    model.eval()
    rows = np.arange(len(queries)) if rows is None else np.asarray(rows)
    out = [
        model.encode_queries(queries.inputs(rows[s : s + batch_size]), item_embeddings)
        for s in range(0, len(rows), batch_size)
    ]
    model.train(was_training)
    return out


@torch.no_grad()
def explain_rows(
    model: MRSEModel,
    catalog: CatalogFeatures,
    query: TowerOutput,
    query_row: int,
    rows: np.ndarray,
) -> dict[str, torch.Tensor] | None:
    """Score shares (see ``explain``) of query ``query_row`` of ``query`` against catalog
    ``rows`` (n,): ``{name: (n,)}``, or None for a model without gated experts."""
    if query.gates is None or len(rows) == 0:
        return None
    items = model.encode_items(catalog.inputs(np.asarray(rows)))
    return explain(query.repeat_row(query_row, len(rows)), items)
