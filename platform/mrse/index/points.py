"""What an index holds per item, computed in one place for `mrse index` and the catalog worker.

Per item: the item tower's unit vector (what the index searches), the item's lexical terms (the
hybrid search's sparse vector, the same for every model version: ``lexical_terms``), and a
payload with the filterable attributes (``category``, ``brand``, ``price``, ``stock``) plus, for
models with gated experts, ``_x``: what the explanations need (the gated expert vectors and the
mixture's norm, float32, base64), and ``_p``: the sketch of its photo for shop by photo
(``mrse.features.photo``, float16, base64; items without a photo have none; the index also
searches it as its ``photo`` vector: ``mrse.index.base.PHOTO``). The server reads
``_x`` (and the sketches) from the hits it returns, so it keeps no per-item state of its own.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence

import numpy as np
import torch

from mrse.features.catalog import CatalogFeatures
from mrse.features.lexical import item_terms
from mrse.index.base import PHOTO_KEY, stock_payload
from mrse.models.inference import encode_catalog_outputs
from mrse.models.towers import TowerOutput
from mrse.models.two_tower import MRSEModel

EXPLAIN_KEY = "_x"


def photo_blobs(catalog: CatalogFeatures, rows: np.ndarray) -> list[str | None]:
    """The ``_p`` payload value of catalog ``rows`` (n,): their photo sketches, float16 base64
    (None for an item without a photo, and for all of a catalog encoded without its whole
    photos)."""
    if catalog.sketch is None:
        return [None] * len(rows)
    has = catalog.has_image[torch.from_numpy(rows)].numpy()
    sketches = catalog.sketch[torch.from_numpy(rows)].numpy().astype("<f2")
    return [base64.b64encode(s.tobytes()).decode("ascii") if h else None
            for s, h in zip(sketches, has, strict=True)]  # fmt: skip


def attribute_payload(
    category: str, brand: str, price: float | None, in_stock: bool = True
) -> dict:
    """The filterable payload of one item; an unknown price is left out (price filters then
    exclude the item)."""
    p: dict = {"category": category, "brand": brand, **stock_payload(in_stock)}
    if price is not None and not math.isnan(price):
        p["price"] = float(price)
    return p


def lexical_terms(items) -> list[dict[int, float]]:
    """Each item's lexical terms (id -> weight), from a frame with the layout's ``title``,
    ``description``, ``brand`` and ``category`` columns (``mrse.features.lexical``)."""
    return [
        item_terms(t, d, b, c)
        for t, d, b, c in zip(
            items["title"], items["description"], items["brand"], items["category"], strict=True
        )
    ]


def attribute_patch(attributes: dict) -> dict:
    """The payload keys a change of ``attributes`` (``price`` and/or ``in_stock``) sets."""
    patch: dict = {}
    if attributes.get("price") is not None:
        patch["price"] = float(attributes["price"])
    if "in_stock" in attributes:
        patch.update(stock_payload(attributes["in_stock"]))
    return patch


def explain_blobs(out: TowerOutput) -> list[str | None]:
    """Per row of an item tower's output: its ``_x`` payload value (None for concat fusion).

    ``gates (N, E)`` times ``experts (N, E, D)`` and ``norm (N,)``: (N, E*D + 1) float32."""
    if out.gates is None or out.experts is None or out.norm is None:
        return [None] * out.embedding.shape[0]
    gated = (out.gates.unsqueeze(-1) * out.experts).flatten(1)
    rows = torch.cat([gated, out.norm.reshape(-1, 1)], dim=1).numpy().astype("<f4")
    return [base64.b64encode(r.tobytes()).decode("ascii") for r in rows]


def explain_outputs(blobs: Sequence[str], dim: int) -> TowerOutput:
    """``explain_blobs``'s values (of one model, dimension ``dim``) back as an item tower output
    ``explain`` can read (gates of one: the stored experts are already gated)."""
    flat = np.frombuffer(b"".join(base64.b64decode(b) for b in blobs), dtype="<f4")
    experts = (len(flat) // max(len(blobs), 1) - 1) // dim
    rows = torch.from_numpy(flat.reshape(len(blobs), experts * dim + 1).copy())
    gated = rows[:, :-1].reshape(len(blobs), experts, dim)
    return TowerOutput(
        embedding=torch.zeros(len(blobs), dim),
        experts=gated,
        gates=torch.ones(len(blobs), experts),
        norm=rows[:, -1],
    )


def item_points(
    model: MRSEModel,
    catalog: CatalogFeatures,
    attributes: Sequence[dict],
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Every item of ``catalog`` (or its rows ``rows`` (n,), ``attributes`` aligned with them)
    through the item tower: vectors (n, D) float32 and payloads (``attributes[i]`` plus ``_x``
    where the model explains, ``_p`` where the item has a photo)."""
    out = encode_catalog_outputs(model, catalog, rows=rows)
    blobs = explain_blobs(out)
    sketches = photo_blobs(catalog, np.arange(len(catalog)) if rows is None else np.asarray(rows))
    payloads = []
    for a, b, p in zip(attributes, blobs, sketches, strict=True):
        payload = dict(a)
        if b is not None:
            payload[EXPLAIN_KEY] = b
        if p is not None:
            payload[PHOTO_KEY] = p
        payloads.append(payload)
    return out.embedding.numpy().astype(np.float32), payloads
