from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mrse.data.dataset import load_dataset
from mrse.evaluation.modality import (
    quarter_metrics,
    recall_by_item_modality,
    score_shares,
    shopper_modality,
)
from mrse.features.catalog import catalog_features, hide_modality
from mrse.features.profile import ProfileConfig
from mrse.models.config import ModelConfig
from mrse.retrieval.base import Ranking


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


class FixedRanking:
    """A retriever that returns the same ranking for every query."""

    name = "fixed"

    def __init__(self, ids: list[str]) -> None:
        self.ids = np.array(ids, dtype=object)

    def search(self, queries, k):
        return [Ranking(self.ids[:k], np.zeros(min(k, len(self.ids)))) for _ in queries]


def test_recall_is_split_between_items_with_text_and_image_only_items(make_dataset):
    ds = load_dataset(make_dataset())  # q1: i1 (text, bought), i3 (image-only); q2: i2 (text)
    has_text = {"i1": True, "i2": True, "i3": False}
    out = recall_by_item_modality(ds, FixedRanking(["i1", "i2"]), has_text, k=100)
    assert out["with text queries"] == 2 and out["with text recall@100"] == 1.0
    assert out["image-only queries"] == 1 and out["image-only recall@100"] == 0.0
    out = recall_by_item_modality(ds, FixedRanking(["i3", "i2"]), has_text, k=1)
    assert out["with text recall@1"] == 0.0 and out["image-only recall@1"] == 1.0


def test_shoppers_whose_purchases_look_alike_in_photos_have_a_high_image_share(make_dataset):
    ds = load_dataset(make_dataset())  # u1 bought i1 and i3 before q1; q2 is anonymous
    # i1 and i3: the same photo direction, different text directions (i3 has no text)
    alike = shopper_modality(ds, _catalog(ds.items, [0, 1, -1], [2, 3, 2]), ProfileConfig())
    assert list(alike["qid"]) == ["q1"] and alike["events"].iloc[0] == 2
    assert alike["image_coherence"].iloc[0] == pytest.approx(1.0)
    # photos pointing apart: the share falls below the text's
    apart = shopper_modality(ds, _catalog(ds.items, [0, 1, -1], [2, 3, 4]), ProfileConfig())
    assert apart["image_share"].iloc[0] < alike["image_share"].iloc[0]
    assert apart["image_share"].iloc[0] < 0.5


def test_quarters_take_the_extremes_of_image_share():
    modality = pd.DataFrame(
        {"qid": [f"q{i}" for i in range(8)], "image_share": np.linspace(0.1, 0.8, 8)}
    )
    per_query = {"m": {f"q{i}": {"ndcg@10": i, "mrr@10": 0.0, "hr@10": 1.0} for i in range(8)}}
    rows = {r["quarter"]: r for r in quarter_metrics(modality, per_query)}
    assert rows["most text-driven"]["queries"] == 2 and rows["most text-driven"]["ndcg@10"] == 0.5
    assert rows["most photo-driven"]["ndcg@10"] == 6.5
    assert rows["most photo-driven"]["image_share"] == pytest.approx(0.75)
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
    assert (
        not text.has_text.any()
        and text.inputs(np.arange(3)).sparse["item_ngrams"].values().numel() == 0
    )
    assert text.has_image.all() and (text.category_id == catalog.category_id).all()
    assert len(catalog.ngram_values) > 0
    with pytest.raises(ValueError, match="modality"):
        hide_modality(catalog, "audio")
