"""A shopper's photo as a query: the item tower's vector of an item that has only that photo.

The item tower places a photo-only item where the same item with its text would be (docs/
model.md, "Every modality"), so a photo of a catalog item lands next to the item itself and the
items like it. The product identity's dimensions are zeroed: a photo names no known product (an
item without text would get a pseudo-random identity of its own, which is noise to a search).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mrse.features.catalog import FeatureStats, catalog_features, centre_unit
from mrse.features.inputs import FeatureShape
from mrse.models.inference import encode_catalog
from mrse.models.two_tower import MRSEModel


def photo_query_vectors(
    model: MRSEModel, stats: FeatureStats, shape: FeatureShape, features: np.ndarray
) -> np.ndarray:
    """Query vectors of photos from their frozen-encoder ``features`` (B, 1280), as the run's
    item tower embeds photo-only items (``stats``: the run's catalog means), identity zeroed.

    Returns:
        (B, D) float32 unit vectors.
    """
    n = len(features)
    blank = [""] * n
    items = pd.DataFrame({"item_id": [f"photo-{i}" for i in range(n)], "title": blank,
                          "description": blank, "category": blank, "brand": blank})  # fmt: skip
    text_dim = stats.text_mean.shape[0]
    catalog = catalog_features(
        items,
        np.zeros((n, text_dim), np.float32),
        np.zeros(n, bool),
        centre_unit(features, stats.image_mean),
        np.ones(n, bool),
        shape,
    )
    out = encode_catalog(model, catalog).numpy().astype(np.float32)
    identity = model.config.identity_size
    if identity:
        out[:, -identity:] = 0.0
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-6)
