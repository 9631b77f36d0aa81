"""Shop by photo: the photo sketch, the re-ranking, the altered shots and the request's checks."""

from __future__ import annotations

import io
import random
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mrse.encoders.image import ImageDecodeError, ImageTooLarge, preprocess
from mrse.evaluation.photo import alter_photo, evaluate_photo, photo_only_cases, rank_photos
from mrse.evaluation.similar import SimilarCase
from mrse.features.photo import (
    PHOTO_CANDIDATES,
    PHOTO_OWN_CANDIDATES,
    PHOTO_WEIGHT,
    SKETCH_DIM,
    photo_rerank,
    photo_sketch,
)
from mrse.serving.validation import MAX_PHOTO_BYTES, InvalidRequest, TooLarge, validate_photo
from mrse.v1 import search_pb2


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_the_sketch_is_fixed_short_unit_and_keeps_similarity():
    rng = np.random.default_rng(0)
    x = _unit(rng.normal(size=(200, 1280)).astype(np.float32))
    near = _unit(x + 0.3 * _unit(rng.normal(size=x.shape).astype(np.float32)))
    s, t = photo_sketch(x), photo_sketch(near)
    assert s.shape == (200, SKETCH_DIM) and np.allclose(np.linalg.norm(s, axis=1), 1, atol=1e-5)
    assert np.array_equal(s, photo_sketch(x))  # no state, no fitting: the same everywhere
    # an item's own (slightly altered) photo is far nearer than any other item's
    own, other = (s * t).sum(1), (s @ t.T)[~np.eye(200, dtype=bool)]
    assert own.min() > np.quantile(other, 0.999)
    absent = photo_sketch(x[:3], np.array([True, False, True]))
    assert not absent[1].any() and absent[0].any()


def test_rerank_adds_the_weighted_sketch_similarity():
    dense = np.array([0.5, 0.4, 0.3], np.float32)
    q = np.eye(SKETCH_DIM, dtype=np.float32)[0]
    items = np.stack([np.zeros(SKETCH_DIM), np.eye(SKETCH_DIM)[0], np.eye(SKETCH_DIM)[1]])
    assert np.allclose(photo_rerank(dense, q, items), [0.5, 0.4 + PHOTO_WEIGHT, 0.3])


