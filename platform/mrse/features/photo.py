"""The photo channel: a short, fixed sketch of an item's whole photo, for shop by photo.

The item tower's vector says what an item *is like* (a photo-only query lands among the items
like it); it is not built to recognise the very product in a shopper's photo, which the frozen
photo encoder does better (``mrse eval --task photo``), and best when it sees the whole photo:
a shopper's photo shows some part of the product photo, rarely its centre, which is all the
towers' input keeps (``mrse.encoders.image.FRAMES``). The sketch is a fixed, seeded Gaussian
projection of the whole photo's EfficientNet vector (squashed to 224x224; centred with the
run's photo mean, ``FeatureStats.image_mean``, and unit) to ``SKETCH_DIM`` dimensions
(Johnson-Lindenstrauss: inner products are kept within a small error; no fitting, so every
catalog and process computes the same sketch for a run), unit length. Stored with the item in
the index payload (``mrse.index.points``) and searched as a vector of its own
(``mrse.index.base.PHOTO``), it re-ranks the candidates the towers bring for a photo together
with its own nearest sketches:

    score = dense(item) + PHOTO_WEIGHT * sketch(photo) . sketch(item)

(measured on ``hm`` and ``myntra``: docs/benchmarks.md, "Shop by photo").
"""

from __future__ import annotations

import functools

import numpy as np

# a photo query is decoded into this frame (``mrse.encoders.image.FRAMES``), for the towers and
# the sketch alike: one encoder pass (the towers on the centre instead: the same found@10 and
# nDCG@10 within 0.01 on hm, for twice the encoding; docs/benchmarks.md, "Shop by photo")
QUERY_FRAME = "whole"
SKETCH_DIM = 128
SKETCH_SEED = 20261202
PHOTO_WEIGHT = 3.0  # what a photo identical to the item's own adds, in cosine units
PHOTO_CANDIDATES = 1000  # the towers' candidates re-ranked per photo query
# ... and the photo channel's own (the nearest sketches, ``mrse.index.base.PHOTO``): an item
# with only a photo is often beyond the towers' 1,000 for its own photo (the towers say what a
# photo is like, and thousands of photo-only items are like it)
PHOTO_OWN_CANDIDATES = 100


@functools.lru_cache(maxsize=4)
def _projection(dim: int) -> np.ndarray:
    rng = np.random.default_rng(SKETCH_SEED)
    return (rng.standard_normal((dim, SKETCH_DIM)) / np.sqrt(SKETCH_DIM)).astype(np.float32)


def photo_sketch(photo: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    """Sketches of centred unit whole-photo vectors ``photo`` (N, Di): (N, SKETCH_DIM) float32
    unit rows, zero where not ``present`` (N,) (an item without a photo)."""
    x = np.asarray(photo, dtype=np.float32) @ _projection(photo.shape[1])
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    if present is not None:
        x[~np.asarray(present, bool)] = 0.0
    return x


def photo_rerank(
    dense: np.ndarray, query_sketch: np.ndarray, item_sketches: np.ndarray
) -> np.ndarray:
    """Fused scores of one photo query's candidates: ``dense`` (n,) their dense scores,
    ``query_sketch`` (SKETCH_DIM,), ``item_sketches`` (n, SKETCH_DIM) (zero rows: no photo)."""
    return dense + PHOTO_WEIGHT * (item_sketches @ query_sketch)
