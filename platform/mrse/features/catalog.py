"""Model-ready item features for a whole catalog, and batches of them as ``ItemInputs``."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torchrec import KeyedJaggedTensor

from mrse.data.dataset import Dataset
from mrse.data.products import product_key
from mrse.encoders.cache import FeatureCache
from mrse.encoders.features import ItemFeatures, encode_items
from mrse.features.identity import identity_hashes
from mrse.features.inputs import FeatureShape, ItemInputs
from mrse.features.ngrams import hashed_id, ngram_ids
from mrse.features.photo import photo_sketch
from mrse.features.profile import ProfileState, empty_profile


@dataclass(frozen=True)
class FeatureStats:
    """Catalog means subtracted from frozen-encoder vectors before normalising them.

    Centring removes the large shared component of MiniLM and (all-positive) EfficientNet
    features, so cosine and profile coherence measure what differs between items. Computed
    on the training catalog and stored with the run, so serving applies the same transform.
    """

    text_mean: np.ndarray  # (384,)
    image_mean: np.ndarray  # (1280,)

    @classmethod
    def fit(cls, feats: ItemFeatures) -> FeatureStats:
        text = feats.text[feats.has_text]
        image = feats.image[feats.has_image]
        return cls(
            text_mean=text.mean(0) if len(text) else np.zeros(feats.text.shape[1], np.float32),
            image_mean=image.mean(0) if len(image) else np.zeros(feats.image.shape[1], np.float32),
        )


def centre_unit(
    x: np.ndarray, mean: np.ndarray, present: np.ndarray | None = None, inplace: bool = False
) -> np.ndarray:
    """unit(x - mean) row-wise (N, D); rows not ``present`` stay zero. ``inplace``: overwrite
    ``x`` (float32) instead of allocating a copy (a 1M-item catalog's photo features are 5 GB),
    a block of rows at a time."""
    out = x if inplace and x.dtype == np.float32 else x.astype(np.float32)
    m = mean.astype(np.float32)
    for s in range(0, len(out), 65_536):
        block = out[s : s + 65_536]
        block -= m
        block /= np.maximum(np.linalg.norm(block, axis=-1, keepdims=True), 1e-6)
    if present is not None:
        out[~present] = 0.0
    return out


def jagged(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged int lists -> (values, offsets (N+1,))."""
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter((v for x in lists for v in x), dtype=np.int64, count=int(offsets[-1]))
    return values, offsets


def jagged_ngrams(
    texts: Sequence[str], buckets: int, chunk: int = 50_000
) -> tuple[np.ndarray, np.ndarray]:
    """Hashed n-grams of each text as (values, offsets (N+1,)), built ``chunk`` texts at a time
    (a list of lists for a million titles is over a gigabyte of Python ints)."""
    values, lengths = [], []
    for s in range(0, len(texts), chunk):
        v, o = jagged([ngram_ids(t, buckets) for t in texts[s : s + chunk]])
        values.append(v)
        lengths.append(np.diff(o))
    lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths_all, out=offsets[1:])
    return (np.concatenate(values) if values else np.zeros(0, np.int64)), offsets