def test_rank_photos_re_ranks_only_the_towers_candidates():
    items = _unit(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    queries = _unit(np.array([[1.0, 0.05]]))
    assert rank_photos(items, queries, k=3).tolist() == [[0, 1, 2]]
    sk_items = np.stack([np.eye(SKETCH_DIM)[1], np.eye(SKETCH_DIM)[0], np.eye(SKETCH_DIM)[0]])
    sk_query = np.eye(SKETCH_DIM, dtype=np.float32)[:1]
    ranked = rank_photos(items, queries, k=3, sketches=(sk_items, sk_query))
    assert ranked[0, :2].tolist() == [1, 2]  # the photo channel lifts the items like the photo
    cases = [SimilarCase("q", "b", {"a": 1}, grade=2)]
    m = evaluate_photo(cases, ["a", "b", "c"], ranked)
    assert m["found@10"] == 1.0 and 0 < m["ndcg@10"] < 1


def test_rank_photos_adds_the_photo_channels_own_nearest_sketches():
    """An item the towers rank last (beyond their ``PHOTO_CANDIDATES``) is found by its own
    sketch; an item without a photo (a zero sketch) cannot come in that way."""
    n = PHOTO_CANDIDATES + 50
    angles = np.linspace(0, np.pi / 2, n)  # dense rank = row order
    items = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    queries = np.array([[1.0, 0.0]], np.float32)
    rng = np.random.default_rng(0)
    sk = _unit(rng.normal(size=(n, SKETCH_DIM)).astype(np.float32))
    sk[n - 2] = 0.0  # no photo
    query_sk = sk[[n - 1]].copy()
    ranked = rank_photos(items, queries, k=10, sketches=(sk, query_sk))
    assert ranked[0, 0] == n - 1  # its own photo, from the channel's own candidates
    assert (ranked[0, 1:] < PHOTO_CANDIDATES).all()  # the others: the towers' best, as before
    # far from the towers' list, a photo-less item whose dense score alone would not do
    sk2 = sk.copy()
    sk2[n - 1] = 0.0
    assert n - 1 not in rank_photos(items, queries, k=10, sketches=(sk2, query_sk))[0]
    # the channel brings at most PHOTO_OWN_CANDIDATES of its own
    far = np.zeros_like(sk)
    far[PHOTO_CANDIDATES:] = query_sk  # 50 items beyond the towers' list, all like the photo
    got = rank_photos(items, queries, k=n, sketches=(far, query_sk))[0]
    assert len(got) == PHOTO_CANDIDATES + min(PHOTO_OWN_CANDIDATES, 50)


def test_photo_only_cases_are_the_items_with_a_photo_and_no_text():
    items = [
        {"item_id": "text", "title": "Black top", "description": "", "image": "images/a.jpg"},
        {"item_id": "desc", "title": "", "description": "A top", "image": "images/b.jpg"},
        {"item_id": "bare", "title": "", "description": " ", "image": "images/c.jpg"},
        {"item_id": "none", "title": "", "description": "", "image": ""},
        {"item_id": "bare2", "title": None, "description": None, "image": "images/d.jpg"},
    ]
    cases = photo_only_cases(pd.DataFrame(items), seed=3)
    assert sorted(c.seed for c in cases) == ["bare", "bare2"]
    assert all(c.targets == {} and c.query_id == f"photo-only:{c.seed}" for c in cases)
    (one,) = photo_only_cases(pd.DataFrame(items), n=1, seed=3)
    assert one.seed in ("bare", "bare2")


def test_an_altered_shot_is_seeded_decodable_and_not_the_original(tmp_path):
    path = tmp_path / "p.jpg"
    arr = np.random.default_rng(0).integers(0, 255, size=(300, 200, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="JPEG")
    a, b = alter_photo(path, random.Random(1)), alter_photo(path, random.Random(1))
    assert a == b and a != path.read_bytes()
    assert preprocess(a).shape == (3, 224, 224)
    assert alter_photo(path, random.Random(2)) != a


def test_photo_requests_and_photos_say_what_is_wrong():
    with pytest.raises(InvalidRequest, match="empty"):
        validate_photo(search_pb2.SearchByPhotoRequest())
    with pytest.raises(TooLarge):
        validate_photo(search_pb2.SearchByPhotoRequest(photo=b"x" * (MAX_PHOTO_BYTES + 1)))
    ok = validate_photo(search_pb2.SearchByPhotoRequest(photo=b"abc", k=3, session_id="s"))
    assert ok.photo_bytes == b"abc" and ok.k == 3 and ok.session_id == "s" and ok.query == ""
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, format="PNG")
    with pytest.raises(ImageTooLarge):
        preprocess(bomb.getvalue())
    with pytest.raises(ImageDecodeError) as err:
        preprocess(b"GIF89a but not really")
    assert not isinstance(err.value, ImageTooLarge)


def test_a_photo_decodes_once_into_the_towers_centre_and_the_whole_photo():
    """The centre frame is the towers' input (a tall photo loses its top and bottom); the whole
    frame, the photo channel's, keeps every part of the photo."""
    arr = np.full((240, 160, 3), 128, np.uint8)
    arr[:30] = (0, 200, 0)  # a green band at the top of a tall product photo
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    both = preprocess(buf.getvalue(), ("centre", "whole"))
    assert both.shape == (2, 3, 224, 224)
    assert torch.equal(both[0], preprocess(buf.getvalue()))  # one frame: the centre, as before
    green = (both[:, 1, :10] > both[:, 0, :10] + 0.5).float().mean((1, 2))  # (2,) top rows
    assert green[1] > 0.99 and green[0] < 0.01  # the whole frame keeps the band, the centre not


def test_the_catalog_carries_the_whole_photos_sketches_and_hiding_photos_clears_them():
    from mrse.encoders.features import ItemFeatures
    from mrse.features.catalog import FeatureStats, build_catalog_features, hide_modality
    from mrse.models.config import ModelConfig

    rng = np.random.default_rng(0)
    n = 6
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(n)], "title": ["t"] * n,
                          "description": [""] * n, "category": ["c"] * n,
                          "brand": [""] * n})  # fmt: skip
    has = np.array([True, True, False, True, True, True])
    feats = ItemFeatures(
        item_ids=items["item_id"].to_numpy(dtype=object),
        text=np.zeros((n, 384), np.float32), has_text=np.zeros(n, bool),
        image=rng.random((n, 1280)).astype(np.float32) * has[:, None], has_image=has,
        whole=rng.random((n, 1280)).astype(np.float32) * has[:, None],
    )  # fmt: skip
    stats = FeatureStats.fit(feats)
    dataset = type(
        "D", (), {"items": items, "item_index": {i: k for k, i in enumerate(items["item_id"])}}
    )
    catalog = build_catalog_features(dataset, feats, stats, ModelConfig())
    want = photo_sketch(_unit(feats.whole - stats.image_mean), has)
    np.testing.assert_allclose(catalog.sketch.numpy(), want, atol=1e-5)
    assert not catalog.sketch[2].any()
    hidden = hide_modality(catalog, "photo", np.array([0]))
    assert not hidden.sketch[0].any() and hidden.sketch[1].any()
    no_whole = build_catalog_features(dataset, replace(feats, whole=None), stats, ModelConfig())
    assert no_whole.sketch is None  # not encoded: no photo channel, not a centre-crop stand-in
