"""Synthetic catalogs grown from a real one (mrse.features.synthetic), on raw arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrse.encoders.features import ItemFeatures
from mrse.features.catalog import FeatureStats, centre_unit
from mrse.features.synthetic import (
    category_filter,
    replica_id,
    synthetic_catalog,
    synthetic_events,
    synthetic_items,
)
from mrse.models.config import ModelConfig


def _base(b: int = 7, dt: int = 6, di: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(b)],
            "title": [f"red dress {j}" if j % 2 else "" for j in range(b)],
            "description": ["a dress" if j % 2 else "" for j in range(b)],
            "brand": ["acme"] * b,
            "category": ["dress" if j < 5 else "shoe" for j in range(b)],
            "price": [10.0 + j for j in range(b)],
        }
    )
    has_text = np.array([bool(t) for t in items["title"]])
    has_image = np.arange(b) != 3
    feats = ItemFeatures(
        item_ids=items["item_id"].to_numpy(dtype=object),
        text=rng.normal(size=(b, dt)).astype(np.float32) * has_text[:, None],
        has_text=has_text,
        image=np.abs(rng.normal(size=(b, di))).astype(np.float32) * has_image[:, None],
        has_image=has_image,
    )
    stats = FeatureStats(feats.text.mean(0), feats.image.mean(0))
    return items, feats, stats


def test_items_replicate_the_real_ones_with_their_categories_and_words():
    items, _, _ = _base()
    syn = synthetic_items(items, 23, seed=1)
    assert len(syn) == 23 and syn["item_id"].is_unique
    assert list(syn["item_id"][:7]) == list(items["item_id"])  # replica 0: the real ids
    assert syn["item_id"][7] == replica_id("i0", 1) == "i0~1"
    assert (syn["category"].to_numpy() == items["category"].to_numpy()[syn["base"]]).all()
    for title, base in zip(syn["title"][7:], syn["base"][7:], strict=True):
        real = items["title"][base].split()
        if real:  # the real words, shuffled, plus one more real title word
            assert sorted(title.split()[:-1]) == sorted(real)
            assert title.split()[-1] in {w for t in items["title"] for w in t.split()}
    assert syn["price"][:7].tolist() == items["price"].tolist()


def test_catalog_keeps_real_vectors_for_replica_zero_and_adds_noise_to_copies():
    items, feats, stats = _base()
    shape = ModelConfig(ngram_buckets=1024)
    syn = synthetic_catalog(items, feats, stats, shape, 20, noise=0.3, seed=2)
    cat = syn.features
    assert len(cat) == 20 and cat.text.shape == (20, 6) and cat.image.shape == (20, 10)
    real_text = centre_unit(feats.text, stats.text_mean, feats.has_text)
    np.testing.assert_allclose(cat.text[:7].numpy(), real_text, atol=1e-6)
    rows = syn.items["base"].to_numpy()
    assert (cat.has_text.numpy() == feats.has_text[rows]).all()
    assert (cat.has_image.numpy() == feats.has_image[rows]).all()
    # copies: unit vectors near their real item, not equal to it; absent modalities stay zero
    norms = np.linalg.norm(cat.image.numpy(), axis=1)
    np.testing.assert_allclose(norms[cat.has_image.numpy()], 1.0, atol=1e-5)
    assert (norms[~cat.has_image.numpy()] == 0).all()
    real_image = centre_unit(feats.image, stats.image_mean, feats.has_image)
    cos = (cat.image[7:14].numpy() * real_image).sum(1)[feats.has_image]
    assert (cos > 0.5).all() and (cos < 0.9999).all()
    assert cat.index["i2~1"] == 9 and cat.inputs(np.array([0, 9])).text.shape == (2, 6)


def test_events_grow_with_the_catalog_replica_by_replica():
    ev = pd.DataFrame(
        {"user_id": ["u1", None], "item_id": ["i0", "i1"], "ts": pd.to_datetime(["2020-01-01"] * 2),
         "event": ["click", "purchase"], "query": ["red", None]}
    )  # fmt: skip
    grown = synthetic_events(ev, n_items=25, n_base_items=7)  # 3 whole replicas
    assert len(grown) == 6
    assert list(grown["item_id"]) == ["i0", "i1", "i0~1", "i1~1", "i0~2", "i1~2"]
    assert list(grown["user_id"][:4]) == ["u1", None, "u1~1", None]
    assert len(synthetic_events(ev, n_items=3, n_base_items=7)) == 2  # at least the real log


@pytest.mark.parametrize("share", [0.1, 0.01, 0.3])
def test_category_filter_hits_about_the_share_asked_for(share):
    rng = np.random.default_rng(0)
    cats = pd.Series(rng.choice([f"c{i}" for i in range(200)], size=20_000, p=None))
    picked = category_filter(cats, share)
    got = cats.isin(picked).mean()
    assert 0.8 * share <= got <= 1.25 * share


def test_category_filter_with_only_big_categories_takes_the_smallest():
    cats = pd.Series(["a"] * 60 + ["b"] * 40)
    assert category_filter(cats, 0.01) == ("b",)


def test_ngrams_built_in_chunks_equal_the_whole():
    from mrse.features.catalog import jagged, jagged_ngrams
    from mrse.features.ngrams import ngram_ids

    texts = ["red dress", "", "blue slim jeans", "x"] * 5
    whole = jagged([ngram_ids(t, 1000) for t in texts])
    for chunk in (1, 3, 100):
        values, offsets = jagged_ngrams(texts, 1000, chunk)
        assert (values == whole[0]).all() and (offsets == whole[1]).all()
    values, offsets = jagged_ngrams([], 1000)
    assert values.size == 0 and offsets.tolist() == [0]


def test_catalog_embeddings_alone_equal_the_full_tower_outputs():
    """encode_catalog keeps only the embeddings (the trainer's index), batch by batch."""
    import torch

    from mrse.models.inference import encode_catalog, encode_catalog_outputs
    from mrse.models.two_tower import MRSEModel

    items, feats, stats = _base()
    shape = ModelConfig(dim=8, hidden=16, text_dim=6, image_dim=10, sparse_dim=8,
                        ngram_buckets=1024, category_buckets=64, brand_buckets=64)  # fmt: skip
    cat = synthetic_catalog(items, feats, stats, shape, 20).features
    torch.manual_seed(0)
    model = MRSEModel(shape)
    model.train()
    emb = encode_catalog(model, cat, batch_size=3)
    assert model.training  # restored
    full = encode_catalog_outputs(model, cat).embedding
    assert emb.shape == (20, 8) and torch.allclose(emb, full, atol=1e-6)
    rows = np.array([4, 0, 19])
    part = encode_catalog_outputs(model, cat, rows=rows).embedding
    assert torch.allclose(part, full[rows], atol=1e-6)
