from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrse.data.dataset import load_dataset
from mrse.evaluation.modality import (
    mean_pairwise_cosine,
    quarter_metrics,
    score_shares,
    shopper_modality,
)
from mrse.evaluation.repeats import BOUGHT_BEFORE, bought_before_groups
from mrse.features.catalog import catalog_features, hide_modality
from mrse.models.config import ModelConfig


def _catalog(items: pd.DataFrame, text_axis: list[int], image_axis: list[int]):
    """Unit vectors along the given axes (-1: the item has no such vector)."""
    n = len(items)
    text, image = np.zeros((n, 8), np.float32), np.zeros((n, 8), np.float32)
    for i, (t, m) in enumerate(zip(text_axis, image_axis, strict=True)):
        if t >= 0:
            text[i, t] = 1.0
        if m >= 0:
            image[i, m] = 1.0
    return catalog_features(
        items, text, np.array(text_axis) >= 0, image, np.array(image_axis) >= 0, ModelConfig()
    )


def test_mean_pairwise_cosine():
    same = np.tile([[1.0, 0.0]], (3, 1))
    assert mean_pairwise_cosine(same) == pytest.approx(1.0)
    assert mean_pairwise_cosine(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)
    assert mean_pairwise_cosine(np.eye(3)) == pytest.approx(0.0)


def test_shoppers_whose_purchases_look_alike_prefer_photos(make_dataset):
    items = [
        {"item_id": f"i{k}", "title": f"item {k}", "description": "", "brand": "B",
         "category": "Top", "price": 1.0, "image": f"images/i{k}.jpg"}
        for k in range(4)
    ]  # fmt: skip
    events = [
        {"user_id": "u1", "item_id": f"i{k}", "ts": f"2020-01-0{k + 1}", "event": "purchase",
         "query": None}
        for k in range(3)
    ]  # fmt: skip
    queries = [{"qid": "q1", "query": "top", "user_id": "u1", "ts": "2020-02-01"},
               {"qid": "q2", "query": "top", "user_id": None, "ts": None}]  # fmt: skip
    qrels = [{"qid": q, "item_id": "i3", "relevance": 1} for q in ("q1", "q2")]
    ds = load_dataset(make_dataset(items=items, events=events, queries=queries, qrels=qrels))
    # i0-i2: one photo direction, three text directions
    alike = shopper_modality(ds, _catalog(ds.items, [0, 1, 2, 3], [4, 4, 4, 5]))
    assert list(alike["qid"]) == ["q1"] and alike["items"].iloc[0] == 3
    assert alike["photo_agreement"].iloc[0] == pytest.approx(1.0)
    assert alike["text_agreement"].iloc[0] == pytest.approx(0.0)
    assert alike["photo_preference"].iloc[0] == pytest.approx(1.0)
    # the other way round: texts alike, photos apart
    reads_alike = shopper_modality(ds, _catalog(ds.items, [0, 0, 0, 3], [4, 5, 6, 7]))
    assert reads_alike["photo_preference"].iloc[0] == pytest.approx(-1.0)
    # an item without text does not count: two usable items remain
    no_text = shopper_modality(ds, _catalog(ds.items, [0, -1, 2, 3], [4, 4, 4, 5]))
    assert no_text["items"].iloc[0] == 2


def test_quarters_take_the_extremes_of_image_share():
    modality = pd.DataFrame(
        {"qid": [f"q{i}" for i in range(8)], "photo_preference": np.linspace(-0.3, 0.4, 8)}
    )
    per_query = {"m": {f"q{i}": {"ndcg@10": i, "mrr@10": 0.0, "hr@10": 1.0} for i in range(8)}}
    rows = {r["quarter"]: r for r in quarter_metrics(modality, per_query)}
    assert rows["most text-driven"]["queries"] == 2 and rows["most text-driven"]["ndcg@10"] == 0.5
    assert rows["most photo-driven"]["ndcg@10"] == 6.5
    assert rows["most photo-driven"]["photo_preference"] == pytest.approx(0.35)
    assert quarter_metrics(modality.iloc[:0], per_query) == []


