"""Shop by photo, measured on any dataset in the layout: a shopper's photo of an item in, the item
and the items like it out.

The cases are ``mrse.evaluation.similar``'s (a relevant item of a judged test query, the query's
other relevant items), with the seed's own catalog photo altered as a shopper's photo of the
same product would be: a crop of 60-95% of each side at a random place, mirrored half the time,
resized to 200-900 pixels wide and saved as a JPEG of quality 35-90 (one seeded draw per case).
The photo's own item and the query's other relevant items are the targets (a trained run ranks
as the server does: the towers' candidates re-ranked with the photo channel, ``rank_photos``):

- ``found@10``: the photo's own item in the top 10;
- ``ndcg@10``: over the own item (at its grade) and the others.

The judged items all have text on ``hm``; a catalog's items with a photo and no text (half of
``hm``'s) are measured apart (``photo_only_cases``): ``found@10 photo-only``, the item itself in
the top 10 for its altered photo.
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mrse.data.dataset import Dataset
from mrse.evaluation.similar import SimilarCase, similar_cases
from mrse.features.photo import PHOTO_CANDIDATES, PHOTO_OWN_CANDIDATES, photo_rerank
from mrse.metrics.ranking import hit_rate_at_k, ndcg_at_k

PHOTO_METRICS = ("found@10", "ndcg@10")
PHOTO_ONLY_METRIC = "found@10 photo-only"
PHOTO_ONLY_CASES = 300


def photo_cases(dataset: Dataset, seed: int = 0) -> tuple[list[SimilarCase], dict[str, str]]:
    """``dataset``'s more-like-this cases (``similar_cases``, drawn by ``seed``) whose seed item
    has a photo, and every item's photo path by id ("" for none)."""
    photos = dict(zip(dataset.items["item_id"], dataset.items["image"], strict=True))
    cases = similar_cases(dataset.qrels, dataset.items["item_id"], seed=seed)
    return [c for c in cases if photos.get(c.seed)], photos


def photo_only_cases(
    items: pd.DataFrame, n: int = PHOTO_ONLY_CASES, seed: int = 0
) -> list[SimilarCase]:
    """At most ``n`` of the catalog ``items`` (the layout's ``item_id``, ``title``,
    ``description``, ``image``) that have a photo and neither title nor description, drawn by
    ``seed``: a case each, the item to find by its own (altered) photo."""
    blank = [items[c].fillna("").astype(str).str.strip() == "" for c in ("title", "description")]
    has_photo = items["image"].fillna("").astype(str) != ""
    ids = sorted(items.loc[blank[0] & blank[1] & has_photo, "item_id"])
    drawn = random.Random(seed).sample(ids, min(n, len(ids)))
    return [SimilarCase(f"photo-only:{i}", i, {}) for i in drawn]


def alter_photo(path: str | Path, rng: random.Random) -> bytes:
    """``path``'s photo as a shopper would take it (see the module docstring), JPEG bytes."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        cw, ch = round(w * rng.uniform(0.6, 0.95)), round(h * rng.uniform(0.6, 0.95))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im = im.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        width = rng.randint(200, 900)
        im = im.resize((width, max(1, round(ch * width / cw))), Image.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=rng.randint(35, 90))
    return buf.getvalue()


def photo_targets(case: SimilarCase) -> dict[str, int]:
    """What a photo query of ``case``'s seed wants: the seed at its grade, and the others."""
    return {**case.targets, case.seed: case.grade}


def rank_photos(
    items: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    sketches: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Rows of the best ``k`` catalog items for each photo query, as a server answers it.

    Args:
        items: (N, D) catalog vectors; queries: (Q, D) photo query vectors.
        sketches: (catalog (N, S), queries (Q, S)) photo sketches (zero rows: no photo): the
            towers' best ``PHOTO_CANDIDATES`` and the nearest ``PHOTO_OWN_CANDIDATES``
            sketches re-ranked with them (``mrse.features.photo``); None: the dense ranking
            alone.
    Returns:
        (Q, k) rows, best first.
    """
    out = []
    n = min(PHOTO_CANDIDATES, items.shape[0])
    if sketches is not None:
        photo = np.flatnonzero(np.abs(sketches[0]).sum(axis=1) > 0)  # what the channel holds
        held, m = sketches[0][photo], min(PHOTO_OWN_CANDIDATES, len(photo))
    for s in range(0, len(queries), 256):
        scores = queries[s : s + 256] @ items.T  # (B, N)
        if sketches is None:
            out.append(np.argsort(-scores, axis=1, kind="stable")[:, :k])
            continue
        near = sketches[1][s : s + 256] @ held.T  # (B, items with a photo)
        for b, row in enumerate(scores):
            cand = np.argsort(-row, kind="stable")[:n]
            own = photo[np.argsort(-near[b], kind="stable")[:m]]
            cand = np.concatenate([cand, own[~np.isin(own, cand)]])
            fused = photo_rerank(row[cand], sketches[1][s + b], sketches[0][cand])
            out.append(cand[np.argsort(-fused, kind="stable")[:k]][None])
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)


def evaluate_photo(
    cases: Sequence[SimilarCase], item_ids: Sequence[str], ranked: np.ndarray
) -> dict[str, float]:
    """Mean ``PHOTO_METRICS`` of the rankings ``ranked`` (Q, >=10) catalog rows, one per case,
    of the catalog ``item_ids``."""
    if not len(cases):
        raise ValueError("no shop-by-photo cases: no judged query has two relevant items")
    ids = np.asarray(item_ids, dtype=object)
    found, ndcg = [], []
    for case, rows in zip(cases, ranked, strict=True):
        got = list(ids[rows[:10]])
        found.append(hit_rate_at_k(got, {case.seed: 1}, 10, 1))
        ndcg.append(ndcg_at_k(got, photo_targets(case), 10))
    return {"found@10": float(np.mean(found)), "ndcg@10": float(np.mean(ndcg))}
