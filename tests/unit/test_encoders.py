from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mrse.encoders.cache import FeatureCache, content_key
from mrse.encoders.efficientnet import EfficientNetLite0, load_pretrained
from mrse.encoders.features import encode_images, encode_items, encode_texts
from mrse.encoders.image import ImageDecodeError, preprocess

# ImageNet-1k class indices.
TSHIRT = {610}  # "jersey, T-shirt, tee shirt"
SHOES = {502, 514, 630, 770, 774}  # clog, cowboy boot, Loafer, running shoe, sandal


def _photos(root, pattern: str, category: str, n: int) -> list[str]:
    items = pd.read_parquet(root / "items.parquet")
    sel = items[items["title"].str.contains(pattern) & (items["category"] == category)]
    return [str(root / p) for p in sel["image"].head(n)]


def test_efficientnet_recognises_real_product_photos(sample_myntra, image_encoder):
    """Pretrained weights load correctly: T-shirts and shoes land in their ImageNet classes.

    Chance that a given class is in a top-5 is 0.5%; broken padding, BN eps or normalisation
    drop these rates to near zero.
    """
    shirts = _photos(sample_myntra, "Tshirt", "Apparel > Topwear", 12)
    shoes = _photos(sample_myntra, "Shoes", "Footwear > Shoes", 12)
    assert len(shirts) >= 8 and len(shoes) >= 8
    top5 = image_encoder.classify(shirts).topk(5).indices.tolist()
    shirt_rate = np.mean([bool(TSHIRT & set(t)) for t in top5])
    top5 = image_encoder.classify(shoes).topk(5).indices.tolist()
    shoe_rate = np.mean([bool(SHOES & set(t)) for t in top5])
    assert shirt_rate >= 0.5, shirt_rate
    assert shoe_rate >= 0.7, shoe_rate


def test_state_dict_matches_architecture_exactly():
    model = load_pretrained()  # strict=True inside: any missing/unexpected key raises
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4_652_008, rel=0.01)
    x = torch.zeros(2, 3, 224, 224)
    assert model.features(x).shape == (2, EfficientNetLite0.feature_dim)
    assert model(x).shape == (2, 1000)


def test_preprocess_shapes_and_errors(sample_hm):
    photo = next((sample_hm / "images").iterdir())
    x = preprocess(photo)
    assert x.shape == (3, 224, 224)
    assert -1.01 <= float(x.min()) and float(x.max()) <= 1.01
    with pytest.raises(ImageDecodeError):
        preprocess(b"not a jpeg")


def test_text_encoder_unit_vectors_and_semantics(text_encoder):
    v = text_encoder.encode(["black vest top", "dark sleeveless top", "running shoes"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_cache_roundtrip_and_content_keys(tmp_path):
    with FeatureCache(tmp_path / "c.sqlite") as cache:
        keys = [content_key("m", b"a"), content_key("m", b"b")]
        assert keys[0] != content_key("other-model", b"a")
        cache.put_many(keys, np.arange(6, dtype=np.float32).reshape(2, 3))
        got = cache.get_many(keys + ["absent"])
        assert set(got) == set(keys)
        np.testing.assert_array_equal(got[keys[1]], [3, 4, 5])
        with pytest.raises(ValueError):
            cache.put_many(keys, np.zeros((1, 3), np.float32))
    with FeatureCache(tmp_path / "c.sqlite") as cache:  # persisted across opens
        assert len(cache) == 2


def test_second_pass_encodes_nothing(tmp_path, text_encoder):
    calls: list[int] = []

    def encode(batch: list[str]) -> np.ndarray:
        calls.append(len(batch))
        return text_encoder.encode(batch)

    texts = ["red dress", "", "blue jeans", "red dress"]
    with FeatureCache(tmp_path / "c.sqlite") as cache:
        first, s1 = encode_texts(texts, encode, cache)
        assert sum(calls) == 2 and s1.encoded == 3  # duplicate text encoded once
        assert not first[1].any()  # empty text -> zero vector
        second, s2 = encode_texts(texts, encode, cache)
        assert sum(calls) == 2 and s2.encoded == 0 and s2.cached == 3
        np.testing.assert_allclose(first, second)
        _, s3 = encode_texts(["red dress!"], encode, cache)  # edited text: new key
        assert s3.encoded == 1


def test_unreadable_photo_is_counted_and_item_kept(tmp_path, image_encoder, sample_hm):
    good = str(next((sample_hm / "images").iterdir()))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    paths = [good, str(bad), "", str(tmp_path / "missing.jpg")]
    with FeatureCache(tmp_path / "c.sqlite") as cache:
        feats, ok, stats = encode_images(paths, image_encoder.encode_tensors, cache)
    assert feats.shape == (4, 1280)
    assert ok.tolist() == [True, False, False, False]
    assert sorted(stats.failed) == sorted([str(bad), str(tmp_path / "missing.jpg")])
    assert not feats[1:].any()


def test_encode_items_aligns_rows_and_reports(make_dataset, tmp_path, text_encoder, image_encoder):
    from mrse.data import load_dataset

    root = make_dataset()
    (root / "images" / "i3.jpg").write_bytes(b"corrupt")
    ds = load_dataset(root)
    with FeatureCache(tmp_path / "c.sqlite") as cache:
        feats, stats = encode_items(ds, cache, text_encoder, image_encoder)
    assert feats.has_text.tolist() == [True, True, False]
    assert feats.has_image.tolist() == [True, True, False]
    assert ds.report.unreadable_images == [str((root / "images" / "i3.jpg").resolve())]
    assert stats["image"].encoded == 2


def test_onnx_backend_matches_eager_torch(sample_hm, tmp_path):
    from mrse.encoders.image import ImageEncoder

    photos = sorted((sample_hm / "images").iterdir())[:6]
    batch = torch.stack([preprocess(p) for p in photos])
    onnx = ImageEncoder(backend="onnx", cache_dir=tmp_path).encode_tensors(batch)
    eager = ImageEncoder(backend="torch").encode_tensors(batch)
    np.testing.assert_allclose(onnx, eager, atol=1e-3)
    with pytest.raises(ValueError, match="backend"):
        ImageEncoder(backend="tpu")


def test_concurrent_onnx_exports_do_not_collide(tmp_path):
    """Two processes exporting into the same fresh cache (torchrun ranks) both succeed."""
    import subprocess
    import sys

    code = (
        "from pathlib import Path; from mrse.encoders.image import ImageEncoder; "
        f"ImageEncoder(backend='onnx', cache_dir=Path({str(tmp_path)!r}))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert (tmp_path / "models" / "efficientnet-lite0-feat.onnx").exists()
    assert not list((tmp_path / "models").glob("*.tmp"))