def test_score_shares_are_fractions_of_the_explained_scores():
    expl = {
        "a": [{"score": 0.6, "text": 0.3, "image": 0.2, "profile": 0.1}],
        "b": [{"score": 0.0, "text": 0.1, "image": -0.1, "profile": 0.0}],  # no total: skipped
    }
    out = score_shares(expl)
    assert list(out["qid"]) == ["a"]
    assert out.iloc[0][["text", "image", "profile"]].sum() == pytest.approx(1.0)
    assert out.iloc[0]["image"] == pytest.approx(1 / 3)


def test_hiding_a_modality_leaves_the_other_and_the_original_intact(make_dataset):
    ds = load_dataset(make_dataset())
    catalog = _catalog(ds.items, [0, 1, -1], [2, 3, 4])
    photo = hide_modality(catalog, "photo")
    assert not photo.has_image.any() and photo.image.abs().sum() == 0
    assert photo.has_text.equal(catalog.has_text) and catalog.has_image.all()
    text = hide_modality(catalog, "text")
    assert not text.has_text.any()
    assert text.inputs(np.arange(3)).sparse["item_ngrams"].values().numel() == 0
    assert text.has_image.all() and (text.category_id == catalog.category_id).all()
    assert len(catalog.ngram_values) > 0
    with pytest.raises(ValueError, match="modality"):
        hide_modality(catalog, "audio")


def test_hiding_the_text_of_some_items_keeps_the_others_exactly():
    items = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "title": ["red dress", "blue jeans", "green top"],
            "description": ["", "", ""],
            "category": ["Dress", "Trousers", "Top"],
            "brand": ["B", "B", "B"],
        }
    )
    catalog = _catalog(items, [0, 1, 2], [3, 4, 5])
    out = hide_modality(catalog, "text", np.array([1]))
    assert out.has_text.tolist() == [True, False, True]
    assert out.text[1].abs().sum() == 0 and out.text[0].equal(catalog.text[0])
    before, after = catalog.inputs(np.array([0, 2])), out.inputs(np.array([0, 2]))
    assert before.sparse["item_ngrams"].values().equal(after.sparse["item_ngrams"].values())
    assert out.inputs(np.array([1])).sparse["item_ngrams"].values().numel() == 0
    photo = hide_modality(catalog, "photo", np.array([0, 2]))
    assert photo.has_image.tolist() == [False, True, False] and photo.image[1].equal(
        catalog.image[1]
    )


def test_queries_group_by_whether_the_shopper_bought_the_product_before(make_dataset):
    item = {"description": "Jersey.", "brand": "B", "category": "Top", "price": 1.0}
    items = [
        {**item, "item_id": "t-black", "title": "Vest top", "image": "images/a.jpg"},
        {**item, "item_id": "t-white", "title": "vest  TOP", "image": "images/b.jpg"},
        {**item, "item_id": "jeans", "title": "Jeans", "image": "images/c.jpg"},
        {**item, "item_id": "p1", "title": "", "description": "", "image": "images/d.jpg"},
        {**item, "item_id": "p2", "title": "", "description": "", "image": "images/e.jpg"},
    ]
    buy = {"event": "purchase", "query": None, "ts": "2020-01-01"}
    events = [
        {**buy, "user_id": "again", "item_id": "t-black"},
        {**buy, "user_id": "colour", "item_id": "t-white"},
        {**buy, "user_id": "other", "item_id": "jeans"},
        {**buy, "user_id": "photo", "item_id": "p1"},
    ]
    queries = [
        {"qid": q, "query": "black vest top", "user_id": u, "ts": "2020-02-01"}
        for q, u in [("q1", "again"), ("q2", "colour"), ("q3", "other"), ("q4", None)]
    ] + [{"qid": "q5", "query": "top", "user_id": "photo", "ts": "2020-02-01"}]
    qrels = [{"qid": q, "item_id": "t-black", "relevance": 2} for q in ("q1", "q2", "q3", "q4")] + [
        {"qid": "q1", "item_id": "jeans", "relevance": 1},
        {"qid": "q5", "item_id": "p2", "relevance": 2},  # image-only: only its own product
    ]
    ds = load_dataset(make_dataset(items=items, events=events, queries=queries, qrels=qrels))
    groups = bought_before_groups(ds)
    very, variant, neither = BOUGHT_BEFORE
    assert groups == {"q1": very, "q2": variant, "q3": neither, "q4": neither, "q5": neither}