def gather_jagged(
    values: np.ndarray, offsets: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ragged rows ``rows`` -> (values, lengths)."""
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = ends - starts
    if lengths.sum() == 0:
        return np.zeros(0, np.int64), lengths
    return np.concatenate([values[s:e] for s, e in zip(starts, ends, strict=True)]), lengths


@dataclass
class CatalogFeatures:
    """Row-aligned features of every catalog item.

    Attributes:
        item_ids: (N,) ids; ``index`` maps id -> row.
        text: (N, 384) centred unit MiniLM vectors; image: (N, 1280) centred unit photo vectors.
        has_text / has_image: (N,) bool.
        ngram_values / ngram_offsets: hashed n-grams of title + category, ragged.
        category_id / brand_id: (N,) hashed ids (0 = none); categories: (N,) raw strings.
        identity: (N,) uint64 hashes of the items' product keys (``mrse.features.identity``).
        sketch: (N, SKETCH_DIM) the photo channel's sketches of the whole photos
            (``mrse.features.photo``; zero rows: no photo); None: not encoded (no channel).
    """

    item_ids: np.ndarray
    index: dict[str, int]
    text: torch.Tensor
    has_text: torch.Tensor
    image: torch.Tensor
    has_image: torch.Tensor
    ngram_values: np.ndarray
    ngram_offsets: np.ndarray
    category_id: np.ndarray
    brand_id: np.ndarray
    categories: np.ndarray
    identity: np.ndarray
    sketch: torch.Tensor | None = None

    def cold_profile(self) -> ProfileState:
        """The profile of a shopper with no history, in this catalog's vector sizes."""
        return empty_profile(self.text.shape[1], self.image.shape[1])

    def __len__(self) -> int:
        return len(self.item_ids)

    def inputs(self, rows: np.ndarray | torch.Tensor) -> ItemInputs:
        """Model inputs for catalog rows ``rows`` (n,)."""
        rows = np.asarray(rows, dtype=np.int64)
        values, lengths = gather_jagged(self.ngram_values, self.ngram_offsets, rows)
        cat, brand = self.category_id[rows], self.brand_id[rows]
        cat_len, brand_len = (cat > 0).astype(np.int64), (brand > 0).astype(np.int64)
        sparse = KeyedJaggedTensor.from_lengths_sync(
            keys=["item_ngrams", "item_category", "item_brand"],
            values=torch.from_numpy(np.concatenate([values, cat[cat > 0], brand[brand > 0]])),
            lengths=torch.from_numpy(np.concatenate([lengths, cat_len, brand_len])),
        )
        t = torch.from_numpy(rows)
        return ItemInputs(
            text=self.text[t],
            has_text=self.has_text[t],
            image=self.image[t],
            has_image=self.has_image[t],
            sparse=sparse,
            identity=torch.from_numpy(self.identity[rows].view(np.int64)),
        )


MODALITIES = ("photo", "text")


def hide_modality(
    catalog: CatalogFeatures, modality: str, rows: np.ndarray | None = None
) -> CatalogFeatures:
    """``catalog`` as if its items (or only those at ``rows``) had no photo (``photo``) or no
    text (``text``: the MiniLM vector and the title/category n-grams gone, each item its own
    product; category and brand ids stay), to measure how the towers cope when a modality is
    missing at serving time. ``catalog`` is not modified."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    hidden = np.ones(len(catalog), bool) if rows is None else np.zeros(len(catalog), bool)
    if rows is not None:
        hidden[np.asarray(rows, dtype=np.int64)] = True
    keep = torch.from_numpy(~hidden)
    if modality == "photo":
        return replace(
            catalog,
            image=catalog.image * keep.unsqueeze(1),
            has_image=catalog.has_image & keep,
            sketch=None if catalog.sketch is None else catalog.sketch * keep.unsqueeze(1),
        )
    lengths = np.diff(catalog.ngram_offsets) * ~hidden
    offsets = np.zeros_like(catalog.ngram_offsets)
    np.cumsum(lengths, out=offsets[1:])
    owner = np.repeat(np.arange(len(catalog)), np.diff(catalog.ngram_offsets))
    identity = catalog.identity.copy()  # an item whose text is unknown is its own product
    unknown = np.flatnonzero(hidden)
    identity[unknown] = identity_hashes(
        product_key(i, None, None) for i in catalog.item_ids[unknown]
    )
    return replace(
        catalog,
        text=catalog.text * keep.unsqueeze(1),
        has_text=catalog.has_text & keep,
        ngram_values=catalog.ngram_values[~hidden[owner]],
        ngram_offsets=offsets,
        identity=identity,
    )


# How `mrse eval --hide` and the ablation's missing-modality table take modalities away:
# every photo; every text; the text of the judged items only (the items to find become
# image-only among items that keep theirs, as half of a real catalog is); a seeded mix of a
# catalog in flux (text gone from half of all items, photos from a tenth, drawn apart).
HIDE_CHOICES = ("photo", "text", "judged-text", "random")
RANDOM_TEXT_SHARE = 0.5
RANDOM_PHOTO_SHARE = 0.1


def hidden_catalog(
    catalog: CatalogFeatures,
    hide: str,
    judged: Collection[str] = (),
    seed: int = 0,
) -> CatalogFeatures:
    """``catalog`` with a modality taken away as ``hide`` (one of ``HIDE_CHOICES``) says;
    ``judged``: the item ids of ``judged-text``. Not modified in place."""
    if hide not in HIDE_CHOICES:
        raise ValueError(f"hide must be one of {HIDE_CHOICES}, got {hide!r}")
    if hide in MODALITIES:
        return hide_modality(catalog, hide)
    if hide == "judged-text":
        rows = np.array([catalog.index[i] for i in judged if i in catalog.index], np.int64)
        return hide_modality(catalog, "text", rows)
    rng = np.random.default_rng(seed)
    text_rows = np.flatnonzero(rng.random(len(catalog)) < RANDOM_TEXT_SHARE)
    photo_rows = np.flatnonzero(rng.random(len(catalog)) < RANDOM_PHOTO_SHARE)
    return hide_modality(hide_modality(catalog, "text", text_rows), "photo", photo_rows)


def build_catalog_features(
    dataset: Dataset,
    feats: ItemFeatures,
    stats: FeatureStats,
    config: FeatureShape,
    inplace: bool = False,
) -> CatalogFeatures:
    """Turn a dataset's frozen-encoder features into model inputs (any catalog, seen or not),
    with the photo channel's sketches where ``feats`` has the whole photos' features.
    ``inplace``: centre ``feats``' vectors where they are (the caller no longer needs them)."""
    catalog = catalog_features(
        dataset.items,
        centre_unit(feats.text, stats.text_mean, feats.has_text, inplace),
        feats.has_text.copy(),
        centre_unit(feats.image, stats.image_mean, feats.has_image, inplace),
        feats.has_image.copy(),
        config,
        dict(dataset.item_index),
    )
    if feats.whole is not None:
        whole = centre_unit(feats.whole, stats.image_mean, feats.has_image, inplace)
        catalog.sketch = torch.from_numpy(photo_sketch(whole, feats.has_image))
    return catalog


def catalog_features(
    items: pd.DataFrame,
    text: np.ndarray,
    has_text: np.ndarray,
    image: np.ndarray,
    has_image: np.ndarray,
    config: FeatureShape,
    index: dict[str, int] | None = None,
) -> CatalogFeatures:
    """Model inputs from items' attributes (item_id, title, description, category, brand) and
    their centred unit vectors: text (N, Dt), image (N, Di), with (N,) presence masks;
    ``index``: id -> row (built from ``items`` if not given)."""
    texts = [f"{t} {c}" for t, c in zip(items["title"], items["category"], strict=True)]
    values, offsets = jagged_ngrams(texts, config.ngram_buckets)
    ids = items["item_id"].to_numpy(dtype=object)
    return CatalogFeatures(
        item_ids=ids,
        index=index if index is not None else {x: i for i, x in enumerate(ids)},
        text=torch.from_numpy(text),
        has_text=torch.from_numpy(has_text),
        image=torch.from_numpy(image),
        has_image=torch.from_numpy(has_image),
        ngram_values=values,
        ngram_offsets=offsets,
        category_id=np.array(
            [hashed_id(c, config.category_buckets) for c in items["category"]], dtype=np.int64
        ),
        brand_id=np.array(
            [hashed_id(b, config.brand_buckets) for b in items["brand"]], dtype=np.int64
        ),
        categories=items["category"].to_numpy(dtype=object),
        identity=identity_hashes(
            product_key(i, t, d)
            for i, t, d in zip(ids, items["title"], items["description"], strict=True)
        ),
    )


def model_catalog(
    dataset: Dataset,
    cache: FeatureCache,
    config: FeatureShape,
    stats: FeatureStats | None = None,
    images: bool | None = None,
) -> tuple[CatalogFeatures, FeatureStats]:
    """Encode ``dataset``'s items and build the model's catalog features, centred with
    ``stats`` (a run's) or, for a new run, statistics fitted here. Photos are encoded if the
    model reads them, unless ``images`` says otherwise."""
    if images is None:
        images = config.use_image or config.use_profile
    feats, _ = encode_items(dataset, cache, images=images)
    stats = stats or FeatureStats.fit(feats)
    return build_catalog_features(dataset, feats, stats, config, inplace=True), stats
